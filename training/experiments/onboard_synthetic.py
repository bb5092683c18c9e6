"""Onboarding on a synthetic pool with known truth: the true α, β of
``irt_fast.synthetic``, the prior from the other LLMs' true θ. Part of
``training.experiments onboard --synthetic-llms N``, or alone:

    python -m training.experiments.onboard_synthetic --synthetic 5000 --out DIR [--quick] [--onboard M]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from irt_fast.onboard.prior import Prior
from training.experiments.onboard_core import KS, METHODS, Case, run_cases


def synthetic_cases(
    n_llms: int, n_onboard: int, seed: int, d: int = 8, n_queries: int = 3000
) -> list[Case]:
    """Known truth: α, β, θ of ``irt_fast.synthetic``; the prior (and the population) from the
    other LLMs' true θ (no offsets); pool/target = a random half of the questions each."""
    from irt_fast.synthetic import make_synthetic

    ds, truth = make_synthetic(n_llms=n_llms, n_queries=n_queries, d=d, seed=seed)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_queries)
    pool, tgt = np.sort(perm[: n_queries // 2]), np.sort(perm[n_queries // 2 :])
    new = rng.choice(n_llms, size=min(n_onboard, n_llms // 2), replace=False)
    population = np.delete(truth.theta, new, axis=0)
    prior = Prior.from_population(population, None)
    groups = np.asarray(truth.benchmark_names)[truth.query_benchmark]
    # the other LLMs' answers: the regression baseline's training data
    rest = np.setdiff1d(np.arange(n_llms), new)
    y_rest = (rng.random((len(rest), n_queries)) < truth.prob[rest]).astype(np.float64)
    tpy, tacc = y_rest[:, pool], y_rest[:, tgt].mean(1)
    out = []
    for m in new:
        y = (rng.random(n_queries) < truth.prob[m]).astype(np.float64)
        out.append(
            Case(
                llm=f"llm_{m}",
                fold=0,
                alpha_pool=truth.alpha[pool],
                beta_pool=truth.beta[pool],
                y_pool=y[pool],
                pool_groups=groups[pool],
                alpha_t=truth.alpha[tgt],
                beta_t=truth.beta[tgt],
                y_t=y[tgt],
                groups_t=groups[tgt],
                prior=prior,
                train_pool_y=tpy,
                train_target_acc=tacc,
                population=population,
            )
        )
    return out


def run_synthetic(
    n_llms: int, out_dir: Path, quick: bool, seed: int, log: Any = print, n_onboard: int = 0
) -> tuple[str, dict[str, Any]]:
    """Every method but the anchors and the calibration on a synthetic pool of ``n_llms`` LLMs
    with known truth (the true item parameters: the model is right by construction)."""
    from training.experiments import onboard_report as rep

    t1 = time.perf_counter()
    seeds = [seed] if quick else [seed, seed + 1]
    ks = (10, 50) if quick else KS
    syn = synthetic_cases(n_llms, n_onboard or (10 if quick else 30), seed)
    methods = tuple(m for m in METHODS if not m.startswith("anchors") and "calibrated" not in m)
    s_rows, s_floors = run_cases(syn, ks, seeds, methods=methods, log=log)
    s_agg = rep.aggregate(s_rows, s_floors)
    s_png = Path(out_dir) / "onboard_synthetic_error_vs_k.png"
    rep.plot(s_agg, s_png, f"synthetic pool of {n_llms} LLMs (known truth)")
    md = (
        rep.markdown(
            s_agg,
            (
                f"### Synthetic pool: {n_llms} LLMs, known truth\n\n"
                f"irt_fast.synthetic (d = 8, 3000 questions, 6 benchmarks); the true α, β; prior "
                f"from the other LLMs' true θ (no offsets); {len(syn)} LLMs onboarded, seeds {seeds}; "
                f"pool/target a random half of the questions each; "
                f"{(time.perf_counter() - t1) / 60:.1f} min."
            ),
        )
        + f"\n\n![synthetic]({s_png.name})\n"
    )
    return md, {"aggregate": s_agg, "n_llms": n_llms, "png": [str(s_png)], "rows": s_rows}


def main(argv: list[str] | None = None) -> int:
    """``python -m training.experiments.onboard_synthetic --synthetic N --out DIR [--quick] [--onboard M]``:
    the synthetic part alone (the real-data part runs through training.experiment)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m training.experiments.onboard_synthetic")
    p.add_argument("--synthetic", type=int, required=True, help="LLMs in the synthetic pool")
    p.add_argument("--onboard", type=int, default=0, help="LLMs to onboard (default 30)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    md, res = run_synthetic(args.synthetic, args.out, args.quick, args.seed, n_onboard=args.onboard)
    (args.out / "synthetic_report.md").write_text(md)
    (args.out / "synthetic_result.json").write_text(json.dumps(res, indent=1, default=float))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
