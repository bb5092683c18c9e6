"""The probe's options and answers, checked: every bad value is an ``InputError`` naming it."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from irt_fast import inputs
from irt_fast.errors import InputError

from .estimators import ESTIMATORS

__all__ = [
    "DEFAULT_GROUP_MODEL_ERROR",
    "DEFAULT_MODEL_ERROR",
    "AUTO_SCALES",
    "GREEDY",
    "STRATEGIES",
    "ProbeOptions",
    "answers_arg",
    "labels_arg",
]

# Standard deviations of the item network's own error on a target accuracy (overall, and for
# one group's accuracy), as fractions: what the floor (an LLM fitted from all its training
# answers) misses beyond its standard error, measured on MMLU-Pro held-out LLMs
# (docs/results/onboard): 0 overall, 3-4 points per benchmark.
DEFAULT_MODEL_ERROR = 0.0
DEFAULT_GROUP_MODEL_ERROR = 0.035
STRATEGIES = ("neyman", "random", "stratified", "variance", "adaptive", "population")
# prior_scale="auto": the widths of the prior the fit chooses among by evidence
AUTO_SCALES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# look at the answers: inclusion probabilities unknown
GREEDY = ("variance", "adaptive", "population")
_LEVELS = (0.8, 0.9, 0.95, 0.99)
MAX_DRAWS = 100_000


@dataclass(frozen=True)
class ProbeOptions:
    """How a probe selects questions and estimates.

    Attributes:
        strategy: "neyman" (default), "random", "stratified", "variance", "adaptive" or
            "population" (the trained LLMs themselves as the prior, for new LLMs like them).
        estimator: "blend", "aipw", "mean", "model" or "population"; None: "blend" for the
            random designs, "population" for that strategy, "model" for the other greedy ones
            (whose inclusion probabilities are unknown).
        pool_groups: one target-group label per pool question (default: the nearest target
            group in item-parameter space).
        seed: a non-negative integer seeding the question order and the posterior draws.
        model_error: the item network's own error on the overall accuracy (a fraction >= 0).
        group_model_error: the same for one group's accuracy; None: ``model_error``.
        level: interval level, 0.8, 0.9, 0.95 or 0.99.
        n_draws: posterior draws for the model estimate (1 to 100,000).
        top_frac: greedy strategies: draw among this best fraction, in (0, 1].
        trim: greedy strategies: never ask this fraction with the most extreme α, in [0, 1).
        n_clusters: "neyman": clusters of items per group (1 to 64).
        prior_scale: "auto" (the fit picks the prior width, a factor in ``AUTO_SCALES`` on its
            covariance, by evidence: an LLM unlike the trained ones is not pulled back to
            them) or a number > 0 (a fixed factor; 1 is the population prior as it is).
    """

    strategy: str = "neyman"
    estimator: str | None = None
    pool_groups: Any = None
    seed: int = 0
    model_error: float = DEFAULT_MODEL_ERROR
    group_model_error: float | None = DEFAULT_GROUP_MODEL_ERROR
    level: float = 0.9
    n_draws: int = 256
    top_frac: float = 0.25
    trim: float = 0.1
    n_clusters: int = 4
    prior_scale: float | str = "auto"

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> ProbeOptions:
        """The options from keyword arguments; unknown keywords and bad values are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise InputError(
                f"unknown probe option(s) {unknown}; the options are {sorted(names)} and prior"
            )
        o = cls(**kwargs)
        if o.strategy not in STRATEGIES:
            raise InputError(f"strategy must be one of {STRATEGIES}, got {o.strategy!r}")
        if o.estimator is not None and o.estimator not in ESTIMATORS:
            raise InputError(f"estimator must be one of {ESTIMATORS} or None, got {o.estimator!r}")
        if o.estimator in ("aipw", "blend", "mean") and o.strategy in GREEDY:
            raise InputError(
                f"estimator {o.estimator!r} needs questions drawn with known inclusion "
                f"probabilities (strategy 'neyman', 'random' or 'stratified'); strategy "
                f"{o.strategy!r} looks at the answers: use estimator='model'"
            )
        if isinstance(o.seed, (bool, np.bool_)) or not isinstance(o.seed, numbers.Integral):
            raise InputError(f"seed must be a non-negative integer, got {o.seed!r}")
        if o.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {o.seed}")
        for name in ("model_error", "group_model_error"):
            v = getattr(o, name)
            if v is None and name == "group_model_error":
                continue
            if inputs.real(name, v) < 0:
                raise InputError(f"{name} must be >= 0, got {v}")
        if isinstance(o.level, (bool, np.bool_)) or o.level not in _LEVELS:
            raise InputError(f"level must be one of {list(_LEVELS)}, got {o.level!r}")
        inputs.positive_int("n_draws", o.n_draws, maximum=MAX_DRAWS)
        inputs.positive_int("n_clusters", o.n_clusters, maximum=64)
        if not 0 < inputs.real("top_frac", o.top_frac) <= 1:
            raise InputError(f"top_frac must be in (0, 1], got {o.top_frac}")
        if not 0 <= inputs.real("trim", o.trim) < 1:
            raise InputError(f"trim must be in [0, 1), got {o.trim}")
        if o.prior_scale != "auto" and not inputs.real("prior_scale", o.prior_scale) > 0:
            raise InputError(f"prior_scale must be 'auto' or a number > 0, got {o.prior_scale}")
        return o

    @property
    def prior_scales(self) -> tuple[float, ...]:
        """The prior widths the fit chooses among."""
        return AUTO_SCALES if self.prior_scale == "auto" else (float(self.prior_scale),)

    def estimator_for_strategy(self) -> str:
        """The estimator to use: the one given, else the strategy's default."""
        if self.estimator is not None:
            return self.estimator
        if self.strategy == "population":
            return "population"
        return "model" if self.strategy in GREEDY else "blend"


