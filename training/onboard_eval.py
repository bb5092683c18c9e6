"""Onboarding evaluation (issue 10): new LLMs joining a trained pool from k answers.

    python -m training.experiment onboard --data ../shared/data/mmlu_pro --out runs/onboard [--quick]

The LLMs are split into K folds (5; seeded). Per fold an IrtNet of the reduced experiment size
(training.ood.experiment_setup: d = 64, 1 + 7 experts of width 128; the paper size needs ~30
min per fold on this machine) is trained on the other folds' answers to the training questions.
Each held-out LLM is then onboarded with ``irt_fast.onboard`` alone (numpy, the network frozen):
the probe pool is the training questions it answered, the target the test questions; k in
``KS``; strategies random / stratified / adaptive / variance (``Probe``); several seeds.

Per (LLM, strategy, k, seed): the predicted overall test accuracy against the LLM's true test
accuracy (absolute error, 90% interval coverage), per-benchmark RMSE, pair AUC on its test
answers; the plain mean of the same k answers (random runs: the user's "mean of k random
answers") and the benchmark-stratified mean (stratified runs). The full-information floor fits
each LLM from all its training answers. The probe's ``model_error`` for a fold is the RMS floor
error of the OTHER folds' LLMs beyond what its SE explains, overall and per benchmark (never the
LLM's own test answers).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irt_fast.onboard.fit import fit_llm
from irt_fast.onboard.prior import Prior
from irt_fast.onboard.probe import Probe

KS = (5, 10, 20, 50, 100, 200)
STRATEGIES = ("random", "stratified", "adaptive", "variance")
REAL_STRATEGIES = STRATEGIES


@dataclass
class Case:
    """One held-out LLM: its pool (training questions it answered) and target (test ones)."""

    llm: str
    fold: int
    alpha_pool: np.ndarray
    beta_pool: np.ndarray
    y_pool: np.ndarray
    pool_groups: np.ndarray
    alpha_t: np.ndarray
    beta_t: np.ndarray
    y_t: np.ndarray
    groups_t: np.ndarray
    prior: Prior


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from training.metrics import roc_auc

    return float(roc_auc(y, p))


def _group_true(case: Case) -> dict[str, float]:
    return {g: float(case.y_t[case.groups_t == g].mean()) for g in np.unique(case.groups_t)}


def stratified_mean(y: np.ndarray, g: np.ndarray, share: dict[str, float]) -> float:
    """Σ_g share_g · mean of the answers in g; groups without answers take the overall mean."""
    overall = float(y.mean())
    return float(
        sum(
            w * (float(y[g == name].mean()) if (g == name).any() else overall)
            for name, w in share.items()
        )
    )


def floor_row(case: Case) -> dict[str, Any]:
    """The LLM fitted from every training answer: the model's own error on the target."""
    has_bias = case.prior.dim == case.alpha_pool.shape[1] + 1
    post = fit_llm(case.alpha_pool, case.beta_pool, case.y_pool, case.prior, has_bias=has_bias)
    probe = Probe.from_params(
        case.alpha_pool,
        case.beta_pool,
        case.alpha_t,
        case.beta_t,
        case.prior,
        groups=case.groups_t,
        pool_groups=case.pool_groups,
        model_error=0.0,
        group_model_error=0.0,
    )
    probe.posterior = post
    est = probe.estimate()
    true_g = _group_true(case)
    return {
        "llm": case.llm,
        "fold": case.fold,
        "n_answers": len(case.y_pool),
        "true": float(case.y_t.mean()),
        "est": est.accuracy,
        "err": est.accuracy - float(case.y_t.mean()),
        "se": est.se,
        "group_excess": [
            (est.by_group[g].accuracy - t) ** 2 - est.by_group[g].se ** 2 for g, t in true_g.items()
        ],
        "bench_rmse": float(
            np.sqrt(np.mean([(est.by_group[g].accuracy - t) ** 2 for g, t in true_g.items()]))
        ),
        "auc": _auc(case.y_t, probe.predict_target()),
    }


