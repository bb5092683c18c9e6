"""Synthetic generator: seeded, consistent with its ground truth, learnable, sparse-capable."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from irt_fast.data import load_dataset, write_dataset
from irt_fast.errors import InputError
from irt_fast.synthetic import make_leaderboard, make_synthetic


@pytest.fixture(scope="module")
def default():
    return make_synthetic(seed=0)


def test_shapes_and_types(default):
    ds, t = default
    assert (ds.n_llms, ds.n_queries) == (20, 3000)
    assert ds.embeddings.shape == (3000, 64) and ds.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ds.embeddings, axis=1), 1.0, atol=1e-5)
    assert t.theta.shape == (20, 8) and t.alpha.shape == (3000, 8) and t.beta.shape == (3000,)
    assert t.prob.shape == (20, 3000)
    assert ds.llm_names == sorted(ds.llm_names) and len(set(ds.llm_names)) == 20
    assert sorted(set(ds.benchmarks)) == t.benchmark_names
    assert (np.asarray(t.benchmark_names)[t.query_benchmark] == ds.benchmarks).all()
    assert ds.n_responses == 20 * 3000
    assert ds.queries["text"][17] == f"synthetic question 17 about {ds.benchmarks[17]}"
    r = ds.responses
    assert [ds.llm_names[i] for i in r["llm_idx"][:3]] == r["model"][:3].to_list()


def test_seeded(default):
    ds, t = default
    ds2, t2 = make_synthetic(seed=0)
    assert ds2.responses.equals(ds.responses)
    np.testing.assert_array_equal(ds2.embeddings, ds.embeddings)
    np.testing.assert_array_equal(t2.prob, t.prob)
    ds3, _ = make_synthetic(seed=1)
    assert not ds3.responses.equals(ds.responses)


def test_labels_follow_true_probabilities(default):
    ds, t = default
    r = ds.responses
    emp = r.group_by("llm_idx").agg(pl.col("correct").mean()).sort("llm_idx")["correct"]
    # 3000 Bernoulli draws per LLM: sd of the mean <= 0.0092, so 0.04 is > 4 sd
    np.testing.assert_allclose(emp.to_numpy(), t.accuracy(), atol=0.04)
    # calibration by bins of the true probability
    p = t.prob[r["llm_idx"].to_numpy(), r["q_idx"].to_numpy()]
    y = r["correct"].to_numpy()
    for lo in np.arange(0, 1, 0.2):
        m = (p >= lo) & (p < lo + 0.2)
        if m.sum() > 500:
            assert abs(y[m].mean() - p[m].mean()) < 0.03
    # neither degenerate nor saturated
    assert 0.2 < y.mean() < 0.8 and t.accuracy().std() > 0.05


def test_benchmark_clusters_and_specialists(default):
    ds, t = default
    v, qb = ds.embeddings, t.query_benchmark
    cos = v @ v.T
    same = qb[:, None] == qb[None, :]
    assert cos[same].mean() > cos[~same].mean() + 0.4
    spec = np.flatnonzero(t.specialist_of >= 0)
    assert len(spec) == 5 and sorted(t.specialist_of[spec]) == [0, 1, 2, 3, 4]
    logit = t.theta @ t.alpha.T - t.beta
    per_bench = np.stack([logit[:, qb == b].mean(axis=1) for b in range(6)], axis=1)
    rel = per_bench - logit.mean(axis=1, keepdims=True)  # relative strength per benchmark
    gen = t.specialist_of < 0
    # specialists beat the generalists' relative strength on their benchmark by the boost (2)
    # on average; single LLMs vary because their unboosted θ is random
    gap = [rel[m, t.specialist_of[m]] - rel[gen, t.specialist_of[m]].mean() for m in spec]
    assert np.mean(gap) > 1.0
    ds0, t0 = make_synthetic(n_specialists=0, seed=0)
    assert (t0.specialist_of == -1).all()


def test_alpha_beta_are_learnable_functions_of_the_embedding(default):
    """Random-feature ridge regression on the embedding recovers β and α on held-out queries."""
    ds, t = default
    v = ds.embeddings.astype(np.float64)
    rng = np.random.default_rng(0)
    feats = np.tanh(v @ rng.standard_normal((v.shape[1], 512)) * 1.5)
    x = np.hstack([v, feats, np.ones((len(v), 1))])
    tr, te = np.arange(2000), np.arange(2000, 3000)
    for target in (t.beta, t.alpha):
        w = np.linalg.solve(x[tr].T @ x[tr] + np.eye(x.shape[1]), x[tr].T @ target[tr])
        res = target[te] - x[te] @ w
        r2 = 1 - (res**2).sum() / ((target[te] - target[te].mean(0)) ** 2).sum()
        assert r2 > 0.85


def test_sparse_observation_large():
    ds, t = make_synthetic(n_llms=5000, n_queries=1000, observed=0.3, seed=2)
    r = ds.responses
    assert ds.n_responses == 5000 * 300
    counts = r.group_by("llm_idx").len()["len"]
    assert counts.min() == counts.max() == 300
    assert r.select("llm_idx", "q_idx").is_duplicated().sum() == 0
    # different random subsets per LLM
    q0 = set(r.filter(pl.col("llm_idx") == 0)["q_idx"].to_list())
    q1 = set(r.filter(pl.col("llm_idx") == 1)["q_idx"].to_list())
    assert q0 != q1 and 0 < len(q0 & q1) < 300
    # nearly every query observed by many LLMs
    assert r["q_idx"].n_unique() == 1000
    assert t.prob.shape == (5000, 1000)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_write_and_reload(tmp_path, fmt):
    """Random float32 embeddings survive every format bit for bit."""
    ds, _ = make_synthetic(n_llms=6, n_queries=200, observed=0.5, seed=3)
    back = load_dataset(write_dataset(ds, tmp_path / "demo", format=fmt))
    assert back.llm_names == ds.llm_names
    assert back.queries.equals(ds.queries)
    assert back.responses.equals(ds.responses)
    np.testing.assert_array_equal(back.embeddings, ds.embeddings)


def test_rejects_bad_arguments():
    with pytest.raises(InputError):
        make_synthetic(observed=0)
    with pytest.raises(InputError):
        make_synthetic(n_llms=0)
    with pytest.raises(InputError):
        make_synthetic(n_llms=3, n_specialists=4)


# ---------------------------------------------------------------------------------------------
# the leaderboard preset


@pytest.fixture(scope="module")
def board():
    return make_leaderboard(n_llms=1500, n_queries=500, seed=0)


def test_leaderboard_shape_and_observation(board):
    ds, t = board
    assert (ds.n_llms, ds.n_queries) == (1500, 500)
    assert t.theta.shape == (1500, 3 + 5) and t.prob.shape == (1500, 500)
    frac = ds.n_responses / (1500 * 500)
    assert 0.72 < frac < 0.78  # ~75% observed
    r = ds.responses
    assert r.select("llm_idx", "q_idx").is_duplicated().sum() == 0
    counts = np.bincount(r["llm_idx"].to_numpy(), minlength=1500)
    full = t.full_coverage
    # 40% chosen to answer everything, plus the others that happened to draw every benchmark
    assert 0.38 < full.mean() < 0.5 and (counts[full] == 500).all()
    # every LLM answered whole benchmarks: its observed set is a union of benchmarks
    qb = t.query_benchmark
    per_bench = np.zeros((1500, 5), dtype=np.int64)
    np.add.at(per_bench, (r["llm_idx"].to_numpy(), qb[r["q_idx"].to_numpy()]), 1)
    size = np.bincount(qb, minlength=5)
    assert ((per_bench == 0) | (per_bench == size)).all()
    assert (per_bench > 0).any(axis=1).all() and (~full).sum() > 0
    assert (per_bench[~full] == 0).any(axis=1).all()


def test_leaderboard_labels_follow_guessing_floor(board):
    ds, t = board
    r = ds.responses
    li, qi = r["llm_idx"].to_numpy(), r["q_idx"].to_numpy()
    p, y = t.prob[li, qi], r["correct"].to_numpy()
    assert abs(y.mean() - p.mean()) < 0.005
    assert (t.prob >= t.chance[None, :] - 1e-12).all()
    assert sorted(set(np.round(t.chance, 3))) == [0.0, 0.1, 0.25, 0.5]


def test_leaderboard_weak_llms_near_chance(board):
    _, t = board
    acc, floor = t.accuracy(), t.chance.mean()
    assert 0.25 < t.weak.mean() < 0.35
    assert abs(np.median(acc[t.weak]) - floor) < 0.08
    assert np.median(acc[~t.weak]) > floor + 0.3


def test_leaderboard_families_share_abilities(board):
    _, t = board
    base_row = {f: i for i, f in enumerate(t.family_of) if t.is_base[i]}
    base_weak = t.weak[[base_row[f] for f in t.family_of]]
    # plain fine-tunes (not specialised, not made weak) of bases that were not made weak
    ok = ~t.weak & ~t.is_base & (t.specialist_of < 0) & ~base_weak
    own = np.array(
        [np.linalg.norm(t.theta[i] - t.theta[base_row[t.family_of[i]]]) for i in np.flatnonzero(ok)]
    )
    rng = np.random.default_rng(0)
    bases = np.flatnonzero(t.is_base)
    other = np.array(
        [np.linalg.norm(t.theta[i] - t.theta[rng.choice(bases)]) for i in np.flatnonzero(ok)]
    )
    assert own.mean() < 0.5 * other.mean()
    sizes = np.bincount(t.family_of)
    assert len(sizes) == 60 and sizes.max() >= 5 * np.median(sizes)  # heavy-tailed families


def test_leaderboard_benchmark_skills(board):
    _, t = board
    g, qb = 3, t.query_benchmark
    skill = t.alpha[:, g:].copy()
    assert (skill[np.arange(500), qb] > 0).all()
    skill[np.arange(500), qb] = 0
    assert (skill == 0).all()  # a question loads on its own benchmark's skill only
    logit = t.theta @ t.alpha.T - t.beta
    per_bench = np.stack([logit[:, qb == b].mean(axis=1) for b in range(5)], axis=1)
    rel = per_bench - per_bench.mean(axis=1, keepdims=True)
    spec = np.flatnonzero((t.specialist_of >= 0) & ~t.weak)  # making an LLM weak erases skills
    gen = (t.specialist_of < 0) & ~t.weak
    gap = [rel[m, t.specialist_of[m]] - rel[gen, t.specialist_of[m]].mean() for m in spec]
    assert len(spec) > 100 and np.mean(gap) > 0.5


def test_leaderboard_seeded_and_checked():
    a, _ = make_leaderboard(n_llms=60, n_queries=50, seed=4)
    b, _ = make_leaderboard(n_llms=60, n_queries=50, seed=4)
    assert a.responses.equals(b.responses)
    with pytest.raises(InputError):
        make_leaderboard(n_llms=60, n_queries=50, observed=0.3, full_fraction=0.4)
    with pytest.raises(InputError):
        make_leaderboard(n_llms=0)
