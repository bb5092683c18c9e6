"""Hand-checked cases for training.metrics and training.evaluation's decision and baselines."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from training.evaluation import baselines, decision
from training.metrics import (
    bootstrap_ci,
    bootstrap_indices,
    ece,
    percentile_ci,
    rmse,
    roc_auc,
    route_choices,
    routing_metrics,
)

M = -1  # missing


# routing -------------------------------------------------------------------------------------


def test_missing_answer_is_never_a_win() -> None:
    # LLM 0 has the highest P on every query but did not answer query 1.
    P = np.array([[0.9, 0.2, 0.1], [0.9, 0.3, 0.6]])
    Y = np.array([[0, 1, 0], [M, 0, 1]], dtype=np.int8)
    r = routing_metrics(P, Y, prior_rank=np.array([3.0, 2.0, 1.0]))
    # query 0 -> LLM 0 (wrong); query 1 -> LLM 2 among observed {1, 2} (right)
    assert r["router"]["micro"] == pytest.approx(0.5)
    # oracle over observed answers: both queries have a correct observed LLM
    assert r["oracle"]["micro"] == pytest.approx(1.0)
    # single-best = LLM 0, falls back to LLM 1 (next rank) on query 1, which is wrong
    assert r["single_best"]["micro"] == pytest.approx(0.0)
    assert r["n_queries"] == 2


def test_query_with_no_observed_llm_is_dropped_not_counted() -> None:
    P = np.array([[0.9, 0.2], [0.5, 0.5]])
    Y = np.array([[1, 0], [M, M]], dtype=np.int8)
    r = routing_metrics(P, Y)
    assert r["n_queries"] == 1 and r["n_queries_dropped"] == 1
    assert r["router"]["micro"] == 1.0
    assert route_choices(P, Y).tolist() == [0, -1]


def test_single_best_choices_fall_back() -> None:
    Y = np.array([[1, 0, 0], [M, 1, 0], [M, M, 1], [M, M, M]], dtype=np.int8)
    rank = np.array([0.9, 0.8, 0.1])
    assert baselines.single_best_choices(rank, Y).tolist() == [0, 1, 2, -1]


def test_macro_is_mean_over_benchmarks_not_queries() -> None:
    P = np.array([[1.0, 0.0]] * 4)
    Y = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.int8)
    bench = np.array(["a", "a", "a", "b"])
    r = routing_metrics(P, Y, benchmarks=bench)
    assert r["router"]["micro"] == pytest.approx(0.75)
    assert r["router"]["macro"] == pytest.approx((1.0 + 0.0) / 2)
    assert r["router"]["per_benchmark"] == {"a": 1.0, "b": 0.0}


# calibration, RMSE, AUC ----------------------------------------------------------------------


def test_ece_hand_computed() -> None:
    # 2 bins: [0, .5) holds p=.2,.4 (conf .3) with labels 0,1 (acc .5): gap .2, weight 2/5
    #         [.5, 1] holds p=.6,.8,1.0 (conf .8) with labels 1,1,1 (acc 1): gap .2, weight 3/5
    p = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    y = np.array([0, 1, 1, 1, 1])
    assert ece(y, p, n_bins=2) == pytest.approx(0.2)
    # perfectly calibrated in one bin
    assert ece(np.array([1, 0]), np.array([0.5, 0.5]), n_bins=2) == pytest.approx(0.0)


def test_rmse() -> None:
    assert rmse(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0])) == pytest.approx(
        np.sqrt(4 / 3)
    )


def _auc_brute(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    s = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return s / (len(pos) * len(neg))


def test_auc_with_ties_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            y[0] = 1 - y[0]
        p = rng.integers(0, 4, n) / 3.0  # many ties
        assert roc_auc(y, p) == pytest.approx(_auc_brute(y, p))
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)


# bootstrap ------------------------------------------------------------------------------------


def test_bootstrap_ci_of_mean_covers_and_shrinks() -> None:
    x = np.random.default_rng(1).normal(0.0, 1.0, 400)
    ci = bootstrap_ci(lambda i: x[i].mean(), len(x), n_boot=500, seed=0)
    assert ci["lo"] < ci["estimate"] < ci["hi"]
    se = x.std() / np.sqrt(len(x))
    assert ci["hi"] - ci["lo"] == pytest.approx(2 * 1.96 * se, rel=0.2)
    small = bootstrap_ci(lambda i: x[:100][i].mean(), 100, n_boot=500, seed=0)
    assert small["hi"] - small["lo"] > ci["hi"] - ci["lo"]


def test_bootstrap_is_paired_and_constant_stat_has_zero_width() -> None:
    a = bootstrap_indices(10, 5, seed=3)
    assert np.array_equal(a, bootstrap_indices(10, 5, seed=3))
    assert a.shape == (5, 10) and a.min() >= 0 and a.max() < 10
    ci = bootstrap_ci(lambda i: 0.7, 10, n_boot=50)
    assert ci["lo"] == ci["hi"] == 0.7
    assert percentile_ci(np.array([np.nan, np.nan])) != percentile_ci(np.array([1.0]))


# decision rules -------------------------------------------------------------------------------


def test_shrink_and_gap_closed() -> None:
    P = np.array([[0.9, 0.1]])
    prior = np.array([0.2, 0.8])
    assert decision.shrink(P, prior, 0.5) == pytest.approx(np.array([[0.55, 0.45]]))
    Y = np.array([[0, 1]], dtype=np.int8)
    assert decision.route_shrink(P, Y, prior, 1.0).tolist() == [0]
    assert decision.route_shrink(P, Y, prior, 0.0).tolist() == [1]
    assert decision.gap_closed(0.75, 0.5, 1.0) == pytest.approx(0.5)
    assert decision.gap_closed(0.4, 0.5, 1.0) == pytest.approx(-0.2)
    assert np.isnan(decision.gap_closed(0.5, 0.5, 0.5))


def test_shrink_fit_prefers_prior_when_model_is_noise() -> None:
    # the model's P is pure noise; LLM 0 is right 90% of the time: any w below ~0.38 always
    # picks LLM 0 (the fit breaks routing ties toward the largest such w); w = 1 is noise
    rng = np.random.default_rng(0)
    n = 500
    Y = np.stack([rng.random(n) < 0.9, rng.random(n) < 0.3], axis=1).astype(np.int8)
    P = rng.random((n, 2))
    prior = np.array([0.9, 0.3])
    fit = decision.fit_shrink(P, Y, prior)
    assert fit["w"] < 0.4
    assert fit["val_scores"][1.0] < 0.7
    assert decision.routing_accuracy(decision.route_shrink(P, Y, prior, fit["w"]), Y) > 0.85


def test_switch_rule() -> None:
    rank = np.array([1.0, 0.0])  # default LLM 0
    P = np.array([[0.50, 0.55], [0.50, 0.80]])
    Y = np.array([[1, 0], [0, 1]], dtype=np.int8)
    assert decision.route_switch(P, Y, rank, 0.1).tolist() == [0, 1]
    assert decision.route_switch(P, Y, rank, 0.0).tolist() == [1, 1]
    assert decision.route_switch(P, Y, rank, 1.01).tolist() == [0, 0]
    # default unobserved -> next-ranked observed LLM is the default
    Y2 = np.array([[M, 1]], dtype=np.int8)
    assert decision.route_switch(np.array([[0.9, 0.1]]), Y2, rank, 0.5).tolist() == [1]
    fit = decision.fit_switch(P, Y, rank)
    assert decision.routing_accuracy(decision.route_switch(P, Y, rank, fit["delta"]), Y) == 1.0


def test_platt_recovers_a_known_scaling() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    z = rng.normal(0, 2, n)
    true_p = 1 / (1 + np.exp(-(0.5 * z + 0.3)))
    y = (rng.random(n) < true_p).astype(np.int8)
    a, b = decision.fit_platt_1d(z, y, ridge=0.0)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(0.3, abs=0.05)
    # per LLM: the LLM whose P is overconfident gets a < 1
    P = 1 / (1 + np.exp(-np.stack([z, 0.5 * z + 0.3], axis=1)))
    Y = np.stack([y, y], axis=1)
    params = decision.fit_platt(P, Y, per_llm=True)
    assert params["a"][0] == pytest.approx(0.5, abs=0.05)
    assert params["a"][1] == pytest.approx(1.0, abs=0.1)
    assert ece(y, decision.apply_platt(P, params)[:, 0]) < ece(y, P[:, 0])


# KNN -------------------------------------------------------------------------------------------


def test_knn_uses_nearest_answered_questions_only() -> None:
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    Ytr = np.array([[1, M], [1, 0], [0, 1], [0, 1]], dtype=np.int8)
    q = np.array([[1.0, 0.05]])
    out = baselines.knn_predict(emb, Ytr, q, ks=[1, 2])
    # LLM 0: nearest answered = train 0 (1); k=2: trains 0, 1 -> 1.0
    # LLM 1: train 0 unanswered, so nearest answered = train 1 (0); k=2: trains 1, 3 -> 0.5
    assert out[1][0].tolist() == [1.0, 0.0]
    assert out[2][0].tolist() == [1.0, 0.5]
    # chunking and a limited candidate pool give the same answer as one big chunk
    rng = np.random.default_rng(0)
    E = rng.normal(size=(300, 5))
    Y = rng.integers(-1, 2, size=(300, 4)).astype(np.int8)
    Q = rng.normal(size=(37, 5))
    a = baselines.knn_predict(E, Y, Q, ks=[5], chunk=7)[5]
    b = baselines.knn_predict(E, Y, Q, ks=[5], chunk=1000, pool_factor=100)[5]
    assert np.allclose(a, b)


def test_knn_falls_back_to_prior() -> None:
    emb = np.eye(2)
    Ytr = np.array([[1, M], [0, M]], dtype=np.int8)
    out = baselines.knn_predict(emb, Ytr, np.array([[1.0, 0.0]]), ks=[1])[1]
    assert out[0, 1] == 0.5  # LLM 1 never observed: prior 0.5
    assert baselines.prior_rates(Ytr).tolist() == [0.5, 0.5]
