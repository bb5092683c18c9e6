"""Correctness datasets: loading, validation and writing (Polars; no torch).

A dataset directory holds, each as ``.parquet``, ``.csv`` or ``.jsonl``:

- ``responses``: ``model`` (str), ``query_id`` (int), ``correct`` (0/1; bool, int, float 0.0/1.0
  or the strings "0"/"1"/"true"/"false" are accepted);
- ``queries``: ``query_id`` (int), ``text`` (str), ``benchmark`` (str, optional: "unknown" when
  the column is absent); other columns are ignored;
- ``query_embeddings`` (optional): ``query_id`` (int), ``embedding`` (fixed-length float list; in
  CSV a string such as ``"[0.1, -0.2, 0.3]"``).

Rows of the three files are matched by ``query_id``, never by order. The EmbedLLM / IrtNet CSV
layout (``model_id, prompt_id, label, prompt[, category][, model_name]``, as one CSV or a directory
of ``train.csv`` / ``val.csv`` / ``test.csv``) is read too; such a directory's embeddings come
from ``query_embeddings.*`` or EmbedLLM's ``question_embeddings.pth`` (row i = prompt_id i; torch
is imported only to read that file). A missing ``category`` becomes benchmark "unknown".

Row numbers in error messages count data rows from 0 (for CSV files the file line is also given).

The package's rooms: ``dataset`` (the :class:`Dataset` type), ``tables`` (reading one table and
checking its columns), ``assemble`` (matching ids, majority vote, embeddings), ``embedllm`` (the
EmbedLLM CSV layout); this module holds the public loaders and the writer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from .._atomic import atomic_write
from ..errors import DataError, InputError
from .assemble import RowLocator, assemble
from .dataset import Dataset
from .embedllm import EMBEDLLM_FILES, load_embedllm
from .ids import id_column, line, lookup, quote
from .tables import (
    FORMATS,
    embedding_matrix,
    find_table,
    first,
    label_column,
    model_column,
    read_queries,
    read_table,
    text_column,
)

__all__ = ["Dataset", "load_costs", "load_dataset", "write_dataset"]

# Names of the column checkers before the split (irt_fast.answers_file imports them); new code
# imports them from irt_fast.data.tables.
_embedding_matrix = embedding_matrix
_find_table = find_table
_label_column = label_column
_line = line
_read_table = read_table
_text_column = text_column


def load_dataset(path: str | os.PathLike[str], *, embeddings: bool = True) -> Dataset:
    """Load a dataset directory, or the EmbedLLM / IrtNet CSV layout (a directory of
    train/val/test CSVs or one CSV file).

    Args:
        path: dataset directory or EmbedLLM CSV file.
        embeddings: read ``query_embeddings`` when present (False skips it).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: missing file or column, bad label, unmatched query id, bad embedding...
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"dataset path does not exist: {p}")
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise DataError(
                f"{p}: a dataset file must be an EmbedLLM-layout CSV; for the directory layout "
                "pass the directory holding responses.* and queries.*"
            )
        return load_embedllm([p], source=str(p))
    resp_file = find_table(p, "responses")
    if resp_file is None:
        csvs = [p / n for n in EMBEDLLM_FILES if (p / n).is_file()]
        if csvs:
            return load_embedllm(csvs, source=str(p), directory=p, embeddings=embeddings)
        raise DataError(
            f"{p}: no responses.parquet / responses.csv / responses.jsonl (nor EmbedLLM "
            "train.csv/val.csv/test.csv) in this directory"
        )
    query_file = find_table(p, "queries")
    if query_file is None:
        raise DataError(f"{p}: no queries.parquet / queries.csv / queries.jsonl in this directory")
    queries = read_queries(query_file)
    responses = read_table(resp_file, ["model", "query_id", "correct"])
    model = model_column(responses, resp_file)
    str_ids = queries["query_id"].dtype == pl.String
    qid = id_column(responses, "query_id", resp_file, as_str=str_ids)
    if str_ids:
        _check_same_id_type(responses, resp_file, qid, queries, query_file)
    correct = label_column(responses, "correct", resp_file)
    del responses
    emb_file = find_table(p, "query_embeddings") if embeddings else None
    where = RowLocator([resp_file], [0])
    return assemble(model, qid, correct, queries, where, query_file, emb_file, str(p))