def labels_arg(name: str, labels: Any, n: int) -> tuple[list[Any], np.ndarray]:
    """Group labels as (distinct labels in order of first appearance, int code per item).

    Labels are compared as given, as ``Model.predict_accuracy`` does (``1`` and ``"1"`` are two
    groups); NaN and None are refused."""
    labs = inputs.group_labels(labels, n, name)
    index: dict[Any, int] = {}
    try:
        codes = np.fromiter((index.setdefault(v, len(index)) for v in labs), np.int64, len(labs))
    except TypeError as exc:  # pragma: no cover - group_labels checks hashability
        raise InputError(f"{name}: labels must be hashable ({exc})") from None
    return list(index), codes


def answers_arg(idx: Any, answers: Any, n_pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked (pool indices int64 [k], answers float64 [k]); k may be 0."""
    idx = inputs.unmasked("idx", idx)
    answers = inputs.unmasked("answers", answers)
    try:
        i = np.asarray(idx)
        y = np.asarray(answers)
    except (TypeError, ValueError) as exc:
        raise InputError(f"idx and answers must be 1-D arrays ({exc})") from None
    if i.ndim > 1 or y.ndim > 1:
        raise InputError(f"idx and answers must be 1-D, got shapes {i.shape} and {y.shape}")
    i, y = np.atleast_1d(i), np.atleast_1d(y)
    if i.size == 0 and y.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    if i.size == 0 or not (np.issubdtype(i.dtype, np.integer) and i.dtype != np.bool_):
        raise InputError(f"idx must be a non-empty array of integer pool indices, got {i.dtype}")
    if y.dtype.kind not in "biuf":
        raise InputError(f"answers must be 0/1 numbers or bools, got dtype {y.dtype}")
    if i.shape != y.shape:
        raise InputError(f"length mismatch: {i.size} indices, {y.size} answers")
    if (i < 0).any() or (i >= n_pool).any():
        raise InputError(f"pool index out of range [0, {n_pool})")
    yf = y.astype(np.float64)
    if not np.isin(yf, (0.0, 1.0)).all():
        raise InputError("answers must be 0 or 1 (no NaN)")
    return i.astype(np.int64), yf
