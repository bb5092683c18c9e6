"""The engine's speed report: Rust engine (f32, bf16; dense and sparse top-2) against torch, with
the machine's own yardsticks, as one markdown table. One command, ~6-10 minutes on 2 idle cores:

    python -m benches.engine_report --out .benchmarks/engine_report.md      # (--quick: smoke)

Method (see also benches/_contender.py):
- every contender runs in a process of its own, so torch is never timed while the engine's rayon
  threads spin and vice versa; 2 threads each (rayon pool / torch.set_num_threads(2));
- contenders alternate: ``--rounds`` rounds, each running every contender once in a rotated
  order; per batch size, the reported time is the median over rounds of each round's median;
- yardsticks (torch and numpy fp32 GEMM GFLOP/s at 2048², streaming read GB/s over 512 MB) run
  before and after; the load average is read at the start and the end. When the 1-minute load
  was ≥ 0.5 at the start, or a yardstick moved by more than 10%, the report's FIRST line says
  BUSY and its numbers must not be quoted.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benches._report import log, parser, publish, status_line, yardstick_line

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_bf16")
#: Batches of the subnormal-weights comparison (a subset of the main table's).
SUBNORMAL_BATCHES = (1, 64, 1024)
#: (label, contender, model key, batches: None = every batch of the run, else a subset)
CONTENDERS = [
    ("rust f32", "rust:f32", "dense", None),
    ("rust bf16", "rust:bf16", "dense", None),
    ("rust bf16 widen", "rust:bf16-widen", "dense", None),
    ("rust top-2 f32", "rust:f32", "top2", None),
    ("rust top-2 bf16", "rust:bf16", "top2", None),
    ("torch fused", "torch_fused", "dense", None),
    ("torch loop", "torch_loop", "dense", None),
    ("torch fused top-2", "torch_fused", "top2", None),
    ("torch fused bf16", "torch_fused_bf16", "dense", None),
    ("torch bf16 prepacked", "torch_bf16_prepacked", "dense", None),
    ("rust f32 subnormal", "rust:f32", "dense_subnormal", SUBNORMAL_BATCHES),
    ("rust bf16 subnormal", "rust:bf16", "dense_subnormal", SUBNORMAL_BATCHES),
]
TORCH_DENSE = ("torch fused", "torch loop")
TORCH_BF16 = ("torch fused bf16", "torch bf16 prepacked")
#: Columns of the main table (the subnormal contenders have their own).
MAIN = [c[0] for c in CONTENDERS if c[2] != "dense_subnormal"]


def cpu_info() -> tuple[str, list[str]]:
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return name, [f for f in FLAGS if f in flags]


def run(args: list[str], timeout: float = 900) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "python"), str(REPO)]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [sys.executable, str(HERE / "_contender.py"), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def measure(paths: dict, batches: list[int], reps: int, rounds: int, info: dict, log) -> dict:
    """{label: {"times": {batch: [round medians]}, "mins": {...}, "weight_bytes": int,
    "kernel": str, "flushed_subnormals": int}}"""
    res: dict[str, dict] = {c[0]: {"times": {}, "mins": {}} for c in CONTENDERS}
    for r in range(rounds):
        order = CONTENDERS[r % len(CONTENDERS) :] + CONTENDERS[: r % len(CONTENDERS)]
        for label, who, key, only in order:
            mine = [b for b in batches if only is None or b in only]
            if not mine:
                continue
            t0 = time.perf_counter()
            out = run([who, paths[key], ",".join(map(str, mine)), str(reps)])
            log(f"  round {r + 1}/{rounds} {label}: {time.perf_counter() - t0:.0f} s")
            if "error" in out:
                res[label]["error"] = out["error"]
                continue
            if "weight_bytes" in out:
                res[label]["weight_bytes"] = out["weight_bytes"]
                res[label]["kernel"] = out.get("kernel", "unknown")
                res[label]["flushed_subnormals"] = out.get("flushed_subnormals")
            for b, t in out["times"].items():
                res[label]["times"].setdefault(int(b), []).append(t["median"])
                res[label]["mins"].setdefault(int(b), []).append(t["min"])
    return res


def med(v: list[float]) -> float:
    s = sorted(v)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def fmt_t(t: float) -> str:
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def render(info: dict, res: dict, batches: list[int], text: dict | None) -> str:
    y0, y1 = info["yard_before"], info["yard_after"]
    lines = [status_line(info)]
    roof = min(y0.get("torch_gemm_gflops", 0), y1.get("torch_gemm_gflops", 0)) or None
    bw = max(y0.get("read_gbps", 0), y1.get("read_gbps", 0)) or None
    kernels = ", ".join(
        f"{lab} {res[lab]['kernel']}"
        for lab in ("rust f32", "rust bf16", "rust bf16 widen")
        if "kernel" in res[lab]
    )
    lines += [
        "",
        f"Machine: {info['cpu']}, {os.cpu_count()} logical CPUs; flags: "
        f"{', '.join(info['flags']) or 'none of ' + ', '.join(FLAGS)}; engine kernels: "
        f"{kernels or 'unknown'} (f32 and widened bf16 hand the batches above 16 rows to the "
        "gemm crate; avx512bf16 runs every batch). 2 threads per contender, "
        f"each contender in its own process, {info['rounds']} alternating rounds "
        f"(median of round medians). Load average start {info['load_start']:.2f}, "
        f"end {info['load_end']:.2f}. Command: `{info['command']}`.",
        yardstick_line(info),
        "",
    ]
    labels = [lab for lab in MAIN if res[lab]["times"]]
    lines.append(
        "| batch | "
        + " | ".join(labels)
        + " | rust f32 vs best torch | best rust vs best torch | rust bf16 vs best torch bf16 |"
    )
    lines.append("|---:|" + "---:|" * (len(labels) + 3))
    for b in batches:
        t = {lab: med(res[lab]["times"][b]) for lab in labels if b in res[lab]["times"]}
        torch_best = min((t[k] for k in TORCH_DENSE if k in t), default=None)
        rust_best = min((v for k, v in t.items() if k.startswith("rust")), default=None)
        cells = [fmt_t(t[lab]) if lab in t else "–" for lab in labels]

        def ratio(r: float | None, tb: float | None = torch_best) -> str:
            return f"{tb / r:.2f}×" if tb and r else "–"

        torch_bf16 = min((t[k] for k in TORCH_BF16 if k in t), default=None)
        bf = ratio(t.get("rust bf16"), torch_bf16)
        lines.append(
            f"| {b} | "
            + " | ".join(cells)
            + f" | {ratio(t.get('rust f32'))} | {ratio(rust_best)} | {bf} |"
        )
    lines.append("")
    lines.append(
        "(× > 1: the engine is faster; best torch = the faster of fused and loop, dense fp32; "
        "best torch bf16 = the faster of fused with every weight in bfloat16 and the same with "
        "oneDNN-prepacked weights (baselines.FusedBf16), under torch.inference_mode.)"
    )
    for lab, _, _, _ in CONTENDERS:
        if "error" in res[lab]:
            lines.append(f"- {lab}: {res[lab]['error']}")
    lines += subnormal_table(res, batches, info)
    derived = []
    if bw and 1 in batches:
        # dense only: a sparse pass reads just the selected experts' weights
        for lab in ("rust f32", "rust bf16"):
            r = res.get(lab, {})
            if 1 in r.get("times", {}) and r.get("weight_bytes"):
                floor = r["weight_bytes"] / (bw * 1e9)
                derived.append(
                    f"- batch 1, {lab}: {fmt_t(med(r['times'][1]))} against the memory floor "
                    f"{fmt_t(floor)} ({r['weight_bytes'] / 1e6:.0f} MB ÷ {bw:.1f} GB/s): "
                    f"{med(r['times'][1]) / floor:.2f}× the floor (goal ≤ 1.3×)."
                )
    flop = info.get("flop_per_query")
    if roof and flop:
        for b in [b for b in batches if b >= 1024]:
            r = res["rust f32"]["times"].get(b)
            if r:
                gf = b * flop / med(r) / 1e9
                derived.append(
                    f"- batch {b}, rust f32: {gf:.0f} GFLOP/s = {gf / roof:.2f} of the torch "
                    f"GEMM roofline {roof:.0f} GFLOP/s (goal ≥ 0.9)."
                )
    if 1024 in batches:
        t = {lab: med(res[lab]["times"][1024]) for lab in labels if 1024 in res[lab]["times"]}
        tb = min((t[k] for k in TORCH_DENSE if k in t), default=None)
        for lab in ("rust top-2 f32", "rust top-2 bf16", "rust bf16"):
            if tb and lab in t:
                derived.append(
                    f"- batch 1024, {lab}: {tb / t[lab]:.2f}× the fastest dense fp32 torch "
                    "(goal ≥ 2×)."
                )
    for b in [b for b in batches if b >= 1024]:
        t = {lab: med(res[lab]["times"][b]) for lab in labels if b in res[lab]["times"]}
        tb = {k: t[k] for k in TORCH_BF16 if k in t}
        if "rust bf16" in t and tb:
            best = min(tb, key=tb.get)
            derived.append(
                f"- batch {b}, rust bf16 ({res['rust bf16'].get('kernel', '?')}): "
                f"{b / t['rust bf16']:,.0f} queries/s against {best} {b / tb[best]:,.0f} "
                f"queries/s ({tb[best] / t['rust bf16']:.2f}×)."
            )
    if text:
        if "error" in text:
            derived.append(f"- text → route at batch 1: not measured ({text['error']}).")
        else:
            tt = next(iter(text["times"].values()))["median"]
            derived.append(
                f"- text → route at batch 1 (m2v-mpnet-256 + engine f32, top-2 of 39, public "
                f"`route([text])`): {1 / tt:,.0f} texts/s (median {fmt_t(tt)}; goal ≥ 1,000)."
            )
    return "\n".join(lines + ([""] + derived if derived else [])) + "\n"


def subnormal_table(res: dict, batches: list[int], info: dict) -> list[str]:
    """The same dense file with and without subnormal expert weights, f32 and bf16."""
    sub_b = [b for b in batches if b in SUBNORMAL_BATCHES]
    pairs = [(d, f"rust {d}", f"rust {d} subnormal") for d in ("f32", "bf16")]
    pairs = [p for p in pairs if res[p[1]]["times"] and res[p[2]]["times"]]
    if not sub_b or not pairs:
        return []
    n = info.get("n_subnormal")
    flushed = {res[s].get("flushed_subnormals") for _, _, s in pairs}
    lines = [
        "",
        f"Subnormal weights: the dense file with {n:,} of its expert weights "
        f"({info.get('subnormal_share', 0):.0%}) set to subnormal values, as a file from "
        f"elsewhere could hold; the engine reported {', '.join(map(str, flushed))} flushed to "
        "zero at load, and its workers run with FTZ/DAZ.",
        "",
        "| batch | " + " | ".join(f"{c} | {s} | ratio" for _, c, s in pairs) + " |",
        "|---:|" + "---:|---:|---:|" * len(pairs),
    ]
    for b in sub_b:
        cells = []
        for _, c, s in pairs:
            tc, ts = res[c]["times"].get(b), res[s]["times"].get(b)
            if tc and ts:
                cells += [fmt_t(med(tc)), fmt_t(med(ts)), f"{med(ts) / med(tc):.2f}×"]
            else:
                cells += ["–", "–", "–"]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("(ratio: subnormal time ÷ clean time; 1.00× is the goal.)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "engine_report", "small batches, 1 round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,16,64,1024,8192")
    a = ap.parse_args(argv)
    batches = [1, 16] if a.quick else [int(b) for b in a.batches.split(",")]
    rounds, reps = (1, 3) if a.quick else (a.rounds, 30)
    cpu, flags = cpu_info()
    info = {"cpu": cpu, "flags": flags, "rounds": rounds, "load_start": os.getloadavg()[0]}
    info["command"] = "python -m benches.engine_report " + " ".join(argv or sys.argv[1:])
    log(f"load {info['load_start']:.2f}; yardsticks (before) ...")
    info["yard_before"] = run(["yardsticks"])
    with tempfile.TemporaryDirectory() as tmp:
        paths = run(["make_models", tmp])
        if "error" in paths:
            raise SystemExit(f"cannot build the reference models: {paths['error']}")
        info["flop_per_query"] = _flop_per_query(paths["dense"])
        info["n_subnormal"] = paths.get("n_subnormal")
        info["subnormal_share"] = paths.get("subnormal_share", 0.0)
        log(f"contenders: {rounds} rounds × {len(CONTENDERS)} ...")
        res = measure(paths, batches, reps, rounds, info, log)
        text = None
        if "text" in paths:
            log("text → route ...")
            text = run(["text", paths["text"], "50" if a.quick else "300"])
        elif "text_error" in paths:
            text = {"error": paths["text_error"]}
    log("yardsticks (after) ...")
    info["yard_after"] = run(["yardsticks"])
    info["load_end"] = os.getloadavg()[0]
    publish(render(info, res, batches, text), a.out)
    return 0


def _flop_per_query(path: str) -> float:
    """2 × multiply-adds of one query through the dense model (from the file's config)."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        c = json.loads(f.metadata()["config"])
    e = c["n_shared"] + c["n_routed"]
    dm, h, o, d, n = c["embed_dim"], c["hidden_dim"], c["expert_dim"], c["d"], c["n_llms"]
    macs = dm * (e * h + c["n_routed"]) + e * h * o + o * (d + 1) + d * n
    return 2.0 * macs


if __name__ == "__main__":
    raise SystemExit(main())
