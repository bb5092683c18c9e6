"""Non-neural baselines, numpy only: KNN on query embeddings, the per-LLM prior and the
single-best router.

KNN: for a query, each LLM's P(correct) is its mean correctness on the ``k`` nearest (cosine)
*training* questions that this LLM answered; an LLM with no answered neighbour in the candidate
pool falls back to its training accuracy. Similarities are computed one chunk of queries at a
time (chunk × n_train floats), never the full query × train matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.metrics import (
    MISSING,
    correctness_metrics,
    matrix_correctness_metrics,
    unit_rows,
)

K_GRID = (5, 10, 20, 50, 100)


def prior_rates(Y_train: np.ndarray) -> np.ndarray:
    """Per-LLM accuracy over the observed training cells (0.5 for an LLM never observed)."""
    obs = Y_train != MISSING
    n = obs.sum(0)
    k = (Y_train == 1).sum(0)
    return np.where(n > 0, k / np.maximum(n, 1), 0.5).astype(np.float64)


def knn_predict(
    train_emb: np.ndarray,
    Y_train: np.ndarray,
    query_emb: np.ndarray,
    ks: Sequence[int] = K_GRID,
    *,
    chunk: int = 256,
    pool_factor: int = 4,
) -> dict[int, np.ndarray]:
    """P ``[n_query, n_llms]`` for each k in ``ks``. The candidate pool per query is the
    ``pool_factor · max(ks)`` most similar training questions; within it each LLM uses its
    ``k`` nearest answered ones."""
    Xtr = unit_rows(train_emb)
    Xq = unit_rows(query_emb)
    n_train, m = Y_train.shape
    prior = prior_rates(Y_train)
    pool = int(min(n_train, pool_factor * max(ks)))
    out = {k: np.empty((Xq.shape[0], m), dtype=np.float64) for k in ks}
    for lo in range(0, Xq.shape[0], chunk):
        hi = min(lo + chunk, Xq.shape[0])
        sims = Xq[lo:hi] @ Xtr.T  # [c, n_train]
        if pool < n_train:
            top = np.argpartition(-sims, pool - 1, axis=1)[:, :pool]
        else:
            top = np.broadcast_to(np.arange(n_train), (hi - lo, n_train))
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        nb = np.take_along_axis(top, order, axis=1)  # [c, pool] nearest first
        Yn = Y_train[nb]  # [c, pool, m]
        obs = Yn != MISSING
        cum = np.cumsum(obs, axis=1)
        for k in ks:
            use = obs & (cum <= k)
            cnt = use.sum(1)
            s = ((Yn == 1) & use).sum(1)
            out[k][lo:hi] = np.where(cnt > 0, s / np.maximum(cnt, 1), prior)
    return out


def fit_knn(
    train_emb: np.ndarray,
    Y_train: np.ndarray,
    val_emb: np.ndarray,
    Y_val: np.ndarray,
    ks: Sequence[int] = K_GRID,
) -> tuple[int, dict[int, float]]:
    """The k with the best validation accuracy (ties: the smaller k); also every k's score."""
    ks = [k for k in ks if k <= Y_train.shape[0]] or [min(ks)]
    preds = knn_predict(train_emb, Y_train, val_emb, ks)
    scores = {k: matrix_correctness_metrics(Y_val, preds[k])["accuracy"] for k in ks}
    best = max(ks, key=lambda k: (scores[k], -k))
    return best, scores


def prior_matrix(Y_train: np.ndarray, n_queries: int) -> np.ndarray:
    """The per-LLM prior as a prediction matrix ``[n_queries, n_llms]``."""
    return np.broadcast_to(prior_rates(Y_train), (n_queries, Y_train.shape[1])).copy()


def single_best_choices(rank: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per query, the highest-``rank`` LLM among those observed (-1 if none): the single-best
    router, which falls back to the next LLM when the best one did not answer."""
    obs = Y != MISSING
    masked = np.where(obs, np.broadcast_to(rank, Y.shape), -np.inf)
    c = np.argmax(masked, axis=1)
    c[~obs.any(axis=1)] = -1
    return c


def prior_correctness(Y_train: np.ndarray, Y: np.ndarray) -> dict[str, float]:
    obs = Y != MISSING
    P = prior_matrix(Y_train, Y.shape[0])
    return correctness_metrics(Y[obs], P[obs])
