"""How well could *any* estimator score a new LLM from k answers? A Bayes oracle on the
leaderboard preset, where the truth is known.

The oracle knows what no fitted model can: the exact P(correct) row of every other LLM of the
population (``Truth.prob`` of ``irt_fast.synthetic.make_leaderboard``), fine-tunes of the new LLM's
own family included. Its prior over the new LLM is that population; from the k answers it forms
the exact posterior (importance weights over the 5,999 rows) and predicts the new LLM's accuracy on
the target questions as the posterior mean. Nothing trained on data can do better on average for
random leave-LLMs-out (protocol (a)); what it reaches bounds every method of the onboarding study.

A second oracle knows the items only up to their idiosyncrasy: the preset's difficulties carry a
per-question part no embedding predicts (``item_noise``), so this oracle's P rows come from the
same population and items with that part set to zero. It is the best an item network that reads
questions' embeddings could do, with a perfect network and a perfect population prior.

Same protocol as ``training.experiments.onboard_eval`` on ``leaderboard``: the preset at 6,000 LLMs
× 1,000 questions, seed 0; questions split 70/10/20 (``fixed_split`` seed 0); the pool is the
training questions, the target the test questions, the truth the LLM's observed accuracy on the
target; onboarded LLMs answer every benchmark. Two designs:

- ``random``: k pool questions at random (as the random mean draws them), then the posterior mean;
- ``adaptive``: each next question the one whose answer is expected to cut the posterior variance of
  the target accuracy most (Cov(acc, p_i)² / Var(y_i) under the posterior), as a probe would ask.

    python -m training.experiments.onboard_oracle --out docs/results/onboard [--llms 300] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

KS = (10, 25, 50, 100, 200)


def _posterior(ll: np.ndarray) -> np.ndarray:
    w = np.exp(ll - ll.max())
    return w / w.sum()


def leaderboard_case(n_llms: int = 6000, n_queries: int = 1000, n_onboard: int = 300) -> Any:
    """(dataset, truth, split, pool, target, observed answers ``[n_llms, n_queries]`` with NaN
    where missing, the onboarded LLMs: ``n_onboard`` that answered everything, seeded)."""
    from irt_fast.splits import fixed_split
    from irt_fast.synthetic import make_leaderboard

    ds, truth = make_leaderboard(n_llms=n_llms, n_queries=n_queries, seed=0)
    ids = ds.queries["query_id"].to_numpy()
    split = fixed_split(ids, (0.7, 0.1, 0.2), seed=0)
    at = {q: i for i, q in enumerate(ids)}
    pool = np.array([at[q] for q in split["train"]])
    target = np.array([at[q] for q in split["test"]])
    r = ds.responses
    y_all = np.full(truth.prob.shape, np.nan)
    y_all[r["llm_idx"].to_numpy(), r["q_idx"].to_numpy()] = r["correct"].to_numpy()
    rng = np.random.default_rng(1)
    onboard = rng.choice(np.flatnonzero(truth.full_coverage), n_onboard, replace=False)
    return ds, truth, split, pool, target, y_all, onboard


def posterior_errors(
    prob: np.ndarray,
    population: np.ndarray,
    y_all: np.ndarray,
    onboard: np.ndarray,
    pool: np.ndarray,
    target: np.ndarray,
    seeds: int,
    log: Any = print,
) -> dict[str, np.ndarray]:
    """Absolute errors ``[len(onboard), len(KS)]`` of the random mean and of the posterior mean
    over a population of P rows, on random draws (both averaged over ``seeds`` draws) and on
    adaptive draws (deterministic).

    Args:
        prob: P(correct) ``[len(population), n_queries]`` of the population's LLMs.
        population: their LLM indices (an onboarded LLM is left out of its own prior).
        y_all: observed answers ``[n_llms, n_queries]`` (NaN: missing).
        onboard, pool, target: the new LLMs, the questions they may be asked, the target.
    """
    p_pool = np.clip(prob[:, pool], 1e-9, 1 - 1e-9)
    lp, lq = np.log(p_pool), np.log1p(-p_pool)
    acc = prob[:, target].mean(1)  # each population LLM's expected target accuracy
    rng = np.random.default_rng(1)
    out = {m: np.zeros((len(onboard), len(KS))) for m in ("random_mean", "random", "adaptive")}
    t0 = time.perf_counter()
    for row, j in enumerate(onboard):
        y, true_acc = y_all[j, pool], y_all[j, target].mean()
        self_prior = np.zeros(len(acc))
        self_prior[population == j] = -np.inf  # the new LLM is not in its own prior
        for _ in range(seeds):
            for c, k in enumerate(KS):
                ask = rng.choice(len(pool), k, replace=False)
                out["random_mean"][row, c] += abs(y[ask].mean() - true_acc) / seeds
                ll = self_prior + lp[:, ask] @ y[ask] + lq[:, ask] @ (1 - y[ask])
                out["random"][row, c] += abs(_posterior(ll) @ acc - true_acc) / seeds
        ll = self_prior.copy()
        asked = np.zeros(len(pool), bool)
        for step in range(1, max(KS) + 1):
            w = _posterior(ll)
            pm = w @ p_pool
            gain = ((w * (acc - w @ acc)) @ p_pool) ** 2 / (pm * (1 - pm))
            gain[asked] = -1.0
            i = int(np.argmax(gain))
            asked[i] = True
            ll += lp[:, i] * y[i] + lq[:, i] * (1 - y[i])
            if step in KS:
                out["adaptive"][row, KS.index(step)] = abs(_posterior(ll) @ acc - true_acc)
        if (row + 1) % 50 == 0:
            log(f"  {row + 1}/{len(onboard)} LLMs, {time.perf_counter() - t0:.0f} s")
    return out


def oracle_errors(
    n_llms: int = 6000,
    n_queries: int = 1000,
    n_onboard: int = 300,
    seeds: int = 5,
    log: Any = print,
    *,
    idiosyncrasy_known: bool = True,
) -> dict[str, np.ndarray]:
    """:func:`posterior_errors` over the true P rows of every other LLM, and ``own_p``: the
    error of an oracle that knows the new LLM's own P row (the floor set by the target's
    Bernoulli noise). ``idiosyncrasy_known=False``: P rows without the items' idiosyncrasy."""
    from irt_fast.synthetic import make_leaderboard

    _, truth, _, pool, target, y_all, onboard = leaderboard_case(n_llms, n_queries, n_onboard)
    prob = truth.prob
    if not idiosyncrasy_known:  # same draws (the generator multiplies its noise by 0), smooth items
        _, smooth = make_leaderboard(n_llms=n_llms, n_queries=n_queries, seed=0, item_noise=0.0)
        assert np.array_equal(smooth.theta, truth.theta)
        assert np.array_equal(smooth.alpha, truth.alpha)
        prob = smooth.prob
    out = posterior_errors(prob, np.arange(n_llms), y_all, onboard, pool, target, seeds, log)
    out["own_p"] = np.repeat(
        np.abs(prob[onboard][:, target].mean(1) - np.nanmean(y_all[onboard][:, target], 1))[
            :, None
        ],
        len(KS),
        axis=1,
    )
    return out


