"""The engine inside Ray Data: route and score a distributed query set with ``map_batches``, and
predict accuracies from partial sums combined across blocks (``pip install 'irt_fast[ray]'``).

    import ray, irt_fast.ray_data as ird
    ds = ray.data.read_parquet("s3://bucket/queries/")          # query_id, embedding
    out = ds.map_batches(ird.Scorer, fn_constructor_kwargs={"model": "pool.safetensors"},
                         batch_format="pyarrow", batch_size=8192,
                         compute=ray.data.ActorPoolStrategy(size=8))
    out.write_parquet("s3://bucket/routed/")                    # query_id, llm, proba
    acc = ird.predict_accuracy(ds, "pool.safetensors", group_col="benchmark")

The engine is a pure function of (weights, embeddings), so nothing here schedules, ships or
retries anything: Ray does. Each actor loads the model once (from a path every node can read,
or from the weights file's bytes put in Ray's object store with ``ray.put``) and runs the
engine on ``threads`` cores (default 1: one actor per core is Ray's unit of scaling, and an
actor's engine with every core would oversubscribe the node).
"""

from __future__ import annotations

from typing import Any

from irt_fast.scoring.arrow import AccuracySums, Scorer, load_model
from irt_fast.scoring.sums import GroupSums

__all__ = ["AccuracySums", "Scorer", "load_model", "predict_accuracy"]


def predict_accuracy(
    ds: Any,
    model: Any,
    *,
    group_col: str | None = None,
    embedder: str | None = None,
    threads: int | None = 1,
    as_frame: bool = False,
    **map_batches_kwargs: Any,
) -> Any:
    """Predicted accuracy of every LLM over a Ray Dataset: the mean of P, from sums of P and
    counts per (group, LLM) computed per block on the workers and added on the driver (a few
    numbers per block and group: the queries never leave the workers).

    Args:
        ds: a ``ray.data.Dataset`` with an ``embedding`` or ``text`` column.
        model: as for :class:`Scorer` (the driver loads it too, for the LLM names).
        group_col: a column of group labels for one accuracy per group.
        embedder: embedder name or path for text columns.
        threads: engine threads per actor.
        as_frame: return a polars DataFrame ``[group,] llm, accuracy, n``.
        **map_batches_kwargs: passed to ``map_batches`` (``batch_size``, ``compute`` (default:
            ``ActorPoolStrategy(size=1)``), ``num_cpus``, ...).

    Returns:
        As ``Model.predict_accuracy``: ``{llm: accuracy}``, with groups
        ``{group: {llm: accuracy}}``, or the frame.
    """
    import ray.data

    names = load_model(model, 1).llm_names
    kwargs = {"batch_format": "pyarrow", **map_batches_kwargs}
    if "compute" not in kwargs and "concurrency" not in kwargs:
        kwargs["compute"] = ray.data.ActorPoolStrategy(size=1)
    partial = ds.map_batches(
        AccuracySums,
        fn_constructor_kwargs={
            "model": model,
            "group_col": group_col,
            "embedder": embedder,
            "threads": threads,
        },
        **kwargs,
    )
    total = GroupSums(len(names))
    for block in partial.iter_batches(batch_format="pyarrow", batch_size=None):
        total.merge(GroupSums.from_arrow(block, len(names)))
    grouped = group_col is not None
    if as_frame:
        return total.frame(names, grouped=grouped)
    acc = total.accuracy()
    if not grouped:
        return dict(zip(names, acc[0].tolist(), strict=True))
    return {
        label: dict(zip(names, acc[g].tolist(), strict=True)) for label, g in total.index.items()
    }
