"""The gateway's speed report: ``irt-fast serve`` under a real load generator on 127.0.0.1, as
one markdown table. One command (~9 minutes; ``--quick``: ~1 minute, a smoke run):

    python -m benches.serve_report --out .benchmarks/serve_report.md

Cases (a top-2 reference-size IrtNet, 29 LLMs, over the ``m2v-mpnet-256`` static embedder):
- ``/v1/route``, one text per request, with ``wrk`` (closed loop) at 1 / 16 / 64 / 256
  connections, micro-batching on (``batch_window_ms = 2``) and off (``0``), 1 and 2 workers;
  then with ``oha`` at fixed offered rates (1,000 / 2,000 / 3,000 requests/s over 64
  connections, open loop, latency-corrected): what a gateway serving that traffic answers in;
- ``/v1/chat/completions`` (``irt-router``, 29 candidates) forwarded to a local stub upstream
  that answers at once, with ``oha`` at a fixed rate of 100 and 500 requests/s: the latency the
  gateway adds = its percentile minus the same percentile when ``oha`` calls the stub directly
  (same body, same rate, same run; latencies corrected for coordinated omission, i.e. timed from
  when each request was due); beside it, the same call forwarded by name (no routing): what the
  extra hop alone adds.

Beside each case: the gateway's CPU time (all its processes) and the load generator's, in cores
(CPU seconds per second), read from /proc and getrusage; and where one request's time goes,
from the gateway's own metrics (queue wait, embedding and engine time per batch) and its CPU
time. The machine (CPU, kernel, load average at the start and end) heads the report, with what
a loopback send to a sleeping process costs before and after the run (``benches/_wake_cost.py``:
the host's regime, which moves every figure here); when the
1-minute load was >= 0.5 at the start its first line says BUSY and the numbers must not be
quoted. Access logging is off in every case (``--no-access-log``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benches._report import log, parser, publish
from benches._serve_render import render
from benches._wake_cost import wake_cost
from benches.engine_report import cpu_info
from benches.engine_report import run as run_contender

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

WORDS = (
    "the of a which energy court price cell enzyme theorem market law force what is why does "
    "protein orbit tax derivative integral verdict contract voltage"
).split()
CHAT_TEXT = "Which enzyme breaks down starch in the mouth, and at what pH does it work best?"


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "python"), str(REPO)]))
    e.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d.name)] = (int(f[1]), (int(f[11]) + int(f[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += [c for c, (ppid, _) in stats.items() if ppid == p]
    return total


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited with status {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------ generators


def route_script(path: Path) -> Path:
    """A wrk script posting one text per request, cycling through 256 question-like texts."""
    texts = []
    for i in range(256):
        n = 8 + (i * 7) % 40
        texts.append(" ".join(WORDS[(i * 31 + j * 17) % len(WORDS)] for j in range(n)) + "?")
    bodies = ",\n".join(json.dumps(json.dumps({"texts": [t]})) for t in texts)
    path.write_text(
        "local bodies = {\n" + bodies + "\n}\n"
        "local i = 0\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[i])\n"
        "end\n"
    )
    return path


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def run_wrk(url: str, conns: int, seconds: float, script: Path) -> dict[str, Any]:
    c0 = children_cpu()
    p = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, timeout=seconds + 120, check=False,
    )  # fmt: skip
    out: dict[str, Any] = {"gen_cpu_s": children_cpu() - c0}
    text = p.stdout
    if p.returncode != 0 or "Requests/sec" not in text:
        raise SystemExit(f"wrk failed: {(p.stderr or text).strip()[-300:]}")
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["rps"] = float(m.group(1)) if m else float("nan")
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", text, re.M)
        out[f"p{q}_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: (.*)", text)
    out["errors"] = (int(bad.group(1)) if bad else 0) + (
        sum(int(x) for x in re.findall(r"\d+", sock.group(1))) if sock else 0
    )
    return out


def run_oha(
    url: str, body: dict[str, Any], rate: int, seconds: float, conns: int = 64
) -> dict[str, Any]:
    c0 = children_cpu()
    p = subprocess.run(
        ["oha", "-z", f"{int(seconds)}s", "-q", str(rate), "-c", str(conns), "-m", "POST",
         "-H", "content-type: application/json", "-d", json.dumps(body),
         "--no-tui", "--latency-correction", "--output-format", "json", url],
        capture_output=True, text=True, timeout=seconds + 120, check=False,
    )  # fmt: skip
    out: dict[str, Any] = {"gen_cpu_s": children_cpu() - c0}
    try:
        res = json.loads(p.stdout)
    except ValueError:
        return {**out, "error": (p.stderr.strip().splitlines() or ["oha failed"])[-1]}
    pct = res.get("latencyPercentiles", {})
    summary = res.get("summary", {})
    codes = res.get("statusCodeDistribution", {})
    out.update(
        rps=summary.get("requestsPerSec", float("nan")),
        p50_ms=1e3 * pct.get("p50", float("nan")),
        p99_ms=1e3 * pct.get("p99", float("nan")),
        requests=sum(codes.values()),
        errors=sum(v for k, v in codes.items() if k != "200")
        + sum(v for k, v in res.get("errorDistribution", {}).items() if "deadline" not in k),
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------------- servers


class Server:
    """A process on a free port, stopped with its children."""

    def __init__(self, args: list[str], health: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, *[a.replace("{port}", str(self.port)) for a in args]]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env())
        try:
            wait_http(self.url + health, self.proc)
        except BaseException:
            self.stop()
            raise

    def cpu(self) -> float:
        return cpu_s(self.proc.pid)

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def gateway(model: str, config: str, workers: int, tmp: Path, name: str) -> Server:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(config)
    args = ["-m", "irt_fast", "serve", "--model", model, "--config", str(cfg), "--port", "{port}",
            "--workers", str(workers), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    srv = Server(args, "/healthz", tmp / f"{name}.log")
    try:
        deadline = time.monotonic() + 300
        while workers > 1 and time.monotonic() < deadline:  # until every worker answers
            text = httpx.get(srv.url + "/metrics", timeout=10).text  # (one pid per worker)
            if len(set(re.findall(r'pid="(\d+)"', text))) >= workers:
                break
            time.sleep(0.5)
    except BaseException:
        srv.stop()
        raise
    return srv


def stages(url: str) -> dict[str, float]:
    """Cumulative sums and counts of the gateway's stage and batch metrics."""
    text = httpx.get(url + "/metrics", timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'irt_serve_(stage_duration_seconds|batch_size)_(sum|count)(?:\{stage="(\w+)"\})? (\S+)', line)  # fmt: skip
        if m:
            out[f"{m.group(3) or 'batch'}_{m.group(2)}"] = float(m.group(4))
    return out


