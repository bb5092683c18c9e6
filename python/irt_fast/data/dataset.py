"""The dataset type: a correctness matrix in long form, with query texts and embeddings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..errors import DataError, InputError
from .ids import fmt_id


@dataclass(frozen=True, eq=False)
class Dataset:
    """A correctness matrix in long form, with query texts and (optionally) query embeddings.

    Attributes:
        queries: ``query_id`` (polars Int64 for integer ids, String for string ids: see
            :mod:`irt_fast.data.ids`), ``text`` (str), ``benchmark`` (str); sorted by ``query_id``,
            ids unique. Row ``i`` is query index ``i`` everywhere else.
        responses: ``model`` (str), ``query_id`` (as in queries), ``correct`` (i8 0/1), ``llm_idx`` (i32,
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

    @property
    def has_str_ids(self) -> bool:
        """True when the query ids are strings (else they are int64)."""
        return self.queries["query_id"].dtype == pl.String

    def subset(self, query_ids: Iterable[int | str] | np.ndarray) -> Dataset:
        """The dataset restricted to ``query_ids`` (llm_names are kept, so LLM indices agree).

        Raises:
            DataError: an id is not a query of this dataset.
        """
        if hasattr(query_ids, "to_numpy"):
            query_ids = query_ids.to_numpy()
        elif not isinstance(query_ids, np.ndarray):
            query_ids = list(query_ids)
        want = object if self.has_str_ids else np.int64
        try:
            ids = np.unique(np.asarray(query_ids, dtype=want))
        except (TypeError, ValueError) as e:
            kind = "strings" if self.has_str_ids else "integers"
            raise DataError(f"subset: the dataset's query ids are {kind}: {e}") from None
        if self.has_str_ids and not all(isinstance(v, str) for v in ids):
            raise DataError("subset: the dataset's query ids are strings; got non-string ids")
        all_ids = self.query_ids
        pos = np.searchsorted(all_ids, ids)
        pos_c = np.minimum(pos, max(len(all_ids) - 1, 0))
        bad = (pos >= len(all_ids)) | (all_ids[pos_c] != ids)
        if bad.any():
            raise DataError(
                f"subset: {int(bad.sum())} query ids are not in the dataset {self.source!r}, "
                f"e.g. {fmt_id(ids[bad][0])}"
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
