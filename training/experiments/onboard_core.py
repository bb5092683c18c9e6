"""Onboarding one held-out LLM and scoring it (the shared core of training.experiments.onboard_eval and
training.experiments.onboard_synthetic): a ``Case`` (pool and target item parameters and answers, prior,
and the trained LLMs' answers for the regression baseline), the all-answers floors, every
method on one case, and the loop over cases.

Methods (``METHODS``; designs of :mod:`irt_fast.onboard.design`, estimators of
:mod:`irt_fast.onboard.estimators`), all from the same LLMs and seeds:

- baselines on uniformly random questions: the plain mean (``random_mean``) and a ridge
  regression fitted on the trained LLMs from their answers to the same k questions to their
  target accuracy (``random_ridge``); the mean stratified by benchmark on the proportional
  stratified design (``stratified_mean``);
- the fit on the random design (``random_model``, ``random_aipw``, ``random_blend``) and on
  the neyman design (``neyman_model``, ``neyman_aipw``, ``neyman_blend``, ``neyman_calibrated``);
- the greedy variance criterion with the model estimate (``adaptive``, the earlier default);
- the trained LLMs themselves as the prior, with adaptive questions (``population``,
  :mod:`irt_fast.onboard.population`; cases that carry the fold's population rows);
- fixed anchors chosen once per fold (``anchors_mean``: Σ weight · answer; ``anchors_blend``,
  ``anchors_model``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from irt_fast.onboard.anchors import Anchors, estimate_from_anchors
from irt_fast.onboard.fit import fit_llm
from irt_fast.onboard.prior import Prior
from irt_fast.onboard.probe import Probe
from training.experiments.onboard_calibration import Calibration

KS = (10, 25, 50, 100, 200)
LABELS = {
    "random_mean": "mean of k random answers",
    "stratified_mean": "mean stratified by benchmark (design-weighted)",
    "random_ridge": "random + ridge (trained LLMs' answers to the same questions)",
    "random_model": "model alone, random questions",
    "random_aipw": "AIPW, random questions",
    "random_blend": "blend (AIPW, model), random questions",
    "stratified_model": "model alone, stratified questions",
    "stratified_aipw": "AIPW, stratified questions",
    "stratified_blend": "blend (AIPW, model), stratified questions",
    "neyman_mean": "design-weighted mean, neyman design",
    "neyman_model": "model alone, neyman design",
    "neyman_aipw": "AIPW, neyman design",
    "neyman_blend": "blend (AIPW, model), neyman design: the default",
    "neyman_blend_mean": "blend (mean, model), neyman design",
    "neyman_calibrated": "calibrated (left-out trained LLMs), neyman design",
    "adaptive": "model, greedy variance criterion (earlier default)",
    "population": "population prior (the trained LLMs), adaptive questions",
    "anchors_mean": "fixed anchors, weighted mean",
    "anchors_model": "fixed anchors, model alone",
    "anchors_blend": "fixed anchors, blend",
}
METHODS = tuple(LABELS)
# kept for tests and the known-truth synthetic run: one strategy, the probe's own estimate
STRATEGIES = ("random", "stratified", "neyman", "adaptive", "variance")


@dataclass
class Case:
    """One held-out LLM: its pool (questions it can be asked) and target (its accuracy there).

    ``train_pool_y`` ``[n_trained, n_pool]`` (NaN: unanswered) and ``train_target_acc``
    ``[n_trained]`` are the trained LLMs' answers and target accuracies (the regression
    baseline); arrays may be shared between the cases of one fold."""

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
    train_pool_y: np.ndarray | None = None
    train_target_acc: np.ndarray | None = None
    population: np.ndarray | None = None

    def probe(self, **kw: Any) -> Probe:
        """A probe over this case's pool and target (its groups and pool groups given)."""
        return Probe.from_params(self.alpha_pool, self.beta_pool, self.alpha_t, self.beta_t,
                                 self.prior, groups=self.groups_t, pool_groups=self.pool_groups,
                                 **kw)  # fmt: skip


def _group_true(case: Case) -> dict[Any, float]:
    return {g: float(case.y_t[case.groups_t == g].mean()) for g in np.unique(case.groups_t)}


def _probe(case: Case, seed: int, **kw: Any) -> Probe:
    return case.probe(seed=seed, **kw)


