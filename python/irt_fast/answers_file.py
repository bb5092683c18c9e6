"""Reading one LLM's answers for ``python -m irt_fast add-llm``.

The answers file (Parquet, CSV or JSONL) has ``query_id`` and ``correct`` (0/1) columns, an
optional ``model`` column (a responses table of the dataset layout: ``--name`` selects the
rows), and the questions as an ``embedding`` or a ``text`` column, or else from a dataset
directory (``queries.*`` and optionally ``query_embeddings.*``, matched by ``query_id``).
Query ids may be integers or strings; ``"007"`` and ``7`` are the same id. Repeated answers to
one question are merged by majority vote (a tie counts as correct), as the dataset loader does.
The column checks of :mod:`irt_fast.data` are reused, so errors name file, column and row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from irt_fast.data.ids import line, quote
from irt_fast.data.tables import (
    embedding_matrix,
    find_table,
    label_column,
    model_column,
    read_table,
    text_column,
)
from irt_fast.errors import DataError

_INT = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Answers:
    """One LLM's answers, one row per distinct question, in file order of first appearance.

    Attributes:
        name: the LLM's name (``--name`` or the file's single ``model`` value), or None.
        query_ids: canonical query id per question (str).
        correct: float32 0/1 ``[k]``.
        embeddings: float32 ``[k, dim]``, or None when ``texts`` are given.
        texts: query texts ``[k]``, or None when ``embeddings`` are given.
        n_merged: answer rows folded into others by the majority vote.
    """

    name: str | None
    query_ids: list[str]
    correct: np.ndarray
    embeddings: np.ndarray | None
    texts: list[str] | None
    n_merged: int


def read_answers(
    path: str | Path,
    *,
    name: str | None = None,
    queries: str | Path | None = None,
    embed_dim: int | None = None,
) -> Answers:
    """Read and check an answers file.

    Args:
        path: the answers file (.parquet, .csv or .jsonl).
        name: keep only rows whose ``model`` is ``name`` (when the file has a ``model`` column).
        queries: a dataset directory providing the questions when the file has neither an
            ``embedding`` nor a ``text`` column.
        embed_dim: the model's embedding size: dataset embeddings of another size are not used
            (the texts are embedded instead).

    Returns:
        The answers.

    Raises:
        FileNotFoundError: a missing file or directory.
        DataError: bad format, column, label, id or embedding (file, column and row named).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"answers file not found: {file}")
    df = read_table(file, ["query_id", "correct"], optional=["model", "text", "embedding"])
    if df.height == 0:
        raise DataError(f"{file}: no answers (the file has no data rows)")
    df, name = _select_llm(df, file, name)
    keys = query_keys(df["query_id"], file)
    correct = label_column(df, "correct", file).to_numpy().astype(np.float32)
    first, merged, n_merged = _majority(keys, correct)
    ids = [keys[i] for i in first]
    # whole columns are checked (so an error names the file's row), then the kept rows taken
    if "embedding" in df.columns:
        emb = embedding_matrix(df["embedding"], file)[first]
        return Answers(name, ids, merged, np.ascontiguousarray(emb), None, n_merged)
    if "text" in df.columns:
        texts = text_column(df, "text", file).to_list()
        return Answers(name, ids, merged, None, [texts[i] for i in first], n_merged)
    if queries is None:
        raise DataError(
            f"{file}: no 'embedding' or 'text' column: add one, or pass --queries DIR (a dataset "
            "directory with queries.* and query_embeddings.*)"
        )
    emb, texts = _from_dataset(Path(queries), ids, embed_dim)
    return Answers(name, ids, merged, emb, texts, n_merged)


