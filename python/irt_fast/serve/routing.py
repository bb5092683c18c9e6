"""Scoring requests together (the micro-batcher) and the decision on each request's row.

The batcher: each request puts its texts (or embeddings) and a future on a queue; one task
takes what is queued (up to ``max_batch`` rows), waits at most ``batch_window_ms`` after the
first of them for requests that are already being read, embeds and scores the whole batch in a
worker thread (the engine releases the GIL, so the event loop keeps serving; a small batch is
scored on the loop itself, see ``small``) and resolves the futures with each request's rows of
P(correct). It never holds a batch back when no other request is on its way, so a lone request
pays no window. ``batch_window_ms = 0`` turns batching off: every request is scored on its own.

The decision: the rules of :meth:`irt_fast.Model.route` (``best``, ``penalty`` = P − lam·cost,
``within_best`` = the cheapest candidate within ``margin`` of the best), computed in float32
exactly as the engine does, and extended to a ranking: the first entry is the engine's choice,
the next ones are where fallbacks go (the same rule over the candidates left).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

BEST, PENALTY, WITHIN_BEST = "best", "penalty", "within_best"


# ------------------------------------------------------------------------------------ decision


@dataclass(frozen=True)
class Rule:
    """A decision rule: ``best``; ``penalty`` with ``param`` = lam; ``within_best`` with
    ``param`` = margin."""

    kind: str = BEST
    param: float = 0.0

    @classmethod
    def of(cls, lam: float | None, margin: float | None) -> Rule:
        if lam is not None:
            return cls(PENALTY, float(lam))
        if margin is not None:
            return cls(WITHIN_BEST, float(margin))
        return cls()

    @property
    def needs_cost(self) -> bool:
        return self.kind != BEST


def rank(p: np.ndarray, cost: np.ndarray | None, rule: Rule, limit: int | None = None) -> list[int]:
    """Candidates in order of preference under ``rule``.

    Args:
        p: float32 ``[k]``: each candidate's P(correct), in candidate order.
        cost: float32 ``[k]`` costs (needed by ``penalty`` and ``within_best``).
        rule: the decision rule.
        limit: how many to rank (default: all).

    Returns:
        Positions into the candidates; the first is what :meth:`irt_fast.Model.route` picks
        (ties go to the earlier candidate).
    """
    k = len(p)
    limit = k if limit is None else min(limit, k)
    p = np.asarray(p, dtype=np.float32)
    if rule.kind == BEST or cost is None:
        return np.argsort(-p, kind="stable")[:limit].tolist()
    c = np.asarray(cost, dtype=np.float32)
    param = np.float32(rule.param)
    if rule.kind == PENALTY:
        return np.argsort(-(p - param * c), kind="stable")[:limit].tolist()
    left = list(range(k))
    out: list[int] = []
    while left and len(out) < limit:
        pl = p[left]
        floor = pl.max() - param
        best: int | None = None
        for j in left:
            if p[j] < floor:
                continue
            if best is None or c[j] < c[best] or (c[j] == c[best] and p[j] > p[best]):
                best = j
        assert best is not None  # the top candidate always qualifies
        out.append(best)
        left.remove(best)
    return out


def choose(p: np.ndarray, cost: np.ndarray | None, rule: Rule) -> np.ndarray:
    """The first entry of :func:`rank` for every row at once.

    Args:
        p: float32 ``[B, k]``: P(correct) of each candidate per query.
        cost: float32 ``[k]`` or ``[B, k]`` (needed by ``penalty`` and ``within_best``).
        rule: the decision rule.

    Returns:
        int64 ``[B]``: positions into the candidates.
    """
    p = np.asarray(p, dtype=np.float32)
    if rule.kind == BEST or cost is None:
        return np.argmax(p, axis=1)
    c = np.broadcast_to(np.asarray(cost, dtype=np.float32), p.shape)
    param = np.float32(rule.param)
    if rule.kind == PENALTY:
        return np.argmax(p - param * c, axis=1)
    floor = p.max(axis=1, keepdims=True) - param
    ok = p >= floor
    cheapest = np.where(ok, c, np.inf).min(axis=1, keepdims=True)
    ok &= c == cheapest
    return np.argmax(np.where(ok, p, -np.inf), axis=1)


# ------------------------------------------------------------------------------------- batcher


class Scorer(Protocol):
    """What the batcher needs from the served model: embed texts, score embeddings."""

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def proba(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class BatchStats:
    """What one batch cost, for the metrics."""

    rows: int
    embed_s: float
    engine_s: float
    waits_s: list[float] = field(default_factory=list)


@dataclass
class _Item:
    scorer: Scorer
    texts: list[str] | None
    x: np.ndarray | None
    future: asyncio.Future[np.ndarray]
    enqueued: float

    @property
    def rows(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.x)  # type: ignore[arg-type]


def score_items(items: Sequence[_Item]) -> tuple[list[np.ndarray], float, float]:
    """Embed and score items that share one scorer, as one engine call (runs in a thread).

    Returns:
        Each item's rows of P, the embedding time and the engine time.
    """
    scorer = items[0].scorer
    t0 = time.perf_counter()
    texts = [t for it in items if it.texts is not None for t in it.texts]
    emb = scorer.embed(texts) if texts else None
    t1 = time.perf_counter()
    parts, at = [], 0
    for it in items:
        if it.texts is not None:
            assert emb is not None
            parts.append(emb[at : at + len(it.texts)])
            at += len(it.texts)
        else:
            assert it.x is not None
            parts.append(it.x)
    x = parts[0] if len(parts) == 1 else np.concatenate(parts)
    p = scorer.proba(np.ascontiguousarray(x, dtype=np.float32))
    t2 = time.perf_counter()
    out, at = [], 0
    for it in items:
        out.append(p[at : at + it.rows])
        at += it.rows
    return out, t1 - t0, t2 - t1


#: A batch of at most this many rows and characters is scored on the event loop itself: a
#: thread hand-off (a wake-up, then the loop and the thread taking turns at the GIL) costs more
#: than such a batch, which blocks the loop for well under a millisecond (short texts are
#: tokenised from cached words, ~10-20 µs each; the engine takes ~50 µs for one row and ~20 µs
#: per row in a batch). Larger batches go to the worker threads, so the loop keeps reading.
INLINE_ROWS = 8
INLINE_CHARS = 2000


def small(items: Sequence[_Item]) -> bool:
    """Whether a batch is cheaper to score on the event loop than in a worker thread."""
    if sum(it.rows for it in items) > INLINE_ROWS:
        return False
    return sum(len(t) for it in items if it.texts is not None for t in it.texts) <= INLINE_CHARS


class Arrival:
    """Marks a request that will be scored soon (the batcher waits for such requests)."""

    __slots__ = ("_batcher", "open")

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self.open = True
        batcher.arriving += 1

    def close(self) -> None:
        if self.open:
            self.open = False
            self._batcher.arriving -= 1


class Batcher:
    """The micro-batcher (see the module docstring).

    Args:
        window_ms: how long a batch may wait for requests on their way; 0: no batching.
        max_batch: the most rows scored in one engine call.
        executor: the worker threads that embed and score.
        observe: called on the event loop with each batch's :class:`BatchStats`.
    """

    def __init__(
        self,
        window_ms: float,
        max_batch: int,
        executor: Executor,
        observe: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self.window_s = window_ms / 1000.0
        self.max_batch = max_batch
        self.executor = executor
        self.observe = observe
        self.arriving = 0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def configure(self, window_ms: float, max_batch: int) -> None:
        """Apply new settings (after a reload); the next batch uses them."""
        self.window_s, self.max_batch = window_ms / 1000.0, max_batch

    def arrival(self) -> Arrival:
        """Announce a request that will call :meth:`submit` (close it on every path)."""
        return Arrival(self)

    async def submit(
        self,
        scorer: Scorer,
        *,
        texts: list[str] | None = None,
        x: np.ndarray | None = None,
        arrival: Arrival | None = None,
    ) -> np.ndarray:
        """P(correct) ``[rows, n_llms]`` of the request's texts or embeddings.

        Args:
            scorer: the model (of the snapshot the request started on).
            texts: texts to embed with the model's embedder, or
            x: float32 embeddings ``[rows, embed_dim]``.
            arrival: this request's announcement, closed here.

        Returns:
            The rows of P, in input order.
        """
        loop = asyncio.get_running_loop()
        item = _Item(scorer, texts, x, loop.create_future(), time.perf_counter())
        if arrival is not None:
            arrival.close()
        if self.window_s <= 0:  # batching off: this request alone
            if small([item]):
                rows, te, tg = score_items([item])
            else:
                rows, te, tg = await loop.run_in_executor(self.executor, score_items, [item])
            if self.observe is not None:
                self.observe(BatchStats(item.rows, te, tg, [0.0]))
            return rows[0]
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        self._queue.put_nowait(item)
        return await item.future

    async def close(self) -> None:
        """Stop the batching task (pending requests get CancelledError)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()

    async def _collect(self) -> list[_Item]:
        first = await self._queue.get()
        batch, rows = [first], first.rows
        deadline = first.enqueued + self.window_s
        while rows < self.max_batch:
            if not self._queue.empty():
                item = self._queue.get_nowait()
            else:
                wait = deadline - time.perf_counter()
                if self.arriving <= 0 or wait <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), wait)
                except asyncio.TimeoutError:
                    break
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            started = time.perf_counter()
            groups: dict[int, list[_Item]] = {}
            for it in batch:  # requests that began on different snapshots are never mixed
                groups.setdefault(id(it.scorer), []).append(it)
            for items in groups.values():
                live = [it for it in items if not it.future.done()]
                if not live:
                    continue
                try:
                    if small(live):
                        rows, te, tg = score_items(live)
                    else:
                        rows, te, tg = await loop.run_in_executor(self.executor, score_items, live)
                except Exception as e:  # noqa: BLE001 - handed to each waiting request
                    for it in live:
                        if not it.future.done():
                            it.future.set_exception(e)
                    continue
                for it, r in zip(live, rows, strict=True):
                    if not it.future.done():
                        it.future.set_result(r)
                if self.observe is not None:
                    waits = [started - it.enqueued for it in live]
                    self.observe(BatchStats(sum(it.rows for it in live), te, tg, waits))


def score_alone(scorer: Scorer, texts: list[str] | None, x: np.ndarray | None) -> np.ndarray:
    """Score one request without a batcher (used at warm-up)."""
    fut: Any = None
    item = _Item(scorer, texts, x, fut, 0.0)
    return score_items([item])[0][0]
