"""Seeded splits of a dataset by question (train / val / test), split files, subsamples.

Every split here is by query: a query's responses from all LLMs land in the same part, so test
questions are never seen in training.

Query ids are integers (returned as sorted ``int64`` arrays, exactly as before string ids
existed, so seeded splits of integer ids do not change) or strings (returned as sorted ``object``
arrays of ``str``, kept as given); see :mod:`irt_fast.data.ids`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ._atomic import atomic_write
from .data.ids import fmt_id, id_column
from .errors import DataError, InputError

if TYPE_CHECKING:
    from .data import Dataset

__all__ = [
    "SPLIT_NAMES",
    "embedllm_split",
    "fixed_split",
    "leave_one_benchmark_out",
    "read_split_file",
    "subsample",
    "write_split_file",
]

SPLIT_NAMES = ("train", "val", "test")


def _ids(query_ids: Iterable[int | str] | np.ndarray, what: str = "query_ids") -> np.ndarray:
    if isinstance(query_ids, np.ndarray):
        ids = query_ids
    elif hasattr(query_ids, "to_numpy"):  # polars / pandas series
        ids = np.asarray(query_ids.to_numpy())
    else:
        ids = np.asarray(list(query_ids))
    if ids.ndim == 1 and ids.dtype.kind in "OU":  # string ids
        if not all(isinstance(v, str) for v in ids.tolist()):
            raise InputError(f"{what} mixes string ids with other values")
        ids = np.sort(ids.astype(object))
    elif ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise InputError(
            f"{what} must be a 1-D sequence of integer or string ids, got {ids.dtype} {ids.shape}"
        )
    else:
        ids = np.sort(ids.astype(np.int64))
    if ids.size > 1 and np.any(ids[1:] == ids[:-1]):
        dup = ids[1:][ids[1:] == ids[:-1]][0]
        raise InputError(f"{what} contains duplicates, e.g. {fmt_id(dup)}")
    return ids


def fixed_split(
    query_ids: Iterable[int] | np.ndarray,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The project's reference split by question.

    Recipe (keep it exactly, results are compared across runs with it): sort the unique query
    ids, permute them with ``numpy.random.default_rng(seed).permutation``, then the first
    ``n_train = int(fractions[0] * n)`` ids are train, the next ``n_val = int(fractions[1] * n)``
    are val and the rest (``n - n_train - n_val``) test. ``int`` truncates, so rounding leftovers
    go to test: MMLU-Pro's 12,032 questions give 9,625 / 1,203 / 1,204.

    Returns:
        {"train", "val", "test"} -> sorted int64 id arrays (disjoint, covering all ids).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise InputError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    ids = _ids(query_ids)
    n = len(ids)
    perm = np.random.default_rng(seed).permutation(ids)
    n_train = int(fractions[0] * n)
    n_val = int(fractions[1] * n)
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def subsample(ids: Iterable[int] | np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` of ``ids`` drawn without replacement, sorted.

    Nested for one seed: ``subsample(ids, 1000, s)`` is a subset of ``subsample(ids, 5000, s)``
    (both are prefixes of one seeded permutation), so a training-size curve adds data rather
    than redrawing it.
    """
    arr = _ids(ids, "ids")
    if not 0 <= n <= len(arr):
        raise InputError(f"cannot draw {n} of {len(arr)} ids")
    return np.sort(np.random.default_rng(seed).permutation(arr)[:n])


