"""Starting the gateway under uvicorn (what ``irt-fast serve`` runs after its checks).

One worker: the app is built in this process around the snapshot the command already loaded
and checked, and served by ``uvicorn.Server`` (SIGHUP reloads it). Several workers: uvicorn's
supervisor starts N processes that each build their app from the environment
(:func:`irt_fast.serve.app.app_from_env`); SIGHUP to the supervisor replaces them one by one
(each new worker loads and checks the files; a broken pair keeps the old workers serving).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import inspect
import logging
import os
import shutil
import tempfile
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from irt_fast.errors import EmbedderError
from irt_fast.serve.app import ENV_CONFIG, ENV_MODEL, ENV_SUPERVISOR, ENV_WORKERS, create_app
from irt_fast.serve.snapshot import load_snapshot

#: Seconds a new worker may take to load the model before uvicorn gives up on it.
WORKER_START_S = 300


def logging_config(level: str) -> dict[str, Any]:
    """uvicorn's logging set-up, with the gateway's own logger on the same handler.

    Args:
        level: the log level name.

    Returns:
        A ``logging.config.dictConfig`` dictionary.
    """
    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["loggers"]["irt_fast.serve"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return cfg


def http_protocol() -> str:
    """uvicorn's HTTP protocol: the gateway's httptools protocol (one write per response, no
    reset when a worker retires; :mod:`irt_fast.serve.http_protocol`) when httptools is
    installed, else uvicorn's own choice."""
    if importlib.util.find_spec("httptools") is None:
        return "auto"
    return "irt_fast.serve.http_protocol:GatewayHttpProtocol"


def serve(args: argparse.Namespace) -> int:
    """Load and check the model and config, then serve until interrupted.

    Args:
        args: the parsed ``irt-fast serve`` command line.

    Returns:
        The exit status (0 after a clean stop).
    """
    snap = load_snapshot(args.model, args.config)
    if snap.config.upstreams and not snap.scorer.can_embed:
        raise EmbedderError(
            f"the model's embedder is needed to route chat completions: {snap.scorer.embedder_error}"
        )
    common: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": args.access_log,
        "log_config": logging_config(args.log_level),
        "timeout_graceful_shutdown": int(max(snap.config.server.timeout_s, 1)) + 5,
        "http": http_protocol(),
    }
    if args.workers == 1:
        app = create_app(snapshot=snap, freeze_heap=True)
        server = uvicorn.Server(uvicorn.Config(app, **common))
        server.run()
        return 0 if server.started else 1
    del snap  # each worker loads its own
    return _serve_workers(args, common)


def _serve_workers(args: argparse.Namespace, common: dict[str, Any]) -> int:
    env_keys = (ENV_MODEL, ENV_CONFIG, ENV_WORKERS, ENV_SUPERVISOR, "PROMETHEUS_MULTIPROC_DIR")
    saved = {k: os.environ.get(k) for k in env_keys}
    metrics_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.mkdtemp(prefix="irt-serve-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[ENV_MODEL] = os.path.abspath(args.model)
    os.environ[ENV_CONFIG] = os.path.abspath(args.config)
    os.environ[ENV_WORKERS] = str(args.workers)
    os.environ[ENV_SUPERVISOR] = str(os.getpid())
    extra: dict[str, Any] = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        extra["timeout_worker_healthcheck"] = WORKER_START_S
    try:
        uvicorn.run(
            "irt_fast.serve.app:app_from_env",
            factory=True,
            workers=args.workers,
            **common,
            **extra,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    logging.getLogger("irt_fast.serve").info("stopped")
    return 0
