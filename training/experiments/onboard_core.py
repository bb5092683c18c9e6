"""Onboarding one held-out LLM and scoring it (the shared core of onboard_eval and
onboard_synthetic in training.experiments): a ``Case`` (pool and target item parameters and
answers, prior), the full-information floor, one probing run per (strategy, seed), and the loop
over cases."""

from __future__ import annotations

import time
from dataclasses import dataclass
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

    def probe(self, **kw: Any) -> Probe:
        """A probe over this LLM's pool and target (``kw``: ``Probe.from_params`` options)."""
        return Probe.from_params(
            self.alpha_pool,
            self.beta_pool,
            self.alpha_t,
            self.beta_t,
            self.prior,
            groups=self.groups_t,
            pool_groups=self.pool_groups,
            **kw,
        )


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
    probe = case.probe(model_error=0.0, group_model_error=0.0)
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
    probe = case.probe(
        strategy=strategy, seed=seed, model_error=model_error, group_model_error=group_model_error
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
