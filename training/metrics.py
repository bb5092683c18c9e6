"""Evaluation metrics, numpy only (no torch), shared by training.fit and the experiments.

Conventions: a correctness matrix ``Y`` is int8 ``[Q, M]`` with 1 = correct, 0 = wrong and
-1 = not observed; a prediction matrix ``P`` is float ``[Q, M]``. Routing picks, for each query,
among the LLMs *observed on that query*, so a missing answer can never count as a routing win;
every result says how many queries and pairs it used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MISSING = -1


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC by the rank-sum formula (ties get average ranks). NaN if one class is absent."""
    y = np.asarray(y).astype(bool).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    sp = p[order]
    ranks = np.empty(p.size, dtype=np.float64)
    # average ranks over runs of equal scores
    boundaries = np.flatnonzero(np.diff(sp)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [sp.size]))
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width reliability bins over [0, 1]: count, mean confidence, accuracy per bin."""
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    idx = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf = np.bincount(idx, weights=p, minlength=n_bins)
    acc = np.bincount(idx, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"count": count, "confidence": conf / count, "accuracy": acc / count}


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: Σ_bins (n_b / n) · |accuracy_b − confidence_b|."""
    b = calibration_bins(y, p, n_bins)
    n = b["count"].sum()
    if n == 0:
        return float("nan")
    keep = b["count"] > 0
    gap = np.abs(b["accuracy"][keep] - b["confidence"][keep])
    return float((b["count"][keep] * gap).sum() / n)


def correctness_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Accuracy (threshold 0.5), ROC-AUC, log-loss and ECE over observed pairs."""
    y = np.asarray(y).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.size == 0:
        raise ValueError("no pairs to evaluate")
    return {
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "auc": roc_auc(y, p),
        "logloss": log_loss(y, p),
        "ece": ece(y, p),
        "n_pairs": int(y.size),
    }


def matrix_correctness_metrics(Y: np.ndarray, P: np.ndarray) -> dict[str, float]:
    """``correctness_metrics`` over the observed cells of a [Q, M] matrix."""
    obs = Y != MISSING
    return correctness_metrics(Y[obs], P[obs])


def route_choices(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per query, the index of the LLM with the highest score among those observed on it
    (-1 where no LLM is observed). Ties go to the lower index."""
    obs = Y != MISSING
    masked = np.where(obs, P, -np.inf)
    choice = np.argmax(masked, axis=1)
    choice[~obs.any(axis=1)] = -1
    return choice


def _macro(correct: np.ndarray, groups: np.ndarray | None) -> tuple[float, dict[str, float]]:
    if groups is None:
        return float("nan"), {}
    per = {}
    for g in np.unique(groups):
        sel = groups == g
        if sel.any():
            per[str(g)] = float(correct[sel].mean())
    return float(np.mean(list(per.values()))), per


def routing_correct(
    P: np.ndarray, Y: np.ndarray, prior_rank: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-query 0/1 outcomes of the argmax router, the single-best router (highest
    ``prior_rank`` among the LLMs observed on the query) and the oracle, over the queries with at
    least one observed LLM (``kept`` marks them). Works on a chunk of queries at a time."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y)
    if P.shape != Y.shape:
        raise ValueError(f"P {P.shape} and Y {Y.shape} differ in shape")
    kept = (Y != MISSING).any(axis=1)
    Pk, Yk = P[kept], Y[kept]
    rows = np.arange(Pk.shape[0])
    out = {
        "kept": kept,
        "router": (Yk[rows, route_choices(Pk, Yk)] == 1).astype(np.float64),
        "oracle": (Yk == 1).any(axis=1).astype(np.float64),
        "n_candidates": (Yk != MISSING).sum(axis=1),
    }
    if prior_rank is not None:
        rank = np.broadcast_to(np.asarray(prior_rank, dtype=np.float64), Pk.shape)
        out["single_best"] = (Yk[rows, route_choices(rank, Yk)] == 1).astype(np.float64)
    return out


def summarize_routing(
    outcomes: dict[str, np.ndarray], benchmarks: Sequence[str] | np.ndarray | None = None
) -> dict[str, Any]:
    """Micro (over queries) and macro (mean over benchmarks) accuracy of each router in
    ``outcomes`` (as returned by ``routing_correct``; benchmarks are per query, before
    ``kept`` is applied)."""
    kept = outcomes["kept"]
    groups = None if benchmarks is None else np.asarray(benchmarks)[kept]
    res: dict[str, Any] = {}
    for name in ("router", "single_best", "oracle"):
        if name in outcomes:
            c = outcomes[name]
            macro, per = _macro(c, groups)
            res[name] = {"micro": float(c.mean()), "macro": macro, "per_benchmark": per}
    n = outcomes["n_candidates"]
    res["n_queries"] = int(kept.sum())
    res["n_queries_dropped"] = int((~kept).sum())
    res["candidates_per_query"] = {
        "min": int(n.min()) if n.size else 0,
        "mean": float(n.mean()) if n.size else 0.0,
        "max": int(n.max()) if n.size else 0,
    }
    return res


def routing_metrics(
    P: np.ndarray,
    Y: np.ndarray,
    *,
    benchmarks: Sequence[str] | np.ndarray | None = None,
    prior_rank: np.ndarray | None = None,
) -> dict[str, Any]:
    """Routing accuracy of argmax-P routing, against single-best and oracle.

    ``prior_rank``: per-LLM score used for the single-best router (e.g. training accuracy); the
    single-best router sends each query to the highest-ranked LLM observed on it.
    Micro is over queries (with at least one observed LLM), macro the mean over benchmarks.
    """
    return summarize_routing(routing_correct(P, Y, prior_rank), benchmarks)


def concat_outcomes(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join ``routing_correct`` results of consecutive query chunks."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32; zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    # clipped: rounding can put a perfect correlation a hair outside [-1, 1]
    return float(np.clip((a * b).sum() / den, -1.0, 1.0)) if den > 0 else float("nan")


# ---------------------------------------------------------------------------------------------
# bootstrap confidence intervals (over queries)


def bootstrap_indices(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` indices of ``n`` units resampled with replacement (fixed by ``seed``, so
    every method evaluated with the same indices gets a *paired* bootstrap)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite bootstrap ``samples`` (NaN if none are finite)."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    return float(np.quantile(s, a)), float(np.quantile(s, 1.0 - a))


def bootstrap_ci(
    stat: Any,
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    indices: np.ndarray | None = None,
) -> dict[str, float]:
    """Point estimate and percentile CI of ``stat(idx)`` (a float from an index array over
    ``n`` units) under resampling of the units with replacement."""
    idx = bootstrap_indices(n, n_boot, seed) if indices is None else indices
    est = float(stat(np.arange(n)))
    samples = np.array([stat(i) for i in idx], dtype=np.float64)
    lo, hi = percentile_ci(samples, level)
    return {"estimate": est, "lo": lo, "hi": hi, "n_boot": int(len(idx)), "n_units": int(n)}