def _check_same_id_type(
    responses: pl.DataFrame, resp_file: Path, qid: pl.Series, queries: pl.DataFrame, qfile: Path
) -> None:
    """String query ids, yet some response ids are unknown and every response id is an integer:
    the files disagree on the id type, most likely a typo in the queries. Name that row."""
    if (lookup(queries["query_id"].to_numpy(), qid.to_numpy()) >= 0).all():
        return
    if id_column(responses, "query_id", resp_file).dtype != pl.Int64:
        return  # genuinely string ids: assemble() names the unknown one
    raw = read_table(qfile, ["query_id"])["query_id"]
    text = raw.cast(pl.String).str.strip_chars()
    row = int((~text.str.contains(r"^[+-]?\d+$")).arg_true()[0])
    raise DataError(
        f"{qfile}: column 'query_id', row {row}{line(qfile, row)}: {quote(raw[row])} is not an "
        f"integer id, but every query id in {resp_file} is; use integer ids or string ids in "
        "every file"
    )


def load_costs(path: str | os.PathLike[str], llm_names: Iterable[str]) -> np.ndarray:
    """Per-LLM costs from a table with columns ``model`` (str) and ``cost`` (number ≥ 0), as
    Parquet, CSV or JSONL; returned as float64 in the order of ``llm_names``.

    Raises ``FileNotFoundError`` for a missing file and ``DataError`` naming the file, column
    and row for a malformed value, a repeated model, a model the dataset does not have, or an
    LLM of ``llm_names`` with no cost (a partial table would silently bias a cost curve).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"cost file not found: {file}")
    df = read_table(file, ["model", "cost"])
    names = model_column(df, file).to_list()
    raw = df["cost"]
    vals = raw.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    bad = vals.is_null() | ~vals.is_finite().fill_null(False) | (vals < 0).fill_null(False)
    if bad.any():
        row = first(bad)
        raise DataError(
            f"{file}: column 'cost', row {row}{line(file, row)}: {quote(raw[row])} is not a "
            "finite number >= 0"
        )
    order = list(llm_names)
    index = {n: i for i, n in enumerate(order)}
    out = np.full(len(order), np.nan)
    for row, (name, value) in enumerate(zip(names, vals.to_list(), strict=True)):
        if name not in index:
            raise DataError(
                f"{file}: column 'model', row {row}{line(file, row)}: unknown LLM {quote(name)}"
            )
        if not np.isnan(out[index[name]]):
            raise DataError(
                f"{file}: column 'model', row {row}{line(file, row)}: {quote(name)} given twice"
            )
        out[index[name]] = value
    missing = [order[i] for i in np.flatnonzero(np.isnan(out))]
    if missing:
        raise DataError(f"{file}: no cost for {len(missing)} LLM(s): {', '.join(missing)}")
    return out


# ----------------------------------------------------------------------------------------------
# writing


def write_dataset(ds: Dataset, directory: str | os.PathLike[str], format: str = "parquet") -> Path:
    """Write ``ds`` as a dataset directory (responses, queries and, if present,
    query_embeddings) that ``load_dataset`` reads back. Each file is written to a temporary
    name and renamed, so a killed run never leaves a half-written table under a real name.

    Args:
        format: "parquet", "csv" (embeddings as "[v1, v2, ...]" strings) or "jsonl".
    """
    if format not in FORMATS:
        raise InputError(f"format must be one of {FORMATS}, got {format!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for stem in ("responses", "queries", "query_embeddings"):
        for ext in FORMATS:
            if ext != format and (out / f"{stem}.{ext}").exists():
                raise DataError(
                    f"{out}: already holds {stem}.{ext}; writing {stem}.{format} beside it "
                    "would make the directory ambiguous"
                )
    _write(ds.responses.select("model", "query_id", "correct"), out / f"responses.{format}")
    _write(ds.queries.select("query_id", "text", "benchmark"), out / f"queries.{format}")
    if ds.embeddings is not None:
        dim = ds.embeddings.shape[1]
        emb = pl.Series("embedding", ds.embeddings, dtype=pl.Array(pl.Float32, dim))
        edf = pl.DataFrame({"query_id": ds.queries["query_id"], "embedding": emb})
        if format == "csv":
            edf = edf.with_columns(
                embedding=pl.lit("[")
                + pl.col("embedding").cast(pl.List(pl.String)).list.join(", ")
                + pl.lit("]")
            )
        elif format == "jsonl":
            edf = edf.with_columns(pl.col("embedding").cast(pl.List(pl.Float32)))
        _write(edf, out / f"query_embeddings.{format}")
    return out


def _write(df: pl.DataFrame, path: Path) -> None:
    ext = path.suffix.lstrip(".")
    if ext == "parquet":
        atomic_write(path, df.write_parquet)
    elif ext == "csv":
        atomic_write(path, df.write_csv)
    else:
        atomic_write(path, df.write_ndjson)
