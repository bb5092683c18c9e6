"""Experiment 5: adding a new LLM without retraining.

``n_holdout`` LLMs (5; seeded choice) are removed entirely from training. An IrtNet is trained
on the other LLMs' answers to the training questions. For each held-out LLM, only its θ and
offset b are fitted (``fit_new_llm``: MAP logistic regression on the frozen α/β of k of its
answers to *training* questions, Gaussian prior on θ centred on the trained LLMs' mean θ), for
k = 10, 50, 200 and "all" (every training answer: the reference), over several seeds. Measured
on the test questions: pair accuracy / AUC / log-loss, and per-benchmark predicted (mean P) vs
true accuracy (RMSE over benchmarks). Baseline: the prior, i.e. the LLM's accuracy on its k
answers (smoothed toward 0.5 by one pseudo-count), predicted for every question.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from training.data import PairMatrix
from training.evaluation.plots import figure
from training.experiments.ood import experiment_setup
from training.fit import matrices
from training.metrics import bootstrap_indices, correctness_metrics, percentile_ci, rmse
from training.model import IrtModel

KS: tuple[int | str, ...] = (10, 50, 200, "all")


def fit_new_llm(
    model: IrtModel,
    emb: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    steps: int = 100,
    prior_std: float = 1.0,
    *,
    prior_mean: torch.Tensor | None = None,
    bias_prior_mean: float = 0.0,
    bias_prior_std: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """θ ``[d]`` and offset b (scalar tensor) of a new LLM from its answers ``y`` to the
    questions with embeddings ``emb``; everything else in ``model`` stays frozen.

    MAP estimate: Σ BCE(α_q·θ − β_q + b, y_q) + ‖θ − μ‖²/(2σ²) + (b − μ_b)²/(2σ_b²), a convex
    problem solved with L-BFGS (``steps`` iterations). The prior keeps k = 10 from overfitting:
    with few answers θ stays near μ (default 0, or ``prior_mean``)."""
    model.eval()
    v = torch.as_tensor(np.asarray(emb, np.float32) if not torch.is_tensor(emb) else emb)
    target = torch.as_tensor(np.asarray(y, np.float32) if not torch.is_tensor(y) else y).float()
    with torch.no_grad():
        alpha, beta = model.item_params(v.float())
    d = alpha.shape[1]
    mu = torch.zeros(d) if prior_mean is None else prior_mean.detach().float().reshape(d)
    theta = mu.clone().requires_grad_(True)
    bias = torch.tensor(float(bias_prior_mean), requires_grad=True)
    use_bias = model.llm_bias is not None
    params = [theta, bias] if use_bias else [theta]
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logit = alpha @ theta - beta + (bias if use_bias else 0.0)
        loss = F.binary_cross_entropy_with_logits(logit, target, reduction="sum")
        loss = loss + (theta - mu).pow(2).sum() / (2 * prior_std**2)
        if use_bias:
            loss = loss + (bias - bias_prior_mean) ** 2 / (2 * bias_prior_std**2)
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach(), bias.detach() if use_bias else torch.zeros(())


def _llm_pairs(m: PairMatrix, llm: int) -> tuple[np.ndarray, np.ndarray]:
    """(local query index, label) of LLM ``llm``'s pairs in ``m``."""
    sel = m.llm == llm
    return m.query_of_pair()[sel], m.y[sel]


def _drop_llms(m: PairMatrix, drop: np.ndarray) -> PairMatrix:
    keep = ~np.isin(m.llm, drop)
    q = m.query_of_pair()[keep]
    ptr = np.concatenate(([0], np.cumsum(np.bincount(q, minlength=m.n_queries)))).astype(np.int64)
    return PairMatrix(m.emb, ptr, m.llm[keep], m.y[keep], m.query_rows, m.n_llms)


