"""Onboarding a new LLM: the numpy MAP fit at the reference size (d = 232, target < 20 ms for
k <= 1,000 answers; with the prior width chosen by evidence it is one fit per width), one probe
step (select 1 question, record it, refit, estimate on a 1,000-question target) for the default
design and the greedy criterion, and an estimate from 100 fixed anchors. Synthetic item
parameters of realistic scale; the prior from 29 random population rows, as a trained
reference model would give.

    python -m pytest benches/test_bench_onboard.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest

from irt_fast.onboard import Prior, fit_llm
from irt_fast.onboard.anchors import choose_anchors, estimate_from_anchors
from irt_fast.onboard.options import AUTO_SCALES
from irt_fast.onboard.probe import Probe

D = 232


def _params(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, D)) * 0.15, rng.standard_normal(n)


@pytest.fixture(scope="module")
def prior() -> Prior:
    rng = np.random.default_rng(0)
    pr = Prior.from_population(rng.standard_normal((29, D)) * 0.3, rng.standard_normal(29))
    _ = pr.precision  # computed once per model in real use
    return pr


@pytest.mark.parametrize("k", [50, 200, 1000])
def test_fit_llm(benchmark, prior: Prior, k: int) -> None:
    alpha, beta = _params(k, 1)
    y = (np.random.default_rng(2).random(k) < 0.5).astype(np.float64)
    benchmark.group = "onboard fit_llm d=232"
    post = benchmark(fit_llm, alpha, beta, y, prior)
    assert np.isfinite(post.cov).all() and post.n_answers == k


def test_fit_llm_auto_prior_width(benchmark, prior: Prior) -> None:
    alpha, beta = _params(200, 1)
    y = (np.random.default_rng(2).random(200) < 0.5).astype(np.float64)
    benchmark.group = "onboard fit_llm d=232, prior width by evidence"
    post = benchmark(fit_llm, alpha, beta, y, prior, prior_scales=AUTO_SCALES)
    assert post.prior_scale in AUTO_SCALES


@pytest.mark.parametrize("strategy", ["neyman", "variance"])
def test_probe_step(benchmark, prior: Prior, strategy: str) -> None:
    """One step at 50 answers: next(1) + record + estimate (10,000-question pool)."""
    ap, bp = _params(10_000, 3)
    at, bt = _params(1_000, 4)
    groups = np.arange(1_000) % 14
    y = (np.random.default_rng(5).random(10_000) < 0.5).astype(np.float64)

    def setup():
        pr = Probe.from_params(ap, bp, at, bt, prior, groups=groups, seed=0, strategy=strategy)
        idx = pr.next(50)
        pr.record(idx, y[idx])
        return (pr,), {}

    def step(pr: Probe) -> None:
        idx = pr.next(1)
        pr.record(idx, y[idx])
        pr.estimate()

    benchmark.group = "onboard probe step d=232"
    benchmark.pedantic(step, setup=setup, rounds=5)


def test_estimate_from_anchors(benchmark, prior: Prior) -> None:
    """The blend estimate from 100 anchors' answers, 1,000-question target."""
    ap, bp = _params(1_000, 3)
    groups = np.arange(1_000) % 14
    anchors = choose_anchors(ap, bp, ap, bp, prior, 100, groups=groups)
    y = (np.random.default_rng(5).random(100) < 0.5).astype(np.float64)
    benchmark.group = "onboard anchors estimate d=232"
    e = benchmark(estimate_from_anchors, anchors, y, prior)
    assert 0 <= e.lo <= e.accuracy <= e.hi <= 1
