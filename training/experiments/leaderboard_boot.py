"""Paired bootstrap over test questions for big pair sets (millions of test pairs).

``training.evaluate.bootstrap_all`` recomputes every metric from scratch on each resample
(a sort for AUC each time): fine for 35K test pairs, minutes per method at a leaderboard's ~1M.
Here a resample of questions is a vector of multiplicities ``w_q``; accuracy, log-loss and
routing are weighted sums of per-pair or per-question terms, and AUC is a weighted rank-sum
over each method's scores sorted once (ties count one half, as in ``metrics.roc_auc``). The
resamples come from ``metrics.bootstrap_indices``, shared by every method (paired).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.metrics import bootstrap_indices, percentile_ci

KEYS = ("accuracy", "auc", "logloss", "route")


class _PairStats:
    """One method's per-pair terms, prepared for weighted resampling."""

    def __init__(self, y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> None:
        p = np.asarray(p, dtype=np.float64)
        y = np.asarray(y).astype(bool)
        self.hit = (p >= 0.5) == y
        pc = np.clip(p, eps, 1 - eps)
        self.nll = -np.where(y, np.log(pc), np.log1p(-pc))
        self.y = y
        uniq, self.rank = np.unique(p, return_inverse=True)  # ties share a rank
        self.n_ranks = len(uniq)

    def metrics(self, wp: np.ndarray) -> tuple[float, float, float]:
        tot = wp.sum()
        acc = float((wp * self.hit).sum() / tot)
        ll = float((wp * self.nll).sum() / tot)
        pos = np.bincount(self.rank, weights=wp * self.y, minlength=self.n_ranks)
        neg = np.bincount(self.rank, weights=wp * ~self.y, minlength=self.n_ranks)
        below = np.cumsum(neg) - neg
        den = pos.sum() * neg.sum()
        auc = float((pos * (below + 0.5 * neg)).sum() / den) if den > 0 else float("nan")
        return acc, auc, ll


def paired_bootstrap(
    pair_query: np.ndarray,
    y: np.ndarray,
    preds: dict[str, np.ndarray | None],
    routed: dict[str, np.ndarray],
    n_queries: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    ref: str,
) -> dict[str, dict[str, Any]]:
    """Point estimates and 95% CIs of each method's metrics and of its difference from ``ref``.

    Args:
        pair_query: test-question index of each observed test pair; y: its 0/1 label.
        preds: method -> P(correct) of each pair (None: a router without probabilities).
        routed: method -> 0/1 per test question, whether the routed-to LLM was correct.
        n_queries: number of test questions (the resampled units).
    """
    pair_query = np.asarray(pair_query, dtype=np.int64)
    stats = {k: _PairStats(y, p) for k, p in preds.items() if p is not None}
    names = list(dict.fromkeys([*preds, *routed]))
    full = np.ones(n_queries)
    samples: dict[str, dict[str, list[float]]] = {n: {k: [] for k in KEYS} for n in names}
    point: dict[str, dict[str, float]] = {n: {} for n in names}

    def measure(wq: np.ndarray, into: dict[str, dict[str, Any]], append: bool) -> None:
        wp = wq[pair_query]
        for n in names:
            vals: dict[str, float] = {}
            if n in stats:
                vals["accuracy"], vals["auc"], vals["logloss"] = stats[n].metrics(wp)
            if n in routed:
                vals["route"] = float((wq * routed[n]).sum() / wq.sum())
            for k, v in vals.items():
                if append:
                    into[n][k].append(v)
                else:
                    into[n][k] = v

    measure(full, point, append=False)
    for idx in bootstrap_indices(n_queries, n_boot, seed):
        measure(np.bincount(idx, minlength=n_queries).astype(np.float64), samples, append=True)
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        res: dict[str, Any] = {"estimate": point[n], "ci": {}, f"diff_vs_{ref}": {}}
        for k, s in samples[n].items():
            if not s:
                continue
            res["ci"][k] = list(percentile_ci(np.asarray(s)))
            r = samples.get(ref, {}).get(k, [])
            if n != ref and len(r) == len(s):
                d = np.asarray(s) - np.asarray(r)
                res[f"diff_vs_{ref}"][k] = {
                    "estimate": point[n][k] - point[ref][k],
                    "ci": list(percentile_ci(d)),
                }
        out[n] = res
    return out
