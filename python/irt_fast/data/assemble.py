"""Assembly: match responses to queries (and embeddings) by id, then fold repeated answers of
one LLM to one query by majority vote into the final :class:`Dataset`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import DataError
from .dataset import Dataset
from .ids import fmt_id, id_column, line, lookup
from .tables import check_unique, embedding_matrix, read_pth_embeddings, read_table

log = logging.getLogger("irt_fast.data")


@dataclass(frozen=True)
class RowLocator:
    """Maps a row of the (possibly concatenated) responses to "file: column 'c', row r"."""

    files: list[Path]
    starts: list[int]
    id_col: str = "query_id"

    def __call__(self, row: int) -> str:
        i = int(np.searchsorted(np.asarray(self.starts), row, side="right")) - 1
        f, r = self.files[i], row - self.starts[i]
        return f"{f}: column '{self.id_col}', row {r}{line(f, r)}"

    def __str__(self) -> str:
        return ", ".join(str(f) for f in self.files)


def assemble(
    model: pl.Series,
    qid: pl.Series,
    correct: pl.Series,
    queries: pl.DataFrame,
    where: RowLocator,
    query_file: Path | None,
    emb_file: Path | None,
    source: str,
) -> Dataset:
    if model.len() == 0:
        raise DataError(f"{where}: no responses (the file has no data rows)")
    q_ids = queries["query_id"].to_numpy()
    q_idx = lookup(q_ids, qid.to_numpy())
    missing = q_idx < 0
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(
            f"{where(row)}: query id {fmt_id(qid[row])} has no text in {query_file} "
            f"({int(missing.sum())} response rows have an unknown query id)"
        )

    emb = None
    if emb_file is not None:
        emb, queries, q_idx = attach_embeddings(emb_file, queries, q_idx, qid, where)

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
            "query_id": queries["query_id"].gather(qq),
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


def attach_embeddings(
    emb_file: Path,
    queries: pl.DataFrame,
    q_idx: np.ndarray,
    qid: pl.Series,
    where: RowLocator,
) -> tuple[np.ndarray, pl.DataFrame, np.ndarray]:
    if emb_file.suffix == ".pth":
        e_ids, arr = read_pth_embeddings(emb_file)
    else:
        edf = read_table(emb_file, ["query_id", "embedding"])
        as_str = queries["query_id"].dtype == pl.String
        e_ids = id_column(edf, "query_id", emb_file, as_str=as_str).to_numpy()
        if len(e_ids) == 0:
            raise DataError(f"{emb_file}: no embeddings (the file has no data rows)")
        check_unique(e_ids, emb_file, "query_id")
        arr = embedding_matrix(edf["embedding"], emb_file)
        del edf
    q_ids = queries["query_id"].to_numpy()
    row_of_query = lookup(e_ids, q_ids)  # embedding row per query, -1 if none
    has = row_of_query >= 0
    resp_has = has[q_idx]
    if not resp_has.all():
        row = int(np.argmin(resp_has))
        raise DataError(f"{where(row)}: query id {fmt_id(qid[row])} has no embedding in {emb_file}")
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
