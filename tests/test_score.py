"""``irt-fast score`` and ``irt_fast.scoring.score``: every input format (Parquet file, glob and
directory, CSV, JSONL; embeddings or texts) gives the in-process engine's results; the output is
streamed in row groups; an interrupted or failed run writes nothing."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_engine_fixtures import config, random_tensors, write

import irt_fast
from irt_fast.cli import main
from irt_fast.scoring import score

pq = pytest.importorskip("pyarrow.parquet")

CFG = config(n_llms=6)
D = CFG["embed_dim"]
N = 3000
BATCH = 700  # several batches, the last one short


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model")
    return write(d / "m.safetensors", CFG, random_tensors(CFG, 0))


@pytest.fixture(scope="module")
def model(model_path: Path) -> irt_fast.Model:
    return irt_fast.load(model_path, threads=1)


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, D)).astype(np.float32)
    return pl.DataFrame(
        {
            "query_id": [f"q{i:05d}" for i in range(N)],
            "embedding": x.tolist(),
            "bench": [f"b{i % 4}" for i in rng.permutation(N)],
        }
    )


def emb(df: pl.DataFrame) -> np.ndarray:
    return np.asarray(df["embedding"].to_list(), dtype=np.float32)


def run(*args: str | Path) -> int:
    return main([str(a) for a in args])


def write_input(df: pl.DataFrame, path: Path) -> Path:
    ext = path.suffix
    if ext == ".parquet":
        df.write_parquet(path)
    elif ext == ".csv" and "embedding" not in df.columns:
        df.write_csv(path)
    elif ext == ".csv":
        df.with_columns(
            ("[" + pl.col("embedding").cast(pl.List(pl.String)).list.join(", ") + "]").alias(
                "embedding"
            )
        ).write_csv(path)
    else:
        df.write_ndjson(path)
    return path


def check_routes(out: Path, model: irt_fast.Model, df: pl.DataFrame) -> pl.DataFrame:
    got = pl.read_parquet(out)
    want = model.route(emb(df))
    assert got["query_id"].to_list() == df["query_id"].to_list()
    assert got["llm"].to_list() == want.names
    np.testing.assert_array_equal(got["proba"].to_numpy(), want.proba)
    return got


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".jsonl"])
def test_each_format_routes_as_the_engine(model_path, model, data, tmp_path, ext) -> None:
    src = write_input(data, tmp_path / f"q{ext}")
    out = tmp_path / "out.parquet"
    assert (
        run("score", "--model", model_path, "--queries", src, "--out", out, "--batch", BATCH) == 0
    )
    got = check_routes(out, model, data)
    assert got["query_id"].dtype == pl.String  # string ids kept as given
    assert pq.ParquetFile(out).num_row_groups == math.ceil(N / BATCH)  # written as it went


def test_route_proba_and_group_accuracy_in_one_pass(model_path, model, data, tmp_path) -> None:
    src = write_input(
        data.with_columns(pl.Series("query_id", np.arange(N) * 7)), tmp_path / "q.parquet"
    )
    out, acc = tmp_path / "out.parquet", tmp_path / "acc.parquet"
    args = ["score", "--model", model_path, "--queries", src, "--out", out, "--route", "--proba"]
    assert run(*args, "--group-col", "bench", "--accuracy-out", acc, "--batch", BATCH) == 0
    got = pl.read_parquet(out)
    assert got["query_id"].dtype == pl.Int64 and got["query_id"][1] == 7  # int ids as given
    x = emb(data)
    want = model.route(x)
    assert got["llm"].to_list() == want.names
    np.testing.assert_array_equal(np.stack(got["proba_all"].to_numpy()), model.predict_proba(x))
    meta = pq.read_schema(out).metadata
    assert json.loads(meta[b"irt_fast.llm_names"]) == model.llm_names
    table = pl.read_parquet(acc).sort("group", "llm")
    ref = model.predict_accuracy(x, groups=data["bench"].to_list(), as_frame=True).sort(
        "group", "llm"
    )
    assert table.columns == ["group", "llm", "accuracy", "n"]
    assert table.select("group", "llm", "n").equals(ref.select("group", "llm", "n"))
    np.testing.assert_allclose(table["accuracy"], ref["accuracy"], rtol=0, atol=1e-9)


def test_proba_batches_hold_a_bounded_block_of_p(model, data, tmp_path, monkeypatch) -> None:
    import irt_fast.scoring.stream as stream

    src = write_input(data, tmp_path / "q.parquet")
    # as if the pool were large: 500 rows × 6 LLMs × 4 bytes of P per batch
    monkeypatch.setattr(stream, "PROBA_BLOCK_BYTES", 500 * model.n_llms * 4)
    score(model, src, tmp_path / "p.parquet", proba=True)
    assert pq.ParquetFile(tmp_path / "p.parquet").num_row_groups == math.ceil(N / 500)
    score(model, src, tmp_path / "r.parquet")  # routes only: the usual batch
    assert pq.ParquetFile(tmp_path / "r.parquet").num_row_groups == 1


def test_group_table_alone_from_the_engine_sums(model_path, model, data, tmp_path) -> None:
    src = write_input(data, tmp_path / "q.jsonl")
    out = tmp_path / "acc.parquet"
    args = ["score", "--model", model_path, "--queries", src, "--out", out, "--group-col", "bench"]
    assert run(*args, "--batch", BATCH) == 0
    table = pl.read_parquet(out)
    ref = model.predict_accuracy(emb(data), groups=data["bench"].to_list())
    assert table.height == 4 * model.n_llms
    for g, llm, a in table.select("group", "llm", "accuracy").iter_rows():
        assert a == pytest.approx(ref[g][llm], abs=1e-9)


def test_routing_rule_and_candidates(model_path, model, data, tmp_path) -> None:
    src = write_input(data, tmp_path / "q.parquet")
    out = tmp_path / "out.parquet"
    cands = model.llm_names[1:4]
    cost = {n: float(i) for i, n in enumerate(cands)}
    cost_file = tmp_path / "cost.json"
    cost_file.write_text(json.dumps(cost))
    args = ["score", "--model", model_path, "--queries", src, "--out", out, "--lam", "0.2"]
    assert run(*args, "--candidates", ",".join(cands), "--cost", cost_file) == 0
    want = model.route(emb(data), candidates=cands, cost=cost, lam=0.2)
    assert pl.read_parquet(out)["llm"].to_list() == want.names


def test_glob_and_directory_inputs(model_path, model, data, tmp_path) -> None:
    parts = tmp_path / "parts"
    (parts / "day=2").mkdir(parents=True)
    data[:1000].write_parquet(parts / "a.parquet")
    data[1000:2200].write_parquet(parts / "b.parquet")
    data[2200:].write_parquet(parts / "day=2" / "c.parquet")
    (parts / "_SUCCESS").write_text("")  # writers' marker files are skipped
    (parts / ".a.parquet.crc").write_text("x")
    out = tmp_path / "dir.parquet"
    assert run("score", "--model", model_path, "--queries", parts, "--out", out) == 0
    check_routes(out, model, data)
    out2 = tmp_path / "glob.parquet"
    assert run("score", "--model", model_path, "--queries", parts / "*.parquet", "--out", out2) == 0
    check_routes(out2, model, data[:2200])
    with pytest.raises(irt_fast.InputError, match="nothing to compute"):
        score(model, parts, tmp_path / "none.parquet", route=False)
    summary = score(model, str(parts / "**" / "*.parquet"), tmp_path / "api.parquet", batch=512)
    assert summary.rows == N and summary.out == tmp_path / "api.parquet"
    check_routes(tmp_path / "api.parquet", model, data)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose embedder is the built static m2v-mpnet-256 (skips when it is not built)."""
    from irt_fast import embedders

    try:
        built = embedders.kind_of(embedders.local_dir("m2v-mpnet-256")) is not None
    except irt_fast.EmbedderError:
        built = False
    if not built:
        pytest.skip("m2v-mpnet-256 is not built: irt-fast models setup")
    pytest.importorskip("tokenizers")
    cfg = config(embed_dim=256, n_llms=3)
    return write(
        tmp_path_factory.mktemp("text") / "t.safetensors",
        cfg,
        random_tensors(cfg, 2),
        embedder=json.dumps({"name": "m2v-mpnet-256", "dim": 256, "normalize": True}),
    )


