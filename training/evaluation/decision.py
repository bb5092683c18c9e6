"""Routing decision rules that account for noisy P estimates, numpy only. Each rule has a
parameter fitted on the validation set (by validation routing accuracy over the observed LLMs)
and is then applied unchanged to the test set.

(a) shrinkage toward each LLM's prior rate: P' = w·P + (1−w)·prior;
(b) switch threshold over the default (single-best) LLM: leave it only when another observed
    LLM's P exceeds the default's by more than δ (not the engine's ``margin=``, which picks the
    cheapest LLM within δ of the best);
(c) Platt scaling of the logits, per LLM (a_m·logit + b_m) or global, then argmax. A global
    scaling with a > 0 is monotone and cannot change the argmax; it is reported for calibration.

Cost-aware routing (``route_cost``, ``cost_curve``) is the engine's ``route(cost=, lam=)`` rule,
argmax of P − λ·cost over the observed LLMs, swept over λ to trace accuracy against mean cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from training.metrics import MISSING, route_choices

W_GRID = tuple(np.round(np.linspace(0.0, 1.0, 21), 3))
DELTA_GRID = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.01)


def choice_correct(choices: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """0/1 per query of the chosen LLM (queries with no observed LLM dropped)."""
    keep = choices >= 0
    rows = np.flatnonzero(keep)
    return (Y[rows, choices[keep]] == 1).astype(np.float64)


def routing_accuracy(choices: np.ndarray, Y: np.ndarray) -> float:
    c = choice_correct(choices, Y)
    return float(c.mean()) if c.size else float("nan")


# (a) shrinkage ------------------------------------------------------------------------------


def shrink(P: np.ndarray, prior: np.ndarray, w: float) -> np.ndarray:
    return w * np.asarray(P, dtype=np.float64) + (1.0 - w) * np.asarray(prior, dtype=np.float64)


def route_shrink(P: np.ndarray, Y: np.ndarray, prior: np.ndarray, w: float) -> np.ndarray:
    # rank-ties at w=0 go to the single-best order: add a tiny prior-ordered tie-breaker
    return route_choices(shrink(P, prior, w) + 1e-12 * np.asarray(prior), Y)


def fit_shrink(
    P_val: np.ndarray, Y_val: np.ndarray, prior: np.ndarray, grid: Sequence[float] = W_GRID
) -> dict[str, Any]:
    scores = {float(w): routing_accuracy(route_shrink(P_val, Y_val, prior, w), Y_val) for w in grid}
    best = max(scores, key=lambda w: (scores[w], w))  # ties: trust the model more
    return {"w": best, "val_scores": scores}


# (b) switch threshold over the default ---------------------------------------------------------


def route_switch(P: np.ndarray, Y: np.ndarray, rank: np.ndarray, delta: float) -> np.ndarray:
    """Default = highest-``rank`` observed LLM; switch to the argmax-P observed LLM only if its
    P exceeds the default's P by more than ``delta``."""
    obs = Y != MISSING
    default = route_choices(np.broadcast_to(np.asarray(rank, dtype=np.float64), Y.shape), Y)
    best = route_choices(P, Y)
    rows = np.arange(Y.shape[0])
    has = obs.any(axis=1)
    gain = np.zeros(Y.shape[0])
    gain[has] = P[rows[has], best[has]] - P[rows[has], default[has]]
    return np.where(gain > delta, best, default)


def fit_switch(
    P_val: np.ndarray, Y_val: np.ndarray, rank: np.ndarray, grid: Sequence[float] = DELTA_GRID
) -> dict[str, Any]:
    scores = {float(d): routing_accuracy(route_switch(P_val, Y_val, rank, d), Y_val) for d in grid}
    best = max(scores, key=lambda d: (scores[d], -d))  # ties: the smaller threshold
    return {"delta": best, "val_scores": scores}


# (c) Platt scaling ---------------------------------------------------------------------------


def _logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))