def query_keys(s: pl.Series, file: Path) -> list[str]:
    """Canonical string ids: integers as their decimal form (so 7, "7", "007", 7.0 agree),
    other strings stripped."""
    if s.null_count():
        row = int(s.is_null().arg_true()[0])
        raise DataError(f"{file}: column 'query_id', row {row}{line(file, row)}: missing value")
    if s.dtype.is_integer():
        return [str(v) for v in s.to_list()]
    if s.dtype.is_float():
        v = s.to_numpy()
        bad = ~np.isfinite(v) | (v != np.round(v))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{file}: column 'query_id', row {row}{line(file, row)}: {v[row]!r} is not an id"
            )
        return [str(int(x)) for x in v.tolist()]
    if s.dtype != pl.String:
        raise DataError(f"{file}: column 'query_id' must hold integer or string ids, not {s.dtype}")
    out = []
    for row, raw in enumerate(s.to_list()):
        t = raw.strip()
        if not t:
            raise DataError(f"{file}: column 'query_id', row {row}{line(file, row)}: empty id")
        out.append(str(int(t)) if _INT.fullmatch(t) else t)
    return out


def _select_llm(df: pl.DataFrame, file: Path, name: str | None) -> tuple[pl.DataFrame, str | None]:
    if "model" not in df.columns:
        return df, name
    models = model_column(df, file)  # a row without a model name is an error, never dropped
    if name is None:
        uniq = models.drop_nulls().unique().to_list()
        if len(uniq) != 1:
            raise DataError(
                f"{file}: the 'model' column names {len(uniq)} LLMs; pass --name to pick one"
            )
        name = uniq[0]
    keep = models == name
    if not keep.any():
        raise DataError(f"{file}: no rows with model == {name!r}")
    return df.filter(keep), name


def _majority(keys: list[str], correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """First row of each distinct id (file order), its majority answer, rows merged."""
    index: dict[str, int] = {}
    which = np.fromiter((index.setdefault(k, len(index)) for k in keys), np.int64, len(keys))
    n = len(index)
    votes = np.bincount(which, weights=correct, minlength=n)
    counts = np.bincount(which, minlength=n)
    first = np.full(n, len(keys), dtype=np.int64)
    np.minimum.at(first, which, np.arange(len(keys)))
    merged = (2 * votes >= counts).astype(np.float32)  # a tie counts as correct
    return first, merged, len(keys) - n


def _from_dataset(
    directory: Path, ids: list[str], embed_dim: int | None
) -> tuple[np.ndarray | None, list[str] | None]:
    if not directory.is_dir():
        raise FileNotFoundError(f"--queries directory not found: {directory}")
    emb_file = find_table(directory, "query_embeddings")
    if emb_file is not None:
        edf = read_table(emb_file, ["query_id", "embedding"])
        row = _positions(query_keys(edf["query_id"], emb_file), ids, emb_file)
        emb = embedding_matrix(edf["embedding"], emb_file)
        if embed_dim is None or emb.shape[1] == embed_dim:
            return np.ascontiguousarray(emb[row]), None
    q_file = find_table(directory, "queries")
    if q_file is None:
        why = "" if emb_file is None else f" ({emb_file.name} is not {embed_dim}-d)"
        raise DataError(f"{directory}: no queries.parquet/.csv/.jsonl to read texts from{why}")
    qdf = read_table(q_file, ["query_id", "text"])
    row = _positions(query_keys(qdf["query_id"], q_file), ids, q_file)
    texts = text_column(qdf, "text", q_file).to_list()
    return None, [texts[i] for i in row]


def _positions(table_keys: list[str], ids: list[str], file: Path) -> np.ndarray:
    pos: dict[str, int] = {}
    for i, k in enumerate(table_keys):
        if pos.setdefault(k, i) != i:
            raise DataError(f"{file}: column 'query_id', row {i}{line(file, i)}: duplicate id {k}")
    missing = [k for k in ids if k not in pos]
    if missing:
        raise DataError(
            f"{file}: {len(missing)} answered query id(s) not found, e.g. {quote(missing[0])}"
        )
    return np.array([pos[k] for k in ids], dtype=np.int64)
