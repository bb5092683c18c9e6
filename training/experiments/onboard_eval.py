"""Onboarding evaluation: new LLMs joining a trained pool from k answers.

    python -m training.experiments onboard --data ../shared/data/mmlu_pro --out runs/onboard \
        [--quick]

The LLMs are split into K folds (5; seeded). Per fold an IrtNet of the reduced experiment size
(training.experiments.setup.experiment_setup: d = 64, 1 + 7 experts of width 128; the paper
size needs ~30 min per fold on this machine) is trained on the other folds' answers to the training questions.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from irt_fast.onboard.prior import Prior
from training.experiments.onboard_core import KS, REAL_STRATEGIES, Case, run_cases

if TYPE_CHECKING:  # torch is imported only when a fold is trained
    from training.data import PairMatrix

__all__ = ["real_cases", "run"]


# --------------------------------------------------------------------------- real data
def _llm_pairs(m: PairMatrix, llm: int) -> tuple[np.ndarray, np.ndarray]:
    """(local query index, label) of LLM ``llm``'s pairs in ``m``."""
    sel = m.llm == llm
    return m.query_of_pair()[sel], m.y[sel]


def _drop_llms(m: PairMatrix, drop: np.ndarray) -> PairMatrix:
    """``m`` without the pairs of the LLMs ``drop`` (the held-out fold)."""
    from training.data import PairMatrix

    keep = ~np.isin(m.llm, drop)
    q = m.query_of_pair()[keep]
    ptr = np.concatenate(([0], np.cumsum(np.bincount(q, minlength=m.n_queries)))).astype(np.int64)
    return PairMatrix(m.emb, ptr, m.llm[keep], m.y[keep], m.query_rows, m.n_llms)


def _fit_fold(ds: Any, mats: dict[str, Any], held: np.ndarray, quick: bool, seed: int) -> Any:
    import torch

    from training.experiments.ood import experiment_setup

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
    """The whole evaluation (see the module docstring); ``training.experiments onboard``."""
    from training.experiments import onboard_report as rep

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
        "## Onboarding new LLMs from k answers\n\n"
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
        from training.experiments.onboard_synthetic import run_synthetic

        s_md, s_res = run_synthetic(synthetic_llms, out_dir, quick, seed, log)
        md += "\n" + s_md
        result["synthetic"] = s_res
        result["png"] += s_res["png"]
    result["markdown"] = md
    return result