def fit_platt_1d(
    z: np.ndarray, y: np.ndarray, ridge: float = 1e-2, iters: int = 50
) -> tuple[float, float]:
    """(a, b) minimising the log-loss of sigmoid(a·z + b) plus ridge·((a−1)² + b²), Newton."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a, b = 1.0, 0.0
    if z.size == 0:
        return a, b
    X = np.stack([z, np.ones_like(z)], axis=1)
    n = z.size
    for _ in range(iters):
        p = _sigmoid(a * z + b)
        g = X.T @ (p - y) / n + 2 * ridge * np.array([a - 1.0, b])
        h = (X * (p * (1 - p))[:, None]).T @ X / n + 2 * ridge * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def fit_platt(P_val: np.ndarray, Y_val: np.ndarray, per_llm: bool = True) -> dict[str, Any]:
    """Platt parameters fitted on the observed validation cells: arrays a, b of length n_llms."""
    Z = _logit(P_val)
    obs = Y_val != MISSING
    m = Y_val.shape[1]
    if not per_llm:
        a, b = fit_platt_1d(Z[obs], Y_val[obs])
        return {"a": np.full(m, a), "b": np.full(m, b), "per_llm": False}
    a = np.ones(m)
    b = np.zeros(m)
    for j in range(m):
        o = obs[:, j]
        a[j], b[j] = fit_platt_1d(Z[o, j], Y_val[o, j])
    return {"a": a, "b": b, "per_llm": True}


def apply_platt(P: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    return _sigmoid(params["a"] * _logit(P) + params["b"])


def route_platt(P: np.ndarray, Y: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    return route_choices(apply_platt(P, params), Y)


def gap_closed(router: float, single_best: float, oracle: float) -> float:
    """Fraction of the single-best → oracle gap a router closes (negative: worse than
    single-best)."""
    gap = oracle - single_best
    return float((router - single_best) / gap) if gap > 0 else float("nan")


# (d) cost-aware routing ----------------------------------------------------------------------


def route_cost(P: np.ndarray, Y: np.ndarray, cost: np.ndarray, lam: float) -> np.ndarray:
    """Per query, the observed LLM maximising P − lam·cost (the engine's ``lam=`` rule)."""
    return route_choices(np.asarray(P, np.float64) - lam * np.asarray(cost, np.float64), Y)


def mean_cost(choices: np.ndarray, cost: np.ndarray) -> float:
    """Mean cost per routed query (queries with no observed LLM excluded)."""
    keep = choices >= 0
    return float(np.asarray(cost, np.float64)[choices[keep]].mean()) if keep.any() else math.nan


def lambda_grid(cost: np.ndarray, n: int = 40) -> np.ndarray:
    """0, then λ from 1e-4 to 10 per unit of the cost spread: P differences are at most 1, so
    the last λ always picks the cheapest observed LLM."""
    spread = float(np.ptp(cost))
    if spread <= 0:
        return np.zeros(1)
    return np.concatenate([[0.0], np.geomspace(1e-4, 10.0, n) / spread])


def cost_curve(
    P: np.ndarray, Y: np.ndarray, cost: np.ndarray, lams: Sequence[float] | None = None
) -> list[dict[str, float]]:
    """(λ, mean cost, routing accuracy) of ``route_cost`` for each λ, in grid order."""
    grid = lambda_grid(cost) if lams is None else lams
    out = []
    for lam in grid:
        c = route_cost(P, Y, cost, float(lam))
        out.append(
            {"lam": float(lam), "cost": mean_cost(c, cost), "accuracy": routing_accuracy(c, Y)}
        )
    return out


def accuracy_at_budget(curve: list[dict[str, float]], budget: float) -> float:
    """Best accuracy of a curve's points whose mean cost is within ``budget`` (NaN if none)."""
    ok = [p["accuracy"] for p in curve if p["cost"] <= budget + 1e-12]
    return max(ok) if ok else math.nan


def fixed_llm_points(Y: np.ndarray, cost: np.ndarray) -> list[dict[str, float]]:
    """Always sending to one LLM: its accuracy over the queries it answered, at its cost."""
    obs = Y != MISSING
    out = []
    for j in range(Y.shape[1]):
        n = int(obs[:, j].sum())
        acc = float((Y[obs[:, j], j] == 1).mean()) if n else math.nan
        out.append({"llm": j, "cost": float(cost[j]), "accuracy": acc, "n_queries": n})
    return out


def cheapest_correct(Y: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """The cost-aware oracle: per query, the cheapest LLM that answered correctly, else the
    cheapest observed one (-1 if none observed)."""
    big = float(np.max(cost)) + 1.0
    c = np.asarray(cost, np.float64)
    correct = np.where(Y == 1, c, np.inf)
    pick = np.argmin(correct, axis=1)
    none_right = ~np.isfinite(correct.min(axis=1))
    fallback = route_choices(np.broadcast_to(big - c, Y.shape), Y)
    return np.where(none_right, fallback, pick)
