"""Scoring at scale, one command: rows/s and peak memory of ``irt-fast score`` on synthetic
Parquet generated on the fly, the engine alone on the same model, and Ray Data's
``map_batches`` at several batch sizes; a markdown report with the machine's CPU, kernel, load
and yardsticks.

    python -m benches.score_report --rows 10000000 --out .benchmarks/score_report.md

The input (``--rows`` unit-norm 768-d float32 embeddings: 3.1 KB a row, 31 GB at 10⁷) is written
to a temporary directory under ``--tmp`` in row groups of ``--row-group`` rows and deleted at
the end; the report refuses to start when the disk there has not room for it. The model is the
reference-size IrtNet (768 → 40 experts of 512 → 256, d = 232, 29 LLMs; random weights, speed
does not depend on them) in its sparse top-2 form by default (``--model dense`` for all 40
experts); the engine-alone rate is measured for both, so per-query costs can be projected.
Every part runs in a process of its own with 2 engine threads; peak RSS is the scoring process's
own (``wait4``). As engine_report: a load ≥ 0.5 at the start or a yardstick moving > 10% marks the
report BUSY, and its numbers must not be quoted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benches._report import log, publish, status_line, yardstick_line
from benches.engine_report import FLAGS, cpu_info
from benches.engine_report import run as run_contender

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ROW_BYTES = 768 * 4 + 40  # embedding + id + label, before Parquet's small overhead


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "python"), str(REPO)]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["OMP_NUM_THREADS"] = "2"
    return env


def child(args: list[str], timeout: float = 24 * 3600) -> dict:
    cmd = [sys.executable, str(HERE / "score_child.py"), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"{args[0]} failed: {p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_cli(model: str, src: Path, out: Path, extra: list[str]) -> dict:
    """``python -m irt_fast score`` in a child process: wall time and its own peak RSS."""
    cmd = [sys.executable, "-m", "irt_fast", "score", "--model", model, "--queries", str(src)]
    cmd += ["--out", str(out), "--threads", "2", "--quiet", *extra]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"irt-fast score failed ({p.returncode}): {stderr.decode()[-2000:]}")
    # the command's own timing: reading, scoring and writing, without start-up and model load
    m = re.search(r"scored ([\d,]+) queries in ([\d.]+) s", stdout.decode())
    return {
        "seconds": dt,
        "scoring_seconds": float(m.group(2)) if m else dt,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "out_bytes": out.stat().st_size,
        "summary": stdout.decode().strip(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="CLI input rows")
    ap.add_argument("--row-group", type=int, default=131_072, help="input Parquet row group")
    ap.add_argument("--model", choices=("top2", "dense"), default="top2")
    ap.add_argument("--engine-rows", type=int, default=262_144, help="rows for engine-alone")
    ap.add_argument("--wide-llms", type=int, default=10_000, help="models of N LLMs (0: none)")
    ap.add_argument(
        "--wide-rows", type=int, default=1_000_000, help="CLI rows with the N-LLM model"
    )
    ap.add_argument("--ray-rows", type=int, default=1_000_000, help="0: no Ray Data part")
    ap.add_argument("--ray-batches", default="1024,4096,16384,65536")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where the input is written")
    ap.add_argument("--out", type=Path, default=REPO / ".benchmarks" / "score_report.md")
    a = ap.parse_args(argv)
    need = (a.rows + a.ray_rows) * ROW_BYTES * 1.05 + a.rows * 40 + (2 << 30)
    free = shutil.disk_usage(a.tmp).free
    if need > free:
        raise SystemExit(
            f"{a.tmp} has {free / 1e9:.1f} GB free; {a.rows:,} + {a.ray_rows:,} rows need "
            f"{need / 1e9:.1f} GB (pass --tmp DIR elsewhere or fewer --rows)"
        )
    cpu, flags = cpu_info()
    info: dict = {
        "cpu": cpu,
        "flags": flags,
        "uname": f"{platform.system()} {platform.release()}",
        "load_start": os.getloadavg()[0],
        "command": "python -m benches.score_report " + " ".join(argv or sys.argv[1:]),
        "free_gb": free / 1e9,
        "args": vars(a) | {"out": str(a.out)},
    }
    log(f"load {info['load_start']:.2f}; yardsticks (before) ...")
    info["yard_before"] = run_contender(["yardsticks"])
    work = Path(tempfile.mkdtemp(prefix="irt_fast_score_", dir=a.tmp))
    try:
        models = run_contender(["make_models", str(work)])
        if "error" in models:
            raise SystemExit(f"cannot build the reference models: {models['error']}")
        eng = {}
        for key in ("top2", "dense"):
            log(f"engine alone, {key} ...")
            eng[key] = child(["engine", models[key], str(a.engine_rows)])
        if a.wide_llms:
            wide = child(["wide", str(work), str(a.wide_llms)])
            for key in ("top2", "dense"):
                log(f"engine alone, {key}, {a.wide_llms:,} LLMs ...")
                eng[f"{key}, {a.wide_llms:,} LLMs"] = child(
                    ["engine", wide[key], str(a.engine_rows // 4)]
                )
        src = work / "queries.parquet"
        log(f"generating {a.rows:,} rows into {src} ...")
        info["gen"] = child(["gen", str(src), str(a.rows), str(a.row_group), "0"])
        log("irt-fast score --route ...")
        cli = run_cli(models[a.model], src, work / "routed.parquet", ["--route"])
        (work / "routed.parquet").unlink()
        src.unlink()
        cli_wide = None
        if a.wide_llms and a.wide_rows:
            wide_src = work / "wide_queries.parquet"
            child(["gen", str(wide_src), str(a.wide_rows), str(a.row_group), "2"])
            log(f"irt-fast score --route, {a.wide_llms:,} LLMs, {a.wide_rows:,} rows ...")
            cli_wide = run_cli(wide[a.model], wide_src, work / "wide.parquet", ["--route"])
            wide_src.unlink()
        ray_res = None
        if a.ray_rows:
            ray_src = work / "ray_queries.parquet"
            child(["gen", str(ray_src), str(a.ray_rows), str(a.row_group), "1"])
            log(f"Ray Data, {a.ray_rows:,} rows, batch sizes {a.ray_batches} ...")
            try:
                ray_res = child(["ray", models[a.model], str(ray_src), str(work), a.ray_batches])
            except SystemExit as e:
                ray_res = {"error": str(e)[-300:]}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log("yardsticks (after) ...")
    info["yard_after"] = run_contender(["yardsticks"])
    info["load_end"] = os.getloadavg()[0]
    publish(render(info, a, eng, cli, cli_wide, ray_res), a.out)
    return 0


def render(
    info: dict,
    a: argparse.Namespace,
    eng: dict,
    cli: dict,
    cli_wide: dict | None,
    ray_res: dict | None,
) -> str:
    head = status_line(info)
    e = {k: v["rows"] / v["seconds"] for k, v in eng.items()}
    cli_rate = a.rows / cli["scoring_seconds"]
    overhead_us = (1 / cli_rate - 1 / e[a.model]) * 1e6
    lines = [
        head,
        "",
        f"Machine: {info['cpu']}, {os.cpu_count()} logical CPUs, {info['uname']}; flags: "
        f"{', '.join(info['flags']) or 'none of ' + ', '.join(FLAGS)}; engine kernel "
        f"{eng[a.model]['kernel']}. Load average start {info['load_start']:.2f}, end "
        f"{info['load_end']:.2f}. Command: `{info['command']}`.",
        yardstick_line(info),
        f"Input: {a.rows:,} synthetic unit-norm 768-d float32 embeddings, Parquet (snappy) in "
        f"row groups of {a.row_group:,}: {info['gen']['bytes'] / 1e9:.1f} GB, written in "
        f"{info['gen']['seconds']:.0f} s to {a.tmp} ({info['free_gb']:.0f} GB free) and "
        "deleted after. Model: reference-size IrtNet, 29 LLMs, "
        f"{'top-2 of 39 routed experts + 1 shared' if a.model == 'top2' else 'dense, 40 experts'}.",
        "",
        "| path | rows | time | rows/s | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, v in eng.items():
        lines.append(
            f"| engine alone, `Model.route` on in-memory batches of 16,384 ({key}; "
            f"{v['macs'] / 1e6:.1f} M multiply-adds/query) | {v['rows']:,} | "
            f"{v['seconds']:.1f} s | {e[key]:,.0f} | — |"
        )
    lines.append(
        f"| `irt-fast score --route` ({a.model}), Parquet → Parquet | {a.rows:,} | "
        f"{cli['scoring_seconds']:.1f} s ({cli['seconds']:.1f} s with start-up) | "
        f"{cli_rate:,.0f} | {cli['peak_rss_mb']:,.0f} MB |"
    )
    if cli_wide is not None:
        lines.append(
            f"| `irt-fast score --route` ({a.model}, {a.wide_llms:,} LLMs), Parquet → Parquet | "
            f"{a.wide_rows:,} | {cli_wide['scoring_seconds']:.1f} s ({cli_wide['seconds']:.1f} s "
            f"with start-up) | {a.wide_rows / cli_wide['scoring_seconds']:,.0f} | "
            f"{cli_wide['peak_rss_mb']:,.0f} MB |"
        )
    derived = [
        f"- the CLI's own cost beyond the engine (read, decode, check, write): "
        f"{overhead_us:.1f} µs per row ({overhead_us * e[a.model] / 1e6:.0%} of the engine's "
        "time per row); its output: "
        f"{cli['out_bytes'] / a.rows:.1f} bytes per row (query_id, llm, proba)."
    ]
    if ray_res and "error" not in ray_res:
        runs = {int(b): t for b, t in ray_res["runs"].items()}
        n = ray_res["rows"]
        for b, t in sorted(runs.items()):
            lines.append(
                f"| Ray Data `map_batches(Scorer)`, batch_size {b:,}, 1 actor (2 engine "
                f"threads), Parquet → Parquet | {n:,} | {t:.1f} s | {n / t:,.0f} | — |"
            )
        per_block = _slope(runs, n)
        if per_block is not None:
            b_min = 20 * per_block * e[a.model]
            derived.append(
                f"- Ray Data overhead per batch (slope of time against the number of batches): "
                f"{per_block * 1e3:.1f} ms; it stays under 5% of a batch's engine time from "
                f"{b_min:,.0f} rows a batch. `ray.init` took {ray_res['init_seconds']:.1f} s."
            )
    elif ray_res:
        derived.append(f"- Ray Data: {ray_res['error']}")
    derived += _projection(e, overhead_us)
    return "\n".join([*lines, "", *derived]) + "\n"


def _projection(rates: dict[str, float], overhead_us: float) -> list[str]:
    """10⁸ queries on this machine (2 threads) from the measured engine rates plus the CLI's
    measured per-row overhead; nodes for a 1-hour run (projected: linear in nodes)."""
    out = ["", "Projection for 10⁸ queries (engine rate measured above + the CLI's overhead):", ""]
    out += ["| model | rows/s on this machine | 10⁸ queries, one machine | machines for 1 h |"]
    out += ["|---|---:|---:|---:|"]
    for key, r in rates.items():
        per_row = 1 / r + overhead_us / 1e6
        t = 1e8 * per_row
        out.append(f"| {key} | {1 / per_row:,.0f} | {t / 3600:,.1f} h | {math.ceil(t / 3600)} |")
    return out


def _slope(runs: dict[int, float], rows: int) -> float | None:
    """Least-squares seconds per batch of time = A + per_batch × ceil(rows / batch_size)."""
    if len(runs) < 2:
        return None
    xs = [-(-rows // b) for b in runs]
    ys = list(runs.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None


if __name__ == "__main__":
    raise SystemExit(main())
