"""Scoring Arrow batches, for the engines people already run: the callable classes here take a
``pyarrow.Table`` (or a dict of columns) and return one, so they run unchanged inside Ray Data's
``map_batches`` (see :mod:`irt_fast.ray_data`) or, wrapped in a three-line generator, Spark's
``mapInArrow``. The model is loaded once per instance (once per worker), from a path, the
weights file's bytes, or a Ray ObjectRef to those bytes. Nothing here imports Ray or Spark.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from irt_fast.errors import InputError
from irt_fast.scoring import columns, rows
from irt_fast.scoring.sums import GroupSums

#: Shown in messages about a batch: Ray blocks and Spark partitions have no file name.
BATCH = Path("<arrow batch>")


def load_model(model: Any, threads: int | None = 1) -> Any:
    """Load a model from a path, the weights file's bytes, or a Ray ObjectRef to those bytes.

    Args:
        model: ``str``/``os.PathLike`` path, ``bytes``, or ``ray.ObjectRef`` of bytes.
        threads: engine threads.

    Returns:
        The irt_fast Model.
    """
    import irt_fast

    if type(model).__name__ == "ObjectRef":
        import ray

        model = ray.get(model)
    if isinstance(model, (bytes, bytearray, memoryview)):
        # the engine reads a file: the bytes go to a private temporary file, gone after loading
        with tempfile.TemporaryDirectory(prefix="irt_fast_") as tmp:
            path = Path(tmp) / "model.safetensors"
            path.write_bytes(bytes(model))
            return irt_fast.load(path, threads=threads)
    if isinstance(model, (str, os.PathLike)):
        return irt_fast.load(model, threads=threads)
    raise InputError(
        f"model must be a path, the weights file's bytes or an ObjectRef, got {type(model).__name__}"
    )


class _Batches:
    """What both map_batches classes share: the model, loaded once, and batch checking."""

    def __init__(self, model: Any, embedder: str | None, threads: int | None) -> None:
        self.model = load_model(model, threads)
        self.embedder = embedder

    def _frame(self, batch: Any) -> pl.DataFrame:
        import pyarrow as pa

        if isinstance(batch, Mapping):
            batch = pa.table(
                {k: pa.array(list(v)) if np.ndim(v) > 1 else v for k, v in batch.items()}
            )
        if not isinstance(batch, pa.Table):
            raise InputError(
                f"batches must be pyarrow Tables (batch_format='pyarrow'), got "
                f"{type(batch).__name__}"
            )
        # Ray's tensor columns (from numpy data) are an extension type over list<float>
        for i, field in enumerate(batch.schema):
            if isinstance(field.type, pa.ExtensionType):
                col = batch.column(i)
                storage = pa.chunked_array([c.storage for c in col.chunks], field.type.storage_type)
                batch = batch.set_column(i, field.name, storage)
        return pl.from_arrow(batch)  # type: ignore[return-value]

    def _queries(self, frame: pl.DataFrame) -> tuple[str, np.ndarray]:
        lay = rows.layout(BATCH, frame.columns, ids=False, group=None)
        if lay.query == rows.EMBEDDING:
            x: Any = rows.embeddings(frame, BATCH, self.model.embed_dim)
        else:
            x = rows.texts(frame, BATCH)
        return lay.query, self.model._queries(x, self.embedder)


class Scorer(_Batches):
    """Route/score Arrow batches: a callable class for Ray Data's
    ``Dataset.map_batches(Scorer, batch_format="pyarrow", ...)``, or called per batch inside
    Spark's ``mapInArrow``.

    Each batch needs an ``embedding`` column (list of floats) or a ``text`` column. The output
    is the batch without that column, plus ``llm`` (the routed LLM) and ``proba`` (its
    P(correct)) with ``route``, and ``proba_all`` (every LLM's P, in ``llm_names`` order) with
    ``proba``; other columns (``query_id``, labels) pass through.

    Args:
        model: a path every worker can read, the weights file's bytes, or an ObjectRef of them.
        route: add ``llm`` and ``proba``.
        proba: add ``proba_all``.
        candidates, cost, lam, margin: the routing rule, as in ``Model.route``.
        embedder: embedder name or path for text batches (default: the model's).
        threads: engine threads per instance (default 1: one worker per core is how Ray and
            Spark scale, and an engine on every core in each worker would oversubscribe the node).
        keep_query: keep the embedding/text column in the output.
    """

    def __init__(
        self,
        model: Any,
        *,
        route: bool = True,
        proba: bool = False,
        candidates: Sequence[str] | None = None,
        cost: Mapping[str, float] | Sequence[float] | None = None,
        lam: float | None = None,
        margin: float | None = None,
        embedder: str | None = None,
        threads: int | None = 1,
        keep_query: bool = False,
    ) -> None:
        super().__init__(model, embedder, threads)
        if not route and not proba:
            raise InputError("nothing to compute: pass route=True and/or proba=True")
        self.route_kw = (
            {"candidates": candidates, "cost": cost, "lam": lam, "margin": margin}
            if route
            else None
        )
        if self.route_kw is not None:  # the model's own argument checks, once per actor
            self.model.route(np.zeros((1, self.model.embed_dim), np.float32), **self.route_kw)
        self.proba = proba
        self.keep_query = keep_query

    def __call__(self, batch: Any) -> Any:
        """Score one batch.

        Args:
            batch: a pyarrow Table (or a dict of columns).

        Returns:
            A pyarrow Table: the batch's columns (less the query column) and the results.
        """
        import pyarrow as pa

        frame = self._frame(batch)
        col, q = self._queries(frame)
        table = frame.to_arrow() if self.keep_query else frame.drop(col).to_arrow()
        out = {name: table.column(name) for name in table.column_names}
        if self.route_kw is not None:
            r = self.model.route(q, **self.route_kw)
            out.update(columns.routed(self.model.llm_names, r.indices, r.proba))
        if self.proba:
            out.update(columns.proba_all(self.model.predict_proba(q)))
        return pa.table(out)


class AccuracySums(_Batches):
    """A callable class that turns each Arrow batch into partial sums: one row per group
    (``group``, ``n``, ``sums``: P summed per LLM); :meth:`GroupSums.from_arrow` and
    :meth:`GroupSums.merge` combine them (``irt_fast.ray_data.predict_accuracy`` does).

    Args:
        model: as for :class:`Scorer`.
        group_col: the label column, or None for one overall accuracy.
        embedder: embedder name or path for text batches.
        threads: engine threads per actor.
    """

    def __init__(
        self,
        model: Any,
        *,
        group_col: str | None = None,
        embedder: str | None = None,
        threads: int | None = 1,
    ) -> None:
        super().__init__(model, embedder, threads)
        self.group_col = group_col

    def __call__(self, batch: Any) -> Any:
        """The batch's partial sums (a pyarrow Table, see :meth:`GroupSums.to_arrow`)."""
        frame = self._frame(batch)
        _, q = self._queries(frame)
        sums = GroupSums(self.model.n_llms)
        labels = None
        if self.group_col is not None:
            rows.layout(BATCH, frame.columns, ids=False, group=self.group_col)
            labels = rows.labels(frame, BATCH, self.group_col)
        gid = sums.ids(labels)
        s, c = self.model._engine.predict_accuracy_sums(q, gid, sums.n_groups)
        sums.add(s, c)
        return sums.to_arrow()
