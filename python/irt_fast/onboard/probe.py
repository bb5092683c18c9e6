"""Probing a new LLM: which question to ask next, and its predicted accuracy on a target set
with honest uncertainty.

Selection (``strategy``):

- ``"neyman"``: a stratified random design with known inclusion probabilities (strata: the
  target's groups cut into clusters of similar items; Neyman allocation ∝ √(p(1 − p)) under
  the prior), see :mod:`irt_fast.onboard.design`.
- ``"random"``: uniform over the pool, in a seeded random order.
- ``"stratified"``: the groups get answers in proportion to their share of the target (a pool
  question belongs to the target group whose item-parameter centroid is nearest unless
  ``pool_groups`` is given); uniform within a group.
- ``"variance"``: greedy: within the group furthest below its quota, a question drawn at random
  among the ``top_frac`` best by the expected reduction of the posterior variance of the
  target accuracy, w (gᵀΣx)² / (1 + w xᵀΣx), after excluding the ``trim`` fraction of the pool
  with the most extreme α. Looks at the answers, so its inclusion probabilities are unknown
  and only the ``"model"`` estimator applies.
- ``"adaptive"``: as ``"variance"``, scored by the outcome uncertainty p(1 − p).
- ``"population"``: the trained LLMs' own (θ, b) rows as the prior
  (:mod:`irt_fast.onboard.population`); each next question the one expected to cut the
  posterior variance of the target accuracy most. Its estimator ``"population"`` averages
  this prior and the Gaussian one by their evidence (``population_share``); while the
  Gaussian prior explains the answers better, questions are chosen as by ``"variance"``.

Estimate (``estimator``, see :mod:`irt_fast.onboard.estimators`): ``"model"``, ``"aipw"``,
``"mean"`` or ``"blend"``; the default is ``"blend"`` for the random designs and ``"model"``
for the greedy ones.

Why these defaults (``strategy="neyman"``, ``estimator="blend"``, ``prior_scale="auto"``;
docs/onboarding.md has the tables): at k = 50, on MMLU-Pro and the leaderboard preset, for
random folds of LLMs and for new LLMs stronger than every trained one, its error was
0.83-0.96× that of the mean of 50 random answers, the lowest worst case of the settings
measured, with 90% intervals covering 89-96%; the greedy ``"variance"`` criterion is better
when new LLMs resemble the trained ones (0.80-0.81×) but not when they do not (0.92-1.15×).

The fit (Laplace posterior, refitted after every ``record``) is propagated to the target by
Monte-Carlo draws of (θ, b). The variances add the spread over draws, the Bernoulli noise of the
unasked target questions and ``model_error``², the item network's own error on a target
accuracy (what no number of answers removes) scaled by the share of the target predicted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from irt_fast.errors import InputError

from .design import assign_pool_groups, make_design, match_rows, pool_weight
from .estimators import (
    ESTIMATORS,
    Estimate,
    GroupEstimate,
    Target,
    estimate_all,
    from_draws,
    gaussian_draws,
    to_estimate,
)
from .fit import Posterior, fit_llm
from .options import (
    DEFAULT_GROUP_MODEL_ERROR,
    DEFAULT_MODEL_ERROR,
    GREEDY,
    STRATEGIES,
    ProbeOptions,
    answers_arg,
    labels_arg,
)
from .population import Population, row_accuracy
from .prior import Prior

__all__ = [
    "DEFAULT_GROUP_MODEL_ERROR",
    "DEFAULT_MODEL_ERROR",
    "ESTIMATORS",
    "STRATEGIES",
    "Estimate",
    "GroupEstimate",
    "Probe",
]


#: The population strategy scores at most this many free pool questions per step (a seeded
#: sample beyond), and ranks them by the rows' accuracy on at most this many target questions.
MAX_SCORED_QUESTIONS = 4096
MAX_SCORED_TARGET = 20_000


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _as_params(alpha: Any, beta: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        a = np.asarray(alpha, dtype=np.float64)
        b = np.asarray(beta, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: alpha and beta must be float arrays ({exc})") from None
    if a.ndim != 2 or a.shape[0] == 0 or b.shape != (a.shape[0],):
        raise InputError(
            f"{what}: alpha must be [n >= 1, d] and beta [n], got {a.shape}, {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError(f"{what}: item parameters hold NaN or Inf")
    return a, b


class Probe:
    """Ask a new LLM questions of ``pool`` and predict its accuracy on ``target`` (see the
    module docstring). Usually created by ``Model.probe``.

    Args:
        model: an ``irt_fast.Model`` (its ``item_params`` and ``prior`` are used).
        pool, target: questions (embeddings ``[n, embed_dim]`` or texts); they may overlap
            (``target=pool`` scores the benchmark the questions are drawn from).
        groups: one label per target question (e.g. its benchmark); estimates per group and
            stratified selection. Labels are compared as given (``1`` and ``"1"`` differ).
        **kwargs: the options of :class:`irt_fast.onboard.options.ProbeOptions` (strategy,
            estimator, pool_groups, seed, model_error, group_model_error, level, n_draws,
            top_frac, trim, n_clusters), ``prior`` and ``population`` (the (θ, b) rows of the
            population strategy; default: the model's trained LLMs); anything else is refused.
    """

    def __init__(
        self, model: Any, pool: Any, target: Any, groups: Any = None, **kwargs: Any
    ) -> None:
        prior = kwargs.pop("prior", None) or model.prior
        population = kwargs.pop("population", None)
        opts = ProbeOptions.from_kwargs(kwargs)  # checked before the (slow) item parameters
        if population is None and "population" in (opts.strategy, opts.estimator):
            population = model.population
        ap, bp = model.item_params(pool)
        at, bt = model.item_params(target)
        self._setup(ap, bp, at, bt, prior, groups, opts, population)

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
        """A probe on item parameters directly (no engine: evaluations, tests); the population
        strategy needs ``population=`` rows."""
        self = cls.__new__(cls)
        population = kwargs.pop("population", None)
        opts = ProbeOptions.from_kwargs(kwargs)
        self._setup(alpha_pool, beta_pool, alpha_target, beta_target, prior, groups, opts,
                    population)  # fmt: skip
        return self

    def _setup(self, alpha_pool: Any, beta_pool: Any, alpha_target: Any, beta_target: Any,
               prior: Any, groups: Any, opts: ProbeOptions,
               population: Any = None) -> None:  # fmt: skip
        self.alpha_pool, self.beta_pool = _as_params(alpha_pool, beta_pool, "pool")
        self.alpha_target, self.beta_target = _as_params(alpha_target, beta_target, "target")
        d = self.alpha_pool.shape[1]
        if self.alpha_target.shape[1] != d:
            raise InputError("pool and target item parameters differ in dimension")
        if not isinstance(prior, Prior) or prior.dim not in (d, d + 1):
            raise InputError(f"prior must be a Prior of dimension {d} or {d + 1}")
        self.prior, self.has_bias, self.options = prior, prior.dim == d + 1, opts
        self.strategy, self.estimator = opts.strategy, opts.estimator_for_strategy()
        self.level = opts.level
        self._rng = np.random.default_rng(opts.seed)
        self._draw_rng = np.random.default_rng([opts.seed, 1])
        n_pool, n_target = len(self.beta_pool), len(self.beta_target)
        if groups is None:
            self.group_names: list[Any] = []
            tg = np.zeros(n_target, dtype=np.int64)
        else:
            self.group_names, tg = labels_arg("groups", groups, n_target)
        n_groups = max(1, len(self.group_names))
        self._share = np.bincount(tg, minlength=n_groups) / n_target
        self._xp = self._design(self.alpha_pool)  # [n_pool, p] rows (α, 1): reused every step
        xt = self._design(self.alpha_target)
        pg = assign_pool_groups(
            opts.pool_groups, self.group_names, self.alpha_pool, self.beta_pool,
            self.alpha_target, self.beta_target, tg,
        )  # fmt: skip
        norms = np.linalg.norm(self.alpha_pool, axis=1)
        self._eligible = norms <= np.quantile(norms, 1 - opts.trim) if opts.trim > 0 else None
        t_of_p = match_rows(self.alpha_pool, self.beta_pool, self.alpha_target, self.beta_target)
        weight = pool_weight(pg, self._share)
        if self.strategy in GREEDY:
            self._order = None
            stratum = np.where(pg >= 0, pg, n_groups)
        else:
            des = make_design(self.strategy, self._xp, self.beta_pool, prior.mean, prior.cov,
                              pg, weight, self._rng, n_clusters=opts.n_clusters)  # fmt: skip
            self._order, stratum = des.order, des.stratum
        _, stratum = np.unique(stratum, return_inverse=True)
        self._pg = pg
        self._target = Target(xt, self.beta_target, tg, n_groups, t_of_p, pg, stratum,
                              np.bincount(stratum))  # fmt: skip
        self._pop: Population | None = None
        if population is not None:
            rows = np.asarray(population, dtype=np.float64)
            if rows.ndim != 2 or rows.shape[1] != prior.dim:
                raise InputError(
                    f"population must be [n, {prior.dim}] (θ, b) rows, got {rows.shape}"
                )
            self._pop = Population(rows)
            if self.strategy == "population":  # only the question choice needs these
                # each row's target accuracy only ranks questions: a sample of a huge target
                sub = np.arange(n_target)
                if n_target > MAX_SCORED_TARGET:
                    sub = np.sort(self._rng.choice(n_target, MAX_SCORED_TARGET, replace=False))
                self._pop_acc = row_accuracy(rows, xt[sub], self.beta_target[sub])
        elif "population" in (self.strategy, self.estimator):
            raise InputError("the population strategy and estimator need population= rows")
        self._asked = np.zeros(n_pool, dtype=bool)
        self._idx: list[int] = []
        self._y: list[float] = []
        self.posterior: Posterior | None = None

    def _design(self, alpha: np.ndarray) -> np.ndarray:
        return np.column_stack([alpha, np.ones(len(alpha))]) if self.has_bias else alpha

    # ----------------------------------------------------------------------------- selection
    @property
    def n_answers(self) -> int:
        return len(self._idx)

    @property
    def done(self) -> bool:
        """True once every pool question has been recorded: ``next`` returns nothing more."""
        return bool(self._asked.all())

    def next(self, n: int = 1) -> np.ndarray:
        """Indices into the pool of the ``n`` questions to ask next (never ones already
        recorded; fewer when the pool runs out, none once ``done``)."""
        from irt_fast.inputs import positive_int

        n = positive_int("n", n)
        if self.strategy == "population" and self.population_share() >= 0.5:
            assert self._pop is not None
            free = np.flatnonzero(~self._asked)
            if len(free) > MAX_SCORED_QUESTIONS:  # bounded work per step on a huge pool
                free = np.sort(self._rng.choice(free, MAX_SCORED_QUESTIONS, replace=False))
            gains = self._pop.gains(self._xp, self.beta_pool, free, self._pop_acc)
            return free[np.argsort(-gains, kind="stable")[:n]].astype(np.int64)
        if self._order is not None:
            free = self._order[~self._asked[self._order]]
            return free[:n].astype(np.int64)
        taken = self._asked.copy()
        done = self._pg[np.asarray(self._idx, dtype=np.int64)]
        counts = np.bincount(done[done >= 0], minlength=len(self._share)).astype(np.float64)
        scores = self._scores()
        out: list[int] = []
        for _ in range(n):
            free = ~taken
            if not free.any():
                break
            cand = free
            if len(self._share) > 1:
                m = counts.sum() + 1
                for g in np.argsort(-(self._share * m - counts), kind="stable"):
                    if (free & (self._pg == g)).any():
                        cand = free & (self._pg == g)
                        break
            i = self._pick(np.flatnonzero(cand), scores)
            out.append(i)
            taken[i] = True
            if self._pg[i] >= 0:
                counts[self._pg[i]] += 1
        return np.asarray(out, dtype=np.int64)

    def _pick(self, cand: np.ndarray, scores: np.ndarray) -> int:
        if self._eligible is not None and self._eligible[cand].any():
            cand = cand[self._eligible[cand]]
        top = max(1, int(np.ceil(self.options.top_frac * len(cand))))
        best = cand[np.argsort(-scores[cand], kind="stable")[:top]]
        return int(self._rng.choice(best))

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
        t = self._target
        pt = _sigmoid(t.xt @ w - t.beta_t)
        g = t.xt.T @ (pt * (1 - pt)) / len(pt)  # gradient of the target accuracy in (θ, b)
        cg = cov @ g
        num = info * (xp @ cg) ** 2
        return num / (1 + info * ((xp @ cov) * xp).sum(axis=1))

    # ----------------------------------------------------------------------------- answers
    def record(self, idx: Any, answers: Any) -> None:
        """Record the new LLM's 0/1 ``answers`` to pool questions ``idx`` and refit. Empty
        input records nothing (what ``next`` returns once the pool is used up). On a bad
        input nothing is recorded (``InputError``)."""
        i, y = answers_arg(idx, answers, len(self.beta_pool))
        if i.size == 0:
            return
        if len(np.unique(i)) != i.size or self._asked[i].any():
            raise InputError("a question was recorded twice")
        all_idx = np.concatenate([np.asarray(self._idx, dtype=np.int64), i])
        all_y = np.concatenate([np.asarray(self._y), y])
        post = fit_llm(self.alpha_pool[all_idx], self.beta_pool[all_idx], all_y, self.prior,
                       has_bias=self.has_bias, prior_scales=self.options.prior_scales)  # fmt: skip
        self.posterior = post
        if self._pop is not None:
            self._pop.record(self._xp[i], self.beta_pool[i], y)
        self._idx, self._y = all_idx.tolist(), all_y.tolist()
        self._asked[i] = True

    @property
    def answers(self) -> tuple[np.ndarray, np.ndarray]:
        """(pool indices, 0/1 answers) recorded so far."""
        return np.asarray(self._idx, dtype=np.int64), np.asarray(self._y)

    # ----------------------------------------------------------------------------- estimate
    def estimate(self) -> Estimate:
        """Predicted accuracy on the target (and per group) with SE and interval, by
        ``estimator``."""
        return self.estimates()[self.estimator]

    def estimates(self) -> dict[str, Estimate]:
        """Every estimator's Estimate from the same fit and posterior draws ({"model", "aipw",
        "mean", "blend", "blend_mean"}; before any answer all are the prior's), and
        "population" when the probe has a population."""
        w, cov = self._mean_cov()
        o = self.options
        idx, y = self.answers
        z = self._draw_rng.standard_normal((len(w), o.n_draws))
        gme = o.group_model_error if o.group_model_error is not None else o.model_error
        gauss = gaussian_draws(w, cov, z)
        raw = estimate_all(self._target, idx, y, self._xp[idx], self.beta_pool[idx], w, cov,
                           gauss, o.model_error, gme, self.posterior is not None)  # fmt: skip
        if self._pop is not None:
            # the two priors averaged by their evidence: draws from each in proportion
            n_pop = int(round(self.population_share() * o.n_draws))
            draws = np.hstack([self._pop.draws(n_pop, self._draw_rng), gauss[:, n_pop:]])
            raw["population"] = from_draws(self._target, idx, y, draws, o.model_error, gme)
        return {
            k: to_estimate(r, self._target, self.group_names, self.n_answers, self.level)
            for k, r in raw.items()
        }

    def population_share(self) -> float:
        """The posterior probability that the new LLM is like the trained LLMs: the population
        prior's evidence against the Gaussian prior's (its Laplace evidence, less log of the
        number of widths it chose among), equal odds before any answer. 0 without a population.
        Below 1/2 the population strategy asks by the Gaussian prior's variance criterion."""
        if self._pop is None:
            return 0.0
        if self.posterior is None:
            return 0.5
        gauss = self.posterior.log_evidence - np.log(len(self.options.prior_scales))
        if not np.isfinite(gauss):
            return 0.5
        return float(1.0 / (1.0 + np.exp(np.clip(gauss - self._pop.log_evidence(), -700, 700))))

    def predict_target(self) -> np.ndarray:
        """P(correct) on every target question at the posterior mode."""
        w, _ = self._mean_cov()
        return _sigmoid(self._target.xt @ w - self.beta_target)

    def add_to(self, model: Any, name: str, *, replace: bool = False) -> Any:
        """The model with this LLM added (``model.add_fitted_llm``), from the answers so far."""
        if self.posterior is None:
            raise InputError("no answers recorded yet: nothing to add")
        idx, y = self.answers
        return model.add_fitted_llm(
            name, self.posterior, self.alpha_pool[idx], self.beta_pool[idx], y, replace=replace
        )
