"""What every report command of benches/ shares: writing the markdown where it was asked, and
showing it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parser(doc: str, name: str, quick: str) -> argparse.ArgumentParser:
    """A report command's parser: its docstring's first line, ``--out`` (default
    ``.benchmarks/NAME.md``) and ``--quick`` (a smoke run: ``quick`` says what it shortens)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".benchmarks" / f"{name}.md")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {quick}")
    return ap


def log(message: str) -> None:
    """Progress on stderr (stdout carries the report)."""
    print(message, file=sys.stderr, flush=True)


def publish(report: str, out: Path) -> None:
    """Write ``report`` to ``out`` (parents made), print it, and say where it went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    log(f"(written to {out})")


def busy_reasons(info: dict) -> list[str]:
    """Why a run's numbers must not be quoted: a 1-minute load of 0.5 or more at the start, or a
    yardstick (``info["yard_before"]`` / ``["yard_after"]``) that moved more than 10%."""
    y0, y1 = info["yard_before"], info["yard_after"]
    moved = {k: abs(y1[k] / y0[k] - 1) for k in y0 if k in y1 and y0[k] > 0 and "error" not in y0}
    busy = []
    if info["load_start"] >= 0.5:
        busy.append(f"load average {info['load_start']:.2f} ≥ 0.5 at the start")
    return busy + [f"{k} moved {v:.0%}" for k, v in moved.items() if v > 0.10]


def status_line(info: dict) -> str:
    """A report's first line: BUSY (with why; its numbers must not be quoted) or QUIET."""
    busy = busy_reasons(info)
    if busy:
        return f"BUSY: {'; '.join(busy)}. Do not quote these numbers."
    return "QUIET: load < 0.5 at the start, yardsticks within 10% before/after."


def yardstick_line(info: dict) -> str:
    """The yardsticks before and after the run, in one line."""
    y0, y1 = info["yard_before"], info["yard_after"]
    return "Yardsticks before → after: " + "; ".join(
        f"{k} {y0.get(k, float('nan')):.1f} → {y1.get(k, float('nan')):.1f}"
        for k in ("torch_gemm_gflops", "numpy_gemm_gflops", "read_gbps")
    )
