"""The trained LLMs as the prior of a new LLM: a posterior over the population itself.

The Gaussian prior (:mod:`irt_fast.onboard.prior`) keeps the population's mean and covariance;
on leaderboards whose LLMs come in families (fine-tunes of a few bases) that shape is lost, and
50 answers cannot find the family again. Here the prior is the trained LLMs' own (θ, b) rows:
each row is weighted by the likelihood of the new LLM's answers under it, the posterior is
represented by draws resampled from those weights, and the next question is the one whose
answer is expected to cut the posterior variance of the target accuracy most,
Cov_w(acc, p_i)² / (p̄_i (1 − p̄_i)).

On the leaderboard preset (6,000 LLMs in families) this is what a Bayes oracle that knows the
whole population does (docs/onboarding.md has the measurements). Alone it cannot go past the
strongest trained LLM, so the probe weighs it against the Gaussian prior by their evidence
(``Probe.population_share``): an LLM unlike the trained ones moves the estimate, and the choice
of questions, back to the Gaussian prior's.
"""

from __future__ import annotations

import numpy as np

from irt_fast.errors import InputError

from .estimators import _sigmoid

#: Rows scored when choosing the next question: the heaviest ones (the rest carry next to no
#: weight once a few answers are in, and the cost is rows × candidates).
MAX_SCORED_ROWS = 1024
_CHUNK = 4096  # candidate columns per block: bounds memory to rows × _CHUNK


class Population:
    """Log-likelihood weights over the population rows (θ, b) of the trained LLMs.

    Args:
        rows: ``[n, p]`` the trained LLMs' (θ, b) rows in the probe's design (θ, or θ then b).
    """

    def __init__(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] < 2 or not np.isfinite(rows).all():
            raise InputError(
                f"a population prior needs at least 2 finite rows [n, p], got {rows.shape}"
            )
        self.rows = rows
        self.loglik = np.zeros(len(rows))

    def record(self, x: np.ndarray, beta: np.ndarray, y: np.ndarray) -> None:
        """Add the log-likelihood of answers ``y`` to questions with design rows ``x``."""
        p = np.clip(_sigmoid(self.rows @ x.T - beta), 1e-9, 1 - 1e-9)
        self.loglik += np.log(p) @ y + np.log1p(-p) @ (1.0 - y)

    def log_evidence(self) -> float:
        """log p(answers | population prior) = log of the mean likelihood over the rows."""
        top = self.loglik.max()
        return float(top + np.log(np.exp(self.loglik - top).mean()))

    def weights(self) -> np.ndarray:
        w = np.exp(self.loglik - self.loglik.max())
        return w / w.sum()

    def draws(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``[p, n]`` rows resampled from the weights (systematic resampling)."""
        cdf = np.cumsum(self.weights())
        u = (rng.random() + np.arange(n)) / n
        return self.rows[np.minimum(np.searchsorted(cdf, u), len(cdf) - 1)].T

    def gains(
        self, xp: np.ndarray, beta: np.ndarray, cand: np.ndarray, acc: np.ndarray
    ) -> np.ndarray:
        """Expected cut in the posterior variance of the target accuracy from asking each
        candidate question: Cov_w(acc, p_i)² / (p̄_i (1 − p̄_i)).

        Args:
            xp, beta: the pool's design rows and difficulties.
            cand: candidate pool indices.
            acc: each row's predicted target accuracy ``[n]``.
        """
        w = self.weights()
        top = np.argsort(-w)[:MAX_SCORED_ROWS] if len(w) > MAX_SCORED_ROWS else slice(None)
        wt, rows, a = w[top], self.rows[top], acc[top]
        wt = wt / wt.sum()
        da = wt * (a - wt @ a)
        out = np.empty(len(cand))
        for s in range(0, len(cand), _CHUNK):
            c = cand[s : s + _CHUNK]
            p = _sigmoid(rows @ xp[c].T - beta[c])
            pm = wt @ p
            out[s : s + _CHUNK] = (da @ p) ** 2 / np.maximum(pm * (1 - pm), 1e-12)
        return out


def row_accuracy(rows: np.ndarray, xt: np.ndarray, beta_t: np.ndarray) -> np.ndarray:
    """Each row's predicted accuracy on the target ``[n]`` (blocks of target questions)."""
    acc = np.zeros(len(rows))
    for s in range(0, len(beta_t), _CHUNK):
        acc += _sigmoid(rows @ xt[s : s + _CHUNK].T - beta_t[s : s + _CHUNK]).sum(1)
    return acc / len(beta_t)
