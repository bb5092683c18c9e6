"""The gateway's Starlette app: routes, lifespan, authentication, limits, errors and metrics.

Built by a factory (:func:`create_app`) whose lifespan loads the model and opens the batcher
and the upstream client, and closes them at shutdown (uvicorn lets in-flight requests finish
first). Nothing is global at import time. ``irt-fast serve --workers N`` starts N processes
that each build their app with :func:`app_from_env`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from irt_fast.errors import EmbedderError, IrtFastError
from irt_fast.serve import chat, route_api
from irt_fast.serve.gateway import Gateway, describe
from irt_fast.serve.metrics import CONTENT_TYPE
from irt_fast.serve.routing import Arrival
from irt_fast.serve.schemas import ROUTER_MODEL, ApiError, parse_json
from irt_fast.serve.snapshot import Snapshot

log = logging.getLogger("irt_fast.serve")

#: Environment of the worker processes started by ``irt-fast serve --workers N``.
ENV_MODEL, ENV_CONFIG, ENV_WORKERS = "IRT_SERVE_MODEL", "IRT_SERVE_CONFIG", "IRT_SERVE_WORKERS"
ENV_SUPERVISOR = "IRT_SERVE_SUPERVISOR_PID"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}

Handler = Callable[[Request, Arrival | None], Awaitable[Response]]


def json_response(
    obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response serialised by orjson (numpy arrays included).

    Args:
        obj: what to serialise.
        status: the HTTP status.
        headers: extra response headers.

    Returns:
        The response.
    """
    return Response(
        orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY),
        status,
        dict(headers) if headers else None,
        media_type="application/json",
    )


