"""Adaptive probing of a new LLM: which question to ask next, and its predicted accuracy on a
target set with honest uncertainty.

Selection (``strategy``):

- ``"random"``: uniform over the unasked pool questions.
- ``"stratified"``: the target's groups get answers in proportion to their share of
  the target (the group furthest below its quota is served next; a pool question belongs to the
  target group whose item-parameter centroid is nearest unless ``pool_groups`` is given);
  uniform within the group.
- ``"adaptive"``: the stratified group choice, then within the group a question
  drawn at random among the ``top_frac`` best by *outcome uncertainty* p(1 − p) under the
  current fit, after excluding the ``trim`` fraction of the pool with the most extreme α.
  p(1 − p) is the Fisher information a question carries about the LLM's offset, the direction
  that moves its accuracy on every target group at once.
- ``"variance"`` (default): as adaptive but scored by the expected reduction of the posterior
  variance of the predicted target accuracy, w (gᵀΣx)² / (1 + w xᵀΣx) with w = p(1 − p), x the
  question's (α, 1), g the gradient of the target accuracy in (θ, b) and Σ the posterior
  covariance: the quantity we estimate, so the question that helps it most.

Why this default: on MMLU-Pro (29 held-out LLMs, 5 seeds, docs/results/onboard) its error was
8-12% below random questions with the same fit at every k (paired 95% CIs mostly still include
0; plain stratified sampling did as well at k <= 10 and worse at k = 50), and the stratified guard keeps every target group asked. Greedy
information alone measured far worse than random on MMLU-Pro: it chases the questions with
the most extreme estimated α, where the item network is least trustworthy, and leaves whole
target groups unasked. Here the greedy step is confined to one group at a time (stratified), the
``trim`` most extreme α of the pool are never asked, and the question is drawn at random among
the ``top_frac`` best (exploration, and a spread sample).

Estimate: the posterior (Laplace, refitted after every ``record``) is propagated by Monte-Carlo
draws of (θ, b) to the mean P(correct) over the target (and each group). The variance adds
(1) the spread over draws, (2) the Bernoulli noise of the realised accuracy on a finite target,
Σ p(1−p)/n², and (3) ``model_error``², the item network's own error on a target accuracy (what
no number of answers removes; measured in the evaluation as the full-information floor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from irt_fast.errors import InputError

from .fit import Posterior, fit_llm
from .prior import Prior

__all__ = [
    "DEFAULT_GROUP_MODEL_ERROR",
    "DEFAULT_MODEL_ERROR",
    "STRATEGIES",
    "Estimate",
    "GroupEstimate",
    "Probe",
]

STRATEGIES = ("random", "stratified", "adaptive", "variance")
# Standard deviations of the item network's own error on a target accuracy (overall, and for
# one group's accuracy), as fractions: what the floor (an LLM fitted from all ~9,600 of its
# training answers) misses beyond its standard error, measured on MMLU-Pro held-out LLMs with
# the reduced experiment model (docs/results/onboard): 0 overall, 3-4 points per benchmark.
DEFAULT_MODEL_ERROR = 0.0
DEFAULT_GROUP_MODEL_ERROR = 0.035
_Z = {0.8: 1.2816, 0.9: 1.6449, 0.95: 1.96, 0.99: 2.5758}


@dataclass(frozen=True)
class GroupEstimate:
    """Predicted accuracy on (a group of) the target, its standard error and interval."""

    accuracy: float
    se: float
    lo: float
    hi: float
    n_target: int


@dataclass(frozen=True)
class Estimate(GroupEstimate):
    """Overall estimate, plus ``by_group`` (empty without groups) and the answers used."""

    n_answers: int = 0
    by_group: dict[str, GroupEstimate] = field(default_factory=dict)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _as_params(alpha: Any, beta: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(alpha, dtype=np.float64)
    b = np.asarray(beta, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or b.shape != (a.shape[0],):
        raise InputError(
            f"{what}: alpha must be [n >= 1, d] and beta [n], got {a.shape}, {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError(f"{what}: item parameters hold NaN or Inf")
    return a, b


class Probe:
    """Ask a new LLM the most useful questions of ``pool`` and predict its accuracy on
    ``target`` (see the module docstring). Usually created by ``Model.probe``.

    Args:
        model: an ``irt_fast.Model`` (its ``item_params`` and ``prior`` are used).
        pool, target: questions (embeddings ``[n, embed_dim]`` or texts).
        groups: one label per target question (e.g. its benchmark); estimates per group and
            stratified selection.
        pool_groups: one label per pool question (same labels); default: nearest target-group
            centroid in item-parameter space.
        strategy: one of ``STRATEGIES``.
        seed: seeds the random choices.
        model_error: see ``DEFAULT_MODEL_ERROR``.
        group_model_error: the same for one group's accuracy (larger: the network's per-group
            errors average out over the whole target); None: ``model_error``.
        level: interval level (0.8, 0.9, 0.95 or 0.99).
    """

    def __init__(
        self, model: Any, pool: Any, target: Any, groups: Any = None, **kwargs: Any
    ) -> None:
        ap, bp = model.item_params(pool)
        at, bt = model.item_params(target)
        prior = kwargs.pop("prior", None) or model.prior
        self._setup((ap, bp, at, bt), prior, groups=groups, **kwargs)

    @classmethod
    def from_params(
        cls,
        alpha_pool: Any,
        beta_pool: Any,
        alpha_target: Any,
        beta_target: Any,
        prior: Prior,
        groups: Any = None,
        **kwargs: Any,
    ) -> Probe:
        """A probe on item parameters directly (no engine: evaluations, tests)."""
        self = cls.__new__(cls)
        items = (alpha_pool, beta_pool, alpha_target, beta_target)
        self._setup(items, prior, groups=groups, **kwargs)
        return self

    def _setup(
        self,
        items: tuple[Any, Any, Any, Any],
        prior: Prior,
        *,
        groups: Any = None,
        pool_groups: Any = None,
        strategy: str = "variance",
        seed: int = 0,
        model_error: float = DEFAULT_MODEL_ERROR,
        group_model_error: float | None = DEFAULT_GROUP_MODEL_ERROR,
        level: float = 0.9,
        n_draws: int = 256,
        top_frac: float = 0.25,
        trim: float = 0.1,
    ) -> None:
        alpha_pool, beta_pool, alpha_target, beta_target = items
        self.alpha_pool, self.beta_pool = _as_params(alpha_pool, beta_pool, "pool")
        self.alpha_target, self.beta_target = _as_params(alpha_target, beta_target, "target")
        d = self.alpha_pool.shape[1]
        if self.alpha_target.shape[1] != d:
            raise InputError("pool and target item parameters differ in dimension")
        if not isinstance(prior, Prior) or prior.dim not in (d, d + 1):
            raise InputError(f"prior must be a Prior of dimension {d} or {d + 1}")
        if strategy not in STRATEGIES:
            raise InputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if level not in _Z:
            raise InputError(f"level must be one of {sorted(_Z)}, got {level}")
        if not (model_error >= 0 and np.isfinite(model_error)):
            raise InputError(f"model_error must be a finite value >= 0, got {model_error}")
        self.prior, self.has_bias, self.strategy = prior, prior.dim == d + 1, strategy
        if group_model_error is None:
            group_model_error = model_error
        if not (group_model_error >= 0 and np.isfinite(group_model_error)):
            raise InputError(f"group_model_error must be finite and >= 0, got {group_model_error}")
        self.model_error, self.level, self.n_draws = float(model_error), float(level), n_draws
        self.group_model_error = float(group_model_error)
        self.top_frac, self.trim = float(top_frac), float(trim)
        self._rng = np.random.default_rng(seed)
        n_pool, n_target = len(self.beta_pool), len(self.beta_target)
        if groups is None:
            self.group_names: list[str] = []
            self._tg = np.zeros(n_target, dtype=np.int64)
        else:
            g = np.asarray(groups).astype(str)
            if g.shape != (n_target,):
                raise InputError(f"groups must have one label per target question ({n_target})")
            self.group_names = [str(x) for x in np.unique(g)]
            self._tg = np.searchsorted(np.array(self.group_names), g)
        self._onehot = (
            self._tg[None, :] == np.arange(max(1, len(self.group_names)))[:, None]
        ).astype(np.float32)
        self._share = np.bincount(self._tg, minlength=max(1, len(self.group_names))) / n_target
        self._pg = self._pool_groups(pool_groups, n_pool)
        norms = np.linalg.norm(self.alpha_pool, axis=1)
        self._eligible = norms <= np.quantile(norms, 1 - self.trim) if self.trim > 0 else None
        self._xp = self._design(self.alpha_pool)  # [n_pool, p] rows (α, 1): reused every step
        self._xt = self._design(self.alpha_target)
        self._asked = np.zeros(n_pool, dtype=bool)
        self._idx: list[int] = []
        self._y: list[float] = []
        self.posterior: Posterior | None = None

    def _pool_groups(self, pool_groups: Any, n_pool: int) -> np.ndarray:
        n_groups = len(self._share)
        if pool_groups is not None:
            pg = np.asarray(pool_groups).astype(str)
            if pg.shape != (n_pool,):
                raise InputError(f"pool_groups must have one label per pool question ({n_pool})")
            known = np.isin(pg, self.group_names)
            out = np.where(known, np.searchsorted(np.array(self.group_names), pg), -1)
            return out.clip(-1, n_groups - 1)
        if n_groups == 1:
            return np.zeros(n_pool, dtype=np.int64)
        feats_t = np.column_stack([self.alpha_target, self.beta_target])
        feats_p = np.column_stack([self.alpha_pool, self.beta_pool])
        scale = feats_t.std(axis=0) + 1e-12
        cent = np.stack([feats_t[self._tg == g].mean(0) for g in range(n_groups)]) / scale
        fp = feats_p / scale
        dist = (fp**2).sum(1)[:, None] - 2 * fp @ cent.T + (cent**2).sum(1)[None, :]
        return dist.argmin(axis=1)

    # ----------------------------------------------------------------------------- selection
    @property
    def n_answers(self) -> int:
        return len(self._idx)

    def next(self, n: int = 1) -> np.ndarray:
        """Indices into the pool of the ``n`` questions to ask next (never ones already
        recorded; fewer when the pool runs out)."""
        if int(n) != n or n < 1:
            raise InputError(f"n must be a positive integer, got {n}")
        taken = self._asked.copy()
        done = self._pg[np.asarray(self._idx, dtype=np.int64)]
        counts = np.bincount(done[done >= 0], minlength=len(self._share)).astype(np.float64)
        scores = self._scores() if self.strategy in ("adaptive", "variance") else None
        out: list[int] = []
        for _ in range(int(n)):
            free = ~taken
            if not free.any():
                break
            if self.strategy != "random" and len(self._share) > 1:
                m = counts.sum() + 1
                order = np.argsort(-(self._share * m - counts), kind="stable")
                for g in order:
                    cand = free & (self._pg == g)
                    if cand.any():
                        break
                else:
                    cand = free
            else:
                cand = free
            i = self._pick(np.flatnonzero(cand), scores)
            out.append(i)
            taken[i] = True
            if self._pg[i] >= 0:
                counts[self._pg[i]] += 1
        return np.asarray(out, dtype=np.int64)

    def _pick(self, cand: np.ndarray, scores: np.ndarray | None) -> int:
        if scores is None:
            return int(self._rng.choice(cand))
        if self._eligible is not None and self._eligible[cand].any():
            cand = cand[self._eligible[cand]]
        top = max(1, int(np.ceil(self.top_frac * len(cand))))
        best = cand[np.argsort(-scores[cand], kind="stable")[:top]]
        return int(self._rng.choice(best))

    def _design(self, alpha: np.ndarray) -> np.ndarray:
        return np.column_stack([alpha, np.ones(len(alpha))]) if self.has_bias else alpha

    def _mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.posterior is None:
            return self.prior.mean, self.prior.cov
        return self.posterior.mean, self.posterior.cov

    def _scores(self) -> np.ndarray:
        w, cov = self._mean_cov()
        xp = self._xp
        pp = _sigmoid(xp @ w - self.beta_pool)
        info = pp * (1 - pp)
        if self.strategy == "adaptive":
            return info
        xt = self._xt
        pt = _sigmoid(xt @ w - self.beta_target)
        g = xt.T @ (pt * (1 - pt)) / len(pt)  # gradient of the target accuracy in (θ, b)
        cg = cov @ g
        num = info * (xp @ cg) ** 2
        return num / (1 + info * ((xp @ cov) * xp).sum(axis=1))

    # ----------------------------------------------------------------------------- answers
    def record(self, idx: Any, answers: Any) -> None:
        """Record the new LLM's 0/1 ``answers`` to pool questions ``idx`` and refit. On a bad
        input nothing is recorded (``InputError``)."""
        i = np.atleast_1d(np.asarray(idx))
        y = np.atleast_1d(np.asarray(answers, dtype=np.float64))
        if i.size == 0 or not np.issubdtype(i.dtype, np.integer):
            raise InputError("idx must be a non-empty array of integer pool indices")
        if i.shape != y.shape:
            raise InputError(f"length mismatch: {i.size} indices, {y.size} answers")
        if (i < 0).any() or (i >= len(self.beta_pool)).any():
            raise InputError(f"pool index out of range [0, {len(self.beta_pool)})")
        if len(np.unique(i)) != i.size or self._asked[i].any():
            raise InputError("a question was recorded twice")
        if not np.isin(y, (0.0, 1.0)).all():
            raise InputError("answers must be 0 or 1 (no NaN)")
        all_idx = np.concatenate([np.asarray(self._idx, dtype=np.int64), i.astype(np.int64)])
        all_y = np.concatenate([np.asarray(self._y), y])
        post = fit_llm(
            self.alpha_pool[all_idx],
            self.beta_pool[all_idx],
            all_y,
            self.prior,
            has_bias=self.has_bias,
        )
        self.posterior = post
        self._idx, self._y = all_idx.tolist(), all_y.tolist()
        self._asked[i] = True

    @property
    def answers(self) -> tuple[np.ndarray, np.ndarray]:
        """(pool indices, 0/1 answers) recorded so far."""
        return np.asarray(self._idx, dtype=np.int64), np.asarray(self._y)

    # ----------------------------------------------------------------------------- estimate
    def estimate(self) -> Estimate:
        """Predicted accuracy on the target (and per group) with SE and interval."""
        w, cov = self._mean_cov()
        n_groups = len(self._share)
        z = self._rng.standard_normal((len(w), self.n_draws))
        draws = w[:, None] + np.linalg.cholesky(cov + 1e-12 * np.eye(len(w))) @ z
        acc = np.zeros((n_groups, self.n_draws))
        noise = np.zeros((n_groups, self.n_draws))
        draws32 = draws.astype(np.float32)  # float32: the sums below lose nothing that matters
        for s in range(0, len(self.beta_target), 4096):
            xt = self._xt[s : s + 4096].astype(np.float32)
            p = _sigmoid(xt @ draws32 - self.beta_target[s : s + 4096, None].astype(np.float32))
            onehot = self._onehot[:, s : s + 4096]
            acc += onehot @ p
            noise += onehot @ (p * (1 - p))
        counts = np.bincount(self._tg, minlength=n_groups).astype(np.float64)
        tot = self._one(acc.sum(0), noise.sum(0), counts.sum(), self.model_error)
        by_group = {}
        if self.group_names:
            for g, name in enumerate(self.group_names):
                by_group[name] = self._one(acc[g], noise[g], counts[g], self.group_model_error)
        return Estimate(**tot.__dict__, n_answers=self.n_answers, by_group=by_group)

    def _one(
        self, acc_sum: np.ndarray, noise_sum: np.ndarray, n: float, model_error: float
    ) -> GroupEstimate:
        a = acc_sum / n
        var = a.var() + noise_sum.mean() / n**2 + model_error**2
        m, se = float(a.mean()), float(np.sqrt(var))
        z = _Z[self.level]
        return GroupEstimate(m, se, max(0.0, m - z * se), min(1.0, m + z * se), int(n))

    def predict_target(self) -> np.ndarray:
        """P(correct) on every target question at the posterior mode."""
        w, _ = self._mean_cov()
        return _sigmoid(self._xt @ w - self.beta_target)

    def add_to(self, model: Any, name: str, *, replace: bool = False) -> Any:
        """The model with this LLM added (``model.add_fitted_llm``), from the answers so far."""
        if self.posterior is None:
            raise InputError("no answers recorded yet: nothing to add")
        idx, y = self.answers
        return model.add_fitted_llm(
            name, self.posterior, self.alpha_pool[idx], self.beta_pool[idx], y, replace=replace
        )
