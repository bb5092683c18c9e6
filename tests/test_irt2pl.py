"""The free-item 2PL baseline and the fast paired bootstrap of the leaderboard comparison."""

from __future__ import annotations

import numpy as np
import pytest

from irt_fast.synthetic import make_synthetic
from training.data import random_split_matrices
from training.evaluation.irt2pl import choose_k, fit_irt2pl, irt2pl_predictions
from training.experiments.leaderboard_boot import paired_bootstrap
from training.metrics import MISSING, bootstrap_indices, correctness_metrics, percentile_ci


@pytest.fixture(scope="module")
def data():
    ds, truth = make_synthetic(n_llms=60, n_queries=900, d=4, observed=0.8, seed=5)
    tr, va, te = random_split_matrices(ds, (0.7, 0.1), seed=0)
    return ds, truth, tr, va, te


def test_2pl_recovers_truth_better_than_the_prior(data):
    _, truth, tr, va, te = data
    model = fit_irt2pl(tr, d=4, seed=0, iters=200, lr=0.1)
    assert model.theta.shape == (60, 4) and model.alpha.shape == (tr.n_queries, 4)
    # on the training questions its own item parameters fit the true probabilities
    P_tr = model.predict(tr.emb, k=1)
    true_tr = truth.prob[:, tr.query_rows].T
    rates = tr.llm_base_rates(smoothing=0.0)
    err_2pl = np.abs(P_tr - true_tr).mean()
    err_prior = np.abs(rates[None, :] - true_tr).mean()
    assert err_2pl < 0.8 * err_prior  # 48 answers per question for 5 item parameters: noisy
    # on unseen questions (item parameters from neighbours) it beats the prior's log-loss
    k, scores = choose_k(model, va)
    assert k in scores and model.k == k and scores[k] == min(scores.values())
    Y = te.dense_labels()
    obs = Y != MISSING
    P = model.predict(te.emb)
    ll = correctness_metrics(Y[obs], P[obs])["logloss"]
    ll_prior = correctness_metrics(Y[obs], np.broadcast_to(rates, P.shape)[obs])["logloss"]
    assert ll < ll_prior - 0.02


def test_2pl_predictions_hook(data):
    _, _, tr, va, te = data
    Pt, Pv, info = irt2pl_predictions(tr, va, te, d=2)
    assert Pt.shape == (te.n_queries, 60) and Pv.shape == (va.n_queries, 60)
    assert np.isfinite(Pt).all() and (Pt > 0).all() and (Pt < 1).all()
    assert info["d"] == 2 and str(info["k"]) in info["val_logloss_by_k"]


def test_paired_bootstrap_matches_direct_computation():
    rng = np.random.default_rng(0)
    nq, per = 40, 25
    pq = np.repeat(np.arange(nq), per)
    y = rng.integers(0, 2, nq * per)
    pa = np.round(np.clip(0.5 * y + rng.random(nq * per) * 0.6, 0, 1), 1)  # many ties
    pb = rng.random(nq * per)
    ra, rb = rng.integers(0, 2, nq).astype(float), rng.integers(0, 2, nq).astype(float)
    res = paired_bootstrap(pq, y, {"a": pa, "b": pb}, {"a": ra, "b": rb}, nq, n_boot=50, ref="a")
    direct = correctness_metrics(y, pa)
    for k in ("accuracy", "auc", "logloss"):
        assert res["a"]["estimate"][k] == pytest.approx(direct[k], abs=1e-9)
    assert res["a"]["estimate"]["route"] == pytest.approx(ra.mean())
    # each resample equals recomputing on the resampled pairs, paired across methods
    diffs = []
    for idx in bootstrap_indices(nq, 50, 0):
        rows = np.concatenate([np.flatnonzero(pq == q) for q in idx])
        diffs.append(correctness_metrics(y[rows], pb[rows])["auc"]
                     - correctness_metrics(y[rows], pa[rows])["auc"])  # fmt: skip
    assert res["b"]["diff_vs_a"]["auc"]["ci"] == pytest.approx(list(percentile_ci(np.array(diffs))))
    assert res["a"]["estimate"]["auc"] > res["b"]["estimate"]["auc"]