def onboard_case(
    case: Case,
    strategy: str,
    seed: int,
    ks: tuple[int, ...],
    model_error: float,
    group_model_error: float | None = None,
) -> list[dict[str, Any]]:
    """Probe ``case`` with ``strategy`` up to max(ks) answers; one row per k."""
    probe = Probe.from_params(
        case.alpha_pool,
        case.beta_pool,
        case.alpha_t,
        case.beta_t,
        case.prior,
        groups=case.groups_t,
        pool_groups=case.pool_groups,
        strategy=strategy,
        seed=seed,
        model_error=model_error,
        group_model_error=group_model_error,
    )
    true = float(case.y_t.mean())
    true_g = _group_true(case)
    share = {g: float((case.groups_t == g).mean()) for g in true_g}
    rows = []
    for k in ks:
        k = min(k, len(case.y_pool))
        while probe.n_answers < k:
            # refit often early (every answer up to 5), then every ~20% more answers
            n = min(k - probe.n_answers, max(1, probe.n_answers // 5))
            idx = probe.next(n)
            probe.record(idx, case.y_pool[idx])
        est = probe.estimate()
        idx, y = probe.answers
        g_asked = case.pool_groups[idx]
        group_mean = {
            g: float(y[g_asked == g].mean()) if (g_asked == g).any() else float(y.mean())
            for g in true_g
        }
        rows.append(
            {
                "llm": case.llm,
                "fold": case.fold,
                "strategy": strategy,
                "seed": seed,
                "k": k,
                "true": true,
                "est": est.accuracy,
                "se": est.se,
                "lo": est.lo,
                "hi": est.hi,
                "abs_err": abs(est.accuracy - true),
                "covered": bool(est.lo <= true <= est.hi),
                "bench_rmse": float(
                    np.sqrt(
                        np.mean([(est.by_group[g].accuracy - t) ** 2 for g, t in true_g.items()])
                    )
                ),
                "bench_covered": float(
                    np.mean(
                        [est.by_group[g].lo <= t <= est.by_group[g].hi for g, t in true_g.items()]
                    )
                ),
                "auc": _auc(case.y_t, probe.predict_target()),
                "mean_err": abs(float(y.mean()) - true),
                "strat_mean_err": abs(stratified_mean(y, g_asked, share) - true),
                "mean_bench_rmse": float(
                    np.sqrt(np.mean([(group_mean[g] - t) ** 2 for g, t in true_g.items()]))
                ),
            }
        )
    return rows


def run_cases(
    cases: list[Case],
    ks: tuple[int, ...],
    seeds: list[int],
    strategies: tuple[str, ...],
    log: Any = print,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[int, float]]:
    """Floors, then every (case, strategy, seed). Returns (rows, floors, model_error by fold)."""
    floors = [floor_row(c) for c in cases]
    folds = sorted({c.fold for c in cases})
    model_error, group_error = {}, {}
    for f in folds:
        # the floor's error beyond what its own SE (posterior + the target's Bernoulli noise)
        # explains: the item network's error, which no number of answers removes
        other = [r for r in floors if r["fold"] != f] or floors
        excess = np.mean([r["err"] ** 2 - r["se"] ** 2 for r in other])
        model_error[f] = float(np.sqrt(max(0.0, excess)))
        g_excess = np.mean([e for r in other for e in r["group_excess"]])
        group_error[f] = float(np.sqrt(max(0.0, g_excess)))
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, c in enumerate(cases):
        for strategy in strategies:
            for s in seeds:
                # a different question draw per LLM: with one seed for all, every LLM would get
                # the same questions and their errors would be correlated
                got = onboard_case(
                    c, strategy, s * 100_003 + i, ks, model_error[c.fold], group_error[c.fold]
                )
                rows += [{**r, "seed": s} for r in got]
        log(f"  onboarded {i + 1}/{len(cases)} ({c.llm}) {time.perf_counter() - t0:.0f} s")
    return rows, floors, {"overall": model_error, "group": group_error}


# --------------------------------------------------------------------------- real data
def _fit_fold(ds: Any, mats: dict[str, Any], held: np.ndarray, quick: bool, seed: int) -> Any:
    import torch

    from training.newllm import _drop_llms
    from training.ood import experiment_setup

    try:
        from training.loop import fit_model
    except ImportError:  # pragma: no cover - before the training loop moved
        from training.fit import fit_model
    torch.set_num_threads(2)
    cfg, opts = experiment_setup(ds, quick, seed)
    # 2 epochs (1 quick) of the reduced IrtNet: 5 trainings share this busy 2-core machine
    opts.epochs = 1 if quick else 2
    train = _drop_llms(mats["train"], held)
    val = _drop_llms(mats["val"], held)
    return fit_model(cfg, train, val if val.n_pairs else None, opts).model.eval()


def _fold_params(
    ds: Any, mats: dict[str, Any], held: np.ndarray, quick: bool, seed: int, cache: Path
) -> dict[str, Any]:
    """Item parameters of train/test questions and the trained LLMs' θ, b of one fold's
    model; cached in ``cache`` (an .npz) so a rerun of the report skips the training."""
    import torch

    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if np.array_equal(z["held"], held):
            out = {k: z[k] for k in z.files}
            out["config"] = json.loads(str(z["config"]))
            out["bias"] = None if out["bias"].size == 0 else out["bias"]
            return out
    model = _fit_fold(ds, mats, held, quick, seed)
    kept = np.setdiff1d(np.arange(ds.n_llms), held)
    with torch.no_grad():
        a_tr, b_tr = (
            t.double().numpy() for t in model.item_params(torch.from_numpy(mats["train"].emb))
        )
        a_te, b_te = (
            t.double().numpy() for t in model.item_params(torch.from_numpy(mats["test"].emb))
        )
        theta = model.theta.detach().double().numpy()[kept]
        bias = None if model.llm_bias is None else model.llm_bias.detach().double().numpy()[kept]
    out = {
        "a_tr": a_tr,
        "b_tr": b_tr,
        "a_te": a_te,
        "b_te": b_te,
        "theta": theta,
        "bias": bias,
        "held": held,
        "config": model.cfg.to_json(),
    }
    np.savez(
        cache,
        **{
            **out,
            "bias": np.zeros(0) if bias is None else bias,
            "config": json.dumps(out["config"]),
        },
    )
    return out


def real_cases(
    ds: Any,
    split: dict[str, np.ndarray],
    n_folds: int,
    quick: bool,
    seed: int,
    cache_dir: Path,
    log: Any = print,
) -> tuple[list[Case], dict[str, Any]]:
    """Train one model per fold of LLMs and build the held-out LLMs' cases."""
    from training.fit import matrices
    from training.newllm import _llm_pairs

    mats = matrices(ds, split)
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(np.arange(ds.n_llms) % n_folds)
    bench = np.asarray(ds.benchmarks).astype(str)
    tr_b, te_b = bench[mats["train"].query_rows], bench[mats["test"].query_rows]
    cases: list[Case] = []
    info: dict[str, Any] = {"folds": {}}
    for f in range(n_folds):
        held = np.flatnonzero(fold_of == f)
        t0 = time.perf_counter()
        fp = _fold_params(
            ds,
            mats,
            held,
            quick,
            seed,
            cache_dir / f"fold{f}_of{n_folds}_s{seed}{'_quick' if quick else ''}.npz",
        )
        a_tr, b_tr, a_te, b_te = fp["a_tr"], fp["b_tr"], fp["a_te"], fp["b_te"]
        prior = Prior.from_population(fp["theta"], fp["bias"])
        info["folds"][f] = {
            "held_out": [ds.llm_names[i] for i in held],
            "train_seconds": time.perf_counter() - t0,
        }
        info["config"] = fp["config"]
        log(
            f"fold {f + 1}/{n_folds}: trained without {len(held)} LLMs in "
            f"{time.perf_counter() - t0:.0f} s"
        )
        for h in held:
            tq, ty = _llm_pairs(mats["train"], int(h))
            eq, ey = _llm_pairs(mats["test"], int(h))
            if len(ty) == 0 or len(ey) == 0:
                continue
            cases.append(
                Case(
                    llm=ds.llm_names[int(h)],
                    fold=f,
                    alpha_pool=a_tr[tq],
                    beta_pool=b_tr[tq],
                    y_pool=ty.astype(np.float64),
                    pool_groups=tr_b[tq],
                    alpha_t=a_te[eq],
                    beta_t=b_te[eq],
                    y_t=ey.astype(np.float64),
                    groups_t=te_b[eq],
                    prior=prior,
                )
            )
    return cases, info


# --------------------------------------------------------------------------- entry point
def run(
    ds: Any,
    split: dict[str, np.ndarray],
    out_dir: Any,
    quick: bool,
    seed: int,
    n_folds: int = 5,
    synthetic_llms: int | None = None,
) -> dict[str, Any]:
    """The whole evaluation (see the module docstring); ``training.experiment onboard``."""
    from training import onboard_report as rep

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [seed] if quick else [seed + i for i in range(5)]
    ks = (5, 20, 50) if quick else KS
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    cases, info = real_cases(ds, split, n_folds, quick, seed, out_dir, log)
    rows, floors, model_error = run_cases(cases, ks, seeds, REAL_STRATEGIES, log)
    agg = rep.aggregate(rows, floors)
    cfg = info["config"]
    header = (
        "## Onboarding new LLMs from k answers (issue 10)\n\n"
        f"{len(cases)} LLMs in {n_folds} folds; per fold an IrtNet (d = {cfg['d']}, "
        f"{cfg['n_shared']}+{cfg['n_routed']} experts of width {cfg['expert_dim']}, reduced "
        "experiment size) trained without the fold; each held-out LLM onboarded with "
        "irt_fast.onboard (numpy MAP under the population prior, Laplace posterior). Pool: the "
        "training questions it answered; target: its test questions. Seeds "
        f"{seeds}; model_error per fold (from the other folds' floors): "
        + ", ".join(f"{v * 100:.2f}" for v in model_error["overall"].values())
        + " points overall, "
        + ", ".join(f"{v * 100:.2f}" for v in model_error["group"].values())
        + f" points per benchmark. Wall time {(time.perf_counter() - t0) / 60:.1f} min."
    )
    md = rep.markdown(agg, header)
    png = out_dir / "onboard_error_vs_k.png"
    rep.plot(agg, png, f"MMLU-Pro, {len(cases)} held-out LLMs, {n_folds} folds")
    md += f"\n\n![error vs k]({png.name})\n"
    result: dict[str, Any] = {
        "aggregate": agg,
        "floors": floors,
        "rows": rows,
        "model_error": model_error,
        "info": info,
        "seeds": seeds,
        "ks": list(ks),
        "png": [str(png)],
    }
    if synthetic_llms:
        from training.onboard_synthetic import run_synthetic

        s_md, s_res = run_synthetic(synthetic_llms, out_dir, quick, seed, log)
        md += "\n" + s_md
        result["synthetic"] = s_res
        result["png"] += s_res["png"]
    result["markdown"] = md
    return result