def _advance(probe: Probe, case: Case, k: int, sequential: bool) -> None:
    """Record answers up to k; greedy strategies refit often early (every answer up to 5,
    then every ~20% more answers), designs take the next questions of their fixed order."""
    while probe.n_answers < k:
        n = k - probe.n_answers
        if sequential:
            n = min(n, max(1, probe.n_answers // 5))
        idx = probe.next(n)
        if idx.size == 0:
            break
        probe.record(idx, case.y_pool[idx])


def stratified_mean(y: np.ndarray, g: np.ndarray, share: dict[Any, float]) -> float:
    """Σ_g share_g · mean of the answers in g; groups without answers take the overall mean."""
    overall = float(y.mean())
    return float(
        sum(w * (float(y[g == n].mean()) if (g == n).any() else overall) for n, w in share.items())
    )


def ridge_predict(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> float:
    """Ridge regression with intercept, the penalty chosen by leave-one-out error over a grid;
    NaN features take their column mean."""
    col = np.nanmean(x, axis=0)
    col = np.where(np.isfinite(col), col, 0.5)
    x = np.where(np.isnan(x), col, x)
    mx, my = x.mean(0), y.mean()
    xc, yc = x - mx, y - my
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    uty = u.T @ yc
    best, best_err = None, np.inf
    for lam in np.logspace(-2, 3, 16) * max(1.0, float((s**2).mean())):
        f = s**2 / (s**2 + lam)
        fit = u @ (f * uty)
        h = (u**2) @ f + 1.0 / len(y)
        err = float(np.mean(((yc - fit) / np.maximum(1 - h, 1e-6)) ** 2))
        if err < best_err:
            best, best_err = lam, err
    coef = vt.T @ ((s / (s**2 + best)) * uty)
    return float(my + (x_new - mx) @ coef)


def _row(case: Case, method: str, seed: int, k: int, est: Any) -> dict[str, Any]:
    """One result row; ``est`` is an Estimate, or a bare float for a method without an
    interval."""
    true = float(case.y_t.mean())
    if isinstance(est, float):
        acc, se, lo, hi, br = est, np.nan, np.nan, np.nan, np.nan
        covered = np.nan
    else:
        acc, se, lo, hi = est.accuracy, est.se, est.lo, est.hi
        covered = float(lo <= true <= hi)
        tg = _group_true(case)
        br = float(np.sqrt(np.mean([(est.by_group[g].accuracy - t) ** 2 for g, t in tg.items()])))
    return {"llm": case.llm, "fold": case.fold, "method": method, "seed": seed, "k": k,
            "true": true, "est": acc, "se": se, "lo": lo, "hi": hi,
            "abs_err": abs(acc - true), "covered": covered, "bench_rmse": br}  # fmt: skip


def case_rows(
    case: Case,
    seed: int,
    ks: tuple[int, ...],
    *,
    model_error: float = 0.0,
    group_error: float = 0.035,
    anchors: dict[int, Anchors] | None = None,
    calibration: Calibration | None = None,
    methods: tuple[str, ...] = METHODS,
) -> list[dict[str, Any]]:
    """Every method of ``methods`` on ``case`` at every k, one seed."""
    rows: list[dict[str, Any]] = []
    opts = {"model_error": model_error, "group_model_error": group_error}
    designs = {
        d for d in ("random", "stratified", "neyman") if any(m.startswith(d) for m in methods)
    }
    for design in sorted(designs):
        pr = _probe(case, seed, strategy=design, **opts)
        for k in ks:
            _advance(pr, case, min(k, len(case.y_pool)), sequential=False)
            idx, y = pr.answers
            est = pr.estimates()
            for name in ("mean", "model", "aipw", "blend", "blend_mean"):
                if f"{design}_{name}" in methods and f"{design}_{name}" != "random_mean":
                    rows.append(_row(case, f"{design}_{name}", seed, k, est[name]))
            if design == "random" and "random_mean" in methods:
                rows.append(_row(case, "random_mean", seed, k, float(y.mean())))
            if design == "random" and "random_ridge" in methods and case.train_pool_y is not None:
                assert case.train_target_acc is not None
                pred = ridge_predict(case.train_pool_y[:, idx], case.train_target_acc, y)
                rows.append(_row(case, "random_ridge", seed, k, float(np.clip(pred, 0, 1))))
            if design == "neyman" and calibration is not None and "neyman_calibrated" in methods:
                rows.append(_row(case, "neyman_calibrated", seed, k,
                                 _calibrated(calibration, k, est, case)))  # fmt: skip
    if "adaptive" in methods:
        pr = _probe(case, seed, strategy="variance", **opts)
        for k in ks:
            _advance(pr, case, min(k, len(case.y_pool)), sequential=True)
            rows.append(_row(case, "adaptive", seed, k, pr.estimate()))
    if "population" in methods and case.population is not None:
        pr = _probe(case, seed, strategy="population", population=case.population, **opts)
        for k in ks:
            _advance(pr, case, min(k, len(case.y_pool)), sequential=True)
            rows.append(_row(case, "population", seed, k, pr.estimate()))
    for k, anc in (anchors or {}).items():
        y = case.y_pool[anc.index]
        if "anchors_mean" in methods:
            rows.append(_row(case, "anchors_mean", seed, k, float(anc.weight @ y)))
        for name in ("model", "blend"):
            if f"anchors_{name}" in methods:
                e = estimate_from_anchors(anc, y, case.prior, estimator=name, seed=seed, **opts)
                rows.append(_row(case, f"anchors_{name}", seed, k, e))
    return rows


def _calibrated(cal: Calibration, k: int, est: dict[str, Any], case: Case) -> Any:
    from irt_fast.onboard.estimators import Estimate

    m, a = est["model"].accuracy, est["aipw"].accuracy
    noise = a * (1 - a) / len(case.y_t)
    acc, var = cal.apply(k, m, a, noise)
    se = float(np.sqrt(var))
    b = est["blend"]
    return Estimate(acc, se, max(0.0, acc - 1.6449 * se), min(1.0, acc + 1.6449 * se),
                    b.n_target, n_answers=b.n_answers, by_group=b.by_group)  # fmt: skip


def floor_rows(case: Case) -> list[dict[str, Any]]:
    """The LLM fitted from every pool answer: the model alone and AIPW (what no k reaches)."""
    pr = _probe(case, 0, strategy="random", model_error=0.0, group_model_error=0.0)
    pr.record(np.arange(len(case.y_pool)), case.y_pool)
    est = pr.estimates()
    return [_row(case, f"floor_{n}", 0, len(case.y_pool), est[n]) for n in ("model", "aipw")]


def model_error_of(floors: list[dict[str, Any]], fold: int) -> float:
    """The item network's own error on an overall accuracy for LLMs of ``fold``: the RMS floor
    error of the OTHER folds' LLMs beyond what its SE explains (never the LLM's own test
    answers)."""
    other = [r for r in floors if r["fold"] != fold and r["method"] == "floor_model"]
    other = other or [r for r in floors if r["method"] == "floor_model"]
    excess = np.mean([(r["est"] - r["true"]) ** 2 - r["se"] ** 2 for r in other])
    return float(np.sqrt(max(0.0, excess)))


def run_cases(
    cases: list[Case],
    ks: tuple[int, ...],
    seeds: list[int],
    *,
    anchors: dict[int, dict[int, list[Anchors]]] | None = None,
    calibration: dict[int, Calibration] | None = None,
    methods: tuple[str, ...] = METHODS,
    log: Any = print,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Floors, then every (case, seed). ``anchors[fold][k]`` holds one anchor set per seed
    (chosen once per fold; seeds differ in the clustering), ``calibration[fold]`` the fold's
    calibration. Returns (rows, floors)."""
    floors = [r for c in cases for r in floor_rows(c)]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, c in enumerate(cases):
        me = model_error_of(floors, c.fold)
        for j, s in enumerate(seeds):
            anc = {k: v[j] for k, v in (anchors or {}).get(c.fold, {}).items()}
            # a different question draw per LLM: with one seed for all, every LLM would get
            # the same questions and their errors would be correlated
            got = case_rows(c, s * 100_003 + i, ks, model_error=me, anchors=anc,
                            calibration=(calibration or {}).get(c.fold), methods=methods)  # fmt: skip
            rows += [{**r, "seed": s} for r in got]
        if (i + 1) % max(1, len(cases) // 10) == 0 or i + 1 == len(cases):
            log(f"  onboarded {i + 1}/{len(cases)} ({c.llm}) {time.perf_counter() - t0:.0f} s")
    return rows, floors


def onboard_case(
    case: Case,
    strategy: str,
    seed: int,
    ks: tuple[int, ...],
    model_error: float,
    group_model_error: float | None = None,
    estimator: str | None = None,
) -> list[dict[str, Any]]:
    """Probe ``case`` with one ``strategy`` (and its default estimator) up to max(ks)
    answers; one row per k with ``abs_err`` and ``covered``."""
    pr = _probe(case, seed, strategy=strategy, estimator=estimator, model_error=model_error,
                group_model_error=group_model_error)  # fmt: skip
    out = []
    for k in ks:
        _advance(
            pr, case, min(k, len(case.y_pool)), sequential=strategy in ("variance", "adaptive")
        )
        out.append(_row(case, strategy, seed, k, pr.estimate()))
    return out


def fit_floor(case: Case) -> Any:
    """The posterior from every pool answer (for diagnostics)."""
    has_bias = case.prior.dim == case.alpha_pool.shape[1] + 1
    return fit_llm(case.alpha_pool, case.beta_pool, case.y_pool, case.prior, has_bias=has_bias)