def leave_one_benchmark_out(
    dataset: Dataset, benchmark: str, val_fraction: float = 0.1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Test = every query of ``benchmark``; the other queries are split into train / val
    (``n_val = int(val_fraction * n_rest)`` of a seeded permutation, as in ``fixed_split``)."""
    if not 0 <= val_fraction < 1:
        raise InputError(f"val_fraction must be in [0, 1), got {val_fraction}")
    bench = dataset.benchmarks
    ids = dataset.queries["query_id"].to_numpy()
    in_b = bench == benchmark
    if not in_b.any():
        known = ", ".join(sorted(set(bench.tolist())))
        raise DataError(f"{dataset.source}: no query of benchmark {benchmark!r} (known: {known})")
    rest = np.random.default_rng(seed).permutation(ids[~in_b])
    n_val = int(val_fraction * len(rest))
    return {
        "train": np.sort(rest[n_val:]),
        "val": np.sort(rest[:n_val]),
        "test": np.sort(ids[in_b]),
    }


def write_split_file(split: dict[str, np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Write a split as a table (query_id, split) to ``.csv`` or ``.parquet``, atomically."""
    p = Path(path)
    unknown = set(split) - set(SPLIT_NAMES)
    if unknown:
        raise InputError(f"unknown split names {sorted(unknown)}; use {SPLIT_NAMES}")
    parts_ids = {n: _ids(split[n], f"split[{n!r}]") for n in SPLIT_NAMES if n in split}
    kinds = {a.dtype for a in parts_ids.values() if len(a)}
    if len(kinds) > 1:
        raise InputError("a split mixes integer and string query ids")
    id_type = pl.String if kinds == {np.dtype(object)} else pl.Int64
    parts = [
        pl.DataFrame(
            {"query_id": pl.Series(ids.tolist(), dtype=id_type), "split": [n] * len(ids)},
            schema={"query_id": id_type, "split": pl.String},
        )
        for n, ids in parts_ids.items()
    ]
    df = pl.concat(parts).sort("query_id")
    dup = df["query_id"].is_duplicated()
    if dup.any():
        raise InputError(
            f"query id {fmt_id(df['query_id'][int(dup.arg_true()[0])])} is in two splits"
        )
    if p.suffix == ".parquet":
        return atomic_write(p, df.write_parquet)
    if p.suffix == ".csv":
        return atomic_write(p, df.write_csv)
    raise InputError(f"{p}: split files are .csv or .parquet")


def read_split_file(
    path: str | os.PathLike[str],
    dataset: Dataset | Iterable[int | str] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Read a split table (query_id, split in {train, val, test}).

    Args:
        dataset: a Dataset or the known query ids; when given, every id must be one of them
            (and the file's ids are read as the dataset's id type: strings for string ids).

    Returns:
        {"train", "val", "test"} -> sorted id arrays (int64, or object arrays of str for
        string ids; empty if the file has none).

    Raises:
        DataError: missing column, unknown split name, duplicate or unknown id (with the row).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"split file does not exist: {p}")
    try:
        if p.suffix == ".parquet":
            df = pl.read_parquet(p)
        elif p.suffix == ".csv":
            df = pl.read_csv(p, infer_schema=False)
        else:
            raise DataError(f"{p}: split files are .csv or .parquet")
    except pl.exceptions.PolarsError as e:
        raise DataError(f"{p}: cannot be read: {e}") from e
    missing = [c for c in ("query_id", "split") if c not in df.columns]
    if missing:
        raise DataError(f"{p}: missing column(s) {missing} (found: {df.columns})")
    line = (lambda r: f" (line {r + 2})") if p.suffix == ".csv" else (lambda r: "")
    known = None
    if dataset is not None:
        known = _ids(
            dataset.queries["query_id"] if hasattr(dataset, "queries") else dataset, "dataset ids"
        )
    as_str = None if known is None or not len(known) else known.dtype == np.dtype(object)
    qid = id_column(df, "query_id", p, as_str=as_str)
    split = df["split"].cast(pl.String)
    bad = ~split.is_in(list(SPLIT_NAMES)).fill_null(False)
    if bad.any():
        r = int(bad.arg_true()[0])
        raise DataError(
            f"{p}: column 'split', row {r}{line(r)}: {split[r]!r} is not one of {SPLIT_NAMES}"
        )
    dup = qid.is_duplicated()
    if dup.any():
        rows = dup.arg_true()
        r = int(rows[1]) if len(rows) > 1 else int(rows[0])
        raise DataError(f"{p}: column 'query_id', row {r}{line(r)}: duplicate id {fmt_id(qid[r])}")
    if known is not None:
        unknown = ~qid.is_in(pl.Series(known.tolist(), dtype=qid.dtype)).to_numpy()
        if unknown.any():
            r = int(np.argmax(unknown))
            raise DataError(
                f"{p}: column 'query_id', row {r}{line(r)}: id {fmt_id(qid[r])} is not in the "
                f"dataset ({int(unknown.sum())} unknown ids)"
            )
    ids = qid.to_numpy()
    sp = split.to_numpy()
    return {name: np.sort(ids[sp == name]) for name in SPLIT_NAMES}


def embedllm_split(directory: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The split an EmbedLLM-layout directory ships: the prompt_ids of ``train.csv``,
    ``val.csv`` and ``test.csv`` (a missing file gives an empty part), to reproduce the papers'
    numbers on their own split.

    Raises:
        DataError: no such CSV, no ``prompt_id`` column, or a prompt in two files (then the
            files are not a split by question).
    """
    d = Path(directory)
    out: dict[str, np.ndarray] = {}
    for name in SPLIT_NAMES:
        f = d / f"{name}.csv"
        if not f.is_file():
            out[name] = np.empty(0, dtype=np.int64)
            continue
        try:
            col = pl.read_csv(f, columns=["prompt_id"], infer_schema=False)["prompt_id"]
        except pl.exceptions.PolarsError as e:
            raise DataError(f"{f}: cannot read column 'prompt_id': {e}") from e
        out[name] = np.unique(id_column(col.to_frame(), "prompt_id", f).to_numpy())
    if len({v.dtype for v in out.values() if len(v)}) > 1:  # one id type per dataset
        out = {k: np.unique(v.astype(str)).astype(object) for k, v in out.items()}
    for i, name in enumerate(SPLIT_NAMES):
        for other in SPLIT_NAMES[:i]:
            both = np.intersect1d(out[other], out[name])
            if len(both):
                raise DataError(
                    f"{d / (name + '.csv')}: prompt_id {fmt_id(both[0])} is also in {other}.csv "
                    f"({len(both)} shared prompts): these files do not split by question"
                )
    if not any(len(v) for v in out.values()):
        raise DataError(f"{d}: no train.csv / val.csv / test.csv with prompts")
    return out
