"""Fixed anchor sets (Model.anchors, estimate_from_anchors, irt-fast anchors) and the estimators
behind them and the probe: known inclusion probabilities, asked target questions counted as
answered, honest intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from test_engine_fixtures import config

import irt_fast
from irt_fast.errors import DataError, InputError
from irt_fast.onboard import Anchors, read_anchors
from irt_fast.onboard.anchors import choose_anchors, estimate_from_anchors
from irt_fast.onboard.design import make_design
from irt_fast.onboard.probe import Probe
from training.experiments.onboard_synthetic import synthetic_cases

core = pytest.importorskip("irt_fast._core")
CFG = config(n_llms=5)
D = CFG["embed_dim"]


@pytest.fixture(scope="module")
def cases():
    return synthetic_cases(n_llms=300, n_onboard=30, seed=1, d=4, n_queries=1200)


def _choose(c, k, **kw) -> Anchors:
    return choose_anchors(c.alpha_pool, c.beta_pool, c.alpha_t, c.beta_t, c.prior, k,
                          groups=c.groups_t, pool_groups=c.pool_groups, **kw)  # fmt: skip


def test_anchors_are_k_distinct_questions_covering_every_group(cases) -> None:
    c = cases[0]
    a = _choose(c, 24)
    assert a.k == 24 and len(set(a.index.tolist())) == 24
    assert set(a.group) == set(np.unique(c.groups_t))
    assert a.weight.sum() == pytest.approx(1.0) and (a.weight > 0).all()
    assert a.cluster_size.sum() == len(c.beta_pool)  # the clusters partition the pool
    again = _choose(c, 24)
    assert np.array_equal(a.index, again.index)  # chosen once: the same for the same seed


def test_anchor_estimates_beat_the_plain_weighted_mean_with_known_truth(cases) -> None:
    """With exact item parameters, the model-assisted anchor estimate has a lower error than
    the weighted mean of the same answers, and its 90% intervals cover about 90%."""
    a = _choose(cases[0], 40)
    err_w, err_b, cov = [], [], []
    for c in cases:
        y = c.y_pool[a.index]
        true = float(c.y_t.mean())
        e = estimate_from_anchors(a, y, c.prior)
        err_w.append(abs(float(a.weight @ y) - true))
        err_b.append(abs(e.accuracy - true))
        cov.append(e.lo <= true <= e.hi)
    assert np.mean(err_b) < 0.9 * np.mean(err_w)
    assert 0.75 <= np.mean(cov) <= 1.0


def test_anchors_of_the_target_itself_count_their_answers(cases) -> None:
    c = cases[1]
    a = choose_anchors(c.alpha_t, c.beta_t, c.alpha_t, c.beta_t, c.prior, len(c.beta_t),
                       groups=c.groups_t)  # fmt: skip
    e = estimate_from_anchors(a, c.y_t[a.index], c.prior)  # every target question asked
    assert e.accuracy == pytest.approx(c.y_t.mean()) and e.se < 1e-9
    for g, ge in e.by_group.items():
        assert ge.accuracy == pytest.approx(c.y_t[c.groups_t == g].mean())


def test_write_and_read_give_the_same_estimate(cases, tmp_path: Path) -> None:
    c = cases[2]
    a = _choose(c, 30, query_ids=[f"q{i}" for i in range(len(c.beta_pool))])
    path = a.write(tmp_path / "anchors.parquet")
    b = read_anchors(path)
    y = c.y_pool[a.index]
    assert b.query_id == a.query_id and b.group == a.group
    for est in ("blend", "aipw", "model"):
        assert estimate_from_anchors(b, y, c.prior, estimator=est) == estimate_from_anchors(
            a, y, c.prior, estimator=est
        )
    df = pl.read_parquet(path)
    assert df.columns[:3] == ["position", "pool_index", "query_id"] and df.height == 30


def test_anchor_errors(cases, tmp_path: Path) -> None:
    c = cases[0]
    a = _choose(c, 10)
    with pytest.raises(InputError, match="mismatch"):
        estimate_from_anchors(a, np.ones(9), c.prior)
    with pytest.raises(InputError, match="0 or 1"):
        estimate_from_anchors(a, np.full(10, 2.0), c.prior)
    with pytest.raises(InputError, match="another model"):
        estimate_from_anchors(a, np.ones(10), cases[0].prior.__class__(
            cases[0].prior.mean + 1, cases[0].prior.cov))  # fmt: skip
    with pytest.raises(InputError, match="k must be"):
        _choose(c, 0)
    with pytest.raises(InputError, match="at most"):
        _choose(c, len(c.beta_pool) + 1)
    with pytest.raises(InputError, match="estimator"):
        estimate_from_anchors(a, np.ones(10), c.prior, estimator="median")
    bad = tmp_path / "x.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(bad)
    with pytest.raises(DataError, match="not an irt_fast anchors file"):
        read_anchors(bad)
    with pytest.raises(FileNotFoundError):
        read_anchors(tmp_path / "none.parquet")


def test_neyman_design_follows_its_allocation_at_every_k(cases) -> None:
    """After k answers each stratum holds its share of k (within one answer): the inclusion
    probability of a question of stratum h is n_h(k) / N_h, known at every k."""
    c = cases[0]
    rng = np.random.default_rng(0)
    x = np.column_stack([c.alpha_pool])
    groups = np.searchsorted(np.unique(c.pool_groups), c.pool_groups)
    des = make_design("neyman", x, c.beta_pool, c.prior.mean, c.prior.cov, groups,
                      np.full(len(c.beta_pool), 1.0), rng)  # fmt: skip
    assert sorted(des.order.tolist()) == list(range(len(c.beta_pool)))  # every question once
    assert des.share.sum() == pytest.approx(1.0) and len(des.sizes) > len(set(groups))
    for k in (10, 50, 200):
        n_h = np.bincount(des.stratum[des.order[:k]], minlength=len(des.sizes))
        assert np.abs(n_h - des.share * k).max() <= 1.0 + 1e-9
    # within a stratum the order is a seeded random permutation: other seeds, other questions
    other = make_design("neyman", x, c.beta_pool, c.prior.mean, c.prior.cov, groups,
                        np.full(len(c.beta_pool), 1.0), np.random.default_rng(1))  # fmt: skip
    assert set(des.order[:50].tolist()) != set(other.order[:50].tolist())


@pytest.mark.parametrize("estimator, most", [("aipw", 0.5), ("blend", 0.75)])
def test_design_estimators_are_unbiased_under_a_wrong_model(cases, estimator, most) -> None:
    """Item parameters shifted by +2.5 logits (every prediction too low) and the population
    prior kept as it is: the model estimate is biased, the AIPW and blend estimates
    (residuals with known inclusion probabilities) much less so; the blend, which trades
    bias for variance, in between."""
    bias = {"model": [], estimator: []}
    for c in cases[:20]:
        true = float(c.y_t.mean())
        for seed in (0, 1):
            pr = Probe.from_params(c.alpha_pool, c.beta_pool + 2.5, c.alpha_t, c.beta_t + 2.5,
                                   c.prior, groups=c.groups_t, pool_groups=c.pool_groups,
                                   seed=seed, prior_scale=1.0)  # fmt: skip
            idx = pr.next(60)
            pr.record(idx, c.y_pool[idx])
            est = pr.estimates()
            bias["model"].append(est["model"].accuracy - true)
            bias[estimator].append(est[estimator].accuracy - true)
    assert abs(np.mean(bias[estimator])) < most * abs(np.mean(bias["model"]))


def test_target_questions_asked_count_as_answered(cases) -> None:
    c = cases[3]
    pr = Probe.from_params(c.alpha_t, c.beta_t, c.alpha_t, c.beta_t, c.prior, seed=2)
    idx = pr.next(len(c.beta_t) - 1)
    pr.record(idx, c.y_t[idx])
    left = np.setdiff1d(np.arange(len(c.beta_t)), idx)
    for name, e in pr.estimates().items():
        # all but one answer known: the estimate is within 1/n of the truth
        assert abs(e.accuracy - c.y_t.mean()) <= 1 / len(c.beta_t) + 1e-9, name
    assert pr.next(5).tolist() == left.tolist()


# ------------------------------------------------------------------ Model API and CLI
@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(4)
    n = 120
    x = rng.standard_normal((n, D)).astype(np.float32)
    ds = tmp_path / "ds"
    ds.mkdir()
    pl.DataFrame(
        {
            "query_id": np.arange(n) * 3,
            "text": [f"q{i}" for i in range(n)],
            "benchmark": [f"b{i % 3}" for i in range(n)],
        }  # fmt: skip
    ).write_parquet(ds / "queries.parquet")
    pl.DataFrame({"query_id": np.arange(n)[::-1] * 3, "embedding": x[::-1].tolist()}).write_parquet(
        ds / "query_embeddings.parquet"
    )
    return ds, x


def test_model_anchors_and_estimate(model_path: Path, dataset) -> None:
    _, x = dataset
    m = irt_fast.load(model_path)
    groups = [f"b{i % 3}" for i in range(len(x))]
    a = m.anchors(pool=x, k=12, groups=groups)
    assert a.k == 12 and set(a.group) == {"b0", "b1", "b2"}
    y = (np.arange(12) % 2).astype(float)
    e = m.estimate_from_anchors(a, y)
    assert 0 <= e.lo <= e.accuracy <= e.hi <= 1 and set(e.by_group) == {"b0", "b1", "b2"}
    assert e.n_answers == 12


def test_cli_anchors_writes_a_readable_file(model_path: Path, dataset, tmp_path, capsys) -> None:
    from irt_fast.cli import main

    ds, x = dataset
    out = tmp_path / "anchors.parquet"
    args = ["anchors", "--model", str(model_path), "--queries", str(ds), "--k", "9"]
    assert main([*args, "--out", str(out)]) == 0
    assert "9 anchors of 120 questions over 3 groups" in capsys.readouterr().out
    a = read_anchors(out)
    assert a.k == 9 and all(isinstance(q, int) and q % 3 == 0 for q in a.query_id)
    # the ids point at the questions the anchors' item parameters came from
    m = irt_fast.load(model_path)
    rows = np.array(a.query_id) // 3
    np.testing.assert_allclose(m.item_params(x[rows])[1], a.beta, rtol=1e-6)
    e = m.estimate_from_anchors(a, np.ones(9))
    assert e.accuracy > 0.5
    # bad input: exit 2, nothing written
    bad = tmp_path / "bad.parquet"
    assert main([*args[:-1], "500", "--out", str(bad)]) == 2
    assert main([*args, "--out", str(tmp_path / "x.csv")]) == 2
    assert main(["anchors", "--model", str(model_path), "--queries", str(tmp_path / "no"),
                 "--k", "3", "--out", str(bad)]) == 2  # fmt: skip
    assert not bad.exists() and "error: " in capsys.readouterr().err