def error_response(e: ApiError) -> Response:
    """The OpenAI-shaped error response of ``e`` (its status and body)."""
    return json_response(e.body(), e.status)


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON.

    Args:
        request: the request.
        limit: the most bytes accepted (413 beyond, checked before and while reading).

    Returns:
        The parsed body.

    Raises:
        ApiError: 413 over the limit, 400 for an empty or malformed body.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is over {limit} bytes (server.max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over {limit} bytes (server.max_body_bytes)")
        chunks.append(chunk)
    if not size:
        raise ApiError(400, "the request body is empty: send a JSON object")
    return parse_json(b"".join(chunks))


def create_app(
    model_path: str | None = None,
    config_path: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    workers: int = 1,
    snapshot: Snapshot | None = None,
    freeze_heap: bool = False,
) -> GatewayApp:
    """The gateway app.

    Args:
        model_path: the weights file (also read again by hot reload).
        config_path: ``router.toml`` (also read again by hot reload).
        environ: where the config's key variables are read (default ``os.environ``).
        workers: worker processes sharing budgets (each enforces ``budget_usd / workers``).
        snapshot: an already loaded (model, config) pair to serve first (the command loads
            and validates it before the server starts).
        freeze_heap: keep the long-lived heap out of the cycle collector
            (:func:`~irt_fast.serve.gateway.settle_heap`); the command sets it.

    Returns:
        The Starlette app; its lifespan loads the model (unless given) and opens the clients.
    """
    if snapshot is not None:
        model_path, config_path = snapshot.model_path, snapshot.config_path
    if model_path is None or config_path is None:
        raise IrtFastError("create_app needs model_path and config_path (or a snapshot)")
    gw = Gateway(
        model_path,
        config_path,
        environ=environ,
        workers=workers,
        snapshot=snapshot,
        freeze_heap=freeze_heap,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        hup = _watch_sighup(gw)
        try:
            yield
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await gw.stop()

    def endpoint(name: str, fn: Handler, *, auth: bool = True, scored: bool = False) -> Any:
        m = gw.metrics

        async def handle(request: Request) -> Response:
            t0 = time.perf_counter()
            status = 500
            arrival = gw.arrival() if scored else None
            try:
                if auth and not gw.authorized(request.headers.get("authorization")):
                    raise ApiError(
                        401, "missing or invalid bearer token (Authorization: Bearer <token>)",
                        kind="authentication_error",
                    )  # fmt: skip
                response = await fn(request, arrival)
            except ApiError as e:
                response = error_response(e)
            except EmbedderError as e:
                response = error_response(ApiError(503, describe(e), kind="server_error"))
            except IrtFastError as e:  # a typed input error the checks above did not catch
                response = error_response(ApiError(400, describe(e)))
            except Exception:
                log.exception("internal error answering %s", name)
                response = error_response(
                    ApiError(500, "internal error (logged)", kind="server_error")
                )
            finally:
                if arrival is not None:
                    arrival.close()
            status = response.status_code
            m.requests.labels(name, status).inc()
            m.duration.labels(name, status).observe(time.perf_counter() - t0)
            return response

        return handle

    def limit() -> int:
        return gw.snapshot.config.server.max_body_bytes

    async def route(request: Request, arrival: Arrival | None) -> Response:
        assert arrival is not None
        body = await read_json(request, limit())
        return json_response(await route_api.route(gw, body, arrival))

    async def accuracy(request: Request, arrival: Arrival | None) -> Response:
        assert arrival is not None
        body = await read_json(request, limit())
        return json_response(await route_api.predict_accuracy(gw, body, arrival))

    async def completions(request: Request, arrival: Arrival | None) -> Response:
        assert arrival is not None
        body = await read_json(request, limit())
        return await chat.chat_completion(gw, body, request.headers.get("x-irt-session"), arrival)

    async def models(request: Request, arrival: Arrival | None) -> Response:
        return json_response(_models(gw))

    async def healthz(request: Request, arrival: Arrival | None) -> Response:
        snap = gw.snapshot
        return json_response({"status": "ok", "sha256": snap.sha256, "llms": snap.model.n_llms})

    async def metrics(request: Request, arrival: Arrival | None) -> Response:
        return Response(gw.metrics.render(), media_type=CONTENT_TYPE)

    async def reload(request: Request, arrival: Arrival | None) -> Response:
        host = request.client.host if request.client else ""
        if not gw.snapshot.config.tokens and host not in LOOPBACK:
            raise ApiError(
                403, "without [auth] tokens, reload is only accepted from this machine",
                kind="authentication_error",
            )  # fmt: skip
        ok, message = await gw.reload("POST /admin/reload")
        if not ok:
            raise ApiError(409, message, kind="reload_refused")
        supervisor = os.environ.get(ENV_SUPERVISOR)
        if supervisor and supervisor.isdigit() and gw.workers > 1:
            os.kill(int(supervisor), signal.SIGHUP)  # uvicorn restarts every worker in turn
            message += f"; restarting all {gw.workers} workers one by one"
        return json_response({"reloaded": True, "message": message, "sha256": gw.snapshot.sha256})

    open_metrics = endpoint("/metrics", metrics, auth=False)
    closed_metrics = endpoint("/metrics", metrics)

    async def metrics_route(request: Request) -> Response:
        public = gw.snapshot.config.metrics_public
        return await (open_metrics if public else closed_metrics)(request)

    hot = {
        ("/v1/route", "POST"): endpoint("/v1/route", route, scored=True),
        ("/v1/predict_accuracy", "POST"): endpoint("/v1/predict_accuracy", accuracy, scored=True),
        ("/v1/chat/completions", "POST"): endpoint("/v1/chat/completions", completions, scored=True),
        ("/healthz", "GET"): endpoint("/healthz", healthz, auth=False),
    }  # fmt: skip
    routes = [Route(path, fn, methods=[method]) for (path, method), fn in hot.items()]
    routes += [
        Route("/v1/models", endpoint("/v1/models", models), methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/admin/reload", endpoint("/admin/reload", reload), methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(
            ApiError(exc.status_code, str(exc.detail), kind="invalid_request_error")
        )

    app = GatewayApp(
        hot, routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.gateway = gw
    return app


class GatewayApp(Starlette):
    """Starlette, with the busiest endpoints called directly.

    A request whose exact path and method is in ``hot`` goes straight to its handler, which
    already answers every error itself (see ``endpoint`` in :func:`create_app`); Starlette's
    middleware stack and router (about a tenth of the Python calls of a forwarded chat
    completion) are skipped. Anything else (other paths or methods, a ``root_path``, the
    lifespan) goes through Starlette as usual, so a miss only costs the lookup.
    """

    def __init__(
        self, hot: Mapping[tuple[str, str], Callable[[Request], Awaitable[Response]]], **kw: Any
    ) -> None:
        super().__init__(**kw)
        self.hot = dict(hot)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            handle = self.hot.get((scope["path"], scope["method"]))
            if handle is not None:
                scope["app"] = self
                response = await handle(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _watch_sighup(gw: Gateway) -> bool:
    """Reload on SIGHUP (main thread of a Unix process only). Returns whether it is installed."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, gw.reload_soon, "SIGHUP")
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def _models(gw: Gateway) -> dict[str, Any]:
    snap = gw.snapshot
    cfg = snap.config
    data: list[dict[str, Any]] = [
        {
            "id": ROUTER_MODEL,
            "object": "model",
            "created": 0,
            "owned_by": "irt_fast",
            "candidates": gw.spend.available(cfg.candidates, cfg.upstreams),
            "rule": {"lam": cfg.routing.lam, "margin": cfg.routing.margin},
        }
    ]
    for name, up in cfg.upstreams.items():
        data.append(
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "irt_fast",
                "upstream_model": up.model_id,
                "prices": {
                    "input_per_mtok": up.input_per_mtok,
                    "output_per_mtok": up.output_per_mtok,
                    "cost_per_query": up.cost_per_query,
                },
                "spend_usd": gw.spend.spent(name),
                "budget_usd": gw.spend.share(up),
                "available": not gw.spend.exhausted(up),
            }
        )
    return {"object": "list", "data": data, "model": snap.info()}


def app_from_env() -> Starlette:
    """The app of one worker process of ``irt-fast serve --workers N`` (uvicorn's factory):
    paths and the worker count come from ``IRT_SERVE_MODEL``, ``IRT_SERVE_CONFIG`` and
    ``IRT_SERVE_WORKERS``."""
    model, config = os.environ.get(ENV_MODEL), os.environ.get(ENV_CONFIG)
    if not model or not config:
        raise IrtFastError(f"{ENV_MODEL} and {ENV_CONFIG} must name the model and config files")
    workers = int(os.environ.get(ENV_WORKERS, "1") or 1)
    return create_app(model, config, workers=workers, freeze_heap=True)
