"""Sampling designs over the pool with known inclusion probabilities.

A design fixes, before any answer is seen, which questions are asked in which order, so the
chance that a question is among the first k asked is known at every k. That is what keeps the
residual correction of :mod:`irt_fast.onboard.estimators` unbiased (a greedy choice that looks
at the answers has no such probability).

``neyman`` (the stratified design):

- **strata**: the pool's groups (benchmarks), each cut into up to ``n_clusters`` clusters of
  similar items by k-means on what the population prior says of them: the prior-mean logit
  x·μ − β and the question's loading on the two directions in which the trained LLMs differ
  most (x·u_j √λ_j, the top eigenpairs of the prior covariance), all in logit units;
- **allocation** (Neyman): stratum h gets a share of the answers ∝ W_h · N_h · S_h, with W_h
  the target weight of one of its questions (a pool group rare in the target counts less),
  N_h its size and S_h the mean of √E[p(1 − p)] over it, the expectation over LLMs drawn from
  the prior widened ``ALLOCATION_WIDTH`` times: questions whose outcome is uncertain are
  sampled more, and no stratum is starved because the trained LLMs all found it easy or hard;
- **order**: answer t goes to the stratum furthest below its share of t answers (ties broken
  by a seeded order); within a stratum, questions come in a seeded random order. So after k
  answers stratum h holds n_h(k) questions, a simple random sample: π = n_h(k) / N_h.

``random`` is a uniform order (π = k / N; the groups serve as post-strata for the residuals);
``stratified`` is one stratum per group with shares proportional to the target's groups (the
earlier stratified selection, now with known π).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Design",
    "assign_pool_groups",
    "item_features",
    "kmeans",
    "make_design",
    "match_rows",
    "pool_weight",
]


@dataclass
class Design:
    """A fixed question order over the pool and its strata.

    Attributes:
        order: int ``[n_pool]``: the pool indices in the order they are asked.
        stratum: int ``[n_pool]``: stratum of each pool question.
        sizes: int ``[n_strata]``: questions per stratum (N_h).
        share: float ``[n_strata]``: the share of answers each stratum gets (sums to 1).
    """

    order: np.ndarray
    stratum: np.ndarray
    sizes: np.ndarray
    share: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def kmeans(f: np.ndarray, c: int, rng: np.random.Generator, iters: int = 25) -> np.ndarray:
    """Cluster labels of the rows of ``f`` (k-means++ start, Lloyd steps); at most ``c``
    clusters, never an empty one."""
    n = len(f)
    if c <= 1 or n <= c:
        return np.zeros(n, dtype=np.int64) if c <= 1 else np.arange(n, dtype=np.int64)
    cent = [f[rng.integers(n)]]
    for _ in range(1, c):
        d2 = np.min([((f - x) ** 2).sum(1) for x in cent], axis=0)
        tot = d2.sum()
        cent.append(f[rng.integers(n)] if tot <= 0 else f[rng.choice(n, p=d2 / tot)])
    centres = np.array(cent)
    lab = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        d = ((f[:, None, :] - centres[None, :, :]) ** 2).sum(2)
        new = d.argmin(1)
        if np.array_equal(new, lab) and _ > 0:
            break
        lab = new
        for j in range(len(centres)):
            if (lab == j).any():
                centres[j] = f[lab == j].mean(0)
    _, lab = np.unique(lab, return_inverse=True)  # drop empty clusters
    return lab.astype(np.int64)


def item_features(
    x: np.ndarray, beta: np.ndarray, mean: np.ndarray, cov: np.ndarray, n_directions: int = 2
) -> np.ndarray:
    """What the population prior says of each question, in logit units: the prior-mean logit
    and the loadings on the prior covariance's ``n_directions`` leading directions
    (``[n, 1 + n_directions]``)."""
    vals, vecs = np.linalg.eigh(cov)
    j = slice(0, n_directions)
    top = vecs[:, ::-1][:, j] * np.sqrt(np.maximum(vals[::-1][j], 0.0))
    return np.column_stack([x @ mean - beta, x @ top])


def make_design(
    kind: str,
    x: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    groups: np.ndarray,
    weight: np.ndarray,
    rng: np.random.Generator,
    *,
    n_clusters: int = 4,
) -> Design:
    """The design ``kind`` ("random", "stratified" or "neyman") over the pool.

    Args:
        kind: the design.
        x: the pool's design rows ``[n, p]`` ((α, 1) with offsets, else α).
        beta: the pool's difficulties ``[n]``.
        mean, cov: the prior over (θ, b).
        groups: int ``[n]``: the pool question's target group (-1: none).
        weight: float ``[n]``: the share of the target one pool question stands for.
        rng: the random generator (the seed of the probe).
        n_clusters: clusters of items per group (``neyman``).

    Returns:
        The Design.
    """
    n = len(beta)
    if kind == "random":
        # one uniform order; the groups are post-strata for the residuals (a stratum must lie
        # within one group), with shares equal to their sizes
        _, stratum = np.unique(groups, return_inverse=True)
        order = rng.permutation(n)
        sizes = np.bincount(stratum)
        return Design(order, stratum.astype(np.int64), sizes, sizes / n)
    else:
        stratum = np.full(n, -1, dtype=np.int64)
        feats = item_features(x, beta, mean, cov) if kind == "neyman" else None
        next_id = 0
        for g in np.unique(groups):
            members = np.flatnonzero(groups == g)
            if feats is None:
                lab = np.zeros(len(members), dtype=np.int64)
            else:
                lab = kmeans(feats[members], n_clusters, rng)
            stratum[members] = next_id + lab
            next_id += int(lab.max()) + 1
        sizes = np.bincount(stratum, minlength=next_id).astype(np.float64)
        w = np.bincount(stratum, weights=weight, minlength=next_id)  # W_h · N_h
        if kind == "neyman":
            sd = np.bincount(stratum, weights=outcome_sd(x, beta, mean, cov, rng),
                             minlength=next_id)  # fmt: skip
            share = w * (sd / np.maximum(sizes, 1)) + 1e-12 * sizes
        else:
            share = w + 1e-12 * sizes
        share = share / share.sum()
    sizes_i = np.bincount(stratum, minlength=len(share))
    return Design(_order(stratum, share, sizes_i, rng), stratum, sizes_i, share)


#: The allocation averages p(1 − p) over LLMs drawn from the prior with this many times its
#: covariance: an LLM unlike the trained ones (stronger than all of them, say) still finds its
#: uncertain questions sampled; the population prior itself would starve them.
ALLOCATION_WIDTH = 4.0


def outcome_sd(x: np.ndarray, beta: np.ndarray, mean: np.ndarray, cov: np.ndarray,
               rng: np.random.Generator, n_draws: int = 64) -> np.ndarray:  # fmt: skip
    """√E[p(1 − p)] per question over (θ, b) drawn from N(mean, ALLOCATION_WIDTH · cov)."""
    chol = np.linalg.cholesky(ALLOCATION_WIDTH * cov + 1e-12 * np.eye(len(mean)))
    draws = mean[:, None] + chol @ rng.standard_normal((len(mean), n_draws))
    p = _sigmoid(x @ draws - beta[:, None])
    return np.sqrt((p * (1 - p)).mean(1))


def _order(stratum: np.ndarray, share: np.ndarray, sizes: np.ndarray, rng: np.random.Generator
           ) -> np.ndarray:  # fmt: skip
    """Every pool index once: each step serves the stratum furthest below its share (seeded
    tie order), taking that stratum's questions in a seeded random order."""
    queues = [rng.permutation(np.flatnonzero(stratum == h)) for h in range(len(share))]
    tie = rng.permutation(len(share)).astype(np.float64) * 1e-9
    taken = np.zeros(len(share), dtype=np.int64)
    out = np.empty(len(stratum), dtype=np.int64)
    for t in range(len(stratum)):
        deficit = share * (t + 1) - taken + tie
        deficit[taken >= sizes] = -np.inf
        h = int(np.argmax(deficit))
        out[t] = queues[h][taken[h]]
        taken[h] += 1
    return out


