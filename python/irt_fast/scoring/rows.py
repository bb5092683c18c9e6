"""Checking one batch of input rows: query ids as given, the queries as a float32 matrix or a list
of texts, and group labels; every error names the file, column and row in the whole file (the
column checkers of :mod:`irt_fast.data.tables` are reused; they count rows within the batch,
so their row numbers are shifted here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from irt_fast.data.ids import id_column, line
from irt_fast.data.tables import embedding_matrix, text_column
from irt_fast.errors import DataError

ID, EMBEDDING, TEXT = "query_id", "embedding", "text"

_ROW = re.compile(r"row (\d+)( \(line (\d+)\))?")


@dataclass(frozen=True)
class Layout:
    """Which columns a scoring run reads.

    Attributes:
        ids: read ``query_id`` (needed for per-query output).
        query: ``"embedding"`` or ``"text"``.
        group: the group label column, or None.
    """

    ids: bool
    query: str
    group: str | None

    @property
    def columns(self) -> list[str]:
        cols = [ID] if self.ids else []
        cols.append(self.query)
        if self.group is not None and self.group not in cols:
            cols.append(self.group)
        return cols


def layout(file: Path, columns: list[str], *, ids: bool, group: str | None) -> Layout:
    """The columns to read from a file with these column names.

    Args:
        file: the first input file (for messages).
        columns: its column names.
        ids: whether query ids are needed.
        group: the ``--group-col`` name, or None.

    Returns:
        The Layout: embeddings when the file has an ``embedding`` column, else texts.
    """
    query = EMBEDDING if EMBEDDING in columns else TEXT if TEXT in columns else None
    missing = [c for c in ([ID] if ids else []) + ([group] if group else []) if c not in columns]
    if query is None:
        missing.append("embedding or text")
    if missing or query is None:
        raise DataError(
            f"{file}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(columns) or 'none'})"
        )
    return Layout(ids, query, group)


def shifted(exc: DataError, offset: int) -> DataError:
    """``exc`` with the row (and CSV line) numbers of its message moved by ``offset`` rows."""
    if offset == 0:
        return exc

    def move(m: re.Match[str]) -> str:
        row = int(m.group(1)) + offset
        return f"row {row}" + (f" (line {int(m.group(3)) + offset})" if m.group(2) else "")

    return DataError(_ROW.sub(move, str(exc)))


def query_ids(frame: pl.DataFrame, file: Path, *, as_str: bool | None) -> pl.Series:
    """The batch's query ids, kept as given: an integer column as Int64, a string column as
    String, unchanged (``as_str=True`` turns integers into their decimal form, for a stream whose
    first ids were strings)."""
    s = frame[ID]
    if as_str is None:
        as_str = s.dtype == pl.String
    return id_column(frame, ID, file, as_str=as_str)


def embeddings(frame: pl.DataFrame, file: Path, dim: int) -> np.ndarray:
    """The batch's embeddings as C-contiguous float32 ``[B, dim]``."""
    x = embedding_matrix(frame[EMBEDDING], file)
    if x.shape[1] != dim:
        raise DataError(
            f"{file}: column 'embedding', row 0{line(file, 0)}: length {x.shape[1]}, "
            f"the model expects {dim}"
        )
    return x


def texts(frame: pl.DataFrame, file: Path) -> list[str]:
    """The batch's query texts (empty or missing ones refused)."""
    return text_column(frame, TEXT, file).to_list()


def labels(frame: pl.DataFrame, file: Path, col: str) -> pl.Series:
    """The batch's group labels; missing and NaN labels are refused (name them instead)."""
    s = frame[col]
    bad = s.is_null()
    if s.dtype.is_float():
        bad = bad | s.is_nan()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise DataError(
            f"{file}: column '{col}', row {row}{line(file, row)}: missing group label (name "
            "missing ones, e.g. 'unknown')"
        )
    if s.dtype.is_nested() or s.dtype == pl.Object:
        raise DataError(f"{file}: column '{col}' must hold scalar labels, not {s.dtype}")
    return s
