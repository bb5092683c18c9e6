"""``irt-fast serve --model M.safetensors --config router.toml``: the OpenAI-compatible routing
gateway (needs the ``serve`` extra; the command is listed without it and says what to install).

The model and the config are loaded and checked before the server starts: a bad key, an
unknown LLM or a missing environment variable is ``error: ...`` and exit status 2, and nothing
listens. With ``--workers N`` uvicorn runs N processes; each keeps its own sessions and spend
(budgets are split N ways) and Prometheus metrics are summed across them.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any

from irt_fast.cli._common import EXIT_BAD_INPUT, guarded

#: What the serve extra brings (import names), checked before anything is loaded.
NEEDS = ("starlette", "uvicorn", "aiohttp", "pydantic", "prometheus_client", "orjson")


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand to ``sub`` (an argparse subparsers object)."""
    s = sub.add_parser(
        "serve",
        help="run the OpenAI-compatible routing gateway",
        description=(
            "Serve a model as an OpenAI-compatible gateway: POST /v1/chat/completions with "
            "model 'irt-router' picks the LLM of the pool per request and forwards the call to "
            "it (streams, fallbacks, budgets, sessions); /v1/route and /v1/predict_accuracy "
            "answer with the model alone. SIGHUP or POST /admin/reload loads the model and "
            "config again without a restart. See docs/serving.md."
        ),
    )
    s.add_argument("--model", required=True, help="the weights file (.safetensors)")
    s.add_argument("--config", required=True, help="the gateway's router.toml")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    s.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    s.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per request (method, path, status; never bodies or headers)",
    )
    s.set_defaults(run=guarded(run))


def missing_extra() -> list[str]:
    """The serve extra's packages that are not installed."""
    return [m for m in NEEDS if importlib.util.find_spec(m) is None]


def run(args: argparse.Namespace) -> int:
    """Run ``serve`` until interrupted; 0 on a clean stop."""
    missing = missing_extra()
    if missing:
        print(
            f"error: irt-fast serve needs the serve extra (missing: {', '.join(missing)}): "
            "pip install 'irt_fast[serve]'",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if not 1 <= args.workers <= 256:
        print("error: --workers must be between 1 and 256", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 0 <= args.port <= 65535:
        print("error: --port must be between 0 and 65535", file=sys.stderr)
        return EXIT_BAD_INPUT
    # The embedder's tokenizer would otherwise spawn threads per batch, on cores the engine
    # and the other workers need.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from irt_fast.serve.launch import serve

    return serve(args)
