"""Out-of-distribution benchmarks: every LLM's accuracy on a benchmark never seen in training.

For each benchmark B (``quick``: three of them), ``splits.leave_one_benchmark_out`` holds out all
of B's questions; an IrtNet is trained on the rest, and each LLM's accuracy on B is predicted as
the mean P(correct) over its observed pairs on B. Compared with the truth (the LLM's observed
accuracy on B) against two baselines: the per-LLM prior (its accuracy on the training
benchmarks) and a matrix-factorisation item network (``method="mf"``, same θ/β structure, a
linear map of the embedding), trained with the same recipe.

The ``split`` argument of ``run`` is ignored (this experiment makes its own splits); it is
accepted so all experiments share one signature.

The model and recipe are the experiments' shared setup (training.experiments.setup).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.data import PairMatrix
from training.evaluation.plots import figure
from training.experiments.setup import experiment_setup, train_on
from training.loop import predict_pairs, resolve_device
from training.metrics import bootstrap_indices, percentile_ci, rmse
from training.pairs import matrices

__all__ = ["benchmark_bootstrap", "experiment_setup", "per_llm_mean", "run", "train_on"]


def per_llm_mean(m: PairMatrix, values: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (one per pair of ``m``) per LLM; NaN for LLMs with no pair."""
    n = np.bincount(m.llm, minlength=m.n_llms).astype(np.float64)
    s = np.bincount(m.llm, weights=np.asarray(values, np.float64), minlength=m.n_llms)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _scatter(path: Path, true: np.ndarray, preds: dict[str, np.ndarray], title: str) -> None:
    with figure(path, figsize=(5.5, 5), dpi=110) as (_, ax):
        for name, p in preds.items():
            ax.scatter(true, p, s=10, alpha=0.6, label=f"{name} (RMSE {rmse(p, true):.3f})")
        lo = float(min(np.nanmin(true), *(np.nanmin(p) for p in preds.values())))
        hi = float(max(np.nanmax(true), *(np.nanmax(p) for p in preds.values())))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel("true accuracy on the held-out benchmark")
        ax.set_ylabel("predicted accuracy")
        ax.set_title(title)
        ax.legend(fontsize=8)


def benchmark_bootstrap(
    true: list[np.ndarray], preds: dict[str, list[np.ndarray]], n_boot: int, seed: int
) -> dict[str, list[float]]:
    """95% CIs of the overall RMSE of each method and of its difference from IrtNet's, by
    resampling whole held-out benchmarks (the unit that varies: the LLMs of one benchmark
    share its model and its errors)."""
    idx = bootstrap_indices(len(true), n_boot, seed)
    samples: dict[str, list[float]] = {k: [] for k in preds}
    for sel in idx:
        t = np.concatenate([true[i] for i in sel])
        for k, v in preds.items():
            samples[k].append(rmse(np.concatenate([v[i] for i in sel]), t))
    out = {k: list(percentile_ci(np.asarray(v))) for k, v in samples.items()}
    for k in preds:
        if k != "irtnet" and "irtnet" in preds:
            diff = np.asarray(samples[k]) - np.asarray(samples["irtnet"])
            out[f"{k}_minus_irtnet"] = list(percentile_ci(diff))
    return out


