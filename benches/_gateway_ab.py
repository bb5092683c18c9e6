"""A/B of two source trees of the gateway: both served at once, driven in turn at fixed rates.

    python benches/_gateway_ab.py MODEL --a OLD_CHECKOUT --b . [--path route|chat]
        [--workers 2] [--rates 2000,3000] [--seconds 10] [--rounds 3]

A change to the gateway is judged against the code before it on this shared host only when
both run in one session, alternating (the host's speed drifts by more than most changes are
worth). ``--a`` and ``--b`` are checkouts with the built extension in ``python/irt_fast``
(``git worktree add /tmp/old HEAD~1`` then copy the ``_core`` library across). For ``route``,
``oha`` posts one text per request to ``/v1/route`` (64 connections, open loop); for ``chat``,
``irt-router`` chat completions go to a stub upstream that answers at once, and the stub is also
called directly in each round, so the latency each tree adds is its p50 minus the stub's.
Prints one line per case (requests/s, p50, p99, the gateway's CPU per request) and the whole
result as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benches import serve_report as sr  # noqa: E402


def serve(tree: str, model: str, cfg: str, workers: int, tmp: Path, name: str) -> sr.Server:
    """The gateway of one source tree (its python/ and root on PYTHONPATH)."""
    base = sr.env
    root = Path(tree).resolve()
    sr.env = lambda: {**base(), "PYTHONPATH": f"{root / 'python'}:{root}"}
    try:
        return sr.gateway(model, cfg, workers, tmp, name)
    finally:
        sr.env = base


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--a", required=True, help="the checkout to compare against")
    p.add_argument("--b", required=True, help="the checkout with the change")
    p.add_argument("--path", choices=("route", "chat"), default="route")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rates", default="2000,3000")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp())
    cfg = "[server]\nbatch_window_ms = 2\nmax_batch = 256\nengine_threads = 1\n"
    stub = None
    if a.path == "chat":
        stub = sr.Server(["-m", "irt_fast.serve.stub", "--port", "{port}", "--no-record"], "/_stub/requests", tmp / "stub.log")  # fmt: skip
        names = sr.llm_names(a.model)
        cfg += "".join(
            f'[llms."{n}"]\nbase_url = "{stub.url}/v1"\ncost_per_query = {0.001 * (i + 1):.4f}\n'
            for i, n in enumerate(names)
        )
        body: dict[str, Any] = {"model": "irt-router", "messages": [{"role": "user", "content": sr.CHAT_TEXT}]}  # fmt: skip
        direct = {**body, "model": names[0]}
        endpoint = "/v1/chat/completions"
    else:
        body, endpoint = {"texts": [sr.CHAT_TEXT]}, "/v1/route"
    servers: dict[str, sr.Server] = {}
    res: dict[str, list[dict[str, float]]] = {}
    try:
        for k in ("a", "b"):
            servers[k] = serve(getattr(a, k), a.model, cfg, a.workers, tmp, k)
            sr.run_oha(servers[k].url + endpoint, body, 100, 5)  # warm-up, not reported
        for rnd in range(a.rounds):
            for rate in (int(r) for r in a.rates.split(",")):
                if stub is not None:
                    r = sr.run_oha(stub.url + endpoint, direct, rate, a.seconds)
                    res.setdefault(f"stub@{rate}", []).append(r)
                    print(rnd, "stub", rate, f"p50 {r.get('p50_ms', 0):.2f} ms", flush=True)
                for k in ("a", "b") if rnd % 2 == 0 else ("b", "a"):
                    srv = servers[k]
                    c0 = srv.cpu()
                    r = sr.run_oha(srv.url + endpoint, body, rate, a.seconds)
                    r["cpu_us_per_request"] = 1e6 * (srv.cpu() - c0) / max(r.get("requests", 1), 1)
                    res.setdefault(f"{k}@{rate}", []).append(r)
                    print(
                        rnd, k, rate,
                        f"{r.get('rps', 0):,.0f} req/s p50 {r.get('p50_ms', 0):.2f} ms "
                        f"p99 {r.get('p99_ms', 0):.2f} ms CPU {r['cpu_us_per_request']:.0f} µs/request"
                        + (f" error {r['error']}" if "error" in r else ""),
                        flush=True,
                    )  # fmt: skip
    finally:
        for srv in servers.values():
            srv.stop()
        if stub is not None:
            stub.stop()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
