"""Training time per epoch in one process and under torchrun (DDP, gloo on CPU), with the same
total thread count, as one markdown report. One command (about 15 minutes on 2 idle cores):

    python -m benches.ddp_report --out .benchmarks/ddp_report.md     # --quick: a smoke run

Shapes: the shared MMLU-Pro data (29 LLMs × 12,032 questions, paper-size IrtNet; skipped when
absent) and a synthetic leaderboard (``irt_fast.synthetic.make_leaderboard``, 6,000 LLMs × 1,000
questions, written with ``irt_fast.data.write_dataset`` into a temporary directory; the
data-chosen reduced IrtNet). Both with the data-chosen recipe, ``--epochs`` epochs and early
stopping off.

Method: a configuration ``NxT`` is N processes of T threads each (``OMP_NUM_THREADS=T``):
``python -m training.fit`` for N = 1 (no torchrun), else ``torchrun --standalone --nproc_per_node N
-m training.fit``; the default ``1x2,2x1`` gives both 2 threads in all. Time per epoch: the ``seconds`` of each epoch in
``log.jsonl`` (rank 0's wall time over the epoch's training steps, all-reduces included,
validation excluded), median over the epochs after the first. Configurations alternate within
each of ``--rounds`` rounds. The report also gives each command's wall time and how closely each
model agrees with the first configuration's (largest relative difference of the epoch
losses, largest |ΔP| over every question × LLM) and, per shape, the time of one gloo all-reduce
of that model's gradients between the largest configuration's processes (benches/_allreduce.py,
what DDP adds to every step, partly hidden behind the backward pass). Yardsticks (torch and numpy GEMM, memory read;
benches/_contender.py) run before and after; the first line says BUSY when the machine was.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benches._report import log, parser, publish, status_line, yardstick_line
from benches.engine_report import FLAGS, cpu_info
from benches.engine_report import run as run_contender

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def fit_command(nproc: int, data: Path, out: Path, epochs: int, extra: list[str]) -> list[str]:
    """The training command for ``nproc`` processes (one process: no torchrun)."""
    flags = ["--data", str(data), "--out", str(out), "--epochs", str(epochs),
             "--patience", str(epochs), "--quiet", "--device", "cpu", *extra]  # fmt: skip
    if nproc == 1:
        return [sys.executable, "-m", "training.fit", *flags]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(nproc), "-m", "training.fit", *flags]  # fmt: skip


def run_fit(cmd: list[str], threads: int, timeout: float) -> dict:
    """Run one training command; its per-epoch seconds, losses and wall time."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), str(REPO)])
    out = Path(cmd[cmd.index("--out") + 1])
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1], "wall": wall}
    epochs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "wall": wall,
        "seconds": [r["seconds"] for r in epochs],
        "train_loss": [r["train_loss"] for r in epochs],
        "world_size": metrics["world_size"],
        "steps": metrics["recipe"]["shape"]["steps_per_epoch"],
        "model": str(out / "model.safetensors"),
    }


def agreement(a: dict, b: dict, data: Path) -> dict:
    """How far run ``b``'s losses and predictions are from run ``a``'s."""
    import numpy as np

    import irt_fast
    from irt_fast.data import load_dataset

    la, lb = np.array(a["train_loss"]), np.array(b["train_loss"])
    x = np.asarray(load_dataset(data).embeddings, dtype=np.float32)
    pa = irt_fast.load(a["model"], threads=1).predict_proba(x)
    pb = irt_fast.load(b["model"], threads=1).predict_proba(x)
    return {
        "loss_rel": float(np.max(np.abs(la - lb) / np.abs(la))),
        "max_dp": float(np.abs(pa - pb).max()),
        "cells": int(pa.size),
    }


def n_trained(model: str) -> int:
    """Parameters with gradients in a weights file (what DDP all-reduces each step)."""
    from safetensors import safe_open

    with safe_open(model, framework="numpy") as f:
        names = [k for k in f.keys() if not k.startswith("prior.") and k != "gate.selection_bias"]
        return sum(math.prod(f.get_slice(k).get_shape()) for k in names)


