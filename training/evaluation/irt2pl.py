"""Classical multidimensional 2PL IRT with free per-question parameters: the baseline that shows
when IrtNet's item network pays.

    P(correct | m, q) = sigmoid(α_q · θ_m − β_q + b_m)

α_q, β_q are free parameters of each *training* question (no embedding involved), θ_m, b_m of
each LLM. The fit is the MAP estimate under Gaussian priors (θ, α ~ N(0, I), β ~ N(0, 2²), b
flat), by full-batch Adam on the dense training matrix (memory: a few float32 copies of
n_train_questions × n_llms; 6,000 LLMs × 700 questions is 17 MB each). An unseen question gets
the mean α, β of its ``k`` nearest training questions by cosine similarity of the embeddings,
``k`` chosen on validation log-loss.

Evaluation hook (for training.evaluate): ``irt2pl_predictions(tr, va, te)`` returns the test and
validation prediction matrices and what was chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from training.data import PairMatrix
from training.metrics import MISSING, correctness_metrics

K_GRID = (1, 3, 10, 30, 100)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class Irt2pl:
    """A fitted 2PL: item parameters of the training questions and LLM parameters."""

    theta: np.ndarray  # float64 [n_llms, d]
    bias: np.ndarray  # float64 [n_llms]
    alpha: np.ndarray  # float64 [n_train, d]
    beta: np.ndarray  # float64 [n_train]
    train_emb: np.ndarray  # float32 [n_train, embed_dim], unit rows
    k: int = 10
    info: dict[str, Any] = field(default_factory=dict)

    def item_params(
        self, emb: np.ndarray, k: int | None = None, chunk: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """α ``[n, d]``, β ``[n]`` of questions ``emb``: the mean over the ``k`` nearest
        training questions (cosine)."""
        k = min(self.k if k is None else k, len(self.beta))
        x = _unit(emb)
        a_out = np.empty((len(x), self.alpha.shape[1]))
        b_out = np.empty(len(x))
        for lo in range(0, len(x), chunk):
            sims = x[lo : lo + chunk] @ self.train_emb.T
            nb = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            a_out[lo : lo + chunk] = self.alpha[nb].mean(axis=1)
            b_out[lo : lo + chunk] = self.beta[nb].mean(axis=1)
        return a_out, b_out

    def predict(self, emb: np.ndarray, k: int | None = None) -> np.ndarray:
        """P(correct) ``[n_questions, n_llms]`` for questions ``emb``."""
        a, b = self.item_params(emb, k)
        logit = a @ self.theta.T - b[:, None] + self.bias[None, :]
        return 0.5 * (1.0 + np.tanh(0.5 * logit))


def fit_irt2pl(
    train: PairMatrix,
    *,
    d: int = 8,
    iters: int = 400,
    lr: float = 0.08,
    beta_prior_std: float = 2.0,
    seed: int = 0,
    tol: float = 1e-6,
) -> Irt2pl:
    """MAP fit of the 2PL on the observed pairs of ``train`` (full batch, Adam).

    Stops after ``iters`` steps or when the objective improved by less than ``tol`` (relative)
    over 20 steps."""
    if train.n_pairs == 0:
        raise ValueError("no training pairs")
    Y = train.dense_labels()  # int8 [Q, M]
    obs = torch.from_numpy(Y != MISSING)
    y = torch.from_numpy(np.where(Y == 1, 1.0, 0.0).astype(np.float32))
    w = obs.to(torch.float32)
    n_obs = float(w.sum())
    q, m = Y.shape
    g = torch.Generator().manual_seed(seed)
    rates = torch.from_numpy(train.llm_base_rates(smoothing=1.0)).to(torch.float32)
    theta = (0.1 * torch.randn(m, d, generator=g)).requires_grad_()
    alpha = (0.1 * torch.randn(q, d, generator=g)).requires_grad_()
    beta = torch.zeros(q, requires_grad=True)
    bias = (torch.log(rates) - torch.log1p(-rates)).clone().requires_grad_()
    params = [theta, alpha, beta, bias]
    opt = torch.optim.Adam(params, lr=lr)

    def objective() -> tuple[torch.Tensor, torch.Tensor]:
        logit = alpha @ theta.T - beta[:, None] + bias[None, :]
        nll = (F.binary_cross_entropy_with_logits(logit, y, reduction="none") * w).sum()
        prior = 0.5 * (
            theta.pow(2).sum() + alpha.pow(2).sum() + (beta / beta_prior_std).pow(2).sum()
        )
        return (nll + prior) / n_obs, nll / n_obs

    history: list[float] = []
    steps = 0
    threads = torch.get_num_threads()
    # Hundreds of small full-batch steps: on a shared CPU a second thread mostly waits (3x
    # slower measured under load), so one thread.
    torch.set_num_threads(1)
    try:
        for steps in range(1, iters + 1):  # noqa: B007 - steps is reported
            opt.zero_grad(set_to_none=True)
            loss, _ = objective()
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
            if len(history) > 20 and history[-21] - history[-1] < tol * abs(history[-21]):
                break
        with torch.no_grad():
            _, nll = objective()
    finally:
        torch.set_num_threads(threads)
    return Irt2pl(
        theta=theta.detach().double().numpy(),
        bias=bias.detach().double().numpy(),
        alpha=alpha.detach().double().numpy(),
        beta=beta.detach().double().numpy(),
        train_emb=_unit(train.emb),
        info={"d": d, "steps": steps, "train_logloss": float(nll), "lr": lr},
    )


def choose_k(
    model: Irt2pl, val: PairMatrix, ks: Sequence[int] = K_GRID
) -> tuple[int, dict[int, float]]:
    """The k with the lowest validation log-loss (sets ``model.k``); every k's score."""
    Y = val.dense_labels()
    obs = Y != MISSING
    scores = {}
    for k in ks:
        if k > len(model.beta):
            continue
        P = model.predict(val.emb, k)
        scores[k] = correctness_metrics(Y[obs], P[obs])["logloss"]
    if not scores:
        raise ValueError("no k fits the training set")
    model.k = min(scores, key=lambda k: (scores[k], k))
    return model.k, scores


def irt2pl_predictions(
    tr: PairMatrix, va: PairMatrix, te: PairMatrix, *, d: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit on ``tr``, choose k on ``va``: (P_test ``[n_test, n_llms]``, P_val, info)."""
    model = fit_irt2pl(tr, d=d, seed=seed)
    k, scores = choose_k(model, va)
    info = dict(model.info)
    info.update(k=k, val_logloss_by_k={str(kk): v for kk, v in scores.items()})
    return model.predict(te.emb), model.predict(va.emb), info