# ------------------------------------------------------------------------------------ main


def make_model(tmp: Path) -> str:
    """The top-2, 256-d reference-size model (benches/_contender.py builds it with torch)."""
    p = subprocess.run(
        [sys.executable, str(HERE / "_contender.py"), "make_models", str(tmp)],
        capture_output=True, text=True, env=env(), timeout=900, check=False,
    )  # fmt: skip
    if p.returncode != 0:
        raise SystemExit(f"cannot build the models: {p.stderr.strip()[-500:]}")
    paths = json.loads(p.stdout.strip().splitlines()[-1])
    if "text" not in paths:
        raise SystemExit(paths.get("text_error", "m2v-mpnet-256 is not built"))
    for key in ("dense", "top2"):
        Path(paths[key]).unlink(missing_ok=True)
    return str(paths["text"])


def llm_names(model: str) -> list[str]:
    from safetensors import safe_open

    with safe_open(model, framework="numpy") as f:
        return json.loads(f.metadata()["llm_names"])


def route_cases(a: argparse.Namespace, model: str, tmp: Path, log: Any) -> list[dict[str, Any]]:
    script = route_script(tmp / "route.lua")
    rows = []
    for workers in a.workers:
        for window in (2, 0):
            cfg = f"[server]\nbatch_window_ms = {window}\nmax_batch = 256\nengine_threads = 1\n"
            srv = gateway(model, cfg, workers, tmp, f"route-w{workers}-b{window}")
            try:
                run_wrk(srv.url + "/v1/route", 16, a.warmup, script)  # warm-up, not reported
                for conns in a.connections:
                    log(
                        f"  /v1/route: {workers} worker(s), batching {'on' if window else 'off'}, {conns} connections"
                    )
                    s0, c0, t0 = stages(srv.url), srv.cpu(), time.perf_counter()
                    r = run_wrk(srv.url + "/v1/route", conns, a.seconds, script)
                    wall = time.perf_counter() - t0
                    r.update(workers=workers, batching=bool(window), conns=conns, wall=wall)
                    r["srv_cpu_s"] = srv.cpu() - c0
                    s1 = stages(srv.url)
                    r["stages"] = {k: s1.get(k, 0.0) - s0.get(k, 0.0) for k in s1}
                    rows.append(r)
                for rate in a.route_rates if shutil.which("oha") else ():
                    log(f"  /v1/route: {workers} worker(s), batching {'on' if window else 'off'}, {rate} req/s offered, 64 connections")  # fmt: skip
                    c0 = srv.cpu()
                    r = run_oha(srv.url + "/v1/route", {"texts": [CHAT_TEXT]}, rate, a.seconds)
                    r.update(workers=workers, batching=bool(window), rate=rate, conns=64)
                    r["srv_cpu_s"] = srv.cpu() - c0
                    rows.append(r)
            finally:
                srv.stop()
    return rows