def allreduce_time(n_floats: int, nproc: int) -> dict:
    """One all-reduce of ``n_floats`` float32 across ``nproc`` local processes (gloo, 1 thread)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           str(nproc), "-m", "benches._allreduce", str(n_floats), "20"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "python"), str(REPO)])
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def epoch_time(r: dict) -> float:
    s = r["seconds"][1:] or r["seconds"]  # the first epoch warms up
    return statistics.median(s)


def render(info: dict, rows: list[dict], reduces: list[str]) -> str:
    lines = [
        status_line(info),
        "",
        f"Machine: {info['cpu']}, {os.cpu_count()} logical CPUs; flags: "
        f"{', '.join(info['flags']) or 'none of ' + ', '.join(FLAGS)}; kernel "
        f"{info['kernel']}; torch {info['torch']}. Configurations (processes x threads) "
        f"{info['configs']}; {info['rounds']} round(s), {info['epochs']} epochs each, early stopping "
        f"off. Load average start {info['load_start']:.2f}, end {info['load_end']:.2f}. "
        f"Command: `{info['command']}`.",
        yardstick_line(info),
        "",
        "| shape | processes × threads | steps per epoch | s / epoch (median, epochs 2+) | "
        "per epoch | command wall | agreement with the first configuration |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r['label']} | | | failed: {r['error']} | | |")
            continue
        agree = "(reference)"
        if "agree" in r:
            a = r["agree"]
            agree = (
                f"losses within {a['loss_rel']:.1e} (relative), P within {a['max_dp']:.1e} "
                f"over {a['cells']:,} cells"
            )
        per = ", ".join(f"{s:.1f}" for s in r["seconds"])
        lines.append(
            f"| {r['shape']} | {r['label']} | {r['steps']} | {r['epoch_s']:.2f} | {per} | "
            f"{r['wall']:.0f} s | {agree} |"
        )
    return "\n".join(lines + ["", *reduces]) + "\n"


def shapes(tmp: Path, quick: bool) -> list[tuple[str, Path, list[str]]]:
    from irt_fast.data import write_dataset
    from irt_fast.synthetic import make_leaderboard

    out = []
    mmlu = Path(os.environ.get("IRT_FAST_SHARED_DATA", REPO.parent / "shared" / "data"))
    mmlu = mmlu / "mmlu_pro"
    if (mmlu / "responses.parquet").is_file():
        extra = ["--train-size", "640"] if quick else []
        out.append(("MMLU-Pro 29 × 12,032" + (" (640 train)" if quick else ""), mmlu, extra))
    n_llms, n_q = (500, 300) if quick else (6000, 1000)
    lb = tmp / "leaderboard"
    write_dataset(make_leaderboard(n_llms, n_q, seed=0)[0], lb)
    out.append((f"leaderboard {n_llms:,} × {n_q:,}", lb, []))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "ddp_report", "small shapes, 2 epochs")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--configs", default="1x2,2x1", help="processes x threads each, comma-separated"
    )
    a = ap.parse_args(argv)
    epochs = 2 if a.quick else a.epochs
    configs = [tuple(int(v) for v in c.split("x")) for c in a.configs.split(",")]
    import torch

    cpu, flags = cpu_info()
    info = {"cpu": cpu, "flags": flags, "rounds": a.rounds, "epochs": epochs,
            "configs": a.configs, "kernel": os.uname().release, "torch": torch.__version__,
            "load_start": os.getloadavg()[0],
            "command": "python -m benches.ddp_report " + " ".join(argv or sys.argv[1:])}  # fmt: skip
    log(f"load {info['load_start']:.2f}; yardsticks (before) ...")
    info["yard_before"] = run_contender(["yardsticks"])
    rows: list[dict] = []
    reduces: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for shape, data, extra in shapes(tmp, a.quick):
            runs: dict[tuple[int, ...], list[dict]] = {c: [] for c in configs}
            for rnd in range(a.rounds):
                for n, threads in configs if rnd % 2 == 0 else configs[::-1]:
                    out = tmp / f"run-{len(rows)}-{rnd}-{n}x{threads}"
                    log(f"{shape}: {n} process(es) × {threads} thread(s), round {rnd + 1} ...")
                    r = run_fit(fit_command(n, data, out, epochs, extra), threads, 3600)
                    r.update(shape=shape, label=f"{n} × {threads}")
                    if "error" not in r:
                        r["epoch_s"] = epoch_time(r)
                        log(f"  {r['epoch_s']:.2f} s/epoch, {r['wall']:.0f} s wall")
                    runs[(n, threads)].append(r)
            ref = runs[configs[0]][0]
            nproc = max(n for n, _ in configs)
            if "error" not in ref and nproc > 1:
                n = n_trained(ref["model"])
                ar = allreduce_time(n, nproc)
                reduces.append(
                    f"- {shape}: one gloo all-reduce of the {n:,} gradients ({4 * n / 1e6:.0f} MB) "
                    f"across {nproc} processes: "
                    + (
                        f"failed: {ar['error']}"
                        if "error" in ar
                        else f"{ar['median_s'] * 1e3:.0f} ms median, {ar['min_s'] * 1e3:.0f} ms min "
                        "of 20"
                    )
                )
                log(reduces[-1])
            for c in configs:
                for r in runs[c]:
                    if r is not ref and "error" not in r and "error" not in ref:
                        r["agree"] = agreement(ref, r, data)
                    rows.append(r)
    log("yardsticks (after) ...")
    info["yard_after"] = run_contender(["yardsticks"])
    info["load_end"] = os.getloadavg()[0]
    publish(render(info, rows, reduces), a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
