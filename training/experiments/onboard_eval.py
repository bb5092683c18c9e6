"""Onboarding evaluation: new LLMs joining a trained pool from k answers, every method side by
side, on two protocols and two data sets.

    python -m training.experiments.onboard_eval --data ../shared/data/mmlu_pro --out docs/results/onboard
    python -m training.experiments.onboard_eval --data leaderboard --out docs/results/onboard
    (python -m training.experiments onboard --data DIR --out DIR runs the MMLU-Pro part)

Protocols (``training.experiments.onboard_folds``): (a) ``random``: 5 seeded folds of LLMs, each onboarded
into a model trained without its fold; (b) ``extrapolate``: a model trained on the weaker half
of the LLMs by accuracy, the strongest 30% onboarded. Fold models: IrtNet of the ``reduced``
preset (d = 64, 1 + 7 experts of 256 → 128) trained with the data-chosen recipe, cached under
``--cache``. Per onboarded LLM the pool is the training questions and the target the test
questions (those every onboarded LLM of the fold answered); the truth is its accuracy on the
target. Methods: ``training.experiments.onboard_core.METHODS`` at k in ``KS``, 5 seeds (a different question
draw per LLM and seed), and the all-answers floors. The model error term of a fold comes from
the other folds' floors; the calibration of a fold from its trained LLMs only (left out one at
a time), never from the onboarded LLMs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from irt_fast.onboard.anchors import choose_anchors
from irt_fast.onboard.prior import Prior
from training.experiments.onboard_calibration import fit_calibration, simulate
from training.experiments.onboard_core import KS, METHODS, Case, run_cases
from training.experiments.onboard_folds import FoldModel, fold_model, load_data, protocol_folds

__all__ = ["evaluate", "fold_cases", "run"]

MAX_CALIB_LLMS = 60  # trained LLMs simulated per fold for the calibration


def dense_answers(ds: Any) -> np.ndarray:
    """float32 ``[n_llms, n_queries]``: 0/1, NaN where unanswered."""
    r = ds.responses
    y = np.full((ds.n_llms, ds.n_queries), np.nan, dtype=np.float32)
    y[r["llm_idx"].to_numpy(), r["q_idx"].to_numpy()] = r["correct"].to_numpy()
    return y


def _rows_of(ds: Any, ids: np.ndarray) -> np.ndarray:
    from training.pairs import query_rows

    return query_rows(ds, list(ids))


def fold_cases(
    ds: Any,
    split: dict[str, np.ndarray],
    fm: FoldModel,
    fold: int,
    y: np.ndarray,
    *,
    max_onboard: int | None,
    seed: int,
) -> tuple[list[Case], list[Case]]:
    """(cases of the fold's onboarded LLMs, calibration cases of its trained LLMs)."""
    rng = np.random.default_rng(seed + 7919 * fold)
    tr, te, va = (_rows_of(ds, split[p]) for p in ("train", "test", "val"))
    onboard = np.asarray(fm.onboard)
    # LLMs that answered (almost) every training and test question: on sparse leaderboards
    # many LLMs answered a few benchmarks only, which would make their target a different set
    full = (np.isfinite(y[:, tr]).mean(1) > 0.85) & (np.isfinite(y[:, te]).mean(1) > 0.85)
    onboard = onboard[full[onboard]]
    if max_onboard is not None and len(onboard) > max_onboard:
        onboard = np.sort(rng.choice(onboard, max_onboard, replace=False))
    pool = tr[np.isfinite(y[np.ix_(onboard, tr)]).all(0)]
    target = te[np.isfinite(y[np.ix_(onboard, te)]).all(0)]
    bench = np.asarray(ds.benchmarks).astype(str)
    prior = Prior.from_population(fm.theta, fm.bias)
    trained = np.asarray(fm.trained)
    ridge_llms = trained[full[trained]]
    tpy = y[np.ix_(ridge_llms, pool)].astype(np.float64)
    tacc = np.nanmean(y[np.ix_(ridge_llms, target)], axis=1).astype(np.float64)

    def case(m: int, pool: np.ndarray, target: np.ndarray, prior: Prior, **extra: Any) -> Case:
        return Case(
            llm=ds.llm_names[int(m)], fold=fold,
            alpha_pool=fm.alpha[pool], beta_pool=fm.beta[pool],
            y_pool=y[m, pool].astype(np.float64), pool_groups=bench[pool],
            alpha_t=fm.alpha[target], beta_t=fm.beta[target],
            y_t=y[m, target].astype(np.float64), groups_t=bench[target],
            prior=prior, **extra,
        )  # fmt: skip

    rows = fm.theta if fm.bias is None else np.column_stack([fm.theta, fm.bias])
    cases = [case(m, pool, target, prior, train_pool_y=tpy, train_target_acc=tacc,
                  population=rows) for m in onboard]  # fmt: skip
    # calibration: trained LLMs on questions split into a pseudo-pool and a pseudo-target;
    # the validation questions when there are enough, else the training ones
    qs = va if len(va) >= 400 else tr
    calib_llms = trained[full[trained] & (np.isfinite(y[np.ix_(trained, qs)]).mean(1) > 0.85)]
    if len(calib_llms) > MAX_CALIB_LLMS:
        calib_llms = np.sort(rng.choice(calib_llms, MAX_CALIB_LLMS, replace=False))
    perm = rng.permutation(qs)
    half_p, half_t = np.sort(perm[: len(qs) // 2]), np.sort(perm[len(qs) // 2 :])
    loo = len(trained) < 200  # a small population: leave the LLM out of its own prior
    calib = []
    for m in calib_llms:
        keep = trained != m
        pr = (
            Prior.from_population(fm.theta[keep], None if fm.bias is None else fm.bias[keep])
            if loo
            else prior
        )
        p_ok, t_ok = half_p[np.isfinite(y[m, half_p])], half_t[np.isfinite(y[m, half_t])]
        calib.append(case(m, p_ok, t_ok, pr))
    return cases, calib


def evaluate(
    data: tuple[Any, dict[str, np.ndarray], str],
    protocol: str,
    out_dir: Path,
    cache: Path,
    *,
    seeds: list[int],
    ks: tuple[int, ...] = KS,
    n_folds: int = 5,
    max_onboard: int | None = None,
    methods: tuple[str, ...] = METHODS,
    preset: str = "reduced",
    log: Any = print,
) -> dict[str, Any]:
    """One (data set, protocol): fold models (cached), cases, calibration, anchors, every
    method; the rows are also written to ``out_dir/rows_<name>_<protocol>.parquet``.
    ``data`` is (dataset, split by question, short name), as ``load_data`` gives it."""
    import polars as pl

    t0 = time.perf_counter()
    ds, split, name = data
    y = dense_answers(ds)
    cases, anchors, calibration, info = [], {}, {}, {"folds": []}
    for f, (tr, ob) in enumerate(protocol_folds(ds, protocol, n_folds, seed=0)):
        fm = fold_model(ds, split, tr, ob, preset=preset, seed=0, cache_dir=cache, log=log)
        fc, cc = fold_cases(ds, split, fm, f, y, max_onboard=max_onboard, seed=0)
        log(f"{name} {protocol} fold {f}: {len(fm.trained)} trained, {len(fc)} onboarded, "
            f"pool {len(fc[0].y_pool) if fc else 0}, target {len(fc[0].y_t) if fc else 0}")  # fmt: skip
        if not fc:
            continue
        cases += fc
        c0 = fc[0]
        anchors[f] = {
            k: [
                choose_anchors(
                    c0.alpha_pool,
                    c0.beta_pool,
                    c0.alpha_t,
                    c0.beta_t,
                    c0.prior,
                    k,
                    groups=c0.groups_t,
                    pool_groups=c0.pool_groups,
                    seed=s,
                )
                for s in seeds
            ]  # fmt: skip
            for k in ks
            if k <= len(c0.y_pool)
        }
        if "neyman_calibrated" in methods:
            calibration[f] = fit_calibration(simulate(cc, ks, seeds[:2]))
        info["folds"].append({"trained": len(fm.trained), "onboarded": len(fc),
                              "calibration_llms": len(cc), "config": fm.config})  # fmt: skip
    rows, floors = run_cases(cases, ks, seeds, anchors=anchors, calibration=calibration,
                             methods=methods, log=log)  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows + floors).write_parquet(out_dir / f"rows_{name}_{protocol}.parquet")
    info.update(name=name, protocol=protocol, seeds=seeds, ks=list(ks), minutes=(time.perf_counter() - t0) / 60,
                calibration={f: c.to_json() for f, c in calibration.items()})  # fmt: skip
    return {"rows": rows, "floors": floors, "info": info}


def run(ds: Any, split: dict[str, np.ndarray], out_dir: Any, quick: bool, seed: int,
        n_folds: int = 5, synthetic_llms: int | None = None) -> dict[str, Any]:  # fmt: skip
    """``training.experiments onboard``: MMLU-Pro (the dataset given), protocol (a), a report."""
    from training.experiments import onboard_report as rep

    out_dir = Path(out_dir)
    seeds = [seed] if quick else [seed + i for i in range(5)]
    ks = (10, 50) if quick else KS
    res = evaluate((ds, split, "dataset"), "random", out_dir, out_dir / "cache", seeds=seeds,
                   ks=ks, n_folds=n_folds)  # fmt: skip
    agg = rep.aggregate(res["rows"], res["floors"])
    md = rep.markdown(agg, "## Onboarding new LLMs, protocol (a): random folds of LLMs")
    out: dict[str, Any] = {"aggregate": agg, "info": res["info"]}
    if synthetic_llms:
        from training.experiments.onboard_synthetic import run_synthetic

        s_md, s_res = run_synthetic(synthetic_llms, out_dir, quick, seed)
        md += "\n\n" + s_md
        out["synthetic"] = {"aggregate": s_res["aggregate"], "n_llms": synthetic_llms}
    out["markdown"] = md
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation for one data set and write its report (see the module docstring)."""
    import argparse

    from training.experiments import onboard_report as rep

    p = argparse.ArgumentParser(prog="python -m training.experiments.onboard_eval")
    p.add_argument("--data", required=True, help="dataset directory, or 'leaderboard'")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=Path("/tmp/onboard_cache"))
    p.add_argument("--protocols", default="random,extrapolate")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--max-onboard", type=int, default=None,
                   help="onboarded LLMs per fold at most (a seeded sample)")  # fmt: skip
    p.add_argument("--ks", default=",".join(map(str, KS)))
    p.add_argument("--methods", default=",".join(METHODS))
    args = p.parse_args(argv)
    ks = tuple(int(k) for k in args.ks.split(","))
    methods = tuple(m for m in args.methods.split(",") if m)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS thread: the machine is shared; many small products anyway
    results = {}
    data = load_data(args.data)
    for protocol in args.protocols.split(","):
        res = evaluate(data, protocol, args.out, args.cache, seeds=list(range(args.seeds)),
                       ks=ks, max_onboard=args.max_onboard, methods=methods,
                       log=lambda m: print(m, flush=True))  # fmt: skip
        agg = rep.aggregate(res["rows"], res["floors"])
        results[protocol] = {"aggregate": agg, "info": res["info"]}
    name = next(iter(results.values()))["info"]["name"]
    md = rep.report(results, name, args.out)
    (args.out / f"{name}.md").write_text(md)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1, default=float))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
