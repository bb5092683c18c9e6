"""Where one routed request's CPU time goes, measured in one process without the network (run by
serve_report.py; prints one JSON line):

    python benches/_serve_profile.py MODEL_PATH

Every figure is CPU time (``time.process_time``: all threads of this process), so it does not
count time the process spent waiting for a core on a busy machine. Stages: reading the request
(JSON, schema, text checks), embedding, the engine, the decision and the response's JSON, then
the whole app in process (Starlette, the handler, the batcher and its thread hop) one request at
a time and 32 at a time (one batch); a full cycle collection of the serving heap, with and
without the freeze the command's workers apply; and a chat completion forwarded to a stub upstream (in its
own process, so its CPU is not counted) by name (no routing) and through ``irt-router``. What the
HTTP server adds is the report's CPU per request under load minus the app's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

TEXT = "Which enzyme breaks down starch in the mouth, and at what pH does it work best?"


def cpu_per_call(fn: Callable[[], Any], min_s: float = 1.0) -> float:
    """Median CPU seconds per call over 5 runs of at least ``min_s / 5`` CPU seconds each."""
    fn()
    runs = []
    for _ in range(5):
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < min_s / 5:
            fn()
            n += 1
        runs.append((time.process_time() - t0) / n)
    return float(np.median(runs))


async def _post(app: Any, path: str, body: bytes) -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    done = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(m: dict[str, Any]) -> None:
        nonlocal status
        if m["type"] == "http.response.start":
            status = m["status"]

    await app(scope, receive, send)
    return status


def _stub() -> tuple[subprocess.Popen, str]:
    """A stub upstream (irt_fast.serve.stub) on a free port."""
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    cmd = [sys.executable, "-m", "irt_fast.serve.stub", "--port", str(port), "--no-record"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(url + "/_stub/requests", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the stub upstream did not start")


def profile(model_path: str) -> dict[str, float]:
    import irt_fast
    from irt_fast.serve.app import create_app, json_response
    from irt_fast.serve.gateway import settle_heap
    from irt_fast.serve.route_api import queries
    from irt_fast.serve.routing import Rule, choose
    from irt_fast.serve.schemas import RouteRequest, parse_json, validate
    from irt_fast.serve.snapshot import load_snapshot

    stub, stub_url = _stub()
    names = irt_fast.load(model_path, threads=1).llm_names
    llms = "".join(
        f'[llms."{n}"]\nbase_url = "{stub_url}/v1"\ncost_per_query = {0.001 * (i + 1):.4f}\n'
        for i, n in enumerate(names)
    )
    cfg = Path(tempfile.mkdtemp()) / "router.toml"
    cfg.write_text("[server]\nbatch_window_ms = 2\nengine_threads = 1\n" + llms)
    snap = load_snapshot(model_path, cfg)
    body = orjson.dumps({"texts": [TEXT]})
    texts32 = [f"{TEXT} ({i})" for i in range(32)]
    x1 = snap.scorer.embed([TEXT])
    x32 = snap.scorer.embed(texts32)
    p1 = snap.scorer.proba(x1)
    out: dict[str, float] = {}

    def read() -> None:
        req = validate(RouteRequest, parse_json(body))
        queries(req.texts, req.embeddings, snap)

    out["read_request"] = cpu_per_call(read)
    out["embed_1"] = cpu_per_call(lambda: snap.scorer.embed([TEXT]))
    out["embed_per_text_at_32"] = cpu_per_call(lambda: snap.scorer.embed(texts32)) / 32
    out["engine_1"] = cpu_per_call(lambda: snap.scorer.proba(x1))
    out["engine_per_row_at_32"] = cpu_per_call(lambda: snap.scorer.proba(x32)) / 32

    def answer() -> None:
        pick = choose(p1, None, Rule())
        json_response({"llms": [names[i] for i in pick], "p": p1[0, pick], "model": snap.info()})

    out["decide_and_answer"] = cpu_per_call(answer)

    app = create_app(snapshot=snap)

    messages = [{"role": "user", "content": TEXT}]
    cases = [
        ("app_1_at_a_time", 1, "/v1/route", body),
        ("app_32_at_a_time", 32, "/v1/route", body),
        ("chat_direct", 1, "/v1/chat/completions", orjson.dumps({"model": names[0], "messages": messages})),
        ("chat_routed", 1, "/v1/chat/completions", orjson.dumps({"model": "irt-router", "messages": messages})),
    ]  # fmt: skip

    async def run() -> None:
        async with app.router.lifespan_context(app):
            for k, conc, path, data in cases:

                async def once(conc: int = conc, path: str = path, data: bytes = data) -> None:
                    codes = await asyncio.gather(*[_post(app, path, data) for _ in range(conc)])
                    assert all(c == 200 for c in codes), codes

                await once()
                n, t0 = 0, time.process_time()
                while time.process_time() - t0 < 2.0:
                    await once()
                    n += conc
                out[k] = (time.process_time() - t0) / n
            # a full cycle collection of the serving heap, as the command's workers run it
            # (frozen by settle_heap) and as it would be without that
            out["gc_full"] = cpu_per_call(gc.collect, 0.5)
            settle_heap()
            out["gc_full_frozen"] = cpu_per_call(gc.collect, 0.5)
            gc.unfreeze()

    try:
        asyncio.run(run())
    finally:
        stub.kill()
        stub.wait()
    return out


def main(argv: list[str]) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(json.dumps(profile(argv[0])))


if __name__ == "__main__":
    main(sys.argv[1:])
