"""Synthetic correctness data with known ground truth (the built-in default data set).

The generator follows the model the package fits, so a correct implementation can recover it:

- query embeddings ``v_q``: unit vectors clustered by benchmark (a random centre per benchmark
  plus isotropic noise, normalised);
- ``α_q = A v_q + U tanh(W v_q + b) + a0`` and ``β_q = c · tanh(W v_q + b) + d0 · v_q``: a fixed
  random 2-layer tanh network of the embedding (plus a linear part), so a network can learn it;
  ``a0`` has a positive first coordinate, making ``θ[:, 0]`` a general ability;
- ``θ_m ~ N(0, I)``; a specialist LLM's θ is shifted so that its mean logit on its benchmark
  rises by ``specialist_boost`` while its mean logit over all queries stays the same;
- ``y ~ Bernoulli(sigmoid(α_q · θ_m − β_q))``, observed on a random subset per LLM when
  ``observed < 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from .data import Dataset
from .errors import InputError

__all__ = ["Truth", "make_leaderboard", "make_synthetic"]


@dataclass(frozen=True, eq=False)
class Truth:
    """The parameters that generated a synthetic dataset (rows follow the dataset's order).

    Attributes:
        theta: float64 ``[n_llms, d]`` abilities (row m = ``llm_names[m]``).
        alpha: float64 ``[n_queries, d]`` discriminations (row q = ``queries`` row q).
        beta: float64 ``[n_queries]`` difficulties.
        prob: float64 ``[n_llms, n_queries]`` true P(correct) = sigmoid(α·θ − β).
        benchmark_names: the benchmark names, index b = benchmark b.
        query_benchmark: int ``[n_queries]`` benchmark index of each query.
        specialist_of: int ``[n_llms]`` benchmark index an LLM specialises in, or -1.
        chance: float64 ``[n_queries]`` guessing floor of each query, or None (no floor). With
            a floor, ``prob = chance + (1 − chance) · sigmoid(α·θ − β)`` (the leaderboard preset).
        family_of: int ``[n_llms]`` family (base model) of each LLM, or None.
        is_base: bool ``[n_llms]``: the LLM is its family's base model, or None.
        weak: bool ``[n_llms]``: the LLM was made near-chance, or None.
        full_coverage: bool ``[n_llms]``: the LLM answered every query, or None.
    """

    theta: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    prob: np.ndarray
    benchmark_names: list[str]
    query_benchmark: np.ndarray
    specialist_of: np.ndarray
    chance: np.ndarray | None = None
    family_of: np.ndarray | None = None
    is_base: np.ndarray | None = None
    weak: np.ndarray | None = None
    full_coverage: np.ndarray | None = None

    def accuracy(self, query_mask: np.ndarray | None = None) -> np.ndarray:
        """Expected accuracy of every LLM over all queries (or the ``query_mask`` ones)."""
        p = self.prob if query_mask is None else self.prob[:, query_mask]
        return p.mean(axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


def _clusters(
    rng: np.random.Generator, n_queries: int, n_benchmarks: int, embed_dim: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's benchmark ``[Q]`` and unit embedding ``[Q, embed_dim]``: a random unit centre
    per benchmark plus isotropic noise of norm about ``noise``, normalised. Queries are assigned
    round-robin and then shuffled, so every benchmark has n_queries / n_benchmarks (± 1)."""
    centres = rng.standard_normal((n_benchmarks, embed_dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    qb = rng.permutation(np.arange(n_queries) % n_benchmarks)
    v = centres[qb] + rng.standard_normal((n_queries, embed_dim)) * (noise / np.sqrt(embed_dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return qb, v


def _hidden(rng: np.random.Generator, v: np.ndarray, hidden: int) -> np.ndarray:
    """``tanh(v W + b)`` ``[Q, hidden]`` of a fixed random layer: the smooth features α, β use."""
    w1 = rng.standard_normal((v.shape[1], hidden)) * 1.5
    return np.tanh(v @ w1 + rng.standard_normal(hidden) * 0.3)


def _linear_hidden(rng: np.random.Generator, v: np.ndarray, h: np.ndarray, d: int) -> np.ndarray:
    """``v A + h U`` ``[Q, d]``: general loadings, linear in v plus smooth in the hidden features."""
    a_lin = rng.standard_normal((v.shape[1], d)) * 0.3
    return v @ a_lin + h @ (rng.standard_normal((h.shape[1], d)) * (0.5 / np.sqrt(h.shape[1])))


def _smooth_beta(rng: np.random.Generator, v: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The part of β ``[Q]`` the embedding predicts (hidden features plus a linear term)."""
    b_hid = h @ (rng.standard_normal(h.shape[1]) * (1.0 / np.sqrt(h.shape[1])))
    return b_hid + v @ (rng.standard_normal(v.shape[1]) * 0.5)


def make_synthetic(
    n_llms: int = 20,
    n_queries: int = 3000,
    n_benchmarks: int = 6,
    embed_dim: int = 64,
    d: int = 8,
    observed: float = 1.0,
    n_specialists: int | None = None,
    seed: int = 0,
    *,
    cluster_noise: float = 0.6,
    hidden: int = 32,
    specialist_boost: float = 2.0,
) -> tuple[Dataset, Truth]:
    """Generate a seeded synthetic dataset and its ground truth.

    Args:
        n_llms, n_queries, n_benchmarks: sizes (LLM names ``llm_0000``..., query ids 0..n-1,
            benchmarks ``bench_0``...).
        embed_dim: query embedding dimension; d: ability dimension.
        observed: fraction of queries each LLM is evaluated on (exactly
            ``max(1, round(observed * n_queries))`` per LLM, a different random subset each).
        n_specialists: LLMs specialised on one benchmark (round-robin over benchmarks);
            default ``n_llms // 4``.
        cluster_noise: spread of a benchmark's embeddings around its centre (norm of the noise
            relative to the unit centre, before normalisation).
        specialist_boost: mean logit increase of a specialist on its benchmark.

    Returns:
        (Dataset with embeddings, Truth).
    """
    if min(n_llms, n_queries, n_benchmarks, embed_dim, d) < 1:
        raise InputError("n_llms, n_queries, n_benchmarks, embed_dim and d must all be >= 1")
    if not 0 < observed <= 1:
        raise InputError(f"observed must be in (0, 1], got {observed}")
    if n_specialists is None:
        n_specialists = n_llms // 4
    if not 0 <= n_specialists <= n_llms:
        raise InputError(f"n_specialists must be in [0, n_llms], got {n_specialists}")
    rng = np.random.default_rng(seed)

    # Embeddings: benchmark clusters on the unit sphere.
    qb, v = _clusters(rng, n_queries, n_benchmarks, embed_dim, cluster_noise)

    # α, β: a fixed random smooth function of v. Scales chosen so that logits spread over
    # roughly ±3 (accuracies neither all 0 nor all 1).
    h = _hidden(rng, v, hidden)  # [Q, hidden]
    alpha = _linear_hidden(rng, v, h, d)
    alpha[:, 0] += 1.5
    beta = _smooth_beta(rng, v, h)

    theta = rng.standard_normal((n_llms, d))
    specialist_of = np.full(n_llms, -1, dtype=np.int64)
    spec = rng.choice(n_llms, size=n_specialists, replace=False)
    specialist_of[spec] = np.arange(n_specialists) % n_benchmarks
    # A specialist's boost raises its mean logit on its benchmark by `specialist_boost` while
    # leaving its mean logit over all queries unchanged: the minimum-norm Δθ with
    # ᾱ_b·Δθ = boost and ᾱ·Δθ = 0 (ᾱ_b: mean α of benchmark b, ᾱ: mean α overall).
    mean_alpha = alpha.mean(axis=0)
    for b in range(n_benchmarks):
        members = specialist_of == b
        if not members.any() or not (qb == b).any():
            continue
        constraints = np.stack([alpha[qb == b].mean(axis=0), mean_alpha])
        delta = np.linalg.lstsq(constraints, np.array([specialist_boost, 0.0]), rcond=None)[0]
        theta[members] += delta

    prob = _sigmoid(theta @ alpha.T - beta)  # [M, Q]

    # Observation pattern: exactly k queries per LLM, independently drawn per LLM.
    k = max(1, int(round(observed * n_queries)))
    if k >= n_queries:
        llm_idx = np.repeat(np.arange(n_llms, dtype=np.int32), n_queries)
        q_idx = np.tile(np.arange(n_queries, dtype=np.int32), n_llms)
    else:
        r = rng.random((n_llms, n_queries), dtype=np.float32)
        cols = np.sort(np.argpartition(r, k - 1, axis=1)[:, :k], axis=1)
        del r
        llm_idx = np.repeat(np.arange(n_llms, dtype=np.int32), k)
        q_idx = cols.reshape(-1).astype(np.int32)
    p_obs = prob[llm_idx, q_idx]
    correct = (rng.random(len(p_obs)) < p_obs).astype(np.int8)

    truth = Truth(theta, alpha, beta, prob, _bench_names(n_benchmarks), qb, specialist_of)
    source = (
        f"synthetic(n_llms={n_llms}, n_queries={n_queries}, n_benchmarks={n_benchmarks}, "
        f"embed_dim={embed_dim}, d={d}, observed={observed}, seed={seed})"
    )
    return _dataset(truth, v, (llm_idx, q_idx, correct), source), truth


def _bench_names(n_benchmarks: int) -> list[str]:
    return [f"bench_{b}" for b in range(n_benchmarks)]


def _dataset(
    truth: Truth, v: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], source: str
) -> Dataset:
    """The Dataset of the observed ``pairs`` (LLM row, query row, correct; sorted by LLM, then
    query) with embeddings ``v``, named after ``truth``'s LLMs and benchmarks."""
    llm_idx, q_idx, correct = pairs
    qb, n_llms = truth.query_benchmark, len(truth.theta)
    width = max(4, len(str(n_llms - 1)))
    llm_names = [f"llm_{i:0{width}d}" for i in range(n_llms)]
    bench_of_query = np.asarray(truth.benchmark_names, dtype=object)[qb]
    queries = pl.DataFrame(
        {
            "query_id": np.arange(len(qb), dtype=np.int64),
            "text": [
                f"synthetic question {i} about {b}" for i, b in enumerate(bench_of_query.tolist())
            ],
            "benchmark": pl.Series(bench_of_query.tolist(), dtype=pl.String),
        }
    )
    responses = pl.DataFrame(
        {
            "model": pl.Series(llm_names, dtype=pl.String).gather(llm_idx),
            "query_id": q_idx.astype(np.int64),
            "correct": correct,
            "llm_idx": llm_idx,
            "q_idx": q_idx,
        }
    )
    return Dataset(
        queries=queries,
        responses=responses,
        llm_names=llm_names,
        embeddings=np.ascontiguousarray(v, dtype=np.float32),
        n_merged=0,
        source=source,
    )


# Guessing floors cycled over the preset's benchmarks: 4-way and 10-way multiple choice, free
# answers (no floor), yes/no, 4-way again.
CHANCE_LEVELS = (0.25, 0.1, 0.0, 0.5, 0.25)


def make_leaderboard(
    n_llms: int = 6000,
    n_queries: int = 1000,
    n_benchmarks: int = 5,
    embed_dim: int = 64,
    seed: int = 0,
    *,
    observed: float = 0.75,
    full_fraction: float = 0.4,
    d_general: int = 3,
    llms_per_family: float = 25.0,
    finetune_std: float = 0.35,
    specialist_fraction: float = 0.2,
    specialist_boost: float = 1.5,
    weak_fraction: float = 0.3,
    item_noise: float = 0.5,
    cluster_noise: float = 0.6,
    hidden: int = 32,
) -> tuple[Dataset, Truth]:
    """A leaderboard-shaped synthetic matrix: thousands of LLMs × about a thousand questions.

    What real leaderboards have, and this preset generates:

    - **Families**: ``n_llms / llms_per_family`` base models with heavy-tailed (Pareto) family
      sizes; every other LLM is a fine-tune of one base, ``θ = θ_base + N(0, finetune_std²)``,
      so fine-tunes share their base's abilities.
    - **Benchmark-specific skills**: ``d = d_general + n_benchmarks``; a query of benchmark b
      loads on the general dimensions (a smooth function of its embedding, as in
      ``make_synthetic``) and on skill dimension ``d_general + b`` only. A ``specialist_fraction``
      of fine-tunes gain ``specialist_boost`` on one skill.
    - **Weak LLMs near chance**: a ``weak_fraction`` of LLMs have a general ability of about −4,
      and every benchmark has a guessing floor (``CHANCE_LEVELS``):
      ``P = chance + (1 − chance) · sigmoid(α·θ − β)``, so weak LLMs score near chance.
    - **Per-question idiosyncrasy**: β has an ``item_noise`` part no embedding predicts.
    - **Whole benchmarks missing**: ``full_fraction`` of LLMs answered everything (the routing
      candidates); each other LLM answered each benchmark with the probability that brings the
      observed fraction to ``observed`` (at least one benchmark each).

    Memory: O(n_llms × n_queries) for the true probabilities (float64: 48 MB at 6,000 × 1,000).

    Returns:
        (Dataset with embeddings, Truth with chance, family_of, is_base, weak, full_coverage).
    """
    if min(n_llms, n_queries, n_benchmarks, embed_dim, d_general, hidden) < 1:
        raise InputError("n_llms, n_queries, n_benchmarks, embed_dim, d_general must be >= 1")
    if not 0 < observed <= 1 or not 0 <= full_fraction <= observed:
        raise InputError(
            f"need 0 < observed <= 1 and 0 <= full_fraction <= observed, got "
            f"observed={observed}, full_fraction={full_fraction}"
        )
    for name, f in (("specialist_fraction", specialist_fraction), ("weak_fraction", weak_fraction)):
        if not 0 <= f <= 1:
            raise InputError(f"{name} must be in [0, 1], got {f}")
    if llms_per_family < 1:
        raise InputError(f"llms_per_family must be >= 1, got {llms_per_family}")
    rng = np.random.default_rng(seed)
    g, d = d_general, d_general + n_benchmarks

    qb, v = _clusters(rng, n_queries, n_benchmarks, embed_dim, cluster_noise)

    # Items: general loadings and difficulty are smooth functions of the embedding; one skill
    # loading per query, on its benchmark's dimension.
    h = _hidden(rng, v, hidden)
    alpha = np.zeros((n_queries, d))
    alpha[:, :g] = _linear_hidden(rng, v, h, g)
    alpha[:, 0] += 1.2
    alpha[np.arange(n_queries), g + qb] = 0.8 * (
        1 + 0.3 * np.tanh(h @ rng.standard_normal(hidden) / np.sqrt(hidden))
    )
    beta = (
        _smooth_beta(rng, v, h)
        + rng.standard_normal(n_benchmarks)[qb] * 0.5
        + rng.standard_normal(n_queries) * item_noise
    )
    chance = np.asarray(CHANCE_LEVELS, dtype=np.float64)[
        np.arange(n_benchmarks) % len(CHANCE_LEVELS)
    ][qb]

    # LLMs: bases, fine-tunes of a base (heavy-tailed family sizes), specialists, weak ones.
    n_fam = max(1, min(n_llms, int(round(n_llms / llms_per_family))))
    base_theta = np.hstack(
        [rng.standard_normal((n_fam, g)), 0.5 * rng.standard_normal((n_fam, n_benchmarks))]
    )
    weights = rng.pareto(1.5, n_fam) + 1.0
    weights = np.minimum(weights, 0.15 * weights.sum())  # no family above ~15% of the LLMs
    family_of = np.concatenate(
        [np.arange(n_fam), rng.choice(n_fam, size=n_llms - n_fam, p=weights / weights.sum())]
    )
    is_base = np.arange(n_llms) < n_fam
    theta = base_theta[family_of] + np.where(
        is_base[:, None], 0.0, finetune_std * rng.standard_normal((n_llms, d))
    )
    specialist_of = np.full(n_llms, -1, dtype=np.int64)
    ft = np.flatnonzero(~is_base)
    spec = rng.choice(ft, size=int(round(specialist_fraction * len(ft))), replace=False)
    specialist_of[spec] = rng.integers(0, n_benchmarks, size=len(spec))
    theta[spec, g + specialist_of[spec]] += specialist_boost
    weak = np.zeros(n_llms, dtype=bool)
    weak[rng.choice(n_llms, size=int(round(weak_fraction * n_llms)), replace=False)] = True
    theta[weak] *= 0.2
    theta[weak, 0] = -4.0 + 0.5 * rng.standard_normal(int(weak.sum()))
    # Shuffle so families, bases and weak LLMs are spread over the (sorted) names.
    perm = rng.permutation(n_llms)
    theta, family_of, is_base, weak, specialist_of = (
        a[perm] for a in (theta, family_of, is_base, weak, specialist_of)
    )

    prob = chance + (1.0 - chance) * _sigmoid(theta @ alpha.T - beta)  # [M, Q]

    # Observation: whole benchmarks per LLM.
    full = rng.random(n_llms) < full_fraction
    p_bench = (observed - full_fraction) / (1.0 - full_fraction) if full_fraction < 1 else 1.0
    bench_obs = full[:, None] | (rng.random((n_llms, n_benchmarks)) < p_bench)
    none = ~bench_obs.any(axis=1)
    bench_obs[np.flatnonzero(none), rng.integers(0, n_benchmarks, size=int(none.sum()))] = True
    full_coverage = bench_obs.all(axis=1)
    llm_idx, q_idx = np.nonzero(bench_obs[:, qb])
    llm_idx, q_idx = llm_idx.astype(np.int32), q_idx.astype(np.int32)
    correct = (rng.random(len(llm_idx)) < prob[llm_idx, q_idx]).astype(np.int8)

    truth = Truth(theta, alpha, beta, prob, _bench_names(n_benchmarks), qb, specialist_of)
    # the preset's own truth: guessing floors, families, weak LLMs, who answered everything
    truth = replace(truth, chance=chance, family_of=family_of, is_base=is_base, weak=weak,
                    full_coverage=full_coverage)  # fmt: skip
    source = (
        f"leaderboard(n_llms={n_llms}, n_queries={n_queries}, n_benchmarks={n_benchmarks}, "
        f"embed_dim={embed_dim}, observed={observed}, seed={seed})"
    )
    return _dataset(truth, v, (llm_idx, q_idx, correct), source), truth
