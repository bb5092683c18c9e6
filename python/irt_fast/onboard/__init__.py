"""Onboarding a new LLM into a trained pool without retraining (numpy only, no torch).

- :mod:`.prior`: the population prior over an LLM's (θ, b), a shrinkage covariance estimate.
- :mod:`.fit`: MAP fit of one LLM's (θ, b) from its answers with the item parameters frozen,
  and its Laplace posterior.
- :mod:`.probe`: choosing which questions to ask next and predicting the LLM's accuracy on a
  target set, with a standard error and an interval.
"""

from .fit import Posterior, fit_llm
from .prior import Prior

__all__ = ["Posterior", "Prior", "fit_llm"]