def _plot(path: Path, table: dict[str, dict[str, float]]) -> None:
    ks = [k for k in table if k != "all"]
    with figure(path, 1, 2, figsize=(9, 3.8), dpi=110) as (_, axes):
        for ax, (metric, label) in zip(
            axes, [("auc", "test AUC"), ("bench_rmse", "per-benchmark accuracy RMSE")], strict=True
        ):
            ax.plot(ks, [table[k][f"irtnet_{metric}"] for k in ks], "o-", label="IrtNet θ-only fit")
            ax.plot(
                ks, [table[k][f"prior_{metric}"] for k in ks], "s--", label="prior (k-accuracy)"
            )
            if "all" in table:
                ax.axhline(table["all"][f"irtnet_{metric}"], color="gray", lw=1, label="θ from all")
            ax.set_xlabel("k answers of the new LLM")
            ax.set_ylabel(label)
            ax.legend(fontsize=8)


def llm_bootstrap(
    rows: list[dict[str, Any]], metric: str, n_boot: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """95% CIs, resampling the held-out LLMs (each LLM's rows averaged over seeds first), of the
    mean IrtNet ``metric`` and of IrtNet − prior."""
    llms = sorted({r["llm"] for r in rows})
    net = np.array([np.mean([r[f"irtnet_{metric}"] for r in rows if r["llm"] == m]) for m in llms])
    pri = np.array([np.mean([r[f"prior_{metric}"] for r in rows if r["llm"] == m]) for m in llms])
    idx = bootstrap_indices(len(llms), n_boot, seed)
    return {
        "irtnet": list(percentile_ci(net[idx].mean(axis=1))),
        "irtnet_minus_prior": list(percentile_ci((net - pri)[idx].mean(axis=1))),
    }


def run(
    ds: Any,
    split: dict[str, np.ndarray],
    out_dir: Path,
    quick: bool,
    seed: int,
    n_holdout: int = 5,
) -> dict[str, Any]:
    from training.fit import fit_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_holdout = min(n_holdout, max(1, ds.n_llms // 4))
    held = np.sort(rng.choice(ds.n_llms, n_holdout, replace=False))
    mats = matrices(ds, split)
    train = _drop_llms(mats["train"], held)
    val = _drop_llms(mats["val"], held)
    test = mats["test"]
    cfg, opts = experiment_setup(ds, quick, seed)
    model = fit_model(cfg, train, val if val.n_pairs else None, opts).model
    model.eval()
    kept = np.setdiff1d(np.arange(ds.n_llms), held)
    with torch.no_grad():
        mu = model.theta[torch.from_numpy(kept)].mean(0)
        mu_b = (
            float(model.llm_bias[torch.from_numpy(kept)].mean())
            if model.llm_bias is not None
            else 0.0
        )
        a_te, b_te = model.item_params(torch.from_numpy(test.emb))
    bench = ds.benchmarks
    te_bench = bench[test.query_rows]
    seeds = [seed + i for i in range(2 if quick else 3)]
    rows: list[dict[str, Any]] = []
    for h in held:
        tq, ty = _llm_pairs(mats["train"], int(h))
        eq, ey = _llm_pairs(test, int(h))
        if len(ey) == 0 or len(ty) == 0:
            continue
        eb = te_bench[eq]
        names = sorted(set(eb.tolist()))
        true_b = np.array([ey[eb == n].mean() for n in names])
        for k in KS:
            for s in seeds if k != "all" else seeds[:1]:
                kk = len(ty) if k == "all" else min(int(k), len(ty))
                pick = np.random.default_rng([s, int(h)]).choice(len(ty), kk, replace=False)
                theta, bias = fit_new_llm(
                    model,
                    mats["train"].emb[tq[pick]],
                    ty[pick],
                    prior_mean=mu,
                    bias_prior_mean=mu_b,
                )
                with torch.no_grad():
                    logit = a_te[torch.from_numpy(eq)] @ theta - b_te[torch.from_numpy(eq)] + bias
                    p = torch.sigmoid(logit).numpy().astype(np.float64)
                prior_p = (ty[pick].sum() + 0.5) / (kk + 1.0)
                c_net = correctness_metrics(ey, p)
                c_pri = correctness_metrics(ey, np.full(len(ey), prior_p))
                pred_b = np.array([p[eb == n].mean() for n in names])
                rows.append(
                    {
                        "llm": ds.llm_names[int(h)],
                        "k": str(k),
                        "seed": s,
                        "irtnet_accuracy": c_net["accuracy"],
                        "irtnet_auc": c_net["auc"],
                        "irtnet_logloss": c_net["logloss"],
                        "irtnet_bench_rmse": rmse(pred_b, true_b),
                        "prior_accuracy": c_pri["accuracy"],
                        "prior_auc": c_pri["auc"],
                        "prior_logloss": c_pri["logloss"],
                        "prior_bench_rmse": rmse(np.full(len(names), prior_p), true_b),
                    }
                )
    metrics = [c for c in rows[0] if c.startswith(("irtnet_", "prior_"))] if rows else []
    table: dict[str, dict[str, float]] = {}
    cis: dict[str, dict[str, dict[str, list[float]]]] = {}
    for k in KS:
        sel = [r for r in rows if r["k"] == str(k)]
        if sel:
            table[str(k)] = {c: float(np.mean([r[c] for r in sel])) for c in metrics}
            table[str(k)]["n_fits"] = len(sel)
            cis[str(k)] = {m: llm_bootstrap(sel, m, seed=seed) for m in ("accuracy", "bench_rmse")}
    png = out_dir / "newllm_vs_k.png"
    if table:
        _plot(png, table)
    lines = [
        "## Adding a new LLM without retraining",
        "",
        f"{len(held)} LLMs held out of training ({', '.join(ds.llm_names[i] for i in held)}); "
        f"IrtNet d={cfg.d}, {cfg.n_shared}+{cfg.n_routed} experts, lr {opts.lr}, ≤{opts.epochs} "
        f"epochs trained on the others. Per held-out LLM: θ and b fitted alone (L-BFGS, "
        f"N(mean θ, 1) prior) from k of its training-question answers, seeds {seeds}; "
        "metrics on its test-question pairs, averaged over LLMs × seeds. Prior = its accuracy "
        "on the k answers.",
        "",
        "| k | IrtNet acc | prior acc | IrtNet AUC | IrtNet log-loss | prior log-loss "
        "| IrtNet bench RMSE | prior bench RMSE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, r in table.items():
        lines.append(
            f"| {k} | {r['irtnet_accuracy']:.3f} | {r['prior_accuracy']:.3f} | "
            f"{r['irtnet_auc']:.3f} | {r['irtnet_logloss']:.4f} | {r['prior_logloss']:.4f} | "
            f"{r['irtnet_bench_rmse']:.4f} | {r['prior_bench_rmse']:.4f} |"
        )
    lines += [
        "",
        "95% CIs resampling the held-out LLMs (each averaged over seeds; with 5 LLMs these are "
        "rough): IrtNet − prior accuracy and bench RMSE per k: "
        + "; ".join(
            f"k={k}: acc [{c['accuracy']['irtnet_minus_prior'][0]:+.3f}, "
            f"{c['accuracy']['irtnet_minus_prior'][1]:+.3f}], RMSE "
            f"[{c['bench_rmse']['irtnet_minus_prior'][0]:+.4f}, "
            f"{c['bench_rmse']['irtnet_minus_prior'][1]:+.4f}]"
            for k, c in cis.items()
        )
        + ".",
        "",
        f"![new LLM vs k]({png.name})",
        "",
    ]
    return {
        "held_out": [ds.llm_names[i] for i in held],
        "seeds": seeds,
        "by_k": table,
        "ci_by_k": cis,
        "rows": rows,
        "config": cfg.to_json(),
        "png": [str(png)] if table else [],
        "markdown": "\n".join(lines),
    }
