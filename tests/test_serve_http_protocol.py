"""The gateway's HTTP plumbing: one socket write per response, no reset for a request a
retiring worker had accepted, and the busiest endpoints answered without Starlette's router
(everything else still through it)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httptools")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from test_engine_fixtures import config, write  # noqa: E402
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.server import ServerState  # noqa: E402

from irt_fast.serve import http_protocol as http_protocol_module  # noqa: E402
from irt_fast.serve.app import create_app  # noqa: E402
from irt_fast.serve.http_protocol import (  # noqa: E402
    FLUSH_BYTES,
    CoalescingTransport,
    GatewayHttpProtocol,
)
from irt_fast.serve.launch import http_protocol  # noqa: E402

REQUEST = b"GET /%s HTTP/1.1\r\nhost: t\r\n\r\n"


class FakeTransport(asyncio.Transport):
    """Records every write; enough of a socket transport for uvicorn's protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_writes_of_one_loop_turn_leave_as_one():
    async def main() -> None:
        real = FakeTransport()
        t = CoalescingTransport(real, asyncio.get_running_loop())
        t.write(b"head ")
        t.writelines([b"bo", memoryview(b"dy")])
        t.write(b"")
        assert real.writes == [] and t.get_write_buffer_size() == 9
        await asyncio.sleep(0)
        assert real.writes == [b"head body"]
        t.write(b"next")  # a later turn is a later write
        await asyncio.sleep(0)
        assert real.writes == [b"head body", b"next"]
        t.write(b"x" * FLUSH_BYTES)  # a large write does not wait for the turn to end
        assert len(real.writes) == 3
        t.write(b"last")
        t.close()  # a close sends what is pending first
        assert real.writes[-1] == b"last" and real.closed
        await asyncio.sleep(0)  # the scheduled flush finds nothing and writes nothing
        assert len(real.writes) == 4

    asyncio.run(main())


def test_pending_bytes_are_dropped_on_abort_and_on_a_closing_transport():
    async def main() -> None:
        real = FakeTransport()
        t = CoalescingTransport(real, asyncio.get_running_loop())
        t.write(b"lost")
        t.abort()
        await asyncio.sleep(0)
        assert real.writes == [] and real.aborted
        real2 = FakeTransport()
        t2 = CoalescingTransport(real2, asyncio.get_running_loop())
        t2.write(b"late")
        real2.closed = True  # the peer went away before the turn ended
        await asyncio.sleep(0)
        assert real2.writes == []
        assert t2.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is the real one's

    asyncio.run(main())


async def _slow_stream() -> Any:
    for part in (b"data: 1\n\n", b"data: 2\n\n"):
        yield part
        await asyncio.sleep(0.01)


