"""From a new LLM's answers to its accuracy on a target: the model, AIPW, mean and blend estimators.

Every estimator counts the answers to asked target questions as they are (a team that samples
the benchmark it scores knows those answers) and predicts only the unasked ones:

- ``"model"``: the fitted (θ, b) alone: the mean P(correct) over the unasked target questions,
  averaged over draws of the Laplace posterior. Efficient when the model is right, biased when
  the LLM is unlike the population the prior and the item network were learned from.
- ``"aipw"`` (doubly robust): the model's prediction plus the mean residual (answer minus
  prediction) of the asked questions, per stratum of the sampling design (so weighted by the
  inclusion probabilities n_h / N_h), applied to the unasked questions of the same stratum, or,
  for target questions outside the pool, of the same group. The residuals are leave-one-out
  (the approximate LOO of the penalised logistic fit, one Newton step: η₋ᵢ = ηᵢ + sᵢ(pᵢ − yᵢ) /
  (1 − pᵢ(1 − pᵢ)sᵢ), sᵢ = xᵢᵀΣxᵢ), so an answer does not vouch for the fit it shaped.
  Unbiased for any model given the design; its variance is that of the residuals.
- ``"mean"``: no model: the design-weighted mean of the answers (a stratum's unasked questions
  take its mean answer, Hájek weights N_h / n_h; target questions outside the pool that of
  their group). Unbiased given the design, whatever the LLM.
- ``"blend"``: λ·aipw + (1 − λ)·model, λ = v_m / (v_m + v_a): v_a the design variance of the
  AIPW estimate, v_m the model's own error variance (posterior spread, target noise and
  ``model_error``²), raised to (aipw − model)² − v_a when the two disagree by more than the
  AIPW noise explains (evidence that the model is off for this LLM). ``"blend_mean"`` (in
  ``Probe.estimates`` only, for comparison) blends the mean instead of AIPW: the same overall
  error in the evaluation, but noisier per group (a group's mean rests on few answers).

Each returns ``(accuracy, variance)`` per target group and overall.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "GroupEstimate",
    "Target",
    "aipw",
    "blend",
    "estimate_all",
    "loo_residuals",
    "model_draws",
    "observed_mean",
    "to_estimate",
]

ESTIMATORS = ("aipw", "blend", "mean", "model", "population")
Z = {0.8: 1.2816, 0.9: 1.6449, 0.95: 1.96, 0.99: 2.5758}
# (accuracy per group [G], variance per group [G], overall accuracy, overall variance)
Raw = tuple[np.ndarray, np.ndarray, float, float]


@dataclass(frozen=True)
class GroupEstimate:
    """Predicted accuracy on (a group of) the target, its standard error and interval."""

    accuracy: float
    se: float
    lo: float
    hi: float
    n_target: int


@dataclass(frozen=True)
class Estimate(GroupEstimate):
    """Overall estimate, plus ``by_group`` (keyed by the ``groups`` labels; empty without
    groups) and the answers used."""

    n_answers: int = 0
    by_group: dict[Any, GroupEstimate] = field(default_factory=dict)


@dataclass
class Target:
    """The target and its relation to the pool, fixed for a probe.

    Attributes:
        xt: float64 ``[n_t, p]`` design rows of the target; beta_t ``[n_t]``.
        tg: int ``[n_t]`` group of each target question (0 without groups).
        n_groups: number of groups (>= 1).
        target_of_pool: int ``[n_pool]``: the target index of a pool question that is itself a
            target question, else -1.
        pool_group: int ``[n_pool]``: the target group a pool question belongs to (-1: none).
        stratum: int ``[n_pool]``: the design stratum of each pool question.
        sizes: int ``[n_strata]``: pool questions per stratum.
    """

    xt: np.ndarray
    beta_t: np.ndarray
    tg: np.ndarray
    n_groups: int
    target_of_pool: np.ndarray
    pool_group: np.ndarray
    stratum: np.ndarray
    sizes: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.tg, minlength=self.n_groups).astype(np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _observed(t: Target, idx: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of asked target questions, sum of their answers per group)."""
    asked_t = np.zeros(len(t.beta_t), dtype=bool)
    ti = t.target_of_pool[idx]
    hit = ti >= 0
    asked_t[ti[hit]] = True
    obs = np.bincount(t.tg[ti[hit]], weights=y[hit], minlength=t.n_groups)
    return asked_t, obs


