"""Reading one LLM's answers for the add-llm CLI (no engine needed): id matching, majority
vote, the three question sources, and DataErrors naming file, column and row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from irt_fast.answers_file import query_keys, read_answers
from irt_fast.errors import DataError


def test_query_keys_agree_across_types(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    assert query_keys(pl.Series([7, 12]), f) == ["7", "12"]
    assert query_keys(pl.Series(["007", " 12 ", "q-3"]), f) == ["7", "12", "q-3"]
    assert query_keys(pl.Series([7.0, 1e20]), f) == ["7", "100000000000000000000"]
    big = pl.Series([2**63 + 5], dtype=pl.UInt64)  # out of Int64 range: still an id
    assert query_keys(big, f) == [str(2**63 + 5)]
    with pytest.raises(DataError, match="row 1"):
        query_keys(pl.Series([1.0, 1.5]), f)
    with pytest.raises(DataError, match="row 1"):
        query_keys(pl.Series(["1", None]), f)
    with pytest.raises(DataError, match="empty id"):
        query_keys(pl.Series(["1", "  "]), f)


def test_majority_vote_and_file_order(tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    pl.DataFrame(
        {
            "query_id": [5, 3, 5, 5, 3, 9],
            "correct": [0, 1, 1, 1, 0, 0],
            "text": ["five", "three", "five", "five", "three", "nine"],
        }
    ).write_ndjson(f)
    a = read_answers(f)
    assert a.query_ids == ["5", "3", "9"] and a.texts == ["five", "three", "nine"]
    np.testing.assert_array_equal(a.correct, [1, 1, 0])  # 2 of 3; a 1-1 tie counts as correct
    assert a.n_merged == 3 and a.embeddings is None and a.name is None


def test_embeddings_from_a_dataset_dir(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ds.mkdir()
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)
    pl.DataFrame({"query_id": [10, 11, 12, 13], "embedding": emb.tolist()}).write_parquet(
        ds / "query_embeddings.parquet"
    )
    pl.DataFrame({"query_id": [10, 11, 12, 13], "text": list("abcd")}).write_csv(ds / "queries.csv")
    f = tmp_path / "a.csv"
    pl.DataFrame({"query_id": ["012", "10"], "correct": ["true", "0"]}).write_csv(f)
    a = read_answers(f, queries=ds, embed_dim=3)
    np.testing.assert_array_equal(a.embeddings, emb[[2, 0]])
    np.testing.assert_array_equal(a.correct, [1, 0])
    # embeddings of another size: the texts are used (and embedded by the caller)
    b = read_answers(f, queries=ds, embed_dim=5)
    assert b.embeddings is None and b.texts == ["c", "a"]
    pl.DataFrame({"query_id": ["99"], "correct": [1]}).write_csv(f)
    with pytest.raises(DataError, match="'99'"):
        read_answers(f, queries=ds, embed_dim=3)
    with pytest.raises(FileNotFoundError):
        read_answers(f, queries=tmp_path / "nope")


def test_model_column(tmp_path: Path) -> None:
    f = tmp_path / "r.parquet"
    pl.DataFrame(
        {"model": ["a", "b", "a"], "query_id": [1, 1, 2], "correct": [1, 0, 0], "text": list("xyz")}
    ).write_parquet(f)
    a = read_answers(f, name="a")
    assert a.name == "a" and a.query_ids == ["1", "2"]
    with pytest.raises(DataError, match="2 LLMs"):
        read_answers(f)
    with pytest.raises(DataError, match="'c'"):
        read_answers(f, name="c")


@pytest.mark.parametrize(
    ("df", "match"),
    [
        ({"query_id": [1, 2], "correct": [1, 2], "text": ["a", "b"]}, "row 1"),
        ({"query_id": [1, 2], "text": ["a", "b"]}, "'correct'"),
        ({"query_id": [1, 2], "correct": [1, 0]}, "--queries"),
        ({"query_id": [1, 2], "correct": [1, 0], "text": ["a", ""]}, "'text', row 1"),
        ({"query_id": [1, 2], "correct": [1, 0], "embedding": [[1.0], [1.0, 2.0]]}, "row 1"),
    ],
)
def test_bad_files(tmp_path: Path, df: dict, match: str) -> None:
    f = tmp_path / "a.parquet"
    pl.DataFrame(df).write_parquet(f)
    with pytest.raises(DataError, match=match):
        read_answers(f)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_answers(tmp_path / "none.csv")
    f = tmp_path / "a.txt"
    f.write_text("query_id,correct\n1,1\n")
    with pytest.raises(DataError, match="unsupported"):
        read_answers(f)
    f = tmp_path / "e.csv"
    f.write_text("query_id,correct,text\n")
    with pytest.raises(DataError, match="no answers"):
        read_answers(f)
