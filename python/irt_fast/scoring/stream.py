"""Scoring a query set of any size from disk to Parquet, batch by batch, with bounded memory.

Per batch: read and check the rows (:mod:`.sources`, :mod:`.rows`), embed texts if needed, run
the engine (``route`` for the decision; ``predict_proba`` for the P row; the group sums come from
that P row when it is computed, else from the engine's own summing), append one row group to the
output and add to the per-group sums (:mod:`.sums`). Each output is written beside its final
path and renamed only when the whole input has been scored, so an interrupted or failed run
leaves no output at all (a killed process, which cannot clean up, leaves a hidden
``.NAME.*.tmp.parquet`` beside it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from irt_fast import inputs
from irt_fast._atomic import atomic_write
from irt_fast.errors import DataError, InputError
from irt_fast.scoring import columns, rows
from irt_fast.scoring.sources import Source, batches, open_source
from irt_fast.scoring.sums import GroupSums

if TYPE_CHECKING:
    from irt_fast.engine import Model

#: Rows per batch for Parquet input: 16,384 × 768-d float32 is 48 MB per batch.
DEFAULT_BATCH = 16384
#: Rows per batch for CSV/JSONL: a 768-d embedding written as text is ~15 KB a row, and parsing
#: it takes several times that. Measured on 10⁵ such rows: CSV peaked at 1.19 GB RSS with 4,096
#: rows a batch and 0.74 GB with 1,024 (JSONL 0.52 and 0.35 GB), and was no slower.
TEXT_FORMAT_BATCH = 1024
#: With ``proba``, the default batch also keeps its P block ``[batch, n_llms]`` float32 under
#: this many bytes (10⁴ LLMs: 1,677 rows a batch instead of 16,384 and 655 MB).
PROBA_BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class Summary:
    """What a scoring run did.

    Attributes:
        rows: queries scored.
        seconds: wall time of the run (reading, embedding, scoring, writing).
        out: the per-query Parquet file written, or None.
        accuracy_out: the per-(group, LLM) accuracy file written, or None.
        groups: the number of groups in the accuracy table (0 without one).
    """

    rows: int
    seconds: float
    out: Path | None
    accuracy_out: Path | None
    groups: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def score(
    model: Model,
    queries: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    route: bool | None = None,
    proba: bool = False,
    group_col: str | None = None,
    accuracy_out: str | os.PathLike[str] | None = None,
    candidates: Sequence[str] | None = None,
    cost: Mapping[str, float] | Sequence[float] | None = None,
    lam: float | None = None,
    margin: float | None = None,
    embedder: str | None = None,
    batch: int | None = None,
    progress: bool = False,
) -> Summary:
    """Score every query of a file (or glob, or Parquet directory) and write Parquet.

    Args:
        model: the loaded model.
        queries: Parquet (a file, a glob such as ``parts/*.parquet``, or a dataset directory),
            CSV or JSONL with ``query_id`` and ``embedding`` (a list of floats; in CSV a string
            such as ``"[0.1, 0.2]"``) or ``text``. Ids are copied as given: an integer column
            stays Int64, a string column (every CSV column) stays String. Ids are not checked
            for uniqueness (that would hold every id in memory).
        out: the Parquet file to write: per query ``query_id`` and, with ``route``, ``llm``
            and ``proba`` (the routed LLM and its P(correct)), with ``proba``, ``proba_all``
            (every LLM's P, in ``model.llm_names`` order, also in the file's metadata). With
            ``group_col`` and neither ``route`` nor ``proba``, ``out`` gets the accuracy table.
        route: write the routed LLM per query (default: True unless ``proba`` or ``group_col``
            is given).
        proba: write every LLM's P per query.
        group_col: a column of group labels (e.g. the benchmark): write the predicted accuracy
            per (group, LLM): columns ``group, llm, accuracy, n``, as ``Model.predict_accuracy``
            with ``as_frame=True``.
        accuracy_out: where the accuracy table goes when per-query output is written too.
        candidates, cost, lam, margin: the routing rule, as in ``Model.route``.
        embedder: embedder name or path for text input (default: the model's).
        batch: rows per batch (default 16,384 for Parquet, 1,024 for CSV/JSONL, and with
            ``proba`` at most 64 MB of P per batch); memory grows with it, not with the input.
        progress: show a progress bar (rows and rows/s) on stderr.

    Returns:
        The Summary.

    Raises:
        FileNotFoundError: no input at ``queries``.
        irt_fast.errors.DataError: a bad file, column or value (file, column and row named).
        irt_fast.errors.InputError: bad arguments (routing rule, batch, output paths).
    """
    started = time.perf_counter()
    if route is None:
        route = not proba and group_col is None
    per_query = route or proba
    if not per_query and group_col is None:
        raise InputError("nothing to compute: pass route=True, proba=True or a group_col")
    table_out = _outputs(out, accuracy_out, per_query=per_query, group_col=group_col)
    size = None if batch is None else inputs.positive_int("batch", batch)
    route_kw: dict[str, Any] = {}
    if route:
        route_kw = {"candidates": candidates, "cost": cost, "lam": lam, "margin": margin}
        # the model's own argument checks, before any data is read
        model.route(np.zeros((1, model.embed_dim), np.float32), **route_kw)
    elif any(v is not None for v in (candidates, cost, lam, margin)):
        raise InputError("candidates, cost, lam and margin choose a route: pass route too")
    src = open_source(queries)
    _refuse_overwriting_input(src, [out, accuracy_out])
    lay = rows.layout(src.files[0], src.columns, ids=per_query, group=group_col)
    if size is None:
        size = DEFAULT_BATCH if src.fmt == "parquet" else TEXT_FORMAT_BATCH
        if proba:
            size = min(size, max(256, PROBA_BLOCK_BYTES // (4 * model.n_llms)))
    run = _Run(model, src, lay, size, route_kw if route else None, proba, embedder, progress)
    targets = [Path(out)] if per_query else []
    if table_out is not None:
        targets.append(table_out)
    _atomic_all(targets, run.write)
    return Summary(
        run.rows,
        time.perf_counter() - started,
        Path(out) if per_query else None,
        table_out,
        run.sums.n_groups if run.sums is not None else 0,
    )


def _outputs(out: Any, accuracy_out: Any, *, per_query: bool, group_col: str | None) -> Path | None:
    """The accuracy table's path (None without ``group_col``); checks the output arguments."""
    out = Path(inputs.path_arg("out", out))
    if group_col is not None and (not isinstance(group_col, str) or not group_col):
        raise InputError(f"group_col must be a column name, got {group_col!r}")
    if group_col is None:
        if accuracy_out is not None:
            raise InputError("accuracy_out is for the per-group table: pass group_col too")
        return None
    if not per_query:
        if accuracy_out is not None:
            raise InputError(
                "without route or proba the accuracy table is written to out: drop accuracy_out"
            )
        return out
    if accuracy_out is None:
        raise InputError(
            "with route or proba, out holds the per-query rows: pass accuracy_out for the "
            "per-group accuracy table"
        )
    acc = Path(inputs.path_arg("accuracy_out", accuracy_out))
    if acc.resolve() == out.resolve():
        raise InputError(f"out and accuracy_out are the same file: {out}")
    return acc


def _refuse_overwriting_input(src: Source, outs: list[Any]) -> None:
    inputs_ = {f.resolve() for f in src.files}
    for o in outs:
        if o is not None and Path(o).resolve() in inputs_:
            raise InputError(f"the output {o} is one of the input files")


def _atomic_all(paths: list[Path], write: Callable[[list[str]], None]) -> None:
    """``write(temporary paths)``, then every path renamed into place (none on any error)."""

    def nest(i: int, tmps: list[str]) -> None:
        if i == len(paths):
            write(tmps)
            return
        atomic_write(paths[i], lambda tmp: nest(i + 1, [*tmps, tmp]))

    nest(0, [])


class _Run:
    """One pass over the input: the loop of :func:`score`."""

    def __init__(
        self,
        model: Model,
        src: Source,
        lay: rows.Layout,
        size: int,
        route_kw: dict[str, Any] | None,
        proba: bool,
        embedder: str | None,
        progress: bool,
    ) -> None:
        self.model, self.src, self.lay, self.size = model, src, lay, size
        self.route_kw, self.proba, self.embedder = route_kw, proba, embedder
        self.progress = progress
        self.sums = GroupSums(model.n_llms) if lay.group is not None else None
        self.rows = 0

    def write(self, tmps: list[str]) -> None:
        import pyarrow.parquet as pq
        from tqdm.auto import tqdm

        per_query = self.route_kw is not None or self.proba
        writer = None
        bar = tqdm(
            total=self.src.rows,
            unit="row",
            unit_scale=True,
            desc="scoring",
            disable=not self.progress,
        )
        try:
            for b, ids, x, labels in self._checked_batches():
                q = self.model._queries(x, self.embedder)
                table = self._score(ids, q, labels)
                if per_query:
                    if writer is None:
                        schema = table.schema.with_metadata(columns.metadata(self.model.llm_names))
                        writer = pq.ParquetWriter(tmps[0], schema)
                    try:
                        writer.write_table(table)
                    except ValueError as e:  # another schema: e.g. ids of another type
                        raise DataError(
                            f"{b.file}: rows from {b.offset} do not match the earlier rows' "
                            f"types ({e})"
                        ) from None
                self.rows += q.shape[0]
                bar.update(q.shape[0])
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        if self.rows == 0:
            raise DataError(f"{self.src.files[0]}: no queries (the input has no data rows)")
        if self.sums is not None:
            self.sums.frame(self.model.llm_names).write_parquet(tmps[-1])

    def _checked_batches(self) -> Iterator[tuple[Any, pl.Series | None, Any, pl.Series | None]]:
        """(batch, ids, embeddings or texts, labels) per batch, checked."""
        as_str: bool | None = None
        for b in batches(self.src, self.lay.columns, self.size):
            try:
                ids = rows.query_ids(b.frame, b.file, as_str=as_str) if self.lay.ids else None
                if self.lay.query == rows.EMBEDDING:
                    x: Any = rows.embeddings(b.frame, b.file, self.model.embed_dim)
                else:
                    x = rows.texts(b.frame, b.file)
                labels = rows.labels(b.frame, b.file, self.lay.group) if self.lay.group else None
            except DataError as e:
                raise rows.shifted(e, b.offset) from None
            if ids is not None:
                as_str = ids.dtype == pl.String  # later batches keep the first batch's id type
            yield b, ids, x, labels

    def _score(self, ids: pl.Series | None, q: np.ndarray, labels: pl.Series | None) -> Any:
        import pyarrow as pa

        cols: dict[str, Any] = {}
        if ids is not None:
            cols[rows.ID] = ids.to_arrow()
        if self.route_kw is not None:
            r = self.model.route(q, **self.route_kw)
            cols.update(columns.routed(self.model.llm_names, r.indices, r.proba))
        p = None
        if self.proba:
            p = self.model.predict_proba(q)
            cols.update(columns.proba_all(p))
        if self.sums is not None:
            gid = self.sums.ids(labels)
            if p is not None:
                self.sums.add_proba(p, gid)
            else:
                s, c = self.model._engine.predict_accuracy_sums(q, gid, self.sums.n_groups)
                self.sums.add(s, c)
        return pa.table(cols) if cols else None