def _served(protocol: type[HttpToolsProtocol], path: str) -> list[bytes]:
    """The writes uvicorn's protocol makes on its transport to answer one GET ``path``."""

    async def json_answer(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def stream_answer(request: Any) -> StreamingResponse:
        return StreamingResponse(_slow_stream(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/json", json_answer), Route("/stream", stream_answer)])

    async def main() -> list[bytes]:
        cfg = uvicorn.Config(app, log_level="warning", lifespan="off")
        cfg.load()
        proto = protocol(config=cfg, server_state=ServerState(), app_state={})
        real = FakeTransport()
        proto.connection_made(real)
        proto.data_received(REQUEST % path.encode())
        for _ in range(200):
            await asyncio.sleep(0.002)
            if proto.cycle is not None and proto.cycle.response_complete:
                break
        await asyncio.sleep(0.01)
        proto.connection_lost(None)
        return real.writes

    return asyncio.run(main())


def test_a_json_response_leaves_in_one_write_and_a_stream_chunk_by_chunk():
    plain = _served(HttpToolsProtocol, "json")
    assert len(plain) == 2  # uvicorn's own: the head, then the body
    one = _served(GatewayHttpProtocol, "json")
    assert len(one) == 1 and one[0] == b"".join(plain)
    assert one[0].startswith(b"HTTP/1.1 200") and one[0].endswith(b'{"ok":true}')
    # a stream: the head rides with the first event, later events leave as they come
    chunks = _served(GatewayHttpProtocol, "stream")
    assert len(chunks) == 3, chunks
    assert chunks[0].startswith(b"HTTP/1.1 200") and b"data: 1" in chunks[0]
    assert b"data: 2" in chunks[1] and chunks[2] == b"0\r\n\r\n"


def test_the_command_serves_with_the_coalescing_protocol():
    assert http_protocol() == "irt_fast.serve.http_protocol:GatewayHttpProtocol"
    assert uvicorn.importer.import_from_string(http_protocol()) is GatewayHttpProtocol


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def _request_then_shutdown(protocol: type[HttpToolsProtocol]) -> bytes:
    """A client whose request is in the server's socket buffer, not yet read, when the server
    shuts its connections down (as a retiring worker does); what the client then reads."""
    cfg = uvicorn.Config(_ok, log_level="warning", lifespan="off")
    cfg.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: protocol(config=cfg, server_state=state, app_state={}), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(500):  # until the server has accepted the connection
            if state.connections:
                break
            await asyncio.sleep(0.002)
        writer.write(b"POST /v1/route HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}")
        server.close()  # in the same loop turn: the server has not read the request yet
        for conn in list(state.connections):
            conn.shutdown()
        try:
            answer = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            answer = b"reset"
        writer.close()
        return answer
    finally:
        server.close()


def test_a_retiring_server_answers_a_request_it_had_accepted_but_not_read():
    """uvicorn's own protocol closes such a connection with the request unread (the kernel
    answers with a reset, the client loses the request); the gateway's answers it."""
    theirs = asyncio.run(_request_then_shutdown(HttpToolsProtocol))
    assert theirs in (b"reset", b""), theirs  # the failure this guards against
    ours = asyncio.run(_request_then_shutdown(GatewayHttpProtocol))
    assert ours.startswith(b"HTTP/1.1 200"), ours
    assert b"connection: close" in ours.lower() and ours.endswith(b"ok")  # then closed (EOF)


def test_a_retiring_server_still_closes_idle_connections(monkeypatch):
    """A connection that shows no request within the grace period is closed; one whose
    request is in progress finishes it first."""
    monkeypatch.setattr(http_protocol_module, "DRAIN_GRACE_S", 0.05)

    async def main() -> None:
        cfg = uvicorn.Config(_ok, log_level="warning", lifespan="off")
        cfg.load()
        idle = GatewayHttpProtocol(config=cfg, server_state=ServerState(), app_state={})
        real = FakeTransport()
        idle.connection_made(real)
        idle.shutdown()
        assert not real.closed  # not at once: a request may be on its way
        await asyncio.sleep(0.1)
        assert real.closed and real.writes == []
        partial = GatewayHttpProtocol(config=cfg, server_state=ServerState(), app_state={})
        real2 = FakeTransport()
        partial.connection_made(real2)
        partial.data_received(b"POST /x HTTP/1.1\r\nhost: t\r\ncontent-le")  # half a request
        partial.shutdown()
        await asyncio.sleep(0.1)
        assert not real2.closed  # the rest of the request is still awaited
        partial.data_received(b"ngth: 2\r\n\r\n{}")
        await asyncio.sleep(0.05)
        assert real2.closed and real2.writes and real2.writes[0].startswith(b"HTTP/1.1 200")
        assert b"connection: close" in real2.writes[0].lower()

    asyncio.run(main())


def test_hot_endpoints_skip_the_router_and_the_rest_still_use_it(tmp_path):
    """POST /v1/route and GET /healthz are answered without Starlette's middleware stack;
    another path, another method or an error still get Starlette's (404, 405, 4xx bodies)."""
    model = write(tmp_path / "m.safetensors", config(n_llms=3))
    cfg = tmp_path / "router.toml"
    cfg.write_text("[server]\nbatch_window_ms = 0\n")
    app = create_app(str(model), str(cfg))
    through: list[str] = []
    stack = app.build_middleware_stack()

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            through.append(f"{scope['method']} {scope['path']}")
        await stack(scope, receive, send)

    app.middleware_stack = recording  # type: ignore[assignment]
    dim = config(n_llms=3)["embed_dim"]

    async def main() -> dict[str, httpx.Response]:
        out = {}
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                out["route"] = await c.post("/v1/route", json={"embeddings": [[0.1] * dim]})
                out["bad"] = await c.post("/v1/route", json={"embeddings": [[0.1] * (dim + 1)]})
                out["health"] = await c.get("/healthz")
                out["models"] = await c.get("/v1/models")
                out["get_route"] = await c.get("/v1/route")
                out["nowhere"] = await c.post("/v1/nowhere", json={})
        return out

    r = asyncio.run(main())
    assert r["route"].status_code == 200 and len(r["route"].json()["llms"]) == 1
    assert r["bad"].status_code == 400 and "embed_dim" in r["bad"].json()["error"]["message"]
    assert r["health"].status_code == 200 and r["health"].json()["status"] == "ok"
    assert r["models"].status_code == 200
    assert r["get_route"].status_code == 405 and r["nowhere"].status_code == 404
    assert through == ["GET /v1/models", "GET /v1/route", "POST /v1/nowhere"]
