"""Query ids: integers or strings, read the same way from every file.

A column of ids is INTEGER ids when every value is an integer (an integer dtype, a whole float,
or a string such as ``"42"``); they come back as polars ``Int64`` / numpy ``int64``. Otherwise
the ids are STRING ids, kept exactly as written; they come back as polars ``String`` (Utf8) /
numpy ``object`` arrays of ``str``. One dataset has one id type, decided by its queries (the
file that defines the ids); the other files are read to match it (``as_str=True`` reads an
integer column as the decimal strings of its values).

Integers must fit in a signed 64-bit integer: a bigger one (UInt64 ``2**63 + 5``, a JSON
``1e20``) is a DataError naming the file, column and row, never a silent wrap or a polars error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..errors import DataError

_I64_MAX = 2**63 - 1
_INT_RE = r"^[+-]?\d+$"


#: Characters of a file's content an error message quotes: a garbage file must not turn into a
#: garbage message (a 5 MB cell, control bytes).
QUOTE_LIMIT = 80


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` (control characters escaped) cut to ``limit`` characters, saying how
    much was left out."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def line(file: Path, row: int) -> str:
    return f" (line {row + 2})" if file.suffix.lower() == ".csv" else ""


def _where(file: Path, col: str, row: int) -> str:
    return f"{file}: column '{col}', row {row}{line(file, row)}"


def fmt_id(v: object) -> str:
    """An id for a message: ``42`` for an integer id, ``'arc:1'`` for a string id."""
    return quote(v) if isinstance(v, str) else str(int(v))  # type: ignore[call-overload]


def _out_of_range(file: Path, col: str, row: int, value: object) -> DataError:
    return DataError(
        f"{_where(file, col, row)}: {quote(value)} is out of range (integer ids must fit in a signed "
        "64-bit integer; write large ids as strings)"
    )


def id_column(df: pl.DataFrame, col: str, file: Path, *, as_str: bool | None = None) -> pl.Series:
    """The ids of ``df[col]`` as ``Int64`` (integer ids) or ``String`` (string ids).

    Args:
        as_str: None decides from the column (integer ids when every value is an integer);
            False requires integer ids (a non-integer value is a DataError naming its row);
            True returns strings (integers as their decimal form).
    """
    s = df[col]
    if s.null_count():
        row = int(s.is_null().arg_true()[0])
        raise DataError(f"{_where(file, col, row)}: missing value")
    dt = s.dtype
    if dt == pl.String:
        stripped = s.str.strip_chars()
        empty = stripped == ""
        if empty.any():
            row = int(empty.arg_true()[0])
            raise DataError(f"{_where(file, col, row)}: empty id")
        is_int = stripped.str.contains(_INT_RE)
        if as_str or (as_str is None and not is_int.all()):
            return s.rename("query_id")
        if not is_int.all():
            row = int((~is_int).arg_true()[0])
            raise DataError(f"{_where(file, col, row)}: {quote(s[row])} is not an integer id")
        out = stripped.cast(pl.Int64, strict=False)
        if out.null_count():  # only digits, yet no Int64: too large
            row = int(out.is_null().arg_true()[0])
            raise _out_of_range(file, col, row, s[row])
    elif dt.is_integer():
        if dt == pl.UInt64:
            big = s > _I64_MAX
            if big.any():
                row = int(big.arg_true()[0])
                raise _out_of_range(file, col, row, s[row])
        out = s.cast(pl.Int64)
    elif dt.is_float():
        v = s.to_numpy().astype(np.float64)
        bad_range = ~np.isfinite(v) | (np.abs(v) >= 2.0**63)
        if bad_range.any():
            row = int(np.argmax(bad_range))
            raise _out_of_range(file, col, row, s[row])
        whole = v == np.round(v)
        if not whole.all():
            row = int(np.argmin(whole))
            raise DataError(f"{_where(file, col, row)}: {quote(s[row])} is not an integer id")
        out = pl.Series(v.astype(np.int64))
    else:
        raise DataError(f"{file}: column '{col}' must hold integer or string ids, not {dt}")
    out = out.rename("query_id")
    return out.cast(pl.String) if as_str else out


def is_str_ids(s: pl.Series) -> bool:
    return s.dtype == pl.String


def lookup(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in ``ids`` (unique, any order) or -1; vectorised, no sort of
    ``values``: a direct table when integer ids span a compact range, else a hash join."""
    if not len(ids):
        return np.full(len(values), -1, dtype=np.int64)
    values = np.asarray(values)
    if np.issubdtype(np.asarray(ids).dtype, np.integer) and np.issubdtype(values.dtype, np.integer):
        values = values.astype(np.int64, copy=False)
        lo, hi = int(ids.min()), int(ids.max())
        if hi - lo < 8 * len(ids) + 1_000_000:
            table = np.full(hi - lo + 1, -1, dtype=np.int64)
            table[ids - lo] = np.arange(len(ids))
            inside = (values >= lo) & (values <= hi)
            out = np.full(len(values), -1, dtype=np.int64)
            out[inside] = table[values[inside] - lo]
            return out
    right = pl.DataFrame({"v": ids, "i": np.arange(len(ids), dtype=np.int64)})
    left = pl.DataFrame({"v": values})
    if left["v"].dtype != right["v"].dtype:  # string ids against integer ids: nothing matches
        return np.full(len(values), -1, dtype=np.int64)
    joined = left.join(right, on="v", how="left", maintain_order="left")
    return joined["i"].fill_null(-1).to_numpy()
