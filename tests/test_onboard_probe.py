"""irt_fast.onboard.probe: selection, estimates, coverage and errors on synthetic known truth."""

from __future__ import annotations

import numpy as np
import pytest

from irt_fast.errors import InputError
from irt_fast.onboard import Prior
from irt_fast.onboard.probe import Estimate, Probe
from training.experiments.onboard_core import onboard_case
from training.experiments.onboard_synthetic import synthetic_cases


@pytest.fixture(scope="module")
def cases():
    return synthetic_cases(n_llms=200, n_onboard=24, seed=1, d=4, n_queries=1200)


def test_variance_selection_beats_random_with_known_truth(cases):
    """With exact item parameters the target-variance criterion (stratified, trimmed) needs
    fewer answers than random questions for the same error (same fit, same LLMs and seeds)."""
    err = {"random": [], "variance": []}
    for c in cases:
        for s in ("random", "variance"):
            for seed in (0, 1):
                rows = onboard_case(c, s, seed, (20, 40), model_error=0.0)
                err[s] += [r["abs_err"] for r in rows]
    assert np.mean(err["variance"]) < 0.85 * np.mean(err["random"])


def test_intervals_cover_about_ninety_percent(cases):
    cov = [
        r["covered"]
        for c in cases
        for seed in (0, 1)
        for r in onboard_case(c, "adaptive", seed, (10, 50), model_error=0.0)
    ]
    assert 0.78 <= np.mean(cov) <= 0.99


def test_next_is_stratified_and_never_repeats(cases):
    c = cases[0]
    pr = c.probe(strategy="stratified", seed=0)
    seen: set[int] = set()
    for _ in range(6):
        idx = pr.next(10)
        assert len(set(idx.tolist())) == 10 and not seen & set(idx.tolist())
        pr.record(idx, c.y_pool[idx])
        seen |= set(idx.tolist())
    got = np.array([np.mean(c.pool_groups[sorted(seen)] == g) for g in pr.group_names])
    share = np.array([np.mean(c.groups_t == g) for g in pr.group_names])
    assert np.abs(got - share).max() <= 1 / 60 + 1e-9
    e = pr.estimate()
    assert isinstance(e, Estimate) and e.n_answers == 60
    assert set(e.by_group) == set(pr.group_names)
    assert e.lo <= e.accuracy <= e.hi and e.se > 0
    for g in e.by_group.values():
        assert 0 <= g.lo <= g.accuracy <= g.hi <= 1


def test_pool_groups_default_to_nearest_target_centroid(cases):
    c = cases[0]
    pr = c.probe(strategy="stratified")
    guessed = Probe.from_params(
        c.alpha_pool, c.beta_pool, c.alpha_t, c.beta_t, c.prior, groups=c.groups_t
    )
    # synthetic benchmarks are clustered in embedding space; α, β inherit most of it
    assert np.mean(guessed._pg == pr._pg) > 0.5


def test_prior_only_estimate_and_more_answers_narrow_it(cases):
    c = cases[1]
    pr = c.probe(seed=3)
    e0 = pr.estimate()
    assert e0.n_answers == 0 and pr.posterior is None
    idx = pr.next(100)
    pr.record(idx, c.y_pool[idx])
    assert pr.estimate().se < e0.se


def test_record_rejects_bad_input_without_changing_state(cases):
    c = cases[0]
    pr = c.probe()
    idx = pr.next(3)
    pr.record(idx, c.y_pool[idx])
    for bad_idx, bad_y, msg in [
        (idx[:1], [1], "twice"),
        ([10**7], [1], "range"),
        ([-1], [1], "range"),
        ([5, 6], [1], "mismatch"),
        ([5, 5], [1, 0], "twice"),
        ([5], [np.nan], "0 or 1"),
        ([5], [2], "0 or 1"),
        ([], [1], "non-empty"),
        ([1.5], [1], "integer"),
    ]:
        with pytest.raises(InputError, match=msg):
            pr.record(np.asarray(bad_idx), bad_y)
    assert pr.n_answers == 3
    with pytest.raises(InputError):
        pr.next(0)


def test_constructor_errors(cases):
    c = cases[0]
    with pytest.raises(InputError, match="strategy"):
        c.probe(strategy="greedy")
    with pytest.raises(InputError, match="groups"):
        Probe.from_params(c.alpha_pool, c.beta_pool, c.alpha_t, c.beta_t, c.prior, groups=["a"])
    with pytest.raises(InputError, match="dimension"):
        Probe.from_params(
            c.alpha_pool, c.beta_pool, c.alpha_t, c.beta_t, Prior(np.zeros(9), np.eye(9))
        )
    with pytest.raises(InputError, match="NaN"):
        Probe.from_params(c.alpha_pool * np.nan, c.beta_pool, c.alpha_t, c.beta_t, c.prior)
    with pytest.raises(InputError, match="level"):
        c.probe(level=0.5)


class _FakeModel:
    """The two things Probe needs of irt_fast.Model, plus a recorder for add_fitted_llm."""

    def __init__(self, case):
        self.case, self.prior, self.added = case, case.prior, None

    def item_params(self, x):
        c = self.case
        return (c.alpha_pool, c.beta_pool) if x == "pool" else (c.alpha_t, c.beta_t)

    def add_fitted_llm(self, name, posterior, alpha, beta, correct, *, replace=False):
        self.added = (name, posterior, alpha, beta, correct, replace)
        return "new model"


def test_model_constructor_and_add_to(cases):
    c = cases[2]
    m = _FakeModel(c)
    pr = Probe(m, "pool", "target", groups=c.groups_t, pool_groups=c.pool_groups)
    with pytest.raises(InputError, match="no answers"):
        pr.add_to(m, "x")
    idx = pr.next(7)
    pr.record(idx, c.y_pool[idx])
    assert pr.add_to(m, "new-llm") == "new model"
    name, post, a, b, y, replace = m.added
    assert name == "new-llm" and post is pr.posterior and post.n_answers == 7
    assert np.array_equal(a, c.alpha_pool[idx]) and np.array_equal(y, c.y_pool[idx])
    assert not replace