def test_text_queries_with_an_offline_embedder(text_model, tmp_path) -> None:
    path = text_model
    m = irt_fast.load(path)
    texts = [f"question {i}: what is {i} times {i % 7}?" for i in range(300)]
    df = pl.DataFrame({"query_id": range(300), "text": texts})
    src = write_input(df, tmp_path / "t.csv")
    out = tmp_path / "out.parquet"
    assert run("score", "--model", path, "--queries", src, "--out", out, "--batch", 128) == 0
    got = pl.read_parquet(out)
    assert got["query_id"].to_list() == [str(i) for i in range(300)]  # CSV ids: as written
    want = m.route(texts)
    assert got["llm"].to_list() == want.names
    np.testing.assert_allclose(got["proba"].to_numpy(), want.proba, rtol=0, atol=1e-6)


def test_arrow_scorer_on_texts(text_model) -> None:
    """The Arrow batch scorer behind Ray Data and Spark takes a text column too."""
    import pyarrow as pa

    from irt_fast.scoring.arrow import Scorer

    texts = [f"which planet is number {i} from the sun?" for i in range(40)]
    out = Scorer(str(text_model), proba=True)(pa.table({"query_id": range(40), "text": texts}))
    assert out.column_names == ["query_id", "llm", "proba", "proba_all"]
    m = irt_fast.load(text_model)
    assert out.column("llm").to_pylist() == m.route(texts).names
    np.testing.assert_allclose(
        np.stack(out.column("proba_all").to_numpy(zero_copy_only=False)),
        m.predict_proba(texts),
        rtol=0,
        atol=1e-6,
    )


