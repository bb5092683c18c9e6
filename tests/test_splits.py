"""Splits by question: reference split recipe, split files, subsamples, leave-one-benchmark-out."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irt_fast.data import load_dataset
from irt_fast.errors import DataError, InputError
from irt_fast.splits import (
    embedllm_split,
    fixed_split,
    leave_one_benchmark_out,
    read_split_file,
    subsample,
    write_split_file,
)
from irt_fast.synthetic import make_synthetic


def test_fixed_split_recipe_and_sizes():
    ids = np.arange(1000, 0, -1) * 3  # unsorted input: the recipe sorts first
    s = fixed_split(ids, seed=7)
    perm = np.random.default_rng(7).permutation(np.sort(ids))
    np.testing.assert_array_equal(s["train"], np.sort(perm[:800]))
    np.testing.assert_array_equal(s["val"], np.sort(perm[800:900]))
    np.testing.assert_array_equal(s["test"], np.sort(perm[900:]))
    # input order does not matter; the seed does
    s2 = fixed_split(list(ids[::-1]), seed=7)
    assert all(np.array_equal(s[k], s2[k]) for k in s)
    assert not np.array_equal(fixed_split(ids, seed=8)["test"], s["test"])


@pytest.mark.parametrize("n", [1, 7, 10, 101, 12032])
def test_fixed_split_partition(n):
    s = fixed_split(np.arange(n), fractions=(0.7, 0.2, 0.1), seed=1)
    assert len(s["train"]) == int(0.7 * n) and len(s["val"]) == int(0.2 * n)
    allids = np.concatenate([s["train"], s["val"], s["test"]])
    np.testing.assert_array_equal(np.sort(allids), np.arange(n))


def test_fixed_split_rejects_bad_input():
    with pytest.raises(InputError, match="duplicates"):
        fixed_split([1, 2, 2])
    with pytest.raises(InputError, match="fractions"):
        fixed_split([1, 2, 3], fractions=(0.5, 0.2, 0.2))
    with pytest.raises(InputError):
        fixed_split(np.array([0.5, 1.5]))


def test_subsample_nested_and_bounded():
    ids = np.arange(10_000) * 2 + 1
    small = subsample(ids, 1000, seed=3)
    big = subsample(ids, 5000, seed=3)
    assert len(small) == 1000 and len(np.unique(small)) == 1000
    assert np.isin(small, big).all() and np.isin(big, ids).all()
    assert not np.array_equal(subsample(ids, 1000, seed=4), small)
    np.testing.assert_array_equal(subsample(ids, len(ids), seed=0), ids)
    with pytest.raises(InputError):
        subsample(ids, len(ids) + 1)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_split_file_roundtrip(tmp_path, suffix):
    ids = np.arange(50) + 100
    s = fixed_split(ids, seed=0)
    path = write_split_file(s, tmp_path / f"split{suffix}")
    back = read_split_file(path, dataset=ids)
    assert all(np.array_equal(back[k], s[k]) for k in ("train", "val", "test"))
    assert back["train"].dtype == np.int64


def test_split_file_validation(tmp_path):
    p = tmp_path / "s.csv"
    pl.DataFrame({"query_id": [1, 2, 3], "split": ["train", "tset", "val"]}).write_csv(p)
    with pytest.raises(DataError, match=r"s.csv: column 'split', row 1 \(line 3\): 'tset'"):
        read_split_file(p)
    pl.DataFrame({"query_id": [1, 2, 1], "split": ["train", "test", "val"]}).write_csv(p)
    with pytest.raises(DataError, match=r"column 'query_id', row 2 \(line 4\): duplicate id 1"):
        read_split_file(p)
    pl.DataFrame({"query_id": [1, 2, 9], "split": ["train", "test", "val"]}).write_parquet(
        tmp_path / "s.parquet"
    )
    with pytest.raises(DataError, match=r"s.parquet: column 'query_id', row 2: id 9 is not in"):
        read_split_file(tmp_path / "s.parquet", dataset=[1, 2, 3])
    pl.DataFrame({"id": [1], "split": ["train"]}).write_csv(p)
    with pytest.raises(DataError, match="missing column"):
        read_split_file(p)
    with pytest.raises(FileNotFoundError):
        read_split_file(tmp_path / "none.csv")
    with pytest.raises(InputError, match="two splits"):
        write_split_file({"train": np.array([1, 2]), "test": np.array([2])}, tmp_path / "x.csv")


def test_leave_one_benchmark_out():
    ds, _ = make_synthetic(n_llms=4, n_queries=300, n_benchmarks=3, seed=0)
    b = ds.benchmarks[0]
    s = leave_one_benchmark_out(ds, b, val_fraction=0.2, seed=1)
    ids = ds.queries["query_id"].to_numpy()
    np.testing.assert_array_equal(s["test"], np.sort(ids[ds.benchmarks == b]))
    rest = ids[ds.benchmarks != b]
    assert len(s["val"]) == int(0.2 * len(rest))
    np.testing.assert_array_equal(np.sort(np.concatenate([s["train"], s["val"]])), np.sort(rest))
    with pytest.raises(DataError, match="no query of benchmark 'nope'"):
        leave_one_benchmark_out(ds, "nope")


@pytest.mark.realdata
def test_mmlu_pro_fixed_split(mmlu_pro):
    s = fixed_split(mmlu_pro.queries["query_id"], seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [9625, 1203, 1204]
    test = mmlu_pro.subset(s["test"])
    assert test.n_queries == 1204 and test.n_llms == 29


@settings(max_examples=60, deadline=None)
@given(
    ids=st.sets(st.integers(-(10**12), 10**12), max_size=300),
    train=st.floats(0, 1),
    val_share=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_fixed_split_is_a_seeded_partition(ids, train, val_share, seed):
    val = (1 - train) * val_share
    fr = (train, val, 1 - train - val)
    arr = np.array(sorted(ids), dtype=np.int64)
    s = fixed_split(arr[::-1], fractions=fr, seed=seed)
    n = len(arr)
    assert len(s["train"]) == int(fr[0] * n) and len(s["val"]) == int(fr[1] * n)
    np.testing.assert_array_equal(np.sort(np.concatenate(list(s.values()))), arr)
    again = fixed_split(arr, fractions=fr, seed=seed)
    assert all(np.array_equal(s[k], again[k]) for k in s)


def test_embedllm_split(tmp_path):
    cols = ["model_id", "prompt_id", "label", "prompt", "category"]
    rows = {
        "train": [(0, 1, 1, "a", "x"), (1, 1, 0, "a", "x"), (0, 3, 1, "c", "x")],
        "test": [(0, 7, 0, "g", "y"), (1, 7, 1, "g", "y")],
    }
    for name, r in rows.items():
        pl.DataFrame(r, schema=cols, orient="row").write_csv(tmp_path / f"{name}.csv")
    s = embedllm_split(tmp_path)
    assert {k: v.tolist() for k, v in s.items()} == {"train": [1, 3], "val": [], "test": [7]}
    ds = load_dataset(tmp_path)
    assert sorted(np.concatenate(list(s.values())).tolist()) == ds.queries["query_id"].to_list()
    pl.DataFrame([(0, 3, 1, "c", "x")], schema=cols, orient="row").write_csv(tmp_path / "val.csv")
    with pytest.raises(DataError, match=r"val.csv: prompt_id 3 is also in train.csv"):
        embedllm_split(tmp_path)
    with pytest.raises(DataError, match="no train.csv"):
        embedllm_split(tmp_path / "nothing")
