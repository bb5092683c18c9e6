"""The gateway's Prometheus metrics (``GET /metrics``), named as text-embeddings-inference
names its own: ``_total`` counters, ``_seconds`` histograms, one ``irt_serve_`` prefix.

One :class:`Metrics` per app (tests build several apps in one process, each with its own
registry). With several worker processes (``PROMETHEUS_MULTIPROC_DIR`` set, as ``irt-fast
serve --workers N`` does) prometheus-client's multiprocess mode sums the workers' counters and
histograms on every scrape, whichever worker answers it.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: Request and stage durations: sub-millisecond to a minute.
SECONDS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip
ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess() -> bool:
    """Whether metrics are shared between worker processes (prometheus-client's mode)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """Every metric of one gateway app."""

    def __init__(self) -> None:
        self.shared = multiprocess()
        # In multiprocess mode values live in files per process and are collected at scrape
        # time; registering them too would report this process twice.
        self.registry = CollectorRegistry()
        reg = None if self.shared else self.registry
        p = "irt_serve_"
        self.requests = Counter(
            p + "requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
            registry=reg,
        )  # fmt: skip
        self.duration = Histogram(
            p + "request_duration_seconds",
            "Request latency by endpoint and status (streams: until the stream starts)",
            ["endpoint", "status"],
            buckets=SECONDS,
            registry=reg,
        )
        self.decisions = Counter(
            p + "decisions",
            "LLM chosen for a chat completion, by why (routed, session, tool, direct)",
            ["llm", "reason"],
            registry=reg,
        )
        self.batch_rows = Histogram(
            p + "batch_size", "Rows (texts or embeddings) scored per engine call", buckets=ROWS,
            registry=reg,
        )  # fmt: skip
        self.stage = Histogram(
            p + "stage_duration_seconds",
            "Time per stage: queue (waiting for a batch), embed, engine (per batch)",
            ["stage"],
            buckets=SECONDS,
            registry=reg,
        )
        # bound once: every batch observes them (labels() takes a lock and a lookup)
        self.queue_stage = self.stage.labels("queue")
        self.embed_stage = self.stage.labels("embed")
        self.engine_stage = self.stage.labels("engine")
        self.upstream_errors = Counter(
            p + "upstream_errors",
            "Failed upstream attempts by LLM and kind (connect, timeout, http_429, http_5xx, "
            "auth, bad_response, stream_broken)",
            ["llm", "kind"],
            registry=reg,
        )
        self.fallbacks = Counter(
            p + "fallbacks", "Requests moved to the next candidate, by the LLM that failed",
            ["llm"], registry=reg,
        )  # fmt: skip
        self.first_byte = Histogram(
            p + "upstream_first_byte_seconds",
            "Time from sending to an upstream to its first byte (successful attempts)",
            ["llm"],
            buckets=SECONDS,
            registry=reg,
        )
        self.spend = Counter(
            p + "spend_usd", "Dollars spent per LLM (usage × prices)", ["llm"], registry=reg
        )
        self.reloads = Counter(
            p + "reloads", "Hot reloads by result (ok, error)", ["result"], registry=reg
        )
        self.model_info = Gauge(
            p + "model_info",
            "The served model file (value 1; sha256 and embedder as labels)",
            ["sha256", "embedder"],
            registry=reg,
            multiprocess_mode="liveall",
        )
        self._info: tuple[str, str] | None = None
        for result in ("ok", "error"):
            self.reloads.labels(result)

    def set_model(self, sha256: str, embedder: str) -> None:
        """Point ``irt_serve_model_info`` at the model now serving."""
        if self._info is not None and self._info != (sha256, embedder):
            if self.shared:  # a file per process: the old series can only be zeroed
                self.model_info.labels(*self._info).set(0)
            else:
                self.model_info.remove(*self._info)
        self._info = (sha256, embedder)
        self.model_info.labels(sha256, embedder).set(1)

    def render(self) -> bytes:
        """The exposition text of every metric (all workers' in multiprocess mode)."""
        if not self.shared:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess as mp

        reg = CollectorRegistry()
        mp.MultiProcessCollector(reg)
        return generate_latest(reg)

    def close(self) -> None:
        """Retire this process's live gauges (multiprocess mode)."""
        if self.shared:
            from prometheus_client import multiprocess as mp

            mp.mark_process_dead(os.getpid())
