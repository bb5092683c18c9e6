"""One gateway worker's state: the serving snapshot (swapped by hot reload), the batcher and its
worker threads, the pooled upstream client, sessions, spend and metrics.

Everything here lives as long as the app (created in its lifespan); nothing is global, so tests
build as many gateways as they like in one process.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import numpy as np

from irt_fast.errors import IrtFastError
from irt_fast.serve.metrics import Metrics
from irt_fast.serve.routing import Arrival, Batcher, BatchStats
from irt_fast.serve.sessions import SessionStore
from irt_fast.serve.snapshot import Snapshot, load_snapshot
from irt_fast.serve.spend import SpendBook

log = logging.getLogger("irt_fast.serve")

#: Longest error message put in a log line or a reload answer.
MAX_MESSAGE = 2000


def describe(e: BaseException) -> str:
    """An error's message for a log line or a response.

    Args:
        e: the error.

    Returns:
        Its message, non-printable characters escaped, cut to ``MAX_MESSAGE`` characters.
    """
    text = str(e) or type(e).__name__
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text[:MAX_MESSAGE]


def settle_heap() -> None:
    """Collect, then move everything alive out of the cycle collector's reach (``gc.freeze``).

    The model, the app and the libraries stay alive for the process's life, yet a full
    collection scans them all: ~50 ms on the event loop for the gateway's heap, several times a
    minute under load, and every request in flight waits it out (that is the p99). Frozen, a full
    collection costs well under a millisecond. Objects still die by reference count as usual;
    only cycles among frozen objects wait for the next settle (at each reload).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Gateway:
    """State of one gateway worker.

    Args:
        model_path: the weights file (read again on reload).
        config_path: ``router.toml`` (read again on reload).
        environ: where key variables are read (default ``os.environ``, at each (re)load).
        workers: worker processes sharing budgets (each enforces its share).
        snapshot: an already loaded snapshot to start with (else loaded at start).
        freeze_heap: settle the heap (:func:`settle_heap`) once started and after each reload;
            for a server process (it affects the whole process, so tests leave it off).
    """

    def __init__(
        self,
        model_path: str,
        config_path: str,
        *,
        environ: Mapping[str, str] | None = None,
        workers: int = 1,
        snapshot: Snapshot | None = None,
        freeze_heap: bool = False,
    ) -> None:
        self.model_path = model_path
        self.freeze_heap = freeze_heap
        self.config_path = config_path
        self.environ = environ
        self.workers = workers
        self._snapshot = snapshot
        self.metrics = Metrics()
        self.spend = SpendBook(workers)
        self.sessions = SessionStore(100_000, 3600.0)
        self.executor: ThreadPoolExecutor | None = None
        self.batcher: Batcher | None = None
        self.client: aiohttp.ClientSession | None = None
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[object]] = set()

    @property
    def snapshot(self) -> Snapshot:
        """The pair serving new requests (a request keeps the one it started with)."""
        assert self._snapshot is not None, "the gateway has not started"
        return self._snapshot

    async def start(self) -> None:
        """Load the snapshot (if not given) and open the batcher and the upstream client."""
        loop = asyncio.get_running_loop()
        if self._snapshot is None:
            self._snapshot = await loop.run_in_executor(
                None, lambda: load_snapshot(self.model_path, self.config_path, environ=self.environ)
            )
        snap = self._snapshot
        server = snap.config.server
        self.executor = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="irt-serve"
        )
        self.batcher = Batcher(
            server.batch_window_ms, server.max_batch, self.executor, self._observe
        )
        self.client = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=server.max_connections),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=server.timeout_s),
            # proxies are read from the environment once, with the config (serve/proxy.py)
            trust_env=False,
        )
        self._install(snap)
        log.info(
            "serving %s (sha256 %s, %d LLMs, embedder %s) with %s: %d upstream(s), %s loop%s",
            snap.model_path,
            snap.sha256[:12],
            snap.model.n_llms,
            snap.model.embedder["name"],
            snap.config_path,
            len(snap.config.upstreams),
            type(loop).__module__.split(".")[0],
            "" if snap.config.tokens else "; no authentication ([auth] api_keys_env unset)",
        )
        if self.freeze_heap:
            settle_heap()

    async def stop(self) -> None:
        """Close what start opened (in-flight requests have finished: uvicorn drains first)."""
        for task in list(self._tasks):
            task.cancel()
        if self.batcher is not None:
            await self.batcher.close()
        if self.client is not None:
            await self.client.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.metrics.close()

    def _install(self, snap: Snapshot) -> None:
        server = snap.config.server
        self._snapshot = snap
        self.sessions.configure(server.max_sessions, server.session_ttl_s)
        if self.batcher is not None:
            self.batcher.configure(server.batch_window_ms, server.max_batch)
        self.metrics.set_model(snap.sha256, snap.model.embedder["name"])

    def _observe(self, s: BatchStats) -> None:
        m = self.metrics
        m.batch_rows.observe(s.rows)
        m.embed_stage.observe(s.embed_s)
        m.engine_stage.observe(s.engine_s)
        for w in s.waits_s:
            m.queue_stage.observe(w)

    # ------------------------------------------------------------------------------- scoring

    def arrival(self) -> Arrival:
        """Announce a request that will be scored (see :class:`~irt_fast.serve.routing.Batcher`)."""
        assert self.batcher is not None
        return self.batcher.arrival()

    async def score(
        self,
        snap: Snapshot,
        *,
        texts: list[str] | None = None,
        x: np.ndarray | None = None,
        arrival: Arrival | None = None,
    ) -> np.ndarray:
        """P(correct) from ``snap``'s model, through the batcher.

        Args:
            snap: the snapshot the request started on.
            texts: texts to embed, or
            x: float32 embeddings ``[rows, embed_dim]``.
            arrival: the request's batcher announcement (closed here).

        Returns:
            float32 ``[rows, n_llms]``.
        """
        assert self.batcher is not None
        return await self.batcher.submit(snap.scorer, texts=texts, x=x, arrival=arrival)

    # ------------------------------------------------------------------------------- auth

    def authorized(self, header: str | None) -> bool:
        """Whether a request may pass.

        Args:
            header: its ``Authorization`` header.

        Returns:
            True for an accepted bearer token, or when no tokens are configured.
        """
        tokens = self.snapshot.config.tokens
        if not tokens:
            return True
        if not header or not header.lower().startswith("bearer "):
            return False
        given = header[7:].strip().encode()
        ok = False
        for t in tokens:  # every token compared, in constant time each
            ok |= hmac.compare_digest(given, t.reveal().encode())
        return ok

    # ------------------------------------------------------------------------------- reload

    async def reload(self, source: str) -> tuple[bool, str]:
        """Load the model and config files again, validate, warm and swap.

        A broken file or config is refused, logged and counted; the old pair keeps serving.

        Args:
            source: what asked (``SIGHUP``, ``POST /admin/reload``), for the log.

        Returns:
            (whether the new pair now serves, a message).
        """
        loop = asyncio.get_running_loop()
        async with self._reload_lock:
            try:
                snap = await loop.run_in_executor(
                    None,
                    lambda: load_snapshot(self.model_path, self.config_path, environ=self.environ),
                )
                if snap.config.upstreams and not snap.scorer.can_embed:
                    raise IrtFastError(
                        f"the model's embedder is unavailable: {snap.scorer.embedder_error}"
                    )
            except (IrtFastError, OSError, ValueError) as e:
                self.metrics.reloads.labels("error").inc()
                msg = f"reload refused, still serving sha256 {self.snapshot.sha256[:12]}: {describe(e)}"
                log.error("%s (asked by %s)", msg, source)
                return False, msg
            old = self.snapshot.sha256
            self._install(snap)
            if self.freeze_heap:
                settle_heap()
            self.metrics.reloads.labels("ok").inc()
            msg = f"reloaded: sha256 {old[:12]} -> {snap.sha256[:12]}, {len(snap.config.upstreams)} upstream(s)"
            log.info("%s (asked by %s)", msg, source)
            return True, msg

    def reload_soon(self, source: str) -> None:
        """Start a reload from a signal handler (the task is kept until it ends)."""
        task = asyncio.get_running_loop().create_task(self.reload(source))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
