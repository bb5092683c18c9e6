"""Shared set-up for the benchmarks: reference-size weights, 2 threads everywhere, and a table of
ratios (engine vs torch baselines vs the machine's GEMM roofline and read bandwidth) printed at
the end of the run and written to .benchmarks/irt_fast_report.md.

    python -m pytest benches/ --benchmark-only      # the measurements (a few minutes)
    python -m pytest benches/ --benchmark-disable   # smoke: every path once, small sizes
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parent))

THREADS = 2
RESULTS: dict[tuple[str, str], dict[str, float]] = {}


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def ref_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper's sizes: 768 → (1 + 39) experts of 512 → 256, d = 232, 29 LLMs."""
    from training.export import save_model
    from training.model import IrtNetConfig, build_model

    torch.manual_seed(0)
    cfg = IrtNetConfig(n_llms=29)
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("bench") / "ref.safetensors"
    names = [f"llm-{i:02d}" for i in range(cfg.n_llms)]
    save_model(model, path, llm_names=names, embedder={"name": "x", "dim": 768, "normalize": True})
    return path


@pytest.fixture(scope="session")
def engine(ref_path: Path):
    import irt_fast

    return irt_fast.load(ref_path, threads=THREADS)


@pytest.fixture(scope="session")
def baselines(ref_path: Path):
    from baselines import Fused, RefLoop

    return {"torch_loop": RefLoop(ref_path), "torch_fused": Fused(ref_path)}


@pytest.fixture(scope="session")
def queries() -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((8192, 768)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def record(benchmark, group: str, name: str, **extra: float) -> None:
    """Keep a benchmark's timing for the closing table."""
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(benchmark, "disabled", False):
        return
    s = stats.stats
    RESULTS[(group, name)] = {"min": s.min, "median": s.median, **extra}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report() -> str | None:
    if not RESULTS:
        return None
    roof = RESULTS.get(("yardstick", "torch_matmul"), {}).get("gflops")
    bw = RESULTS.get(("yardstick", "read_bandwidth"), {}).get("gbps")
    lines = [
        f"Machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, {THREADS} threads for every "
        f"contender; torch {torch.__version__}. Load average at the end: "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        f"Yardsticks (same run): torch fp32 matmul {roof or float('nan'):.0f} GFLOP/s; "
        f"streaming read {bw or float('nan'):.1f} GB/s.",
        "",
        "| group | contender | median | queries/s | GFLOP/s | % of matmul roofline | "
        "engine speed-up |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    groups = sorted({g for g, _ in RESULTS if g != "yardstick"}, key=_group_key)
    for g in groups:
        rust = RESULTS.get((g, "rust"))
        for name in ("rust", "torch_fused", "torch_loop"):
            r = RESULTS.get((g, name))
            if r is None:
                continue
            t = r["median"]
            q = r.get("queries", 1)
            gf = r.get("flop", 0) / t / 1e9
            pct = f"{gf / roof:.0%}" if roof and gf else "n/a"
            speed = f"{t / rust['median']:.2f}×" if rust and name != "rust" else ""
            ms = f"{t * 1e3:.2f} ms" if t < 10 else f"{t:.1f} s"
            gfs = f"{gf:.0f}" if gf else "n/a"
            lines.append(f"| {g} | {name} | {ms} | {q / t:,.0f} | {gfs} | {pct} | {speed} |")
    b1 = RESULTS.get(("route_b1", "rust"))
    if b1 and bw:
        bound = b1["weight_bytes"] / (bw * 1e9)
        lines += [
            "",
            f"Batch 1: median latency {b1['median'] * 1e3:.2f} ms (min {b1['min'] * 1e3:.2f}) vs "
            f"weight bytes ÷ read bandwidth = {bound * 1e3:.2f} ms: ratio "
            f"{b1['median'] / bound:.2f} (target ≤ 1.5).",
        ]
    sub = sorted({g for g, _ in RESULTS if g.startswith("subnormal_")}, key=_group_key)
    if sub:
        lines += ["", "Subnormal expert weights (test_bench_subnormal.py), same file clean:"]
    for g in sub:
        c, s = RESULTS.get((g, "clean")), RESULTS.get((g, "subnormal"))
        if c and s:
            lines.append(
                f"- {g}: clean {c['median'] * 1e3:.2f} ms, subnormal {s['median'] * 1e3:.2f} ms "
                f"({s['median'] / c['median']:.2f}×)"
            )
    mem = RESULTS.get(("memory", "predict_accuracy"))
    if mem:
        lines.append(
            f"predict_accuracy peak RSS growth: {mem['small_mb']:.0f} MB for "
            f"{mem['small_n']:,.0f} queries, {mem['large_mb']:.0f} MB for {mem['large_n']:,.0f} "
            "(streamed from a generator)."
        )
    return "\n".join(lines)


def _group_key(g: str) -> tuple[int, str]:
    import re

    first = re.search(r"\d+", g)
    return (int(first.group()) if first else 10**9, g)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    text = report()
    if text is None:
        return
    terminalreporter.write_sep("=", "irt_fast engine vs torch (same run)")
    terminalreporter.write_line(text)
    out = Path(config.rootpath) / ".benchmarks" / "irt_fast_report.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    terminalreporter.write_line(f"(written to {out})")
