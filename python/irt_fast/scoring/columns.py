"""The per-query output columns, as Arrow arrays built without a Python loop over rows:

- ``llm``: the routed LLM's name;
- ``proba``: that LLM's P(correct), float32;
- ``proba_all``: P(correct) of every LLM, a fixed-size list of float32 in ``llm_names`` order
  (the names are in the Parquet file's metadata under ``irt_fast.llm_names``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

LLM, PROBA, PROBA_ALL = "llm", "proba", "proba_all"
#: Parquet key-value metadata key holding the JSON list of LLM names (``proba_all``'s order).
NAMES_KEY = "irt_fast.llm_names"


def routed(names: list[str], indices: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """``llm`` and ``proba`` columns from a route result.

    Args:
        names: the model's LLM names.
        indices: the chosen LLM's index per query.
        proba: the chosen LLM's P per query.

    Returns:
        ``{"llm": StringArray, "proba": FloatArray}``.
    """
    import pyarrow as pa

    llm = pa.array(names, pa.string()).take(pa.array(indices.astype(np.int64, copy=False)))
    return {LLM: llm, PROBA: pa.array(np.asarray(proba, dtype=np.float32))}


def proba_all(p: np.ndarray) -> dict[str, Any]:
    """The ``proba_all`` column from a ``[B, n_llms]`` P matrix."""
    import pyarrow as pa

    p = np.ascontiguousarray(p, dtype=np.float32)
    return {PROBA_ALL: pa.FixedSizeListArray.from_arrays(pa.array(p.ravel()), p.shape[1])}


def metadata(names: list[str]) -> dict[bytes, bytes]:
    """Schema metadata recording the LLM names of ``proba_all``."""
    return {NAMES_KEY.encode(): json.dumps(names).encode()}
