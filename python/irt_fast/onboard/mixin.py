"""``Model``'s methods for scoring a new LLM from a few of its answers: an interactive probe, or
a fixed anchor set chosen once. This module imports neither the engine nor torch; it needs of
the model only ``item_params``, ``prior`` and ``embed_dim``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .anchors import Anchors
    from .estimators import Estimate
    from .prior import Prior
    from .probe import Probe


class OnboardMixin:
    """``probe``, ``anchors`` and ``estimate_from_anchors`` of :class:`irt_fast.Model`."""

    if TYPE_CHECKING:

        @property
        def prior(self) -> Prior: ...  # the model's (irt_fast.pool.PoolMixin.prior)

    def probe(self, *, pool: Any, target: Any, groups: Any = None, **kwargs: Any) -> Probe:
        """A test of a new LLM: which questions to ask, and its accuracy on the target.

        Args:
            pool: the questions you can run, ``[n_pool, embed_dim]`` (or texts).
            target: the questions whose accuracy you want (or texts); ``target=pool`` scores
                the benchmark the questions are drawn from (asked questions then count as
                answered, only the others are predicted).
            groups: a label per target question for per-group estimates.
            **kwargs: the probe's options (``irt_fast.onboard.options.ProbeOptions``:
                strategy, estimator, seed, level, ...).

        Returns:
            The Probe: ``next(n)``, ``record(idx, answers)``, ``estimate()``, ``done``,
            ``add_to(model, name)``.
        """
        from .probe import Probe

        return Probe(self, pool, target, groups=groups, **kwargs)

    def anchors(
        self,
        *,
        pool: Any,
        k: int,
        target: Any = None,
        groups: Any = None,
        pool_groups: Any = None,
        query_ids: Any = None,
        seed: int = 0,
    ) -> Anchors:
        """A fixed set of k anchor questions, chosen once, to run on every new LLM.

        Args:
            pool: the questions to choose from, ``[n_pool, embed_dim]`` (or texts).
            k: how many anchors.
            target: the questions whose accuracy you want; None: the pool itself.
            groups: a label per target question (per pool question when target is None).
            pool_groups: a label per pool question (default: nearest target group).
            query_ids: one id per pool question, kept with the anchors.
            seed: seeds the clustering.

        Returns:
            The Anchors (``index``, ``weight``, ``query_id``, ``write(path)``); pass them with
            the new LLM's answers to ``estimate_from_anchors``.
        """
        from .anchors import choose_anchors

        ap, bp = self.item_params(pool)  # type: ignore[attr-defined]
        at, bt = (ap, bp) if target is None else self.item_params(target)  # type: ignore[attr-defined]
        return choose_anchors(ap, bp, at, bt, self.prior, k, groups=groups,
                              pool_groups=pool_groups, query_ids=query_ids, seed=seed)  # fmt: skip

    def estimate_from_anchors(
        self, anchors: Anchors, answers: Any, *, estimator: str = "blend", **kwargs: Any
    ) -> Estimate:
        """A new LLM's accuracy on the anchors' target from its answers to the anchors.

        Args:
            anchors: from ``anchors`` or ``irt_fast.onboard.anchors.read_anchors``.
            answers: its 0/1 answers, one per anchor, in the anchors' order.
            estimator: "blend" (default), "aipw" or "model".
            **kwargs: level, seed, n_draws, model_error, group_model_error.

        Returns:
            The Estimate (accuracy, se, lo, hi, by_group), as ``Probe.estimate`` gives it.
        """
        from .anchors import estimate_from_anchors

        return estimate_from_anchors(anchors, answers, self.prior, estimator=estimator, **kwargs)
