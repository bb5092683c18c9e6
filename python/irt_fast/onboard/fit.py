"""MAP fit of one LLM's (θ, b) from its answers, the item network frozen, and its Laplace
posterior.

Model: P(correct on q) = σ(α_q·θ − β_q + b). With x_q = (α_q, 1) and w = (θ, b) the negative
log posterior is Σ_q [softplus(x_q·w − β_q) − y_q (x_q·w − β_q)] + ½ (w − μ)ᵀ P (w − μ), P the
prior precision: strictly convex, so Newton's method with a backtracking line search converges
from the prior mean, quadratically near the optimum (typically 4–8 steps). The Laplace posterior
is N(ŵ, H⁻¹) with H = Xᵀ diag(p(1−p)) X + P at the optimum. Cost per step: one [k, p] × [p, p]
product and one p × p solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irt_fast.errors import InputError

from .prior import Prior

__all__ = ["Posterior", "fit_llm", "validate_answers"]


@dataclass(frozen=True, eq=False)
class Posterior:
    """Laplace posterior of one LLM.

    Attributes:
        theta: float64 ``[d]`` MAP ability.
        bias: MAP offset b (0.0 when the model has no offsets).
        cov: float64 ``[p, p]`` posterior covariance of (θ, b) (p = d + 1) or of θ (p = d).
        n_answers: the number of answers it was fitted from.
        iterations: Newton steps taken.
        prior_scale: the factor on the prior covariance the fit used (see ``fit_llm``).
        log_evidence: the Laplace log evidence of the answers under that prior.
    """

    theta: np.ndarray
    bias: float
    cov: np.ndarray
    n_answers: int
    iterations: int = 0
    prior_scale: float = 1.0
    log_evidence: float = float("nan")

    @property
    def mean(self) -> np.ndarray:
        """(θ, b) as one vector, in the layout of ``cov``."""
        if self.cov.shape[0] == self.theta.size:
            return self.theta
        return np.append(self.theta, self.bias)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _hessian(x32: np.ndarray, s: np.ndarray, prec: np.ndarray) -> np.ndarray:
    """Xᵀ diag(s(1−s)) X + P. The Gram product dominates the cost of a fit; it is formed as
    (√w X)ᵀ(√w X) (one symmetric product, half the work) in float32 (half again): the
    Hessian only sets the step and the covariance, both fine at float32's 1e-7 relative error;
    the gradient, which fixes the optimum, stays float64."""
    xs = x32 * np.sqrt(s * (1 - s)).astype(np.float32)[:, None]
    return (xs.T @ xs).astype(np.float64) + prec


def _newton_step(x: np.ndarray, x32: np.ndarray, s: np.ndarray, prec: np.ndarray,
                 grad: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """(Hessian, Newton step, decrement²). The float32 Hessian is checked: when rounding made
    it indefinite along the step (huge or badly scaled inputs), it is formed again in float64;
    a step that is still no descent direction is an error, never a claimed convergence."""
    hess = _hessian(x32, s, prec)
    step = np.linalg.solve(hess, grad)
    decrement = float(grad @ step)  # Newton decrement²: 2× the predicted decrease
    if not (np.isfinite(decrement) and decrement >= 0):
        xs = x * np.sqrt(s * (1 - s))[:, None]
        hess = xs.T @ xs + prec
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        if not (np.isfinite(decrement) and decrement >= 0):
            raise InputError(
                "the fit is numerically singular (item parameters of very different scales?)"
            )
    return hess, step, decrement


def validate_answers(
    alpha: np.ndarray, beta: np.ndarray, correct: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked float64 copies of (alpha [k, d], beta [k], correct [k] in {0, 1})."""
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    try:
        y = np.asarray(correct, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"correct must be numeric 0/1 ({exc})") from exc
    if a.ndim != 2 or a.shape[1] == 0:
        raise InputError(f"alpha must be [k, d], got shape {a.shape}")
    k = a.shape[0]
    if k == 0:
        raise InputError("no answers: alpha, beta and correct are empty")
    if b.shape != (k,) or y.shape != (k,):
        raise InputError(
            f"length mismatch: alpha has {k} rows, beta shape {b.shape}, correct shape {y.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("alpha/beta hold NaN or Inf")
    if not np.isin(y, (0.0, 1.0)).all():
        raise InputError("correct must hold only 0 and 1 (no NaN)")
    return a, b, y


def fit_llm(
    alpha: np.ndarray,
    beta: np.ndarray,
    correct: np.ndarray,
    prior: Prior,
    *,
    has_bias: bool = True,
    max_iter: int = 50,
    tol: float = 1e-10,
    prior_scales: tuple[float, ...] = (1.0,),
) -> Posterior:
    """MAP (θ, b) of one LLM under ``prior`` from its answers ``correct`` to questions with item
    parameters ``alpha`` ``[k, d]``, ``beta`` ``[k]``; Laplace covariance at the optimum.

    ``prior_scales``: the prior covariance is multiplied by each of these in turn and the fit
    with the largest Laplace evidence p(answers | scale) is kept (type-II maximum likelihood of
    one width): an LLM unlike the trained population (stronger than all of them, say) makes a
    wider prior likelier, and its fit is then no longer pulled back to the population.

    All-equal answers are allowed (the prior keeps the optimum finite). Raises ``InputError``
    on empty, mismatched or non-finite input, a prior of the wrong dimension, or a fit that
    does not converge in ``max_iter`` Newton steps (never a non-optimal result)."""
    a, b, y = validate_answers(alpha, beta, correct)
    k, d = a.shape
    p = d + 1 if has_bias else d
    if not isinstance(prior, Prior):
        raise InputError(f"prior must be an irt_fast.onboard.Prior, got {type(prior).__name__}")
    if prior.dim != p:
        raise InputError(
            f"prior has dimension {prior.dim}, expected {p} (d = {d}, has_bias = {has_bias})"
        )
    scales = tuple(float(c) for c in prior_scales)
    if not scales or not all(np.isfinite(c) and c > 0 for c in scales):
        raise InputError(f"prior_scales must be positive numbers, got {prior_scales!r}")
    x = np.concatenate([a, np.ones((k, 1))], axis=1) if has_bias else a
    best: tuple[float, np.ndarray, np.ndarray, int, float] | None = None
    logdet_p = float(np.linalg.slogdet(prior.precision)[1])
    w0 = prior.mean.copy()
    for c in scales:
        w, f, hess, it = _map(x, b, y, prior.mean, prior.precision / c, w0, max_iter, tol, a)
        w0 = w  # a warm start for the next, wider prior
        # Laplace: log p(y | c) = -f(ŵ) - ½ log|H| + ½ log|P / c|
        ev = -f - 0.5 * float(np.linalg.slogdet(hess)[1]) + 0.5 * (logdet_p - p * np.log(c))
        if best is None or ev > best[0]:
            best = (ev, w, hess, it, c)
    assert best is not None
    ev, w, hess, it, c = best
    cov = np.linalg.inv(hess)
    cov = 0.5 * (cov + cov.T)
    if not (np.isfinite(w).all() and np.isfinite(cov).all()):  # pragma: no cover - defensive
        raise InputError("the fit diverged (non-finite parameters)")
    return Posterior(
        theta=w[:d].copy(),
        bias=float(w[d]) if has_bias else 0.0,
        cov=cov,
        n_answers=k,
        iterations=it,
        prior_scale=c,
        log_evidence=ev,
    )


def _map(
    x: np.ndarray,
    b: np.ndarray,
    y: np.ndarray,
    mu: np.ndarray,
    prec: np.ndarray,
    w: np.ndarray,
    max_iter: int,
    tol: float,
    a: np.ndarray,
) -> tuple[np.ndarray, float, np.ndarray, int]:
    """Newton from ``w`` to the MAP under N(mu, prec⁻¹): (ŵ, objective, Hessian, steps)."""

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w - b
        r = w - mu
        return float((_softplus(z) - y * z).sum() + 0.5 * r @ prec @ r), z

    x32 = x.astype(np.float32)
    w = w.copy()
    f, z = objective(w)
    it, hess, converged = 0, None, False
    while it < max_iter:
        it += 1
        s = _sigmoid(z)
        grad = x.T @ (s - y) + prec @ (w - mu)
        hess, step, decrement = _newton_step(x, x32, s, prec, grad)
        if decrement < 2 * tol:
            converged = True
            break  # the step left is negligible: this Hessian is the one at the optimum
        t = 1.0
        while True:  # backtracking (Armijo): convex, so a decrease always exists
            w_new = w - t * step
            f_new, z_new = objective(w_new)
            if f_new <= f - 0.25 * t * decrement or t < 1e-10:
                break
            t *= 0.5
        w, f, z = w_new, f_new, z_new
        hess = None
    if not converged:
        scale = max(float(np.abs(a).max()), float(np.abs(b).max()))
        raise InputError(
            f"the fit did not converge in {max_iter} Newton steps (item parameters up to "
            f"|{scale:.3g}|: trained networks give values of order 1; were the inputs scaled?)"
        )
    assert hess is not None
    return w, f, hess, it
