"""Scoring query sets larger than memory: read Parquet/CSV/JSONL in batches, route and score
each batch in the engine, write Parquet row groups as it goes (``irt-fast score`` is the command
line face of :func:`score`). :class:`GroupSums` is the mergeable state of a per-group
``predict_accuracy``, shared with the Ray Data integration (:mod:`irt_fast.ray_data`)."""

from __future__ import annotations

from irt_fast.scoring.stream import DEFAULT_BATCH, Summary, score
from irt_fast.scoring.sums import GroupSums

__all__ = ["DEFAULT_BATCH", "GroupSums", "Summary", "score"]
