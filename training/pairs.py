"""From a dataset and a split (query ids per part) to the PairMatrices the training loop eats.

Query ids are matched as given: ints or strings (``arc:660``), never renumbered.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irt_fast.errors import DataError
from training.data import PairMatrix, build_pair_matrix

PARTS = ("train", "val", "test")


def _key(q: Any) -> Any:
    """One hashable key per query id, so numpy int64 / Python int / str compare as the user
    wrote them (np.int64(3) and 3 must meet; "3" and 3 must not)."""
    if isinstance(q, np.generic):
        q = q.item()
    return q


def query_rows(ds: Any, ids: Any, part: str = "split") -> np.ndarray:
    """Rows of ``ds.queries`` holding the query ids ``ids`` (in that order)."""
    qid = ds.queries["query_id"].to_list()
    row_of = {_key(q): i for i, q in enumerate(qid)}
    rows = np.empty(len(ids), dtype=np.int64)
    for j, q in enumerate(ids):
        r = row_of.get(_key(q))
        if r is None:
            raise DataError(f"{part}: query id {q!r} is not in the dataset")
        rows[j] = r
    return rows


def matrices(ds: Any, split: dict[str, np.ndarray]) -> dict[str, PairMatrix]:
    """One PairMatrix per part of ``split`` (train, val, test; a missing part is empty)."""
    r = ds.responses
    cols = (r["q_idx"].to_numpy(), r["llm_idx"].to_numpy(), r["correct"].to_numpy())
    out = {}
    for name in PARTS:
        ids = split.get(name, [])
        rows = query_rows(ds, list(ids), name)
        out[name] = build_pair_matrix(ds.embeddings, *cols, rows, ds.n_llms)
    return out


def subsample_matrix(ds: Any, rows: np.ndarray) -> PairMatrix:
    """The PairMatrix of the dataset rows ``rows`` (e.g. a subsample of the training queries)."""
    r = ds.responses
    cols = (r["q_idx"].to_numpy(), r["llm_idx"].to_numpy(), r["correct"].to_numpy())
    return build_pair_matrix(ds.embeddings, *cols, rows, ds.n_llms)
