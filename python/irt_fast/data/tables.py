"""Reading one table (Parquet, CSV or JSONL) and checking its columns: each checker returns a
clean Series or raises DataError naming the file, column and row (for CSV also the line)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import DataError
from .ids import QUOTE_LIMIT, fmt_id, id_column, line, quote

FORMATS = ("parquet", "csv", "jsonl")
DEFAULT_BENCHMARK = "unknown"


def read_queries(file: Path) -> pl.DataFrame:
    """``query_id`` (Int64, or String when any id is not an integer: see :mod:`.ids`), ``text``,
    ``benchmark``; sorted by id."""
    df = read_table(file, ["query_id", "text"], optional=["benchmark"])
    if df.height == 0:
        raise DataError(f"{file}: no queries (the file has no data rows)")
    ids = id_column(df, "query_id", file)
    check_unique(ids.to_numpy(), file, "query_id")
    text = text_column(df, "text", file)
    if "benchmark" in df.columns:
        bench = text_column(df, "benchmark", file)
    else:
        bench = pl.Series("benchmark", [DEFAULT_BENCHMARK] * df.height, dtype=pl.String)
    return pl.DataFrame({"query_id": ids, "text": text, "benchmark": bench}).sort("query_id")


def find_table(directory: Path | None, stem: str) -> Path | None:
    if directory is None:
        return None
    found = [
        directory / f"{stem}.{ext}" for ext in FORMATS if (directory / f"{stem}.{ext}").is_file()
    ]
    if len(found) > 1:
        raise DataError(
            f"{directory}: several {stem} files ({', '.join(f.name for f in found)}); keep one"
        )
    return found[0] if found else None


def read_table(file: Path, required: list[str], optional: Iterable[str] = ()) -> pl.DataFrame:
    """Read only the needed columns; CSV columns are read as strings and converted by the
    column checkers, so that a bad value is reported instead of silently re-typed."""
    wanted = list(required) + list(optional)
    ext = file.suffix.lower().lstrip(".")
    try:
        if ext == "parquet":
            names = list(pl.read_parquet_schema(file).keys())
        elif ext == "csv":
            names = pl.read_csv(file, n_rows=0, infer_schema=False).columns
        elif ext == "jsonl":
            names = None
        else:
            raise DataError(f"{file}: unsupported format (use .parquet, .csv or .jsonl)")
        if names is not None:
            require_columns(file, names, required)
            cols = [c for c in wanted if c in names]
        if ext == "parquet":
            return pl.read_parquet(file, columns=cols)
        if ext == "csv":
            return pl.read_csv(file, columns=cols, infer_schema=False)
        df = pl.read_ndjson(file, infer_schema_length=None)
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        raise DataError(f"{file}: cannot be read as {ext}: {_cut(str(e))}") from e
    require_columns(file, df.columns, required)
    return df.select([c for c in wanted if c in df.columns])


def require_columns(file: Path, names: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in names]
    if missing:
        found = _cut(", ".join(quote(n) for n in names[:20]), 4 * QUOTE_LIMIT)
        more = f" and {len(names) - 20} more" if len(names) > 20 else ""
        raise DataError(
            f"{file}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found: {found or 'none'}{more})"
        )


def _cut(text: str, limit: int = 4 * QUOTE_LIMIT) -> str:
    """A library's message about a file, cut (it may quote the file's content)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more)"


def first(mask: pl.Series) -> int:
    return int(mask.arg_true()[0])


def text_column(df: pl.DataFrame, col: str, file: Path) -> pl.Series:
    s = df[col]
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    bad = s.is_null() | (s.str.strip_chars() == "")
    if bad.any():
        row = first(bad)
        raise DataError(f"{file}: column '{col}', row {row}{line(file, row)}: empty or missing")
    return s


def model_column(df: pl.DataFrame, file: Path, col: str = "model") -> pl.Series:
    s = df[col]
    if s.null_count():
        row = first(s.is_null())
        raise DataError(f"{file}: column '{col}', row {row}{line(file, row)}: null model name")
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    empty = s.str.strip_chars() == ""
    if empty.any():
        row = first(empty)
        raise DataError(f"{file}: column '{col}', row {row}{line(file, row)}: empty model name")
    return s.rename("model")


LABELS = {"0": 0, "1": 1, "true": 1, "false": 0, "0.0": 0, "1.0": 1}


