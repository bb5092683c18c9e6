"""Onboarding a new LLM into a trained pool without retraining (numpy only, no torch).

- :mod:`.prior`: the population prior over an LLM's (θ, b), a shrinkage covariance estimate.
- :mod:`.fit`: MAP fit of one LLM's (θ, b) from its answers with the item parameters frozen,
  and its Laplace posterior.
- :mod:`.design`: sampling designs with known inclusion probabilities (which question next).
- :mod:`.estimators`: from the answers to the accuracy on a target (model, AIPW, blend).
- :mod:`.probe`: the interactive test of a new LLM; :mod:`.anchors`: a fixed anchor set.
- :mod:`.mixin`: ``Model.probe``, ``Model.anchors``, ``Model.estimate_from_anchors``.
"""

from .anchors import Anchors, read_anchors
from .estimators import Estimate, GroupEstimate
from .fit import Posterior, fit_llm
from .prior import Prior

__all__ = ["Anchors", "Estimate", "GroupEstimate", "Posterior", "Prior", "fit_llm", "read_anchors"]