def assign_pool_groups(
    pool_groups: Any,
    group_names: list[Any],
    alpha_pool: np.ndarray,
    beta_pool: np.ndarray,
    alpha_target: np.ndarray,
    beta_target: np.ndarray,
    tg: np.ndarray,
) -> np.ndarray:
    """The target group (code) of every pool question: from ``pool_groups`` labels (a label
    the target does not have gives -1), else the target group whose item-parameter centroid
    is nearest."""
    from .options import labels_arg

    n_pool, n_groups = len(beta_pool), max(1, len(group_names))
    if pool_groups is not None:
        names, pg = labels_arg("pool_groups", pool_groups, n_pool)
        index = {g: i for i, g in enumerate(group_names)}
        lut = np.array([index.get(g, -1) for g in names], dtype=np.int64)
        return lut[pg] if len(lut) else pg
    if n_groups == 1:
        return np.zeros(n_pool, dtype=np.int64)
    feats_t = np.column_stack([alpha_target, beta_target])
    feats_p = np.column_stack([alpha_pool, beta_pool])
    scale = feats_t.std(axis=0) + 1e-12
    cent = np.stack([feats_t[tg == g].mean(0) for g in range(n_groups)]) / scale
    fp = feats_p / scale
    dist = (fp**2).sum(1)[:, None] - 2 * fp @ cent.T + (cent**2).sum(1)[None, :]
    return dist.argmin(axis=1)


def pool_weight(pg: np.ndarray, share: np.ndarray) -> np.ndarray:
    """The share of the target one pool question stands for: its group's target share over
    the group's pool questions (0 for a question of no target group)."""
    n_pg = np.bincount(pg[pg >= 0], minlength=len(share)).astype(np.float64)
    return np.where(pg >= 0, share[pg.clip(0)] / np.maximum(n_pg[pg.clip(0)], 1), 0.0)


def match_rows(ap: np.ndarray, bp: np.ndarray, at: np.ndarray, bt: np.ndarray) -> np.ndarray:
    """For every pool question, the index of the target question with the same item
    parameters (the same question), or -1."""
    rows_t = np.ascontiguousarray(np.column_stack([at, bt]))
    index = {r.tobytes(): i for i, r in enumerate(rows_t)}
    rows_p = np.ascontiguousarray(np.column_stack([ap, bp]))
    return np.array([index.get(r.tobytes(), -1) for r in rows_p], dtype=np.int64)
