"""Tables and the plot of the onboarding evaluation (training.experiments.onboard_eval)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.plots import figure

LABELS = {
    "random": "fit, random questions",
    "stratified": "fit, stratified questions",
    "adaptive": "fit, adaptive (p(1-p), stratified, trimmed)",
    "variance": "fit, target-variance reduction (stratified, trimmed; default)",
}


def _llm_means(rows: list[dict[str, Any]], col: str) -> np.ndarray:
    """``col`` averaged over seeds per LLM (the unit the CIs resample)."""
    llms = sorted({r["llm"] for r in rows})
    return np.array([np.mean([r[col] for r in rows if r["llm"] == m]) for m in llms])


def _ci(v: np.ndarray, seed: int = 0, n_boot: int = 1000) -> list[float]:
    idx = np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))
    m = v[idx].mean(1)
    return [float(np.quantile(m, 0.025)), float(np.quantile(m, 0.975))]


def aggregate(rows: list[dict[str, Any]], floors: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (strategy, k): mean / p90 abs error (points of accuracy ×100), CI over LLMs,
    bench RMSE, AUC, coverage; baselines from the same draws; the floor; question saving."""
    out: dict[str, Any] = {"by": {}, "baselines": {}}
    strategies = sorted({r["strategy"] for r in rows}, key=list(LABELS).index)
    ks = sorted({r["k"] for r in rows})
    for s in strategies:
        for k in ks:
            sel = [r for r in rows if r["strategy"] == s and r["k"] == k]
            e = _llm_means(sel, "abs_err")
            out["by"][f"{s}|{k}"] = {
                "strategy": s,
                "k": k,
                "mae": 100 * float(e.mean()),
                "mae_ci": [100 * x for x in _ci(e)],
                "p90": 100 * float(np.quantile([r["abs_err"] for r in sel], 0.9)),
                "bench_rmse": 100 * float(np.mean([r["bench_rmse"] for r in sel])),
                "auc": float(np.mean([r["auc"] for r in sel])),
                "coverage": float(np.mean([r["covered"] for r in sel])),
                "bench_coverage": float(np.mean([r["bench_covered"] for r in sel])),
                "se": 100 * float(np.mean([r["se"] for r in sel])),
            }
    for name, s, col in (
        ("sample mean", "random", "mean_err"),
        ("stratified mean", "stratified", "strat_mean_err"),
    ):
        for k in ks:
            sel = [r for r in rows if r["strategy"] == s and r["k"] == k]
            if sel:
                e = _llm_means(sel, col)
                out["baselines"][f"{name}|{k}"] = {
                    "k": k,
                    "mae": 100 * float(e.mean()),
                    "mae_ci": [100 * x for x in _ci(e)],
                    "p90": 100 * float(np.quantile([r[col] for r in sel], 0.9)),
                    "bench_rmse": 100 * float(np.mean([r["mean_bench_rmse"] for r in sel]))
                    if s == "stratified"
                    else None,
                }
    # Paired with random selection (same LLMs, seeds averaged): strategy − random, in points.
    out["vs_random"] = {}
    for s in strategies:
        for k in ks:
            a = [r for r in rows if r["strategy"] == s and r["k"] == k]
            b = [r for r in rows if r["strategy"] == "random" and r["k"] == k]
            if s != "random" and a and b:
                diff = 100 * (_llm_means(a, "abs_err") - _llm_means(b, "abs_err"))
                base = 100 * float(_llm_means(b, "abs_err").mean())
                out["vs_random"][f"{s}|{k}"] = {
                    "diff": float(diff.mean()),
                    "ci": _ci(diff),
                    "rel": float(diff.mean()) / base,
                }
    fe = np.abs([f["err"] for f in floors])
    out["floor"] = {
        "mae": 100 * float(fe.mean()),
        "mae_ci": [100 * x for x in _ci(fe)],
        "p90": 100 * float(np.quantile(fe, 0.9)),
        "bench_rmse": 100 * float(np.mean([f["bench_rmse"] for f in floors])),
        "auc": float(np.mean([f["auc"] for f in floors])),
    }
    # Sample-mean error ∝ 1/√k: fit c on every k, then k* with c/√k* = adaptive MAE at 50.
    bm = [
        (k, out["baselines"][f"sample mean|{k}"]["mae"])
        for k in ks
        if f"sample mean|{k}" in out["baselines"]
    ]
    if bm and "variance|50" in out["by"]:
        c = float(np.exp(np.mean([np.log(m) + 0.5 * np.log(k) for k, m in bm])))
        target = out["by"]["variance|50"]["mae"]
        out["saving"] = {"c": c, "k_equiv": (c / target) ** 2, "adaptive_mae_50": target}
    return out


