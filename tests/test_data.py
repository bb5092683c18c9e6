"""Data layer: loading, validation, majority vote, EmbedLLM layout, writing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irt_fast.data import Dataset, load_dataset, write_dataset
from irt_fast.errors import DataError, InputError

REPO = Path(__file__).resolve().parents[1]


def _write(df: pl.DataFrame, path: Path) -> None:
    ext = path.suffix
    if ext == ".parquet":
        df.write_parquet(path)
    elif ext == ".csv":
        df.write_csv(path)
    else:
        df.write_ndjson(path)


def make_dir(
    tmp: Path,
    responses: dict | pl.DataFrame | None = None,
    queries: dict | pl.DataFrame | None = None,
    embeddings: dict | pl.DataFrame | None = None,
    fmt: str = "parquet",
) -> Path:
    if responses is None:
        responses = {
            "model": ["b", "a", "a", "b", "c"],
            "query_id": [10, 10, 30, 20, 30],
            "correct": [1, 0, 1, 1, 0],
        }
    if queries is None:
        queries = {
            "query_id": [30, 10, 20],
            "text": ["q thirty", "q ten", "q twenty"],
            "benchmark": ["x", "y", "x"],
        }
    for name, obj in (("responses", responses), ("queries", queries)):
        _write(pl.DataFrame(obj), tmp / f"{name}.{fmt}")
    if embeddings is not None:
        df = pl.DataFrame(embeddings)
        if fmt == "csv":
            df = df.with_columns(
                embedding=pl.Series([json.dumps(list(v)) for v in df["embedding"].to_list()])
            )
        _write(df, tmp / f"query_embeddings.{fmt}")
    return tmp


def emb3(ids=(30, 10, 20)) -> dict:
    return {"query_id": list(ids), "embedding": [[float(i), 1.0] for i in ids]}


def test_basic_load_sorted_and_indexed(tmp_path):
    ds = load_dataset(make_dir(tmp_path, embeddings=emb3()))
    assert ds.llm_names == ["a", "b", "c"]
    assert ds.queries["query_id"].to_list() == [10, 20, 30]
    assert ds.queries["text"].to_list() == ["q ten", "q twenty", "q thirty"]
    assert list(ds.benchmarks) == ["y", "x", "x"]
    r = ds.responses
    assert r.schema == pl.Schema(
        {
            "model": pl.String,
            "query_id": pl.Int64,
            "correct": pl.Int8,
            "llm_idx": pl.Int32,
            "q_idx": pl.Int32,
        }
    )
    # indices agree with names and rows
    assert [ds.llm_names[i] for i in r["llm_idx"]] == r["model"].to_list()
    assert (
        ds.queries["query_id"].to_numpy()[r["q_idx"].to_numpy()].tolist() == r["query_id"].to_list()
    )
    got = {(m, q): c for m, q, c in r.select("model", "query_id", "correct").iter_rows()}
    assert got == {("b", 10): 1, ("a", 10): 0, ("a", 30): 1, ("b", 20): 1, ("c", 30): 0}
    # embeddings follow queries order, not file order
    assert ds.embeddings.dtype == np.float32 and ds.embeddings.flags.c_contiguous
    np.testing.assert_array_equal(ds.embeddings[:, 0], [10.0, 20.0, 30.0])
    assert (ds.n_llms, ds.n_queries, ds.n_merged) == (3, 3, 0)
    assert "3 LLMs x 3 queries" in ds.summary()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_write_load_roundtrip(tmp_path, fmt):
    (tmp_path / "src").mkdir()
    ds = load_dataset(make_dir(tmp_path / "src", embeddings=emb3()))
    out = write_dataset(ds, tmp_path / fmt, format=fmt)
    assert (out / f"responses.{fmt}").is_file()
    back = load_dataset(out)
    assert back.llm_names == ds.llm_names
    assert back.queries.equals(ds.queries)
    assert back.responses.equals(ds.responses)
    np.testing.assert_array_equal(back.embeddings, ds.embeddings)


def test_write_refuses_ambiguous_directory(tmp_path):
    ds = load_dataset(make_dir(tmp_path))
    with pytest.raises(DataError, match="ambiguous"):
        write_dataset(ds, tmp_path, format="csv")
    with pytest.raises(InputError):
        write_dataset(ds, tmp_path / "x", format="xlsx")


def test_majority_vote_tie_counts_correct(tmp_path, caplog):
    responses = {
        "model": ["a", "a", "a", "b", "b", "c", "c", "c", "c"],
        "query_id": [10, 10, 10, 10, 10, 20, 20, 20, 20],
        "correct": [1, 0, 0, 1, 0, 1, 1, 1, 0],
    }
    with caplog.at_level("INFO", logger="irt_fast.data"):
        ds = load_dataset(make_dir(tmp_path, responses=responses))
    got = {(m, q): c for m, q, c in ds.responses.select("model", "query_id", "correct").iter_rows()}
    assert got == {("a", 10): 0, ("b", 10): 1, ("c", 20): 1}
    assert ds.n_merged == 6
    assert "6 repeated" in caplog.text
    assert "6 repeated answers merged" in ds.summary()


def test_labels_accepted_forms(tmp_path):
    for i, labels in enumerate(
        (
            [True, False, True, True, False],
            ["1", "0", " 1", "TRUE", "false"],
            [1.0, 0.0, 1.0, 1.0, 0.0],
        )
    ):
        d = tmp_path / str(i)
        d.mkdir()
        r = {
            "model": ["b", "a", "a", "b", "c"],
            "query_id": [10, 10, 30, 20, 30],
            "correct": labels,
        }
        ds = load_dataset(make_dir(d, responses=r))
        assert sorted(ds.responses["correct"].to_list()) == [0, 0, 1, 1, 1]


@pytest.mark.parametrize(
    ("bad", "row", "fmt"),
    [
        ([1, 0, 2, 1, 0], 2, "parquet"),
        (["1", "0", "1", "yes", "0"], 3, "csv"),
        ([1, None, 1, 1, 0], 1, "jsonl"),
        ([1.0, 0.0, 1.0, 0.5, 0.0], 3, "parquet"),
    ],
)
def test_bad_label_names_file_column_row(tmp_path, bad, row, fmt):
    r = {"model": ["b", "a", "a", "b", "c"], "query_id": [10, 10, 30, 20, 30], "correct": bad}
    with pytest.raises(DataError) as e:
        load_dataset(make_dir(tmp_path, responses=r, fmt=fmt))
    msg = str(e.value)
    assert f"responses.{fmt}" in msg and "'correct'" in msg and f"row {row}" in msg
    if fmt == "csv":
        assert f"line {row + 2}" in msg


def test_unknown_query_id(tmp_path):
    r = {"model": ["a", "a", "b"], "query_id": [10, 99, 20], "correct": [1, 0, 1]}
    with pytest.raises(
        DataError, match=r"responses.parquet: column 'query_id', row 1: query id 99 has no text"
    ):
        load_dataset(make_dir(tmp_path, responses=r))


def test_null_model_and_null_text(tmp_path):
    r = {"model": ["a", None, "b"], "query_id": [10, 10, 20], "correct": [1, 0, 1]}
    with pytest.raises(DataError, match=r"responses.parquet: column 'model', row 1: null model"):
        load_dataset(make_dir(tmp_path, responses=r))
    q = {"query_id": [10, 20, 30], "text": ["a", None, "c"], "benchmark": ["x", "x", "x"]}
    d = tmp_path / "t"
    d.mkdir()
    with pytest.raises(DataError, match=r"queries.csv: column 'text', row 1 \(line 3\)"):
        load_dataset(make_dir(d, queries=q, fmt="csv"))


def test_duplicate_query_ids(tmp_path):
    q = {"query_id": [10, 20, 30, 20], "text": ["a", "b", "c", "d"], "benchmark": ["x"] * 4}
    with pytest.raises(
        DataError, match=r"queries.parquet: column 'query_id', row 3: duplicate query id 20"
    ):
        load_dataset(make_dir(tmp_path, queries=q))


def test_bad_query_id_value(tmp_path):
    q = {"query_id": ["10", "2x", "30"], "text": ["a", "b", "c"], "benchmark": ["x"] * 3}
    with pytest.raises(DataError, match=r"queries.csv: column 'query_id', row 1 \(line 3\): '2x'"):
        load_dataset(make_dir(tmp_path, queries=q, fmt="csv"))


def test_missing_files_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="no responses"):
        load_dataset(tmp_path)
    pl.DataFrame({"model": ["a"], "query_id": [1], "correct": [1]}).write_parquet(
        tmp_path / "responses.parquet"
    )
    with pytest.raises(DataError, match="no queries"):
        load_dataset(tmp_path)
    pl.DataFrame({"query_id": [1], "txt": ["a"]}).write_csv(tmp_path / "queries.csv")
    with pytest.raises(DataError, match=r"queries.csv: missing column\(s\) 'text'"):
        load_dataset(tmp_path)
    pl.DataFrame({"query_id": [1], "text": ["a"]}).write_parquet(tmp_path / "queries.parquet")
    with pytest.raises(DataError, match="several queries files"):
        load_dataset(tmp_path)
    (tmp_path / "queries.csv").unlink()
    ds = load_dataset(tmp_path)  # benchmark column is optional
    assert ds.benchmarks.tolist() == ["unknown"]


def test_empty_responses(tmp_path):
    r = pl.DataFrame(
        {"model": [], "query_id": [], "correct": []},
        schema={"model": pl.String, "query_id": pl.Int64, "correct": pl.Int8},
    )
    with pytest.raises(DataError, match="responses.parquet: no responses"):
        load_dataset(make_dir(tmp_path, responses=r))


def test_embedding_errors(tmp_path):
    cases = {
        "nan": (
            {"query_id": [30, 10, 20], "embedding": [[1.0, 2.0], [float("nan"), 0.0], [1.0, 1.0]]},
            r"row 1: NaN",
        ),
        "inf": (
            {"query_id": [30, 10, 20], "embedding": [[1.0, 2.0], [0.0, 0.0], [1.0, float("inf")]]},
            r"row 2: NaN, Inf",
        ),
        "len": (
            {"query_id": [30, 10, 20], "embedding": [[1.0, 2.0], [0.0, 0.0], [1.0, 1.0, 3.0]]},
            r"row 2: length 3 differs",
        ),
        "dup": (
            {"query_id": [30, 10, 30], "embedding": [[1.0, 2.0], [0.0, 0.0], [1.0, 1.0]]},
            r"column 'query_id', row 2: duplicate",
        ),
        "missing": (
            {"query_id": [30, 10], "embedding": [[1.0, 2.0], [0.0, 0.0]]},
            r"responses.parquet: column 'query_id', row 3: query id 20 has no embedding",
        ),
    }
    for name, (emb, pattern) in cases.items():
        d = tmp_path / name
        d.mkdir()
        with pytest.raises(DataError, match=pattern) as e:
            load_dataset(make_dir(d, embeddings=emb))
        if name not in ("missing",):
            assert "query_embeddings.parquet" in str(e.value) and "column" in str(e.value)
    # but embeddings=False skips the file altogether
    assert load_dataset(tmp_path / "nan", embeddings=False).embeddings is None


def test_csv_embedding_strings(tmp_path):
    (tmp_path / "a").mkdir()
    ds = load_dataset(make_dir(tmp_path / "a", embeddings=emb3(), fmt="csv"))
    np.testing.assert_array_equal(ds.embeddings, [[10, 1], [20, 1], [30, 1]])
    (tmp_path / "b").mkdir()
    make_dir(tmp_path / "b", fmt="csv")
    pl.DataFrame(
        {"query_id": [10, 20, 30], "embedding": ["[1, 2]", "[3, oops]", "[5, 6]"]}
    ).write_csv(tmp_path / "b" / "query_embeddings.csv")
    with pytest.raises(
        DataError, match=r"query_embeddings.csv: column 'embedding', row 1 \(line 3\)"
    ):
        load_dataset(tmp_path / "b")


def test_queries_without_embedding_or_responses_are_dropped(tmp_path):
    q = {"query_id": [30, 10, 20, 40], "text": ["a", "b", "c", "d"], "benchmark": ["x"] * 4}
    ds = load_dataset(make_dir(tmp_path, queries=q, embeddings=emb3()))
    assert ds.queries["query_id"].to_list() == [10, 20, 30]
    # without embeddings the unanswered query stays (it can still be predicted from text)
    assert load_dataset(tmp_path, embeddings=False).queries["query_id"].to_list() == [
        10,
        20,
        30,
        40,
    ]


def _embedllm_frame(rows):
    return pl.DataFrame(
        rows, schema=["model_id", "prompt_id", "label", "prompt", "category"], orient="row"
    )


def test_embedllm_single_csv_and_directory(tmp_path):
    train = _embedllm_frame(
        [(0, 5, 1, "five", "math"), (1, 5, 0, "five", "math"), (0, 7, 0, "seven", "law")]
    )
    test = _embedllm_frame(
        [(1, 7, 1, "seven", "law"), (0, 9, 1, "nine", "law"), (0, 9, 0, "nine", "law")]
    )
    train.write_csv(tmp_path / "train.csv")
    test.write_csv(tmp_path / "test.csv")
    one = load_dataset(tmp_path / "train.csv")
    assert one.llm_names == ["0", "1"] and one.n_queries == 2 and one.n_responses == 3
    ds = load_dataset(tmp_path)
    assert ds.llm_names == ["0", "1"]
    assert ds.queries.rows() == [(5, "five", "math"), (7, "seven", "law"), (9, "nine", "law")]
    assert ds.n_merged == 1  # model 0 answered prompt 9 twice: tie -> correct
    got = {(m, q): c for m, q, c in ds.responses.select("model", "query_id", "correct").iter_rows()}
    assert got[("0", 9)] == 1 and got[("1", 7)] == 1 and len(got) == 5


def test_embedllm_model_name_and_conflicts(tmp_path):
    df = _embedllm_frame([(0, 5, 1, "five", "math"), (1, 5, 0, "five", "math")]).with_columns(
        model_name=pl.Series(["gpt-x", "llama-y"])
    )
    df.write_csv(tmp_path / "one.csv")
    assert load_dataset(tmp_path / "one.csv").llm_names == ["gpt-x", "llama-y"]
    bad = _embedllm_frame([(0, 5, 1, "five", "math"), (1, 5, 0, "FIVE?", "math")])
    bad.write_csv(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"bad.csv: column 'prompt', row 1 \(line 3\): prompt_id 5"):
        load_dataset(tmp_path / "bad.csv")
    d = tmp_path / "two"
    d.mkdir()
    _embedllm_frame([(0, 5, 1, "five", "math")]).write_csv(d / "train.csv")
    _embedllm_frame([(0, 6, 1, "six", "law"), (1, 5, 0, "five", "law")]).write_csv(d / "val.csv")
    with pytest.raises(DataError, match=r"val.csv: column 'category', row 1 \(line 3\)"):
        load_dataset(d)
    (tmp_path / "x.parquet").write_text("not a csv")
    with pytest.raises(DataError, match="EmbedLLM-layout CSV"):
        load_dataset(tmp_path / "x.parquet")


def test_subset_keeps_llms_and_reindexes(tmp_path):
    ds = load_dataset(make_dir(tmp_path, embeddings=emb3()))
    sub = ds.subset([30])
    assert sub.llm_names == ds.llm_names and sub.n_queries == 1
    assert sub.responses["q_idx"].to_list() == [0, 0]
    assert sub.responses["model"].to_list() == ["a", "c"]
    assert [sub.llm_names[i] for i in sub.responses["llm_idx"]] == ["a", "c"]
    np.testing.assert_array_equal(sub.embeddings, [[30.0, 1.0]])
    with pytest.raises(DataError, match="not in the dataset"):
        ds.subset([10, 11])


def test_with_embeddings_validates(tmp_path):
    ds = load_dataset(make_dir(tmp_path))
    out = ds.with_embeddings(np.ones((3, 4), dtype=np.float64))
    assert out.embeddings.dtype == np.float32 and ds.embeddings is None
    with pytest.raises(InputError):
        ds.with_embeddings(np.ones((2, 4)))
    arr = np.ones((3, 4))
    arr[2, 1] = np.nan
    with pytest.raises(InputError, match="row 2"):
        ds.with_embeddings(arr)
    with pytest.raises(InputError):
        Dataset(ds.queries, ds.responses, ds.llm_names, embeddings=np.ones((3, 2)))


def test_import_does_not_import_torch():
    code = "import sys; import irt_fast.data, irt_fast.splits, irt_fast.embed, irt_fast.synthetic; print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "python"), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.realdata
def test_mmlu_pro_counts(mmlu_pro):
    ds = mmlu_pro
    assert ds.n_llms == 29
    assert ds.n_queries == 12032
    assert ds.n_responses == 347215
    assert ds.n_merged == 0
    assert ds.embeddings.shape == (12032, 768)
    assert len(set(ds.benchmarks)) == 14
    norms = np.linalg.norm(ds.embeddings, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)
    acc = ds.responses.group_by("model").agg(pl.col("correct").mean()).sort("correct")
    assert 0.15 < acc["correct"][0] < 0.25 and 0.65 < acc["correct"][-1] < 0.75


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 4), st.integers(0, 1)),
        min_size=1,
        max_size=60,
    ),
    sparse=st.booleans(),
)
def test_majority_vote_matches_reference(tmp_path_factory, rows, sparse):
    """Vectorised loading equals a plain-Python majority vote (also for sparse huge ids)."""
    scale = 10**12 if sparse else 1  # sparse ids take the hash-join lookup path
    d = tmp_path_factory.mktemp("mv")
    make_dir(
        d,
        responses={
            "model": [r[0] for r in rows],
            "query_id": [r[1] * scale for r in rows],
            "correct": [r[2] for r in rows],
        },
        queries={
            "query_id": [i * scale for i in range(5)],
            "text": [f"t{i}" for i in range(5)],
            "benchmark": ["b"] * 5,
        },
    )
    ds = load_dataset(d)
    votes: dict[tuple[str, int], list[int]] = {}
    for m, q, c in rows:
        votes.setdefault((m, q * scale), []).append(c)
    want = {k: int(2 * sum(v) >= len(v)) for k, v in votes.items()}
    got = {(m, q): c for m, q, c in ds.responses.select("model", "query_id", "correct").iter_rows()}
    assert got == want
    assert ds.n_merged == len(rows) - len(want)
    assert ds.llm_names == sorted({r[0] for r in rows})
    assert ds.responses["q_idx"].to_list() == [q // scale for q in ds.responses["query_id"]]
    keys = ds.responses.select("llm_idx", "q_idx").rows()
    assert keys == sorted(keys)


def test_float_query_ids(tmp_path):
    """Float ids (pandas writes ints with NaN as floats) are accepted when whole."""
    q = {"query_id": [30.0, 10.0, 20.0], "text": ["a", "b", "c"], "benchmark": ["x"] * 3}
    ds = load_dataset(make_dir(tmp_path, queries=q, fmt="jsonl"))
    assert ds.queries["query_id"].to_list() == [10, 20, 30]
    d = tmp_path / "frac"
    d.mkdir()
    q["query_id"] = [30.0, 10.5, 20.0]
    with pytest.raises(DataError, match=r"queries.jsonl: column 'query_id', row 1: 10.5"):
        load_dataset(make_dir(d, queries=q, fmt="jsonl"))


def test_embedllm_question_embeddings_pth(tmp_path):
    torch = pytest.importorskip("torch")
    _embedllm_frame([(0, 0, 1, "zero", "law"), (1, 1, 0, "one", "law")]).write_csv(
        tmp_path / "train.csv"
    )
    _embedllm_frame([(0, 1, 1, "one", "law"), (1, 2, 1, "two", "math")]).write_csv(
        tmp_path / "test.csv"
    )
    table = torch.arange(12, dtype=torch.float32).reshape(3, 4)  # row i = prompt_id i
    torch.save(table, tmp_path / "question_embeddings.pth")
    ds = load_dataset(tmp_path)
    assert ds.queries["query_id"].to_list() == [0, 1, 2]
    np.testing.assert_array_equal(ds.embeddings, table.numpy())
    torch.save(table[:2], tmp_path / "question_embeddings.pth")  # prompt 2 has no row
    with pytest.raises(
        DataError,
        match=r"test.csv: column 'prompt_id', row 1 \(line 3\): query id 2 has no embedding in "
        r".*question_embeddings.pth",
    ):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, embeddings=False).embeddings is None


@pytest.mark.realdata
def test_mmlu_pro_duplicate_texts_share_embeddings(mmlu_pro):
    """748 MMLU-Pro questions repeat another's text (options differ); the embedding sees the
    text only, so those share a vector: a text-level leak across any question-level split."""
    q = mmlu_pro.queries.with_row_index("row")
    assert q["text"].n_unique() == 11642
    dup = q.filter(pl.col("text").is_duplicated())
    assert dup.height == 748
    first = dup.group_by("text").agg(pl.col("row").min().alias("r0"), pl.col("row"))
    for r0, rows in first.select("r0", "row").head(50).iter_rows():
        np.testing.assert_allclose(
            mmlu_pro.embeddings[rows], mmlu_pro.embeddings[[r0] * len(rows)], atol=1e-6
        )