def model_draws(
    t: Target, idx: np.ndarray, y: np.ndarray, draws: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's accuracy per group under each posterior draw.

    Args:
        t: the target.
        idx: asked pool indices ``[k]``; y: their answers (asked target questions count as
            answered, the others are predicted).
        draws: posterior draws of (θ, b) ``[p, n_draws]``.

    Returns:
        (accuracy per group and draw ``[G, n_draws]``, Σ p(1 − p) over the predicted questions
        per group (mean over draws) ``[G]``, predicted questions per group ``[G]``).
    """
    asked_t, obs = _observed(t, idx, y)
    free = ~asked_t
    acc = np.zeros((t.n_groups, draws.shape[1]))
    noise = np.zeros((t.n_groups, draws.shape[1]))
    d32 = draws.astype(np.float32)  # float32: the sums below lose nothing that matters
    rows = np.flatnonzero(free)
    for s in range(0, len(rows), 4096):
        r = rows[s : s + 4096]
        p = _sigmoid(t.xt[r].astype(np.float32) @ d32 - t.beta_t[r, None].astype(np.float32))
        onehot = (t.tg[r][None, :] == np.arange(t.n_groups)[:, None]).astype(np.float32)
        acc += onehot @ p
        noise += onehot @ (p * (1 - p))
    n_free = np.bincount(t.tg[free], minlength=t.n_groups).astype(np.float64)
    return (acc + obs[:, None]) / t.counts[:, None], noise.mean(1), n_free


def loo_residuals(
    x: np.ndarray, beta: np.ndarray, y: np.ndarray, w: np.ndarray, cov: np.ndarray
) -> np.ndarray:
    """Leave-one-out residuals yᵢ − p₋ᵢ of the answers the posterior (``w``, ``cov``) was
    fitted from (approximate LOO, see the module docstring)."""
    eta = x @ w - beta
    p = _sigmoid(eta)
    s = np.einsum("ij,jk,ik->i", x, cov, x)
    lev = np.clip(p * (1 - p) * s, 0.0, 0.999)
    return y - _sigmoid(eta + s * (p - y) / (1 - lev))


def aipw(
    t: Target,
    idx: np.ndarray,
    y: np.ndarray,
    resid: np.ndarray,
    p_target: np.ndarray,
    group_error: float = 0.035,
    x_asked: np.ndarray | None = None,
    cov: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The AIPW estimate per group and overall.

    A group's mean residual rests on few answers when k is small, so it is shrunk toward the
    overall one by λ_g = τ² / (τ² + v_g), τ = ``group_error`` (how far the model's error on one
    group's accuracy strays from its overall error) and v_g the variance of the group's mean.

    Args:
        t: the target.
        idx: asked pool indices ``[k]``; y: their answers.
        resid: leave-one-out residuals of the asked answers ``[k]``.
        p_target: P(correct) of every target question at the posterior mode ``[n_t]``.
        group_error: τ above.
        x_asked, cov: design rows of the asked questions and the posterior covariance: the
            prediction for the target and the one the residuals correct respond differently
            to an error in (θ, b) when the target and the asked questions differ in make-up;
            that variance, gᵀΣg with g the difference of the two gradients, is added.

    Returns:
        (accuracy [G], variance [G], overall accuracy, overall variance).
    """
    asked_t, obs = _observed(t, idx, y)
    n_strata = len(t.sizes)
    h_of = t.stratum[idx]
    n_h = np.bincount(h_of, minlength=n_strata).astype(np.float64)
    sampled = n_h > 0
    # per-answer weight of its stratum mean: 1 / n_h
    inv = np.where(sampled, 1.0 / np.maximum(n_h, 1), 0.0)
    # group-level mean residual of the pool: Σ_h N_h r̄_h / Σ_h N_h over sampled strata of the
    # pool group (strata lie within one pool group); overall: the same over every stratum
    strat_group = np.full(n_strata, -1, dtype=np.int64)
    strat_group[t.stratum] = t.pool_group
    big_n = t.sizes.astype(np.float64) * sampled
    tot_n = big_n.sum()
    k = len(idx)
    overall_w = big_n[h_of] * inv[h_of] / max(tot_n, 1e-300)  # [k]
    group_w = np.zeros((t.n_groups, k))
    for g in range(t.n_groups):
        sel = strat_group == g
        ng = big_n[sel].sum()
        if ng > 0:
            group_w[g] = np.where(strat_group[h_of] == g, big_n[h_of] * inv[h_of] / ng, 0.0)
        else:
            group_w[g] = overall_w
    s2 = _stratum_var(resid, h_of, n_strata, y - resid)
    v_g = (group_w**2 * s2[h_of]).sum(1)
    lam = group_error**2 / np.maximum(group_error**2 + v_g, 1e-300)
    group_w = overall_w + lam[:, None] * (group_w - overall_w)
    # unasked target questions: in the pool (its stratum's mean residual, else its group's) or
    # not (its group's)
    free = np.flatnonzero(~asked_t)
    pool_of_target = np.full(len(t.beta_t), -1, dtype=np.int64)
    inpool = np.flatnonzero(t.target_of_pool >= 0)
    pool_of_target[t.target_of_pool[inpool]] = inpool
    coef = np.zeros((t.n_groups, k))  # Σ over unasked target questions of their residual weights
    # a stratum entirely in the target is a finite population: its unasked questions are all
    # that remains to estimate (finite population correction 1 − n_h / N_h)
    in_t = np.bincount(t.stratum, weights=(t.target_of_pool >= 0), minlength=n_strata)
    closed = in_t[h_of] == t.sizes[h_of]
    fpc = np.where(closed, 1 - n_h[h_of] / np.maximum(t.sizes[h_of], 1), 1.0)
    for g in range(t.n_groups):
        f = free[t.tg[free] == g]
        pi = pool_of_target[f]
        out = pi < 0
        coef[g] += out.sum() * group_w[g]
        h = t.stratum[pi[~out]]
        if len(h):
            u_h = np.bincount(h, minlength=n_strata).astype(np.float64)
            direct = u_h * sampled
            coef[g] += direct[h_of] * inv[h_of]
            for hh in np.flatnonzero(u_h * ~sampled):
                gg = strat_group[hh]
                coef[g] += u_h[hh] * (group_w[gg] if gg >= 0 else overall_w)
    n = t.counts
    pred = np.bincount(t.tg[free], weights=p_target[free], minlength=t.n_groups)
    acc_g = (obs + pred + coef @ resid) / n
    var_terms = s2[h_of] * fpc
    out_noise = np.zeros(t.n_groups)
    outs = free[pool_of_target[free] < 0]
    np.add.at(out_noise, t.tg[outs], p_target[outs] * (1 - p_target[outs]))
    var_g = (coef**2 * var_terms).sum(1) / n**2 + out_noise / n**2
    c_all = coef.sum(0)
    acc = float((obs.sum() + pred.sum() + c_all @ resid) / n.sum())
    var = float(((c_all**2 * var_terms).sum() + out_noise.sum()) / n.sum() ** 2)
    if x_asked is not None and cov is not None:
        onehot = (t.tg[free][None, :] == np.arange(t.n_groups)[:, None]).astype(np.float64)
        pf = p_target[free]
        g_t = onehot @ (t.xt[free] * (pf * (1 - pf))[:, None])  # [G, p]
        pa = np.clip(y - resid, 0.0, 1.0)
        g_s = coef @ (x_asked * (pa * (1 - pa))[:, None])
        diff = g_t - g_s
        var_g = var_g + np.einsum("gi,ij,gj->g", diff, cov, diff) / n**2
        tot = diff.sum(0)
        var += float(tot @ cov @ tot) / n.sum() ** 2
    return acc_g, var_g, acc, var


def _stratum_var(resid: np.ndarray, h_of: np.ndarray, n_strata: int, p_loo: np.ndarray
                 ) -> np.ndarray:  # fmt: skip
    """Per-stratum residual variance: the sample variance shrunk toward the model's
    p(1 − p) with one pseudo-observation (a stratum may hold one answer)."""
    n_h = np.bincount(h_of, minlength=n_strata).astype(np.float64)
    s1 = np.bincount(h_of, weights=resid, minlength=n_strata)
    s2 = np.bincount(h_of, weights=resid**2, minlength=n_strata)
    mean = s1 / np.maximum(n_h, 1)
    ss = s2 - n_h * mean**2
    p = np.clip(p_loo, 1e-6, 1 - 1e-6)
    v0 = np.bincount(h_of, weights=p * (1 - p), minlength=n_strata) / np.maximum(n_h, 1)
    v0 = np.where(n_h > 0, v0, 0.25)
    return (ss + v0) / np.maximum(n_h, 1)


def blend(
    acc_a: np.ndarray, var_a: np.ndarray, acc_m: np.ndarray, var_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """λ·aipw + (1 − λ)·model (elementwise; see the module docstring). The variance is
    λ²·v_a + (1 − λ²)·v_m: aipw is the model plus a residual correction that, when the model
    is efficient, is uncorrelated with it (Hausman), so Cov(aipw, model) = v_m."""
    acc_a, var_a, acc_m, var_m = (
        np.asarray(v, dtype=np.float64) for v in (acc_a, var_a, acc_m, var_m)
    )
    vm = np.maximum(var_m, (acc_a - acc_m) ** 2 - var_a)
    lam = vm / np.maximum(vm + var_a, 1e-300)
    acc = lam * acc_a + (1 - lam) * acc_m
    return acc, lam**2 * var_a + (1 - lam**2) * vm


def gaussian_draws(w: np.ndarray, cov: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Draws ``[p, n]`` of N(w, cov) from standard normal draws ``z`` ``[p, n]``."""
    return w[:, None] + np.linalg.cholesky(cov + 1e-12 * np.eye(len(w))) @ z


def from_draws(
    t: Target,
    idx: np.ndarray,
    y: np.ndarray,
    draws: np.ndarray,
    model_error: float,
    group_model_error: float,
) -> Raw:
    """The model estimate over posterior draws of (θ, b) ``[p, n_draws]``: the mean accuracy
    over the draws; its variance adds their spread, the Bernoulli noise of the predicted
    questions and the item network's own error scaled by the share predicted."""
    a_draws, noise, n_free = model_draws(t, idx, y, draws)
    n = t.counts
    var_g = a_draws.var(1) + noise / n**2 + (n_free / n * group_model_error) ** 2
    tot = a_draws.T @ n / n.sum()
    share = n_free.sum() / n.sum()
    var = float(tot.var() + noise.sum() / n.sum() ** 2 + (share * model_error) ** 2)
    return a_draws.mean(1), var_g, float(tot.mean()), var


def estimate_all(
    t: Target,
    idx: np.ndarray,
    y: np.ndarray,
    x_asked: np.ndarray,
    beta_asked: np.ndarray,
    w: np.ndarray,
    cov: np.ndarray,
    draws: np.ndarray,
    model_error: float,
    group_model_error: float,
    fitted: bool,
) -> dict[str, Raw]:
    """Every estimator from one fit.

    Args:
        t: the target.
        idx: asked pool indices ``[k]``; y: their 0/1 answers.
        x_asked, beta_asked: design rows ``[k, p]`` and difficulties of the asked questions.
        w, cov: the posterior (or, before any answer, the prior) mean and covariance.
        draws: posterior draws of (θ, b) ``[p, n_draws]`` (:func:`gaussian_draws`).
        model_error, group_model_error: the item network's own error on the overall and on a
            group's accuracy.
        fitted: whether (w, cov) is a posterior fitted from the answers (else only "model").

    Returns:
        {estimator: (accuracy [G], variance [G], overall accuracy, overall variance)}.
    """
    out: dict[str, Raw] = {"model": from_draws(t, idx, y, draws, model_error, group_model_error)}
    if not fitted:
        return dict.fromkeys(ESTIMATORS, out["model"])
    resid = loo_residuals(x_asked, beta_asked, y, w, cov)
    p_t = _sigmoid(t.xt @ w - t.beta_t)
    out["aipw"] = aipw(t, idx, y, resid, p_t, group_model_error, x_asked, cov)
    out["mean"] = observed_mean(t, idx, y, p_t)
    out["blend"] = _blend(out["aipw"], out["model"])
    out["blend_mean"] = _blend(out["mean"], out["model"])
    return out


def _blend(obs: Raw, mod: Raw) -> Raw:
    og, vog, o, vo = obs
    mg, vmg, m, vm = mod
    bg, vbg = blend(og, vog, mg, vmg)
    b1, vb1 = blend(np.array([o]), np.array([vo]), np.array([m]), np.array([vm]))
    return bg, vbg, float(b1[0]), float(vb1[0])


def observed_mean(t: Target, idx: np.ndarray, y: np.ndarray, p_target: np.ndarray) -> Raw:
    """The design-weighted mean of the answers (no model): asked target questions count as
    answered; an unasked one takes the mean answer of its stratum (in the pool) or of its
    group's pool questions (Hájek weights N_h / n_h). Its variance adds the Bernoulli noise of
    the target questions outside the pool, from the model's ``p_target``."""
    # the difference estimator with a constant prediction, the overall mean: the residual
    # variance of a stratum holding one answer then falls back to ȳ(1 − ȳ)
    ybar = float(y.mean())
    acc_g, var_g, acc, var = aipw(t, idx, y, y - ybar, np.full(len(t.beta_t), ybar), 1.0)
    asked_t, _ = _observed(t, idx, y)
    free = np.flatnonzero(~asked_t)
    out = free[~np.isin(free, t.target_of_pool[t.target_of_pool >= 0])]
    noise = np.bincount(
        t.tg[out], weights=p_target[out] * (1 - p_target[out]), minlength=t.n_groups
    )
    n = t.counts
    return acc_g, var_g + noise / n**2, acc, var + float(noise.sum()) / n.sum() ** 2


def to_estimate(raw: Raw, t: Target, names: list[Any], n_answers: int, level: float) -> Estimate:
    """The public Estimate (accuracy clipped to [0, 1], interval at ``level``)."""
    acc_g, var_g, acc, var = raw
    n = t.counts

    def one(a: float, v: float, count: int) -> GroupEstimate:
        m, se = min(1.0, max(0.0, a)), float(np.sqrt(max(v, 0.0)))
        zq = Z[level]
        return GroupEstimate(m, se, max(0.0, m - zq * se), min(1.0, m + zq * se), count)

    by_group = {
        name: one(float(acc_g[g]), float(var_g[g]), int(n[g])) for g, name in enumerate(names)
    }
    tot = one(acc, var, int(n.sum()))
    return Estimate(**tot.__dict__, n_answers=n_answers, by_group=by_group)
