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
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ._atomic import atomic_write
from .errors import DataError, InputError

__all__ = ["Dataset", "load_costs", "load_dataset", "write_dataset"]

log = logging.getLogger(__name__)

_FORMATS = ("parquet", "csv", "jsonl")
_EMBEDLLM_FILES = ("train.csv", "val.csv", "test.csv")
DEFAULT_BENCHMARK = "unknown"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A correctness matrix in long form, with query texts and (optionally) query embeddings.

    Attributes:
        queries: ``query_id`` (i64), ``text`` (str), ``benchmark`` (str); sorted by ``query_id``,
            ids unique. Row ``i`` is query index ``i`` everywhere else.
        responses: ``model`` (str), ``query_id`` (i64), ``correct`` (i8 0/1), ``llm_idx`` (i32,
            index into ``llm_names``), ``q_idx`` (i32, row in ``queries``); one row per
            (model, query) pair, sorted by (llm_idx, q_idx).
        llm_names: sorted unique model names.
        embeddings: float32 ``[n_queries, dim]`` C-contiguous, row ``i`` = ``queries`` row ``i``;
            or None.
        n_merged: how many response rows were folded into others by the majority vote over
            repeated answers of one LLM to one query.
        source: where the data came from (a path or a generator description).
    """

    queries: pl.DataFrame
    responses: pl.DataFrame
    llm_names: list[str]
    embeddings: np.ndarray | None = None
    n_merged: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        # Cheap structural checks only: the loaders validate content.
        if self.embeddings is not None:
            e = self.embeddings
            if e.dtype != np.float32 or e.ndim != 2 or not e.flags.c_contiguous:
                raise InputError(
                    f"embeddings must be a C-contiguous float32 2-D array, got {e.dtype} "
                    f"with shape {e.shape}"
                )
            if e.shape[0] != self.queries.height:
                raise InputError(
                    f"embeddings have {e.shape[0]} rows but there are {self.queries.height} queries"
                )

    @property
    def n_llms(self) -> int:
        return len(self.llm_names)

    @property
    def n_queries(self) -> int:
        return self.queries.height

    @property
    def n_responses(self) -> int:
        return self.responses.height

    @property
    def benchmarks(self) -> np.ndarray:
        """Benchmark name of each query row (object array of str)."""
        return self.queries["benchmark"].to_numpy()

    @property
    def query_ids(self) -> np.ndarray:
        return self.queries["query_id"].to_numpy()

    def subset(self, query_ids: Iterable[int] | np.ndarray) -> Dataset:
        """The dataset restricted to ``query_ids`` (llm_names are kept, so LLM indices agree).

        Raises:
            DataError: an id is not a query of this dataset.
        """
        ids = np.unique(np.asarray(query_ids, dtype=np.int64))
        all_ids = self.query_ids
        pos = np.searchsorted(all_ids, ids)
        pos_c = np.minimum(pos, max(len(all_ids) - 1, 0))
        bad = (pos >= len(all_ids)) | (all_ids[pos_c] != ids)
        if bad.any():
            raise DataError(
                f"subset: {int(bad.sum())} query ids are not in the dataset {self.source!r}, "
                f"e.g. {int(ids[bad][0])}"
            )
        old_to_new = np.full(len(all_ids), -1, dtype=np.int32)
        old_to_new[pos] = np.arange(len(pos), dtype=np.int32)
        remap = old_to_new[self.responses["q_idx"].to_numpy()]
        keep = remap >= 0
        responses = self.responses.filter(pl.Series(keep)).with_columns(
            q_idx=pl.Series(remap[keep], dtype=pl.Int32)
        )
        emb = None
        if self.embeddings is not None:
            emb = np.ascontiguousarray(self.embeddings[pos])
        return Dataset(
            queries=self.queries[pos.tolist()] if len(pos) else self.queries.clear(),
            responses=responses,
            llm_names=list(self.llm_names),
            embeddings=emb,
            n_merged=self.n_merged,
            source=self.source,
        )

    def with_embeddings(self, embeddings: np.ndarray) -> Dataset:
        """A copy with ``embeddings`` (converted to C-contiguous float32) as the query embeddings.

        Raises:
            InputError: wrong shape, or NaN/Inf values.
        """
        arr = np.ascontiguousarray(np.asarray(embeddings), dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != self.n_queries or arr.shape[1] == 0:
            raise InputError(
                f"embeddings must have shape [n_queries={self.n_queries}, dim>0], got {arr.shape}"
            )
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            raise InputError(f"embeddings row {int(np.argmin(finite))} contains NaN or Inf")
        return dataclasses.replace(self, embeddings=arr)

    def summary(self) -> str:
        n_pairs = self.n_responses
        density = n_pairs / max(1, self.n_llms * self.n_queries)
        acc = float(self.responses["correct"].to_numpy().mean()) if n_pairs else float("nan")
        n_bench = self.queries["benchmark"].n_unique()
        emb = "none" if self.embeddings is None else f"{self.embeddings.shape[1]}-d"
        return (
            f"{self.source}: {self.n_llms} LLMs x {self.n_queries} queries in {n_bench} "
            f"benchmarks; {n_pairs} responses ({density:.1%} observed, mean accuracy "
            f"{acc:.3f}); {self.n_merged} repeated answers merged by majority vote; "
            f"embeddings: {emb}"
        )

    def __repr__(self) -> str:
        return f"Dataset({self.summary()})"


# ----------------------------------------------------------------------------------------------
# loading


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
        return _load_embedllm([p], source=str(p))
    resp_file = _find_table(p, "responses")
    if resp_file is None:
        csvs = [p / n for n in _EMBEDLLM_FILES if (p / n).is_file()]
        if csvs:
            return _load_embedllm(csvs, source=str(p), directory=p, embeddings=embeddings)
        raise DataError(
            f"{p}: no responses.parquet / responses.csv / responses.jsonl (nor EmbedLLM "
            "train.csv/val.csv/test.csv) in this directory"
        )
    query_file = _find_table(p, "queries")
    if query_file is None:
        raise DataError(f"{p}: no queries.parquet / queries.csv / queries.jsonl in this directory")
    queries = _read_queries(query_file)
    responses = _read_table(resp_file, ["model", "query_id", "correct"])
    model = _model_column(responses, resp_file)
    qid = _int_column(responses, "query_id", resp_file)
    correct = _label_column(responses, "correct", resp_file)
    del responses
    emb_file = _find_table(p, "query_embeddings") if embeddings else None
    where = _RowLocator([resp_file], [0])
    return _assemble(model, qid, correct, queries, where, query_file, emb_file, str(p))


def _load_embedllm(
    files: list[Path],
    *,
    source: str,
    directory: Path | None = None,
    embeddings: bool = True,
) -> Dataset:
    frames = []
    first_q = []
    starts = []
    n_before = 0
    for f in files:
        df = _read_table(
            f, ["model_id", "prompt_id", "label", "prompt"], optional=["category", "model_name"]
        )
        model = (
            _model_column(df, f, "model_name")
            if "model_name" in df.columns
            else _model_column(df, f, "model_id")
        )
        qid = _int_column(df, "prompt_id", f)
        text = _text_column(df, "prompt", f)
        if "category" in df.columns:
            bench = _text_column(df, "category", f)
        else:
            bench = pl.Series("benchmark", [DEFAULT_BENCHMARK] * df.height, dtype=pl.String)
        correct = _label_column(df, "label", f)
        starts.append(n_before)
        n_before += df.height
        rows = pl.DataFrame(
            {
                "query_id": qid,
                "text": text,
                "benchmark": bench,
                "file": pl.Series([str(f)] * df.height, dtype=pl.Categorical),
            }
        ).with_row_index("row")
        del df, text
        # The layout repeats the prompt on every row: keep one text per prompt and only a
        # 64-bit hash per row (to check that a prompt_id always has the same prompt).
        first_q.append(rows.unique("query_id", keep="first", maintain_order=True))
        frames.append(
            pl.DataFrame({"model": model, "correct": correct}).hstack(
                rows.select(
                    "query_id",
                    "row",
                    "file",
                    pl.col("benchmark").cast(pl.Categorical),
                    text_hash=pl.col("text").hash(seed=0),
                )
            )
        )
        del rows
    allr = pl.concat(frames)
    del frames
    queries = (
        pl.concat(first_q)
        .unique("query_id", keep="first", maintain_order=True)
        .select("query_id", "text", "benchmark")
    )
    # One prompt_id must have one prompt text and category throughout all files.
    ref = queries.select(
        "query_id", benchmark_q=pl.col("benchmark"), text_hash_q=pl.col("text").hash(seed=0)
    )
    check = allr.join(ref, on="query_id").filter(
        (pl.col("text_hash") != pl.col("text_hash_q"))
        | (pl.col("benchmark").cast(pl.String) != pl.col("benchmark_q"))
    )
    if check.height:
        r = check.row(0, named=True)
        col = "prompt" if r["text_hash"] != r["text_hash_q"] else "category"
        fpath = Path(r["file"])
        raise DataError(
            f"{fpath}: column '{col}', row {r['row']}{_line(fpath, r['row'])}: prompt_id "
            f"{r['query_id']} has a different {col} than its first occurrence"
        )
    queries = queries.sort("query_id")
    emb_file = _find_table(directory, "query_embeddings") if directory and embeddings else None
    if emb_file is None and directory and embeddings:
        pth = directory / "question_embeddings.pth"
        emb_file = pth if pth.is_file() else None
    where = _RowLocator(list(files), starts, "prompt_id")
    return _assemble(
        allr["model"], allr["query_id"], allr["correct"], queries, where, None, emb_file, source
    )


@dataclass(frozen=True)
class _RowLocator:
    """Maps a row of the (possibly concatenated) responses to "file: column 'c', row r"."""

    files: list[Path]
    starts: list[int]
    id_col: str = "query_id"

    def __call__(self, row: int) -> str:
        i = int(np.searchsorted(np.asarray(self.starts), row, side="right")) - 1
        f, r = self.files[i], row - self.starts[i]
        return f"{f}: column '{self.id_col}', row {r}{_line(f, r)}"

    def __str__(self) -> str:
        return ", ".join(str(f) for f in self.files)


def _assemble(
    model: pl.Series,
    qid: pl.Series,
    correct: pl.Series,
    queries: pl.DataFrame,
    where: _RowLocator,
    query_file: Path | None,
    emb_file: Path | None,
    source: str,
) -> Dataset:
    if model.len() == 0:
        raise DataError(f"{where}: no responses (the file has no data rows)")
    q_ids = queries["query_id"].to_numpy()
    q_idx = _lookup(q_ids, qid.to_numpy())
    missing = q_idx < 0
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(
            f"{where(row)}: query id {int(qid[row])} has no text in {query_file} "
            f"({int(missing.sum())} response rows have an unknown query id)"
        )

    emb = None
    if emb_file is not None:
        emb, queries, q_idx = _attach_embeddings(emb_file, queries, q_idx, qid, where)

    llm_names = model.unique().sort().to_list()
    llm_idx = model.cast(pl.Enum(llm_names)).to_physical().cast(pl.Int32)
    n_q = queries.height
    # Majority vote over repeated (model, query) rows with one int64 sort: pack (pair key,
    # label) as 2 * key + label, sort, then count rows and correct labels per run of keys.
    packed = (llm_idx.to_numpy().astype(np.int64) * n_q + q_idx) * 2 + correct.to_numpy()
    packed.sort()
    n_rows = len(packed)
    pair = packed >> 1
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    keys = pair[starts]
    n_per = np.diff(np.r_[starts, n_rows])
    pos_per = np.add.reduceat(packed & 1, starts) if len(starts) else np.zeros(0, np.int64)
    del packed, pair
    n_merged = n_rows - len(keys)
    if n_merged:
        log.info(
            "%s: %d repeated (model, query) answers merged by majority vote (ties count as "
            "correct)",
            source,
            n_merged,
        )
    l_idx = (keys // n_q).astype(np.int32)
    qq = (keys % n_q).astype(np.int32)
    names = pl.Series("model", llm_names, dtype=pl.String)
    responses = pl.DataFrame(
        {
            "model": names.gather(l_idx),
            "query_id": pl.Series(_q_ids_of(queries)[qq], dtype=pl.Int64),
            "correct": (2 * pos_per >= n_per).astype(np.int8),
            "llm_idx": pl.Series(l_idx, dtype=pl.Int32),
            "q_idx": pl.Series(qq, dtype=pl.Int32),
        }
    )
    return Dataset(
        queries=queries,
        responses=responses,
        llm_names=llm_names,
        embeddings=emb,
        n_merged=n_merged,
        source=source,
    )


def _q_ids_of(queries: pl.DataFrame) -> np.ndarray:
    return queries["query_id"].to_numpy()


def _attach_embeddings(
    emb_file: Path,
    queries: pl.DataFrame,
    q_idx: np.ndarray,
    qid: pl.Series,
    where: _RowLocator,
) -> tuple[np.ndarray, pl.DataFrame, np.ndarray]:
    if emb_file.suffix == ".pth":
        e_ids, arr = _read_pth_embeddings(emb_file)
    else:
        edf = _read_table(emb_file, ["query_id", "embedding"])
        e_ids = _int_column(edf, "query_id", emb_file).to_numpy()
        if len(e_ids) == 0:
            raise DataError(f"{emb_file}: no embeddings (the file has no data rows)")
        _check_unique(e_ids, emb_file, "query_id")
        arr = _embedding_matrix(edf["embedding"], emb_file)
        del edf
    q_ids = queries["query_id"].to_numpy()
    row_of_query = _lookup(e_ids, q_ids)  # embedding row per query, -1 if none
    has = row_of_query >= 0
    resp_has = has[q_idx]
    if not resp_has.all():
        row = int(np.argmin(resp_has))
        raise DataError(f"{where(row)}: query id {int(qid[row])} has no embedding in {emb_file}")
    if not has.all():
        # Queries nobody answered and nobody embedded carry no information: drop them.
        log.info("%s: %d queries without embedding or responses dropped", emb_file, (~has).sum())
        new_pos = np.cumsum(has) - 1
        q_idx = new_pos[q_idx]
        queries = queries.filter(pl.Series(has))
        row_of_query = row_of_query[has]
    n_extra = len(e_ids) - len(row_of_query)
    if n_extra:
        log.info("%s: %d embeddings of unknown query ids ignored", emb_file, n_extra)
    return np.ascontiguousarray(arr[row_of_query]), queries, q_idx


def _read_pth_embeddings(file: Path) -> tuple[np.ndarray, np.ndarray]:
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


def _embedding_matrix(s: pl.Series, file: Path) -> np.ndarray:
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
                f"{file}: column 'embedding', row {row}{_line(file, row)}: not a list of numbers"
            ) from None
        dt = s.dtype
    if isinstance(dt, pl.Array):
        if s.null_count():
            row = int(s.is_null().arg_true()[0])
            raise DataError(f"{file}: column 'embedding', row {row}{_line(file, row)}: null")
        width = dt.size
        inner = dt.inner
    elif isinstance(dt, pl.List):
        lens = s.list.len()
        if s.null_count():
            row = int(s.is_null().arg_true()[0])
            raise DataError(f"{file}: column 'embedding', row {row}{_line(file, row)}: null")
        width = int(lens[0])
        wrong = lens != width
        if wrong.any():
            row = int(wrong.arg_true()[0])
            raise DataError(
                f"{file}: column 'embedding', row {row}{_line(file, row)}: length {lens[row]} "
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
            f"{file}: column 'embedding', row {row}{_line(file, row)}: NaN, Inf or null value"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def _read_queries(file: Path) -> pl.DataFrame:
    df = _read_table(file, ["query_id", "text"], optional=["benchmark"])
    if df.height == 0:
        raise DataError(f"{file}: no queries (the file has no data rows)")
    ids = _int_column(df, "query_id", file)
    _check_unique(ids.to_numpy(), file, "query_id")
    text = _text_column(df, "text", file)
    if "benchmark" in df.columns:
        bench = _text_column(df, "benchmark", file)
    else:
        bench = pl.Series("benchmark", [DEFAULT_BENCHMARK] * df.height, dtype=pl.String)
    return pl.DataFrame({"query_id": ids, "text": text, "benchmark": bench}).sort("query_id")


def _find_table(directory: Path | None, stem: str) -> Path | None:
    if directory is None:
        return None
    found = [
        directory / f"{stem}.{ext}" for ext in _FORMATS if (directory / f"{stem}.{ext}").is_file()
    ]
    if len(found) > 1:
        raise DataError(
            f"{directory}: several {stem} files ({', '.join(f.name for f in found)}); keep one"
        )
    return found[0] if found else None


def _read_table(file: Path, required: list[str], optional: Iterable[str] = ()) -> pl.DataFrame:
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
            _require_columns(file, names, required)
            cols = [c for c in wanted if c in names]
        if ext == "parquet":
            return pl.read_parquet(file, columns=cols)
        if ext == "csv":
            return pl.read_csv(file, columns=cols, infer_schema=False)
        df = pl.read_ndjson(file, infer_schema_length=None)
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        raise DataError(f"{file}: cannot be read as {ext}: {e}") from e
    _require_columns(file, df.columns, required)
    return df.select([c for c in wanted if c in df.columns])


def _require_columns(file: Path, names: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(
            f"{file}: missing column(s) {', '.join(repr(c) for c in missing)} "
            f"(found: {', '.join(names) or 'none'})"
        )


def _line(file: Path, row: int) -> str:
    return f" (line {row + 2})" if file.suffix.lower() == ".csv" else ""


def _first(mask: pl.Series) -> int:
    return int(mask.arg_true()[0])


def _int_column(df: pl.DataFrame, col: str, file: Path) -> pl.Series:
    s = df[col]
    if s.null_count():
        row = _first(s.is_null())
        raise DataError(f"{file}: column '{col}', row {row}{_line(file, row)}: missing value")
    if s.dtype.is_integer():
        return s.cast(pl.Int64).rename("query_id")
    if s.dtype == pl.String:
        out = s.str.strip_chars().cast(pl.Int64, strict=False)
    elif s.dtype.is_float():
        out = s.cast(pl.Int64, strict=False)
        whole = pl.Series(s.to_numpy() == out.fill_null(0).to_numpy())
        out = out.zip_with(whole, pl.Series([None] * len(s), dtype=pl.Int64))
    else:
        raise DataError(f"{file}: column '{col}' must hold integer ids, not {s.dtype}")
    if out.null_count():
        row = _first(out.is_null())
        raise DataError(
            f"{file}: column '{col}', row {row}{_line(file, row)}: {s[row]!r} is not an integer id"
        )
    return out.rename("query_id")


def _text_column(df: pl.DataFrame, col: str, file: Path) -> pl.Series:
    s = df[col]
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    bad = s.is_null() | (s.str.strip_chars() == "")
    if bad.any():
        row = _first(bad)
        raise DataError(f"{file}: column '{col}', row {row}{_line(file, row)}: empty or missing")
    return s


def _model_column(df: pl.DataFrame, file: Path, col: str = "model") -> pl.Series:
    s = df[col]
    if s.null_count():
        row = _first(s.is_null())
        raise DataError(f"{file}: column '{col}', row {row}{_line(file, row)}: null model name")
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    empty = s.str.strip_chars() == ""
    if empty.any():
        row = _first(empty)
        raise DataError(f"{file}: column '{col}', row {row}{_line(file, row)}: empty model name")
    return s.rename("model")


_LABELS = {"0": 0, "1": 1, "true": 1, "false": 0, "0.0": 0, "1.0": 1}


def _label_column(df: pl.DataFrame, col: str, file: Path) -> pl.Series:
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
            .replace_strict(_LABELS, default=-1, return_dtype=pl.Int8)
        )
    else:
        raise DataError(f"{file}: column '{col}' must hold 0/1 labels, not {dt}")
    bad = out.is_null() | (out == -1)
    if bad.any():
        row = _first(bad)
        raise DataError(
            f"{file}: column '{col}', row {row}{_line(file, row)}: {s[row]!r} is not a 0/1 label"
        )
    return out.rename("correct")


def _check_unique(ids: np.ndarray, file: Path, col: str) -> None:
    order = np.argsort(ids, kind="stable")
    srt = ids[order]
    dup = np.flatnonzero(srt[1:] == srt[:-1])
    if len(dup):
        # report the first row (in file order) that repeats an earlier id
        rows = order[dup + 1]
        row = int(rows.min())
        raise DataError(
            f"{file}: column '{col}', row {row}{_line(file, row)}: duplicate query id "
            f"{int(ids[row])}"
        )


def _lookup(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Position of each value in ``ids`` (unique, any order) or -1; vectorised, no sort of
    ``values``: a direct table when the id range is compact, else a hash join."""
    values = np.asarray(values, dtype=np.int64)
    if not len(ids):
        return np.full(len(values), -1, dtype=np.int64)
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo < 8 * len(ids) + 1_000_000:
        table = np.full(hi - lo + 1, -1, dtype=np.int64)
        table[ids - lo] = np.arange(len(ids))
        inside = (values >= lo) & (values <= hi)
        out = np.full(len(values), -1, dtype=np.int64)
        out[inside] = table[values[inside] - lo]
        return out
    right = pl.DataFrame({"v": ids, "i": np.arange(len(ids), dtype=np.int64)})
    joined = pl.DataFrame({"v": values}).join(right, on="v", how="left", maintain_order="left")
    return joined["i"].fill_null(-1).to_numpy()


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
    df = _read_table(file, ["model", "cost"])
    names = _model_column(df, file).to_list()
    raw = df["cost"]
    vals = raw.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    bad = vals.is_null() | ~vals.is_finite().fill_null(False) | (vals < 0).fill_null(False)
    if bad.any():
        row = _first(bad)
        raise DataError(
            f"{file}: column 'cost', row {row}{_line(file, row)}: {raw[row]!r} is not a "
            "finite number >= 0"
        )
    order = list(llm_names)
    index = {n: i for i, n in enumerate(order)}
    out = np.full(len(order), np.nan)
    for row, (name, value) in enumerate(zip(names, vals.to_list(), strict=True)):
        if name not in index:
            raise DataError(
                f"{file}: column 'model', row {row}{_line(file, row)}: unknown LLM {name!r}"
            )
        if not np.isnan(out[index[name]]):
            raise DataError(
                f"{file}: column 'model', row {row}{_line(file, row)}: {name!r} given twice"
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
    if format not in _FORMATS:
        raise InputError(f"format must be one of {_FORMATS}, got {format!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for stem in ("responses", "queries", "query_embeddings"):
        for ext in _FORMATS:
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