def chat_cases(a: argparse.Namespace, model: str, tmp: Path, log: Any) -> list[dict[str, Any]]:
    if shutil.which("oha") is None:
        return [{"error": "oha is not installed (cargo install oha): chat latency not measured"}]
    stub = Server(["-m", "irt_fast.serve.stub", "--port", "{port}", "--no-record"], "/_stub/requests", tmp / "stub.log")  # fmt: skip
    names = llm_names(model)
    llms = "".join(
        f'[llms."{n}"]\nbase_url = "{stub.url}/v1"\ncost_per_query = {0.001 * (i + 1):.4f}\n'
        for i, n in enumerate(names)
    )
    rows = []
    try:
        for workers in a.workers:
            cfg = "[server]\nbatch_window_ms = 2\nengine_threads = 1\n" + llms
            srv = gateway(model, cfg, workers, tmp, f"chat-w{workers}")
            messages = [{"role": "user", "content": CHAT_TEXT}]
            try:
                run_oha(srv.url + "/v1/chat/completions", {"model": "irt-router", "messages": messages}, 100, a.warmup)  # fmt: skip
                for rate in a.rates:
                    log(
                        f"  chat: {workers} worker(s), {rate} req/s, stub direct then through the gateway"
                    )
                    direct = run_oha(stub.url + "/v1/chat/completions", {"model": names[0], "messages": messages}, rate, a.seconds)  # fmt: skip
                    # forwarded by name (no routing): what the hop alone adds
                    named = run_oha(srv.url + "/v1/chat/completions", {"model": names[0], "messages": messages}, rate, a.seconds)  # fmt: skip
                    c0 = srv.cpu()
                    via = run_oha(srv.url + "/v1/chat/completions", {"model": "irt-router", "messages": messages}, rate, a.seconds)  # fmt: skip
                    via["srv_cpu_s"] = srv.cpu() - c0
                    rows.append({"workers": workers, "rate": rate, "direct": direct, "named": named, "via": via})  # fmt: skip
            finally:
                srv.stop()
    finally:
        stub.stop()
    return rows


def cpu_profile(model: str) -> dict[str, Any]:
    """The in-process CPU profile of one routed request (benches/_serve_profile.py)."""
    p = subprocess.run(
        [sys.executable, str(HERE / "_serve_profile.py"), model],
        capture_output=True, text=True, env=env(), timeout=900, check=False,
    )  # fmt: skip
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    cpu, flags = cpu_info()
    return {"cpu": cpu, "flags": flags, "kernel": platform.release(), "cpus": os.cpu_count()}


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM / SIGHUP end the run through the ``finally`` blocks, which stop the servers."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGHUP, _terminated)
    ap = parser(__doc__, "serve_report", "3 s per case, fewer cases")
    ap.add_argument("--seconds", type=int, default=10, help="per case")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--connections", default="1,16,64,256")
    ap.add_argument("--rates", default="100,500", help="chat: offered req/s")
    ap.add_argument(
        "--route-rates", default="1000,2000,3000", help="/v1/route: offered req/s (oha)"
    )
    a = ap.parse_args(argv)
    a.workers = [int(w) for w in a.workers.split(",")]
    a.connections = [int(c) for c in a.connections.split(",")]
    a.rates = [int(r) for r in a.rates.split(",")]
    a.route_rates = [int(r) for r in a.route_rates.split(",") if r]
    if a.quick:
        a.seconds, a.connections, a.route_rates = 3, [1, 64], a.route_rates[:1]
    a.warmup = min(a.seconds, 3)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    info = {**machine(), "load_start": os.getloadavg()[0], "seconds": a.seconds}
    info["command"] = "python -m benches.serve_report " + " ".join(argv or sys.argv[1:])
    log(f"load {info['load_start']:.2f}; yardsticks (before) ...")
    info["yard_before"] = run_contender(["yardsticks"])
    info["wake_before"] = wake_cost()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log("building the top-2 reference-size model ...")
        model = make_model(tmp)
        log("in-process CPU profile ...")
        prof = cpu_profile(model)
        route = route_cases(a, model, tmp, log)
        chat = chat_cases(a, model, tmp, log)
    log("yardsticks (after) ...")
    info["yard_after"] = run_contender(["yardsticks"])
    info["wake_after"] = wake_cost()
    info["load_end"] = os.getloadavg()[0]
    publish(render(info, route, chat, prof), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
