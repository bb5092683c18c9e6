"""Query ids: string ids end to end through load -> subset -> split -> split
file, integer ids unchanged, and out-of-range integers as DataErrors naming file, column, row."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from irt_fast import splits
from irt_fast.data import load_dataset, write_dataset
from irt_fast.errors import DataError

SIDS = ["arc:660", "mmlu:7", "gsm8k:12", "arc:2", "007"]


def write_str_dataset(d, fmt="parquet", emb=True):
    d.mkdir(parents=True, exist_ok=True)
    resp = pl.DataFrame(
        {
            "model": ["a", "b", "a", "b", "a", "a", "b", "b"],
            "query_id": ["arc:660", "arc:660", "mmlu:7", "gsm8k:12", "arc:2", "007", "007", "007"],
            "correct": [1, 0, 1, 1, 0, 1, 0, 0],
        }
    )
    q = pl.DataFrame(
        {
            "query_id": SIDS,
            "text": [f"question {s}" for s in SIDS],
            "benchmark": ["arc", "mmlu", "gsm8k", "arc", "other"],
        }
    )
    tables = {"responses": resp, "queries": q}
    if emb:
        vec = [[float(i), 1.0] for i in range(len(SIDS))]
        e = pl.DataFrame({"query_id": SIDS[::-1], "embedding": vec[::-1]})
        if fmt == "csv":
            e = e.with_columns(embedding=pl.Series([json.dumps(v) for v in vec[::-1]]))
        tables["query_embeddings"] = e
    for stem, df in tables.items():
        path = d / f"{stem}.{fmt}"
        {"parquet": df.write_parquet, "csv": df.write_csv, "jsonl": df.write_ndjson}[fmt](path)
    return d


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_string_ids_load_kept_as_given(tmp_path, fmt):
    ds = load_dataset(write_str_dataset(tmp_path / fmt, fmt))
    assert ds.has_str_ids
    assert ds.queries["query_id"].dtype == pl.String
    assert ds.responses["query_id"].dtype == pl.String
    assert ds.queries["query_id"].to_list() == sorted(SIDS)  # "007" stays "007"
    assert ds.n_merged == 1  # the three answers of b to "007" are folded into one
    got = {(m, q): c for m, q, c in ds.responses.select("model", "query_id", "correct").iter_rows()}
    assert got[("b", "007")] == 0 and got[("a", "arc:660")] == 1
    # embeddings are matched by id, not by row order
    row = ds.queries["query_id"].to_list().index("gsm8k:12")
    np.testing.assert_array_equal(ds.embeddings[row], [2.0, 1.0])


def test_string_ids_through_subset_split_and_split_file(tmp_path):
    ds = load_dataset(write_str_dataset(tmp_path / "d"))
    split = splits.fixed_split(ds.queries["query_id"], fractions=(0.6, 0.2, 0.2), seed=3)
    assert all(v.dtype == object for v in split.values())
    assert sorted(np.concatenate(list(split.values())).tolist()) == sorted(SIDS)
    assert splits.subsample(ds.query_ids, 2, seed=0).tolist() == sorted(
        splits.subsample(ds.query_ids, 2, seed=0).tolist()
    )
    sub = ds.subset(split["train"])
    assert sorted(sub.queries["query_id"].to_list()) == split["train"].tolist()
    assert set(sub.responses["query_id"].to_list()) <= set(split["train"].tolist())
    for ext in ("csv", "parquet"):
        f = splits.write_split_file(split, tmp_path / f"split.{ext}")
        back = splits.read_split_file(f, ds)
        for name in split:
            assert back[name].tolist() == split[name].tolist()
    lobo = splits.leave_one_benchmark_out(ds, "arc")
    assert lobo["test"].tolist() == ["arc:2", "arc:660"]
    with pytest.raises(DataError, match="not in the dataset"):
        ds.subset(["arc:660", "nope"])


def test_string_dataset_roundtrips_through_write(tmp_path):
    ds = load_dataset(write_str_dataset(tmp_path / "d"))
    for fmt in ("parquet", "csv", "jsonl"):
        back = load_dataset(write_dataset(ds, tmp_path / f"w_{fmt}", format=fmt))
        assert back.queries["query_id"].to_list() == ds.queries["query_id"].to_list()
        np.testing.assert_array_equal(back.embeddings, ds.embeddings)


def test_integer_ids_unchanged(tmp_path):
    d = tmp_path / "ints"
    d.mkdir()
    pl.DataFrame({"model": ["a", "b"], "query_id": ["7", " 3"], "correct": [1, 0]}).write_csv(
        d / "responses.csv"
    )
    pl.DataFrame({"query_id": [3, 7], "text": ["x", "y"]}).write_parquet(d / "queries.parquet")
    ds = load_dataset(d)
    assert not ds.has_str_ids
    assert ds.queries["query_id"].dtype == pl.Int64 and ds.responses["query_id"].dtype == pl.Int64
    split = splits.fixed_split(ds.query_ids, seed=0)
    assert all(v.dtype == np.int64 for v in split.values())
    f = splits.write_split_file({"train": np.array(["x"], dtype=object)}, tmp_path / "s.csv")
    with pytest.raises(DataError, match="'x' is not an integer id"):
        splits.read_split_file(f, ds)


def test_int_responses_against_string_queries_is_named(tmp_path):
    d = tmp_path / "mix"
    d.mkdir()
    pl.DataFrame({"model": ["a"], "query_id": [1], "correct": [1]}).write_parquet(
        d / "responses.parquet"
    )
    pl.DataFrame({"query_id": ["1", "arc:2"], "text": ["x", "y"]}).write_parquet(
        d / "queries.parquet"
    )
    # "1" matches 1 as a string id: fine (string ids, the integer read as its decimal form)
    assert load_dataset(d).queries["query_id"].to_list() == ["1", "arc:2"]
    pl.DataFrame({"model": ["a"], "query_id": [5], "correct": [1]}).write_parquet(
        d / "responses.parquet"
    )
    with pytest.raises(DataError, match=r"queries.parquet: column 'query_id', row 1: 'arc:2'"):
        load_dataset(d)


def test_embedllm_layout_with_string_prompt_ids(tmp_path):
    rows = {
        "model_id": [0, 1, 0],
        "prompt_id": ["p:1", "p:1", "p:2"],
        "label": [1, 0, 1],
        "prompt": ["one", "one", "two"],
    }
    pl.DataFrame(rows).write_csv(tmp_path / "train.csv")
    pl.DataFrame({k: v[:1] for k, v in rows.items()} | {"prompt_id": ["7"]}).write_csv(
        tmp_path / "test.csv"
    )
    ds = load_dataset(tmp_path)
    assert ds.queries["query_id"].to_list() == ["7", "p:1", "p:2"]
    s = splits.embedllm_split(tmp_path)
    assert s["train"].tolist() == ["p:1", "p:2"] and s["test"].tolist() == ["7"]


# ----------------------------------------------------------------------------------------------
# out of range


def test_uint64_beyond_int64_is_data_error(tmp_path):
    d = tmp_path / "u"
    d.mkdir()
    big = pl.Series("query_id", [1, 2**63 + 5], dtype=pl.UInt64)
    pl.DataFrame({"model": ["a", "a"], "correct": [1, 0]}).with_columns(big).write_parquet(
        d / "responses.parquet"
    )
    pl.DataFrame({"query_id": big, "text": ["x", "y"]}).write_parquet(d / "queries.parquet")
    with pytest.raises(
        DataError, match=r"queries.parquet: column 'query_id', row 1: 9223372036854775813 is out"
    ):
        load_dataset(d)


def test_jsonl_1e20_is_data_error(tmp_path):
    d = tmp_path / "j"
    d.mkdir()
    (d / "responses.jsonl").write_text('{"model": "a", "query_id": 1, "correct": 1}\n')
    (d / "queries.jsonl").write_text(
        '{"query_id": 1, "text": "x"}\n{"query_id": 1e20, "text": "y"}\n'
    )
    with pytest.raises(DataError, match=r"queries.jsonl: column 'query_id', row 1: 1e\+20 is out"):
        load_dataset(d)
    (d / "queries.jsonl").write_text('{"query_id": 1, "text": "x"}\n')
    (d / "query_embeddings.jsonl").write_text('{"query_id": 1e20, "embedding": [1.0]}\n')
    with pytest.raises(DataError, match=r"query_embeddings.jsonl: column 'query_id', row 0"):
        load_dataset(d)


def test_csv_digits_beyond_int64_is_data_error(tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "responses.csv").write_text("model,query_id,correct\na,1,1\n")
    (d / "queries.csv").write_text("query_id,text\n1,x\n99999999999999999999,y\n")
    with pytest.raises(DataError, match=r"queries.csv: column 'query_id', row 1 \(line 3\)"):
        load_dataset(d)
    split = tmp_path / "s.csv"
    split.write_text("query_id,split\n1,train\n99999999999999999999,test\n")
    with pytest.raises(DataError, match=r"s.csv: column 'query_id', row 1 \(line 3\).*range"):
        splits.read_split_file(split)