def markdown(agg: dict[str, Any], header: str) -> str:
    lines = [
        header,
        "",
        "Absolute error of the predicted overall target accuracy, in points (×100): mean "
        "[95% CI resampling LLMs, seeds averaged first] and 90th percentile; per-benchmark "
        "RMSE in points; pair AUC on the target answers; share of 90% intervals covering "
        "the true accuracy (overall / per benchmark).",
        "",
        "| method | k | MAE | 90th pct | bench RMSE | AUC | 90% coverage | bench coverage |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in agg["by"].values():
        lines.append(
            f"| {LABELS[r['strategy']]} | {r['k']} | {r['mae']:.2f} [{r['mae_ci'][0]:.2f}, "
            f"{r['mae_ci'][1]:.2f}] | {r['p90']:.2f} | {r['bench_rmse']:.2f} | {r['auc']:.3f} | "
            f"{r['coverage']:.2f} | {r['bench_coverage']:.2f} |"
        )
    for name, r in agg["baselines"].items():
        n, k = name.split("|")
        br = "–" if r["bench_rmse"] is None else f"{r['bench_rmse']:.2f}"
        lines.append(
            f"| {n} of the answers | {k} | {r['mae']:.2f} [{r['mae_ci'][0]:.2f}, "
            f"{r['mae_ci'][1]:.2f}] | {r['p90']:.2f} | {br} | – | – | – |"
        )
    f = agg["floor"]
    lines.append(
        f"| floor: fit from all training answers | all | {f['mae']:.2f} "
        f"[{f['mae_ci'][0]:.2f}, {f['mae_ci'][1]:.2f}] | {f['p90']:.2f} | "
        f"{f['bench_rmse']:.2f} | {f['auc']:.3f} | – | – |"
    )
    if agg.get("vs_random"):
        lines += [
            "",
            "Paired with random selection (same fit, same LLMs; seeds averaged per LLM): "
            "MAE difference in points [95% CI resampling LLMs] (relative):",
            "",
            "| strategy | "
            + " | ".join(
                f"k={k}" for k in sorted({v.split("|")[1] for v in agg["vs_random"]}, key=int)
            )
            + " |",
            "|---|" + "---:|" * len({v.split("|")[1] for v in agg["vs_random"]}),
        ]
        for st in dict.fromkeys(v.split("|")[0] for v in agg["vs_random"]):
            cells = [
                f"{d['diff']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}] ({d['rel']:+.0%})"
                for key, d in agg["vs_random"].items()
                if key.startswith(st + "|")
            ]
            lines.append(f"| {LABELS[st]} | " + " | ".join(cells) + " |")
    if "saving" in agg:
        s = agg["saving"]
        lines += [
            "",
            f"Question saving: the sample mean's error follows {s['c']:.1f}/√k "
            f"points (fitted on every k); to match the default selection at k = 50 "
            f"({s['adaptive_mae_50']:.2f} points) it needs k ≈ {s['k_equiv']:.0f} "
            "random answers.",
        ]
    return "\n".join(lines)


def plot(agg: dict[str, Any], path: Path, title: str) -> None:
    with figure(path, 1, 1, figsize=(7, 4.5), dpi=110) as (_, ax):
        for s, style in (
            ("adaptive", "o-"),
            ("random", "s-"),
            ("stratified", "^-"),
            ("variance", "x-"),
        ):
            pts = [r for r in agg["by"].values() if r["strategy"] == s]
            if pts:
                ax.errorbar(
                    [r["k"] for r in pts],
                    [r["mae"] for r in pts],
                    yerr=np.array(
                        [[r["mae"] - r["mae_ci"][0], r["mae_ci"][1] - r["mae"]] for r in pts]
                    ).T,
                    fmt=style,
                    capsize=2,
                    label=LABELS[s],
                )
        for name, style in (("sample mean", "k--"), ("stratified mean", "k:")):
            pts = [r for n, r in agg["baselines"].items() if n.startswith(name)]
            if pts:
                ax.plot(
                    [r["k"] for r in pts],
                    [r["mae"] for r in pts],
                    style,
                    label=f"{name} of the k answers",
                )
        ax.axhline(agg["floor"]["mae"], color="gray", lw=1, label="floor (all answers)")
        ax.set_xscale("log")
        ax.set_xlabel("k answers of the new LLM")
        ax.set_ylabel("mean |error| of target accuracy (points)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