def label_column(df: pl.DataFrame, col: str, file: Path) -> pl.Series:
    s = df[col]
    dt = s.dtype
    if dt == pl.Boolean:
        out = s.cast(pl.Int8)
    elif dt.is_integer() or dt.is_float():
        v = s.cast(pl.Float64).fill_null(-1.0).to_numpy()
        out = pl.Series(np.where((v == 0.0) | (v == 1.0), v, -1).astype(np.int8))
    elif dt == pl.String:
        out = (
            s.str.strip_chars()
            .str.to_lowercase()
            .replace_strict(LABELS, default=-1, return_dtype=pl.Int8)
        )
    else:
        raise DataError(f"{file}: column '{col}' must hold 0/1 labels, not {dt}")
    bad = out.is_null() | (out == -1)
    if bad.any():
        row = first(bad)
        raise DataError(
            f"{file}: column '{col}', row {row}{line(file, row)}: {quote(s[row])} is not a 0/1 "
            "label"
        )
    return out.rename("correct")


def check_unique(ids: np.ndarray, file: Path, col: str) -> None:
    order = np.argsort(ids, kind="stable")
    srt = ids[order]
    dup = np.flatnonzero(srt[1:] == srt[:-1])
    if len(dup):
        # report the first row (in file order) that repeats an earlier id
        rows = order[dup + 1]
        row = int(rows.min())
        raise DataError(
            f"{file}: column '{col}', row {row}{line(file, row)}: duplicate query id "
            f"{fmt_id(ids[row])}"
        )


def read_pth_embeddings(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """EmbedLLM's ``question_embeddings.pth``: one torch tensor whose row i is prompt_id i.
    torch is imported here only, when such a file is actually read."""
    try:
        import torch
    except ImportError as e:
        raise DataError(
            f"{file}: reading a .pth tensor needs torch ({e}); convert it to "
            "query_embeddings.parquet or pass embeddings=False"
        ) from e
    try:
        t = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for bad files
        raise DataError(f"{file}: not a loadable torch tensor file: {e}") from e
    if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[1] == 0:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise DataError(f"{file}: expected a 2-D tensor [n_prompts, dim], got {shape}")
    arr = np.ascontiguousarray(t.detach().to(torch.float32).numpy())
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        raise DataError(f"{file}: row {int(np.argmin(finite))} (prompt_id) contains NaN or Inf")
    return np.arange(len(arr), dtype=np.int64), arr


def embedding_matrix(s: pl.Series, file: Path) -> np.ndarray:
    dt = s.dtype
    if dt == pl.String:
        body = s.str.strip_chars().str.strip_chars("[]").str.strip_chars()
        parsed = body.str.split(",").list.eval(pl.element().str.strip_chars())
        if (body.str.contains(",").not_() & body.str.contains(r"\s")).any():
            parsed = body.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))
        try:
            s = parsed.cast(pl.List(pl.Float32))
        except pl.exceptions.PolarsError:
            ok = parsed.cast(pl.List(pl.Float32), strict=False).list.drop_nulls().list.len()
            bad = (ok != parsed.list.len()) | ok.is_null()
            row = int(bad.arg_true()[0]) if bad.any() else 0
            raise DataError(
                f"{file}: column 'embedding', row {row}{line(file, row)}: not a list of numbers"
            ) from None
        dt = s.dtype
    if isinstance(dt, pl.Array):
        if s.null_count():
            row = int(s.is_null().arg_true()[0])
            raise DataError(f"{file}: column 'embedding', row {row}{line(file, row)}: null")
        width = dt.size
        inner = dt.inner
    elif isinstance(dt, pl.List):
        lens = s.list.len()
        if s.null_count():
            row = int(s.is_null().arg_true()[0])
            raise DataError(f"{file}: column 'embedding', row {row}{line(file, row)}: null")
        width = int(lens[0])
        wrong = lens != width
        if wrong.any():
            row = int(wrong.arg_true()[0])
            raise DataError(
                f"{file}: column 'embedding', row {row}{line(file, row)}: length {lens[row]} "
                f"differs from row 0's length {width}"
            )
        inner = dt.inner
        s = s.list.to_array(width)
    else:
        raise DataError(f"{file}: column 'embedding' must hold float lists, not {dt}")
    if width == 0:
        raise DataError(f"{file}: column 'embedding', row 0: empty embedding")
    if not (inner is not None and (inner.is_float() or inner.is_integer())):
        raise DataError(f"{file}: column 'embedding' must hold numbers, not {inner}")
    arr = s.cast(pl.Array(pl.Float32, width)).to_numpy()
    if arr.dtype != np.float32 or arr.ndim != 2:  # nulls inside lists come back as object/NaN
        arr = np.asarray(arr, dtype=np.float32).reshape(len(s), width)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise DataError(
            f"{file}: column 'embedding', row {row}{line(file, row)}: NaN, Inf or null value"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)