def model_population_errors(
    n_llms: int = 6000,
    n_onboard: int = 300,
    seeds: int = 5,
    cache_dir: Path = Path("/tmp/onboard_cache"),
    log: Any = print,
) -> dict[str, np.ndarray]:
    """:func:`posterior_errors` over the P rows a fitted model gives its trained LLMs: an IrtNet
    of the reduced preset trained on every LLM but the onboarded ones (training questions only,
    as ``onboard_eval`` trains its folds; cached in ``cache_dir``). What a probe could do today
    with the population the weights file already holds."""
    from training.experiments.onboard_folds import fold_model

    ds, _, split, pool, target, y_all, onboard = leaderboard_case(n_llms, n_onboard=n_onboard)
    trained = np.setdiff1d(np.arange(ds.n_llms), onboard)
    fm = fold_model(
        ds, split, trained, onboard, preset="reduced", seed=0, cache_dir=cache_dir, log=log
    )
    logit = fm.theta @ fm.alpha.T - fm.beta[None, :]
    if fm.bias is not None:
        logit += fm.bias[:, None]
    prob = 1.0 / (1.0 + np.exp(-logit))
    return posterior_errors(prob, trained, y_all, onboard, pool, target, seeds, log)


def ratio_ci(err: np.ndarray, ref: np.ndarray, n_boot: int = 1000, seed: int = 0) -> list[float]:
    """mean(err) / mean(ref) with a 95% CI from resampling the LLMs (paired)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(err), size=(n_boot, len(err)))
    boots = err[idx].mean(1) / ref[idx].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return [float(err.mean() / ref.mean()), float(lo), float(hi)]


def report(out: dict[str, np.ndarray], own: str | None) -> tuple[str, dict[str, Any]]:
    """The markdown table (points of accuracy; ratio to the random mean [95% CI]) and its JSON;
    ``own`` heads the ``own_p`` column (None: no such column)."""
    ref = out["random_mean"]
    result: dict[str, Any] = {"k": list(KS), "n_llms": len(ref)}
    methods = ("random", "adaptive") if own is None else ("random", "adaptive", "own_p")
    head = ["k", "random mean", "posterior mean, random draws", "posterior mean, adaptive draws"]
    head += [] if own is None else [own]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for c, k in enumerate(KS):
        cells = [f"{100 * ref[:, c].mean():.2f}"]
        for m in methods:
            r, lo, hi = ratio_ci(out[m][:, c], ref[:, c])
            result.setdefault(m, []).append(
                {"error": float(out[m][:, c].mean()), "ratio": [r, lo, hi]}
            )
            cells.append(f"{100 * out[m][:, c].mean():.2f}, {r:.2f}× [{lo:.2f}, {hi:.2f}]")
        result.setdefault("random_mean", []).append(float(ref[:, c].mean()))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.experiments.onboard_oracle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out", type=Path, required=True, help="directory for oracle.md and oracle.json"
    )
    p.add_argument(
        "--llms", type=int, default=300, help="new LLMs scored (of those answering everything)"
    )
    p.add_argument("--seeds", type=int, default=5, help="random draws per LLM and k")
    p.add_argument("--n-llms", type=int, default=6000, help="size of the synthetic population")
    p.add_argument(
        "--cache", type=Path, default=Path("/tmp/onboard_cache"), help="where fold models are kept"
    )
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    command = (
        f"python -m training.experiments.onboard_oracle --out {args.out} --llms {args.llms} "
        f"--seeds {args.seeds}"
    )
    parts, results = [], {}
    for key, known, title, own in (
        (
            "exact_items",
            True,
            "The oracle knows the items exactly",
            "oracle knowing the LLM's own P",
        ),
        (
            "smooth_items",
            False,
            "The oracle knows the items up to their idiosyncrasy (the best an embedding-based "
            "item network could know)",
            "own P without idiosyncrasy",
        ),
    ):
        print(f"{key}:", flush=True)
        out = oracle_errors(
            n_llms=args.n_llms, n_onboard=args.llms, seeds=args.seeds, idiosyncrasy_known=known
        )
        table, results[key] = report(out, own)
        parts.append(f"## {title}\n\n{table}")
    print("model_population:", flush=True)
    out = model_population_errors(args.n_llms, args.llms, args.seeds, args.cache)
    table, results["model_population"] = report(out, None)
    parts.append(
        f"## No oracle: the population a fitted model holds (its P rows of the "
        f"{args.n_llms - args.llms:,} trained LLMs; IrtNet, reduced preset, trained without "
        "the new LLMs on the training questions)\n\n" + table
    )
    text = (
        f"# Bayes oracle, leaderboard preset {args.n_llms:,} × 1,000, protocol (a)\n\n"
        f"{args.llms} new LLMs, {args.seeds} random draws each (adaptive draws are deterministic); "
        "errors in points of accuracy, ratio to the random mean [95% CI over LLMs].\n"
        f"Command: `{command}` ({time.perf_counter() - t0:.0f} s).\n\n" + "\n".join(parts)
    )
    (args.out / "oracle.md").write_text(text)
    (args.out / "oracle.json").write_text(json.dumps({"command": command, **results}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
