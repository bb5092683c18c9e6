"""Tables and plots of the onboarding evaluation (training.experiments.onboard_eval).

Errors are in points of accuracy (×100): the mean over LLMs of each LLM's absolute error
averaged over seeds (the LLM is the unit the CIs resample). The ratio of a method to the mean
of k random answers is paired: the same LLMs and seeds, the ratio of the two mean errors, its
95% CI from 1000 bootstrap resamples of the LLMs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.plots import figure
from training.experiments.onboard_core import LABELS

BASE = "random_mean"
GOAL_K = 50
N_BOOT = 1000


def _per_llm(rows: list[dict[str, Any]], col: str) -> dict[str, float]:
    acc: dict[str, list[float]] = {}
    for r in rows:
        v = r[col]
        if v is not None and np.isfinite(v):
            acc.setdefault(r["llm"], []).append(float(v))
    return {m: float(np.mean(v)) for m, v in acc.items()}


def _boot(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, (N_BOOT, n))


def aggregate(rows: list[dict[str, Any]], floors: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (method, k): MAE with CI, ratio to the random mean with CI, 90% coverage,
    per-benchmark RMSE; the floors with their ratio to the random mean at k = 50."""
    by: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["method"], r["k"]), []).append(r)
    out: dict[str, Any] = {"by": {}, "floors": {}}
    for (method, k), sel in sorted(
        by.items(), key=lambda t: (list(LABELS).index(t[0][0]), t[0][1])
    ):
        e = _per_llm(sel, "abs_err")
        llms = sorted(e)
        v = np.array([e[m] for m in llms])
        idx = _boot(len(v))
        entry = {
            "method": method,
            "k": k,
            "n_llms": len(v),
            "mae": 100 * float(v.mean()),
            "mae_ci": [100 * float(q) for q in np.quantile(v[idx].mean(1), [0.025, 0.975])],
            "coverage": _mean([r["covered"] for r in sel]),
            "bench_rmse": 100 * _mean([r["bench_rmse"] for r in sel]),
            "se": 100 * _mean([r["se"] for r in sel]),
        }
        base = _per_llm(by.get((BASE, k), []), "abs_err")
        if base and method != BASE:
            b = np.array([base[m] for m in llms])
            entry["ratio"] = float(v.mean() / b.mean())
            entry["ratio_ci"] = [
                float(q) for q in np.quantile(v[idx].mean(1) / b[idx].mean(1), [0.025, 0.975])
            ]
        out["by"][f"{method}|{k}"] = entry
    base50 = _per_llm(by.get((BASE, GOAL_K), []), "abs_err")
    for name in sorted({f["method"] for f in floors}):
        sel = [f for f in floors if f["method"] == name]
        e = {f["llm"]: f["abs_err"] for f in sel}
        llms = sorted(e)
        v = np.array([e[m] for m in llms])
        idx = _boot(len(v))
        fl = {"mae": 100 * float(v.mean()),
              "mae_ci": [100 * float(q) for q in np.quantile(v[idx].mean(1), [0.025, 0.975])]}  # fmt: skip
        if base50:
            b = np.array([base50[m] for m in llms])
            fl["ratio_at_50"] = float(v.mean() / b.mean())
        out["floors"][name] = fl
    return out


