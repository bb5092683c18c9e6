"""A local OpenAI-compatible upstream that answers at once: for the gateway's tests and
benchmarks, and to try the gateway without any API key.

    python -m irt_fast.serve.stub --port 9001 --name small

``POST /v1/chat/completions`` answers ``"answer from <name>"`` (streamed when asked, with a
usage chunk when ``stream_options.include_usage`` is set) and records what it received
(headers and body). Control endpoints, for tests: ``GET /_stub/requests`` (the records),
``DELETE /_stub/requests``, ``POST /_stub/mode {"mode": ..., "delay": s}`` where mode is
``ok``, ``500``, ``429``, ``401_echo`` (a 401 whose body echoes the Authorization header, as
some providers do), ``slow`` (waits ``delay`` seconds first), ``break`` (a stream cut after its
second chunk) or ``tool`` (answers a user turn with a tool call).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

MODES = ("ok", "500", "429", "401_echo", "slow", "break", "tool")
USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}


def _json(obj: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status, media_type="application/json")


def stub_app(name: str, mode: str = "ok", delay: float = 0.0, record: bool = True) -> Starlette:
    """The stub upstream.

    Args:
        name: says who answered (in every answer's content).
        mode: the initial behaviour (see the module docstring).
        delay: seconds the ``slow`` mode waits.
        record: keep every request (tests); off for load tests.

    Returns:
        The Starlette app.
    """
    state: dict[str, Any] = {"mode": mode, "delay": delay, "records": []}

    async def completions(request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw)
        if record:
            state["records"].append(
                {"headers": dict(request.headers), "body": body, "time": time.time()}
            )
        m = state["mode"]
        if m == "slow":
            await asyncio.sleep(state["delay"])
        if m == "500":
            return _json({"error": {"message": "upstream exploded", "type": "server_error"}}, 500)
        if m == "429":
            return _json({"error": {"message": "slow down", "type": "rate_limit"}}, 429)
        if m == "401_echo":
            got = request.headers.get("authorization", "")
            return _json({"error": {"message": f"Incorrect API key provided: {got}"}}, 401)
        messages = body.get("messages") or [{}]
        tool = m == "tool" and messages[-1].get("role") == "user"
        if body.get("stream"):
            opts = body.get("stream_options") or {}
            return StreamingResponse(
                _chunks(
                    name, body.get("model", ""), tool, bool(opts.get("include_usage")), m == "break"
                ),
                media_type="text/event-stream",
            )
        return _json(_completion(name, body.get("model", ""), tool))

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            state["records"].clear()
            return _json({"cleared": True})
        return _json(state["records"])

    async def set_mode(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if body.get("mode") not in MODES:
            return _json({"error": {"message": f"mode must be one of {MODES}"}}, 400)
        state["mode"] = body["mode"]
        state["delay"] = float(body.get("delay", state["delay"]))
        return _json({"mode": state["mode"]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/_stub/requests", requests, methods=["GET", "DELETE"]),
            Route("/_stub/mode", set_mode, methods=["POST"]),
        ]
    )


def _tool_call() -> dict[str, Any]:
    return {
        "id": "call_" + uuid.uuid4().hex[:16],
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
    }


def _completion(name: str, model: str, tool: bool) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": None if tool else f"answer from {name}"}
    if tool:
        msg["tool_calls"] = [_tool_call()]
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": msg, "finish_reason": "tool_calls" if tool else "stop"}
        ],
        "usage": USAGE,
    }


async def _chunks(
    name: str, model: str, tool: bool, usage: bool, broken: bool
) -> AsyncIterator[bytes]:
    cid, created = "chatcmpl-" + uuid.uuid4().hex[:12], int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        c = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(c) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    if tool:
        call = _tool_call()
        yield chunk({"tool_calls": [{"index": 0, **call}]})
        yield chunk({}, "tool_calls")
    else:
        for i, word in enumerate(["answer ", "from ", name]):
            if broken and i == 1:
                await asyncio.sleep(0.05)
                raise ConnectionError("stub: stream cut on purpose")
            yield chunk({"content": word})
        yield chunk({}, "stop")
    if usage:
        c = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": USAGE,
        }
        yield b"data: " + orjson.dumps(c) + b"\n\n"
    yield b"data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m irt_fast.serve.stub``: run one stub upstream."""
    import uvicorn

    ap = argparse.ArgumentParser(description="a local OpenAI-compatible stub upstream")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9001)
    ap.add_argument("--name", default="stub")
    ap.add_argument("--mode", default="ok", choices=MODES)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--no-record", action="store_true", help="keep no records (load tests)")
    a = ap.parse_args(argv)
    app = stub_app(a.name, a.mode, a.delay, record=not a.no_record)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