def run(
    ds: Any,
    split: Any,
    out_dir: Path,
    quick: bool,
    seed: int,
    max_benchmarks: int | None = None,
) -> dict[str, Any]:
    """``max_benchmarks``: hold out only this many (a seeded choice); ``quick`` means 3."""
    from irt_fast.splits import leave_one_benchmark_out

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device("cpu")
    names = sorted(set(ds.benchmarks.tolist()))
    limit = 3 if quick and max_benchmarks is None else max_benchmarks
    if limit is not None and len(names) > limit:
        pick = np.random.default_rng(seed).choice(len(names), limit, replace=False)
        names = [names[i] for i in sorted(pick)]
    methods = ["irtnet", "prior", "mf"]
    per_bench: dict[str, dict[str, Any]] = {}
    true_all: list[np.ndarray] = []
    pred_all: dict[str, list[np.ndarray]] = {k: [] for k in methods}
    for b in names:
        mats = matrices(ds, leave_one_benchmark_out(ds, b, seed=seed))
        test = mats["test"]
        true = per_llm_mean(test, test.y)
        preds = {"prior": mats["train"].llm_base_rates(smoothing=0.0)}
        for method in ("irtnet", "mf"):
            model = train_on(ds, mats, quick, seed, method)
            preds[method] = per_llm_mean(test, predict_pairs(model, test, device))
        ok = ~np.isnan(true)
        per_bench[b] = {
            "n_queries": test.n_queries,
            "n_llms": int(ok.sum()),
            "mean_true_accuracy": float(np.nanmean(true)),
            **{f"rmse_{k}": rmse(preds[k][ok], true[ok]) for k in methods},
        }
        true_all.append(true[ok])
        for k in methods:
            pred_all[k].append(preds[k][ok])
    t = np.concatenate(true_all)
    p = {k: np.concatenate(v) for k, v in pred_all.items()}
    overall = {f"rmse_{k}": rmse(p[k], t) for k in methods}
    overall["n_points"] = int(len(t))
    overall["ci"] = benchmark_bootstrap(true_all, pred_all, 1000, seed)
    png = out_dir / "ood_pred_vs_true.png"
    _scatter(png, t, {k: p[k] for k in ("irtnet", "mf", "prior")}, "leave-one-benchmark-out")
    cfg, opts = experiment_setup(ds, quick, seed)
    lines = [
        "## Out-of-distribution benchmark prediction",
        "",
        f"Leave one benchmark out ({len(names)} benchmarks), predict each LLM's accuracy on it as "
        "the mean P(correct) over its pairs; RMSE over LLMs (accuracy units). Model: "
        f"IrtNet d={cfg.d}, {cfg.n_shared}+{cfg.n_routed} experts {cfg.hidden_dim}→"
        f"{cfg.expert_dim}, lr {opts.lr}, ≤{opts.epochs} epochs, seed {seed}.",
        "",
        "| benchmark | queries | true acc (mean) | IrtNet | MF | prior |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for b, r in per_bench.items():
        lines.append(
            f"| {b} | {r['n_queries']} | {r['mean_true_accuracy']:.3f} | {r['rmse_irtnet']:.4f} "
            f"| {r['rmse_mf']:.4f} | {r['rmse_prior']:.4f} |"
        )
    lines.append(
        f"| **all** ({overall['n_points']} LLM×benchmark) | | | **{overall['rmse_irtnet']:.4f}** "
        f"| {overall['rmse_mf']:.4f} | {overall['rmse_prior']:.4f} |"
    )
    oc = overall["ci"]
    lines += [
        "",
        "95% CIs of the overall RMSE, resampling the held-out benchmarks (1,000 resamples): "
        + ", ".join(f"{k} [{oc[k][0]:.4f}, {oc[k][1]:.4f}]" for k in methods)
        + "; MF − IrtNet "
        + f"[{oc['mf_minus_irtnet'][0]:+.4f}, {oc['mf_minus_irtnet'][1]:+.4f}], prior − IrtNet "
        + f"[{oc['prior_minus_irtnet'][0]:+.4f}, {oc['prior_minus_irtnet'][1]:+.4f}] "
        + "(positive: IrtNet's error is lower). One training seed per held-out benchmark.",
        "",
        f"![predicted vs true]({png.name})",
        "",
    ]
    return {
        "benchmarks": names,
        "per_benchmark": per_bench,
        "overall": overall,
        "config": cfg.to_json(),
        "epochs": opts.epochs,
        "png": [str(png)],
        "markdown": "\n".join(lines),
    }
