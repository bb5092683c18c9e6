"""The Bayes oracle of the onboarding study (training.experiments.onboard_oracle) on a small
leaderboard population: what it computes must behave as an oracle does."""

import numpy as np
import pytest

from training.experiments.onboard_oracle import KS, oracle_errors, ratio_ci, report


def test_the_oracle_beats_the_random_mean_and_its_floor_does_not_depend_on_k():
    exact = oracle_errors(n_llms=400, n_queries=1000, n_onboard=12, seeds=2, log=lambda *a: None)
    assert set(exact) == {"random_mean", "random", "adaptive", "own_p"}
    assert all(v.shape == (12, len(KS)) for v in exact.values())
    # the floor is the target's own noise: the same error whatever k
    assert np.allclose(exact["own_p"], exact["own_p"][:, :1])
    # few answers: the posterior over the population beats the mean of those answers
    assert exact["random"][:, 0].mean() < exact["random_mean"][:, 0].mean()
    assert exact["adaptive"][:, 0].mean() < exact["random_mean"][:, 0].mean()
    smooth = oracle_errors(
        n_llms=400, n_queries=1000, n_onboard=12, seeds=2, log=lambda *a: None,
        idiosyncrasy_known=False,
    )  # fmt: skip
    # same LLMs and draws, so the random mean is paired; the oracle's knowledge differs
    assert np.array_equal(smooth["random_mean"], exact["random_mean"])
    assert not np.allclose(smooth["own_p"], exact["own_p"])
    table, result = report(exact, "own P")
    assert table.count("\n") == 2 + len(KS) and result["k"] == list(KS)


def test_ratio_ci_brackets_the_ratio():
    rng = np.random.default_rng(0)
    ref = rng.random(50) + 0.5
    r, lo, hi = ratio_ci(0.5 * ref, ref)
    assert (r, lo, hi) == pytest.approx((0.5, 0.5, 0.5))  # an exact ratio has no spread
    r, lo, hi = ratio_ci(rng.random(50), ref)
    assert lo < r < hi