def _mean(vals: list[Any]) -> float:
    v = [float(x) for x in vals if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _fmt(x: float, nd: int = 2) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def markdown(agg: dict[str, Any], header: str) -> str:
    """The tables of one (data set, protocol)."""
    ks = sorted({e["k"] for e in agg["by"].values()})
    methods = list(dict.fromkeys(e["method"] for e in agg["by"].values()))
    lines = [header, "", "Mean absolute error of the predicted target accuracy, points, by k "
             "(ratio to the mean of k random answers in brackets):", "",
             "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
             "|---|" + "---:|" * len(ks)]  # fmt: skip
    for m in methods:
        cells = []
        for k in ks:
            e = agg["by"].get(f"{m}|{k}")
            if e is None:
                cells.append("")
            else:
                r = f" ({e['ratio']:.2f}×)" if "ratio" in e else ""
                cells.append(f"{e['mae']:.2f}{r}")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    for name, fl in agg["floors"].items():
        what = "model" if name.endswith("model") else "AIPW"
        r = f" ({fl['ratio_at_50']:.2f}× the k=50 random mean)" if "ratio_at_50" in fl else ""
        lines.append(
            f"| floor: {what} from all pool answers | {fl['mae']:.2f}{r} |" + " |" * (len(ks) - 1)
        )
    lines += ["", f"At k = {GOAL_K}: MAE [95% CI], ratio to the random mean [95% CI, paired over "
              "LLMs], share of 90% intervals covering the truth, per-benchmark RMSE:", "",
              "| method | MAE | ratio | 90% coverage | bench RMSE |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for m in methods:
        e = agg["by"].get(f"{m}|{GOAL_K}")
        if e is None:
            continue
        ratio = (f"{e['ratio']:.2f} [{e['ratio_ci'][0]:.2f}, {e['ratio_ci'][1]:.2f}]"
                 if "ratio" in e else "1")  # fmt: skip
        lines.append(f"| {LABELS[m]} | {e['mae']:.2f} [{e['mae_ci'][0]:.2f}, {e['mae_ci'][1]:.2f}] | "
                     f"{ratio} | {_fmt(e['coverage'])} | {_fmt(e['bench_rmse'])} |")  # fmt: skip
    return "\n".join(lines)


PLOTTED = ("random_mean", "random_ridge", "neyman_model", "neyman_aipw", "neyman_blend",
           "neyman_calibrated", "adaptive", "anchors_blend")  # fmt: skip


def plot(agg: dict[str, Any], path: Path, title: str) -> None:
    """Error against k for the main methods, with the floor."""
    with figure(path, 1, 1, figsize=(7.5, 4.8), dpi=110) as (_, ax):
        for m in PLOTTED:
            pts = sorted((e for e in agg["by"].values() if e["method"] == m), key=lambda e: e["k"])
            if not pts:
                continue
            ax.errorbar([e["k"] for e in pts], [e["mae"] for e in pts],
                        yerr=np.array([[e["mae"] - e["mae_ci"][0], e["mae_ci"][1] - e["mae"]] for e in pts]).T,
                        fmt="--" if m == BASE else "o-", capsize=2, label=LABELS[m], ms=3)  # fmt: skip
        fl = agg["floors"].get("floor_model")
        if fl:
            ax.axhline(fl["mae"], color="gray", lw=1, label="floor: model from all answers")
        ax.set_xscale("log")
        ax.set_xlabel("k answers of the new LLM")
        ax.set_ylabel("mean |error| of target accuracy (points)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=6.5)


def goals(results: dict[str, Any]) -> list[str]:
    """The goals at k = 50 (ratio to the random mean, coverage) for the default (neyman blend)
    and the best method of each protocol."""
    out = []
    for protocol, res in results.items():
        by = res["aggregate"]["by"]
        cands = [e for e in by.values() if e["k"] == GOAL_K and "ratio" in e]
        if not cands:
            continue
        best = min(cands, key=lambda e: e["ratio"])
        shown = [by.get(f"neyman_blend|{GOAL_K}"), best]
        for e in [e for i, e in enumerate(shown) if e is not None and e not in shown[:i]]:
            out.append(f"- protocol {protocol}, {LABELS[e['method']]}: {e['ratio']:.2f}× the random mean "
                       f"[{e['ratio_ci'][0]:.2f}, {e['ratio_ci'][1]:.2f}], 90% coverage {_fmt(e['coverage'])}")  # fmt: skip
    return out


def report(results: dict[str, Any], name: str, out_dir: Path) -> str:
    """The markdown report of one data set (every protocol), with its plots."""
    titles = {"random": "protocol (a): random folds of LLMs",
              "extrapolate": "protocol (b): trained on the weaker half, the strongest 30% onboarded"}  # fmt: skip
    parts = [f"# Onboarding new LLMs: {name}", "", "Goals at k = 50 (ratio to the random mean "
             "[95% CI], 90% interval coverage):", "", *goals(results)]  # fmt: skip
    for protocol, res in results.items():
        info = res["info"]
        folds = info["folds"]
        head = (f"## {name}, {titles.get(protocol, protocol)}\n\n"
                f"{sum(f['onboarded'] for f in folds)} LLMs onboarded in {len(folds)} fold(s) "
                f"(trained on {', '.join(str(f['trained']) for f in folds)} LLMs); seeds "
                f"{info['seeds']}; {info['minutes']:.0f} min.")  # fmt: skip
        png = out_dir / f"{name}_{protocol}.png"
        plot(res["aggregate"], png, f"{name}, {titles.get(protocol, protocol)}")
        parts += ["", markdown(res["aggregate"], head), "", f"![error vs k]({png.name})"]
    return "\n".join(parts) + "\n"
