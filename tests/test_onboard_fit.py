"""irt_fast.onboard prior and fit: against brute force, edge cases, typed errors."""

from __future__ import annotations

import numpy as np
import pytest

from irt_fast.errors import InputError
from irt_fast.onboard import Posterior, Prior, fit_llm


def _problem(k: int = 40, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    alpha = rng.standard_normal((k, d))
    beta = rng.standard_normal(k)
    w_true = rng.standard_normal(d + 1)
    p = 1 / (1 + np.exp(-(alpha @ w_true[:d] - beta + w_true[d])))
    y = (rng.random(k) < p).astype(np.float64)
    pop = rng.standard_normal((10, d + 1)) * np.array([1.0] * d + [0.5])
    prior = Prior.from_population(pop[:, :d], pop[:, d])
    return alpha, beta, y, prior


def _neg_log_post(w, alpha, beta, y, prior, has_bias=True):
    d = alpha.shape[1]
    z = alpha @ w[:d] - beta + (w[d] if has_bias else 0.0)
    r = w - prior.mean
    return float((np.logaddexp(0, z) - y * z).sum() + 0.5 * r @ np.linalg.solve(prior.cov, r))


def test_fit_matches_scipy_optimum_and_hessian():
    from scipy.optimize import minimize

    alpha, beta, y, prior = _problem()
    post = fit_llm(alpha, beta, y, prior)
    ref = minimize(
        _neg_log_post, prior.mean, args=(alpha, beta, y, prior), method="BFGS", tol=1e-12
    )
    assert np.allclose(post.mean, ref.x, atol=1e-5)
    # The Laplace covariance is the inverse Hessian of the objective at the optimum: compare
    # with central finite differences of the objective.
    p, h = len(ref.x), 1e-4
    hess = np.zeros((p, p))
    for i in range(p):
        for j in range(p):
            e_i, e_j = np.eye(p)[i] * h, np.eye(p)[j] * h
            f = lambda v: _neg_log_post(v, alpha, beta, y, prior)  # noqa: E731
            hess[i, j] = (
                f(post.mean + e_i + e_j)
                - f(post.mean + e_i - e_j)
                - f(post.mean - e_i + e_j)
                + f(post.mean - e_i - e_j)
            ) / (4 * h * h)
    assert np.allclose(np.linalg.inv(post.cov), hess, rtol=1e-3, atol=1e-3)
    assert post.n_answers == len(y)


def test_fit_matches_dense_grid_in_2d():
    """d = 1 with an offset: the MAP on a dense grid of (θ, b)."""
    alpha, beta, y, prior = _problem(k=25, d=1, seed=3)
    post = fit_llm(alpha, beta, y, prior)
    g = np.linspace(-4, 4, 401)
    tt, bb = np.meshgrid(g, g, indexing="ij")
    w = np.stack([tt.ravel(), bb.ravel()], axis=1)
    z = w[:, :1] @ alpha.T - beta[None, :] + w[:, 1:]
    r = w - prior.mean
    f = (np.logaddexp(0, z) - y * z).sum(1) + 0.5 * np.einsum(
        "ni,ij,nj->n", r, np.linalg.inv(prior.cov), r
    )
    best = w[np.argmin(f)]
    assert np.all(np.abs(post.mean - best) <= 0.021)


def test_fit_without_bias():
    alpha, beta, y, _ = _problem(d=4)
    prior = Prior(mean=np.zeros(4), cov=np.eye(4))
    post = fit_llm(alpha, beta, y, prior, has_bias=False)
    assert post.bias == 0.0 and post.cov.shape == (4, 4) and post.mean.shape == (4,)
    with pytest.raises(InputError, match="dimension"):
        fit_llm(alpha, beta, y, prior, has_bias=True)


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_all_equal_answers_stay_finite(value):
    alpha, beta, _, prior = _problem(k=30)
    post = fit_llm(alpha, beta, np.full(30, value), prior)
    assert np.isfinite(post.mean).all() and np.isfinite(post.cov).all()
    # all correct pushes the predicted logits up, all wrong down (relative to the prior mean)
    shift = alpha.mean(0) @ (post.theta - prior.mean[:-1]) + post.bias - prior.mean[-1]
    assert (shift > 0) == (value == 1.0)


def test_more_answers_shrink_the_posterior():
    alpha, beta, y, prior = _problem(k=400, d=2, seed=1)
    few = fit_llm(alpha[:20], beta[:20], y[:20], prior)
    many = fit_llm(alpha, beta, y, prior)
    assert np.trace(many.cov) < np.trace(few.cov) < np.trace(prior.cov)


def test_bad_inputs_raise_typed_errors():
    alpha, beta, y, prior = _problem()
    with pytest.raises(InputError, match="empty"):
        fit_llm(alpha[:0], beta[:0], y[:0], prior)
    with pytest.raises(InputError, match="mismatch"):
        fit_llm(alpha, beta[:-1], y, prior)
    with pytest.raises(InputError, match="mismatch"):
        fit_llm(alpha, beta, y[:-1], prior)
    bad = alpha.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        fit_llm(bad, beta, y, prior)
    yy = y.copy()
    yy[0] = np.nan
    with pytest.raises(InputError, match="0 and 1"):
        fit_llm(alpha, beta, yy, prior)
    with pytest.raises(InputError, match="0 and 1"):
        fit_llm(alpha, beta, y * 2, prior)
    with pytest.raises(InputError, match="alpha"):
        fit_llm(alpha[:, 0], beta, y, prior)
    with pytest.raises(InputError, match="Prior"):
        fit_llm(alpha, beta, y, object())  # type: ignore[arg-type]


def test_prior_is_well_conditioned_when_n_below_p():
    rng = np.random.default_rng(0)
    n, d = 29, 232
    # a population varying mostly along one "general ability" direction, plus noise
    u = rng.standard_normal(d)
    theta = rng.standard_normal((n, 1)) * u + 0.3 * rng.standard_normal((n, d))
    bias = rng.standard_normal(n) * 2
    prior = Prior.from_population(theta, bias)
    assert prior.cov.shape == (d + 1, d + 1)
    eig = np.linalg.eigvalsh(prior.cov)
    assert eig.min() > 0 and eig.max() / eig.min() < 1e6
    # it keeps each coordinate's sample variance and the population's main direction
    x = np.concatenate([theta, bias[:, None]], 1)
    assert np.allclose(np.diag(prior.cov), x.var(0, ddof=1))
    assert np.allclose(prior.mean, x.mean(0))
    top = np.linalg.eigh(prior.cov)[1][:d, -1]
    assert abs(top @ u) / np.linalg.norm(u) / np.linalg.norm(top) > 0.9


def test_prior_shrinks_less_with_more_llms():
    """Ledoit–Wolf: many LLMs → close to the sample covariance; few → close to diagonal."""
    rng = np.random.default_rng(1)
    c = np.array([[1.0, 0.8], [0.8, 1.0]])
    x = rng.multivariate_normal([0, 0], c, size=5000)
    big = Prior.from_population(x[:, :1], x[:, 1])
    assert abs(big.cov[0, 1] - 0.8) < 0.05


def test_prior_bad_inputs():
    with pytest.raises(InputError, match="at least 2"):
        Prior.from_population(np.zeros((1, 3)), None)
    with pytest.raises(InputError, match="bias"):
        Prior.from_population(np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(InputError, match="NaN"):
        Prior.from_population(np.full((4, 3), np.nan), None)
    with pytest.raises(InputError, match="positive definite"):
        Prior(mean=np.zeros(2), cov=np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(InputError, match="cov"):
        Prior(mean=np.zeros(2), cov=np.eye(3))
    # a coordinate constant across the population still gives a usable prior
    pr = Prior.from_population(np.random.default_rng(0).standard_normal((5, 3)), np.zeros(5))
    assert np.isfinite(pr.precision).all()


def test_posterior_mean_layout():
    p = Posterior(theta=np.ones(3), bias=2.0, cov=np.eye(4), n_answers=5)
    assert p.mean.tolist() == [1, 1, 1, 2]
