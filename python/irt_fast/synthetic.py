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

from dataclasses import dataclass

import numpy as np
import polars as pl

from .data import Dataset
from .errors import InputError

__all__ = ["Truth", "make_synthetic"]


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
    """

    theta: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    prob: np.ndarray
    benchmark_names: list[str]
    query_benchmark: np.ndarray
    specialist_of: np.ndarray

    def accuracy(self, query_mask: np.ndarray | None = None) -> np.ndarray:
        """Expected accuracy of every LLM over all queries (or the ``query_mask`` ones)."""
        p = self.prob if query_mask is None else self.prob[:, query_mask]
        return p.mean(axis=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


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

    # Embeddings: benchmark clusters on the unit sphere. Queries are assigned round-robin and
    # then shuffled, so every benchmark has n_queries / n_benchmarks queries (± 1).
    centres = rng.standard_normal((n_benchmarks, embed_dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    qb = rng.permutation(np.arange(n_queries) % n_benchmarks)
    noise = rng.standard_normal((n_queries, embed_dim)) * (cluster_noise / np.sqrt(embed_dim))
    v = centres[qb] + noise
    v /= np.linalg.norm(v, axis=1, keepdims=True)

    # α, β: a fixed random smooth function of v. Scales chosen so that logits spread over
    # roughly ±3 (accuracies neither all 0 nor all 1).
    w1 = rng.standard_normal((embed_dim, hidden)) * 1.5
    b1 = rng.standard_normal(hidden) * 0.3
    h = np.tanh(v @ w1 + b1)  # [Q, hidden]
    a_lin = rng.standard_normal((embed_dim, d)) * 0.3
    a_hid = rng.standard_normal((hidden, d)) * (0.5 / np.sqrt(hidden))
    a0 = np.zeros(d)
    a0[0] = 1.5
    alpha = v @ a_lin + h @ a_hid + a0
    beta = h @ (rng.standard_normal(hidden) * (1.0 / np.sqrt(hidden))) + v @ (
        rng.standard_normal(embed_dim) * 0.5
    )

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

    width = max(4, len(str(n_llms - 1)))
    llm_names = [f"llm_{i:0{width}d}" for i in range(n_llms)]
    bench_names = [f"bench_{b}" for b in range(n_benchmarks)]
    bench_of_query = np.asarray(bench_names, dtype=object)[qb]
    queries = pl.DataFrame(
        {
            "query_id": np.arange(n_queries, dtype=np.int64),
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
    ds = Dataset(
        queries=queries,
        responses=responses,
        llm_names=llm_names,
        embeddings=np.ascontiguousarray(v, dtype=np.float32),
        n_merged=0,
        source=(
            f"synthetic(n_llms={n_llms}, n_queries={n_queries}, n_benchmarks={n_benchmarks}, "
            f"embed_dim={embed_dim}, d={d}, observed={observed}, seed={seed})"
        ),
    )
    truth = Truth(
        theta=theta,
        alpha=alpha,
        beta=beta,
        prob=prob,
        benchmark_names=bench_names,
        query_benchmark=qb,
        specialist_of=specialist_of,
    )
    return ds, truth
