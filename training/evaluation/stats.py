"""The evaluation's statistics: per-seed point metrics of a method's predictions and routing
choices, their mean over training seeds, and the paired bootstrap over test queries (the same
resamples for every method, so differences against the reference method are paired)."""

from __future__ import annotations

from typing import Any

import numpy as np

from training.evaluation import decision
from training.metrics import MISSING, bootstrap_indices, correctness_metrics, percentile_ci


def point_metrics(
    P: np.ndarray | None, Y: np.ndarray, bench: np.ndarray, choices: np.ndarray
) -> dict[str, float]:
    """Correctness (if P is given) and routing micro/macro of ``choices`` on rows of Y."""
    out: dict[str, float] = {}
    if P is not None:
        obs = Y != MISSING
        c = correctness_metrics(Y[obs], P[obs])
        out.update({k: float(v) for k, v in c.items() if k != "n_pairs"})
    keep = choices >= 0
    corr = decision.choice_correct(choices, Y)
    out["route_micro"] = float(corr.mean()) if corr.size else float("nan")
    b = bench[keep]
    out["route_macro"] = float(np.mean([corr[b == g].mean() for g in np.unique(b)]))
    return out


def seed_metrics(
    e: dict[str, Any], Y: np.ndarray, bench: np.ndarray, idx: np.ndarray | None = None
) -> list[dict[str, float]]:
    """``point_metrics`` of each training seed of entry ``e`` (``{"P": [..] | None,
    "choices": [..]}``), on the query rows ``idx`` (all rows when None)."""
    sel = slice(None) if idx is None else idx
    Ps = e["P"] if e.get("P") is not None else [None] * len(e["choices"])
    return [
        point_metrics(None if P is None else P[sel], Y[sel], bench[sel], c[sel])
        for P, c in zip(Ps, e["choices"], strict=True)
    ]


def mean_over_seeds(ms: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}


BOOT_KEYS = ("accuracy", "auc", "logloss", "ece", "route_micro", "route_macro")


def bootstrap_all(
    entries: dict[str, dict[str, Any]], Y: np.ndarray, bench: np.ndarray, n_boot: int, seed: int,
    ref: str = "irtnet",
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """95% CIs of each entry's seed-mean metrics and of their difference from ``ref``'s, from
    one shared set of test-query resamples (paired across methods)."""
    idx_all = bootstrap_indices(Y.shape[0], n_boot, seed)
    samples = {name: {k: [] for k in BOOT_KEYS} for name in entries}
    for idx in idx_all:
        for name, e in entries.items():
            for k, v in mean_over_seeds(seed_metrics(e, Y, bench, idx)).items():
                if k in samples[name]:
                    samples[name][k].append(v)
    out: dict[str, dict[str, Any]] = {}
    for name in entries:
        res: dict[str, Any] = {}
        for k, s in samples[name].items():
            if not s:
                continue
            arr = np.asarray(s)
            res[k] = list(percentile_ci(arr))
            if ref in samples and name != ref and len(samples[ref][k]) == len(s):
                res[f"{k}_diff_vs_{ref}"] = list(percentile_ci(arr - np.asarray(samples[ref][k])))
        out[name] = res
    return out