# ----------------------------------------------------------------------------------------------
# interrupted runs


@pytest.mark.parametrize(("signum", "status"), [(None, 130), (signal.SIGTERM, 143)])
def test_interrupted_run_leaves_no_output(
    model_path, data, tmp_path, monkeypatch, signum, status, capsys
) -> None:
    src = write_input(data, tmp_path / "q.parquet")
    out = tmp_path / "out" / "scored.parquet"
    out.parent.mkdir()
    out.write_bytes(b"the previous result")
    handler = signal.getsignal(signal.SIGTERM)  # not always SIG_DFL: ray.init installs one
    calls = []
    real = irt_fast.Model.route

    def route(self, x, **kw):
        calls.append(len(x))
        if len(calls) == 3:  # mid-stream: two row groups are already written
            if signum is None:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signum)
        return real(self, x, **kw)

    monkeypatch.setattr(irt_fast.Model, "route", route)
    assert (
        run("score", "--model", model_path, "--queries", src, "--out", out, "--batch", 500)
        == status
    )
    assert "no output written" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["scored.parquet"]
    assert out.read_bytes() == b"the previous result"  # the old file is untouched
    assert signal.getsignal(signal.SIGTERM) == handler  # the score run put it back


def test_sigterm_to_a_real_process_leaves_no_output(model_path, tmp_path) -> None:
    import subprocess
    import sys
    import time

    rng = np.random.default_rng(7)
    n = 200_000  # in batches of 50: thousands of batches, seconds of work
    x = rng.standard_normal((n, D)).astype(np.float32)
    src = tmp_path / "q.parquet"
    pl.DataFrame({"query_id": np.arange(n), "embedding": x}).write_parquet(src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cmd = [sys.executable, "-m", "irt_fast", "score", "--model", str(model_path)]
    cmd += ["--queries", str(src), "--out", str(out_dir / "s.parquet"), "--batch", "50"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while p.poll() is None and not any(out_dir.iterdir()):  # the temporary file is there
            time.sleep(0.01)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 143, err
    assert "interrupted: no output written" in err
    assert list(out_dir.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# bad input: exit 2, a message, nothing written


def _bad_embedding_row(df: pl.DataFrame, row: int) -> pl.DataFrame:
    e = df["embedding"].to_list()
    e[row] = e[row][:-1]
    return df.with_columns(pl.Series("embedding", e))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "not found"),
        ("suffix", "unsupported format"),
        ("no_query_column", "missing column(s) 'embedding or text'"),
        ("no_id_column", "missing column(s) 'query_id'"),
        ("short_embedding_late", "row 1503: length 23 differs"),
        ("csv_bad_number", "row 2001 (line 2003): not a list of numbers"),
        ("wrong_width", "the model expects 24"),
        ("empty", "no queries"),
        ("null_label", "row 12: missing group label"),
        ("no_group_column", "missing column(s) 'bench'"),
        ("corrupt", "cannot be read as parquet"),
        ("mixed_glob", "mix formats"),
        ("bad_cost", "--cost is not valid JSON"),
        ("unknown_candidate", "unknown LLM 'nope'"),
        ("lam_without_cost", "pass cost= too"),
        ("out_is_input", "is one of the input files"),
        ("no_accuracy_out", "pass accuracy_out"),
        ("batch_zero", "batch must be a positive integer"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    model_path, data, tmp_path, capsys, case, message
) -> None:
    d = tmp_path / "in"
    d.mkdir()
    src = d / "q.parquet"
    extra: list[str | Path] = []
    small = data[:2100]
    if case == "missing":
        src = d / "absent.parquet"
    elif case == "suffix":
        src = d / "q.txt"
        src.write_text("query_id\n")
    elif case == "no_query_column":
        small.drop("embedding").write_parquet(src)
    elif case == "no_id_column":
        small.drop("query_id").write_parquet(src)
    elif case == "short_embedding_late":
        _bad_embedding_row(small, 1503).write_parquet(src)
    elif case == "csv_bad_number":
        src = write_input(small, d / "q.csv")
        lines = src.read_text().splitlines()
        lines[2002] = lines[2002].replace("[", "[oops, ", 1)
        src.write_text("\n".join(lines) + "\n")
    elif case == "wrong_width":
        small.with_columns(pl.col("embedding").list.slice(0, 20)).write_parquet(src)
    elif case == "empty":
        small[:0].write_parquet(src)
    elif case == "null_label":
        small.with_columns(
            pl.when(pl.int_range(pl.len()) == 12)
            .then(None)
            .otherwise(pl.col("bench"))
            .alias("bench")
        ).write_parquet(src)
        extra = ["--group-col", "bench"]
    elif case == "no_group_column":
        small.drop("bench").write_parquet(src)
        extra = ["--group-col", "bench"]
    elif case == "corrupt":
        small.write_parquet(src)
        src.write_bytes(src.read_bytes()[:5000])
    elif case == "mixed_glob":
        small.write_parquet(src)
        write_input(small, d / "r.jsonl")
        src = d / "*"
    else:
        small.write_parquet(src)
        extra = {
            "bad_cost": ["--cost", "{not json", "--lam", "1"],
            "unknown_candidate": ["--candidates", "llm-0,nope"],
            "lam_without_cost": ["--lam", "0.5"],
            "out_is_input": [],
            "no_accuracy_out": ["--route", "--group-col", "bench"],
            "batch_zero": ["--batch", "0"],
        }[case]
    out = src if case == "out_is_input" else tmp_path / "out" / "scored.parquet"
    if case in ("short_embedding_late", "csv_bad_number"):
        extra = ["--batch", "700"]  # the bad row is in the third batch: its row is the file's
    status = run("score", "--model", model_path, "--queries", src, "--out", out, *extra)
    err = capsys.readouterr().err
    assert status == 2, err
    last = err.strip().splitlines()[-1]  # after the progress bar, if it had started
    assert last.startswith("error: ") and message in last, err
    if case != "out_is_input":
        assert not out.parent.exists() or not any(out.parent.iterdir())
