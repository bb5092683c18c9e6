"""irt_fast.onboard.population and the probe's strategy="population": the trained LLMs as the
prior of a new LLM, on a synthetic pool of families with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from irt_fast.errors import InputError
from irt_fast.onboard import Prior
from irt_fast.onboard.population import Population, row_accuracy
from irt_fast.onboard.probe import Probe


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def families():
    """12 base LLMs × 25 fine-tunes (θ = base + N(0, 0.25²)) trained; new LLMs are fresh
    fine-tunes of the same bases. 600 pool and 400 target questions, exact item parameters."""
    rng = np.random.default_rng(0)
    d = 6
    bases = rng.standard_normal((12, d)) * 1.5
    fam = np.repeat(np.arange(12), 25)
    trained = bases[fam] + 0.25 * rng.standard_normal((len(fam), d))
    new = bases[rng.integers(0, 12, 16)] + 0.25 * rng.standard_normal((16, d))
    ap, at = rng.standard_normal((600, d)), rng.standard_normal((400, d))
    bp, bt = rng.standard_normal(600), rng.standard_normal(400)
    y_pool = (rng.random((16, 600)) < _sigmoid(new @ ap.T - bp)).astype(float)
    y_t = (rng.random((16, 400)) < _sigmoid(new @ at.T - bt)).astype(float)
    return trained, ap, bp, at, bt, y_pool, y_t


def _probe(f, strategy, seed=0, **kw):
    trained, ap, bp, at, bt, *_ = f
    return Probe.from_params(ap, bp, at, bt, Prior.from_population(trained), strategy=strategy,
                             seed=seed, model_error=0.0, **kw)  # fmt: skip


def _error(f, strategy, k, **kw):
    _, _, _, _, _, y_pool, y_t = f
    errs, covered = [], []
    for j in range(len(y_pool)):
        pr = _probe(f, strategy, seed=j, **kw)
        while pr.n_answers < k:
            idx = pr.next(1 if pr.n_answers < 5 else 5)
            pr.record(idx, y_pool[j, idx])
        e = pr.estimate()
        errs.append(abs(e.accuracy - y_t[j].mean()))
        covered.append(e.lo <= y_t[j].mean() <= e.hi)
    return float(np.mean(errs)), float(np.mean(covered))


def _random_mean_error(f, k):
    _, _, _, _, _, y_pool, y_t = f
    rng = np.random.default_rng(1)
    return float(np.mean([
        abs(y_pool[j, rng.choice(600, k, replace=False)].mean() - y_t[j].mean())
        for j in range(len(y_pool)) for _ in range(20)
    ]))  # fmt: skip


def test_a_family_pool_is_scored_better_with_the_population_than_with_the_gaussian_prior(families):
    """New LLMs from the trained families: the population posterior beats the mean of the same
    number of random answers and the greedy criterion under the Gaussian prior."""
    pop, pop_cov = _error(families, "population", 25, population=families[0])
    gauss, _ = _error(families, "variance", 25)
    assert pop < 0.6 * _random_mean_error(families, 25)
    assert pop < gauss
    assert pop_cov >= 0.6  # intervals are not empty promises (16 LLMs: a coarse check)


def test_population_questions_are_fresh_and_the_pool_can_run_out(families):
    trained, ap, bp, at, bt, y_pool, _ = families
    pr = Probe.from_params(ap[:30], bp[:30], at, bt, Prior.from_population(trained),
                           strategy="population", population=trained)  # fmt: skip
    seen: set[int] = set()
    while not pr.done:
        idx = pr.next(7)
        assert idx.size and not seen & set(idx.tolist())
        seen |= set(idx.tolist())
        pr.record(idx, y_pool[0, idx])
    assert pr.next(3).size == 0 and len(seen) == 30
    pr.record([], [])
    e = pr.estimate()
    assert 0 <= e.lo <= e.accuracy <= e.hi <= 1 and e.n_answers == 30
    assert set(pr.estimates()) >= {"model", "blend", "population"}


def test_population_weights_follow_the_likelihood():
    rows = np.array([[2.0], [-2.0], [0.0]])
    pop = Population(rows)
    x, beta = np.ones((40, 1)), np.zeros(40)
    pop.record(x, beta, np.ones(40))  # 40 right answers: the strong row explains them
    w = pop.weights()
    assert w.argmax() == 0 and w[0] > 0.99 and np.isclose(w.sum(), 1.0)
    draws = pop.draws(64, np.random.default_rng(0))
    assert draws.shape == (1, 64) and (draws == 2.0).mean() > 0.95
    acc = row_accuracy(rows, x[:5], beta[:5])
    assert np.allclose(acc, _sigmoid(rows[:, 0]))
    g = pop.gains(x, beta, np.arange(5), acc)
    assert g.shape == (5,) and (g >= 0).all()


def test_bad_populations_are_refused(families):
    trained, ap, bp, at, bt, *_ = families
    prior = Prior.from_population(trained)
    with pytest.raises(InputError, match="need population= rows"):
        Probe.from_params(ap, bp, at, bt, prior, strategy="population")
    with pytest.raises(InputError, match="need population= rows"):
        Probe.from_params(ap, bp, at, bt, prior, estimator="population")
    with pytest.raises(InputError, match=r"population must be \[n, 6\]"):
        Probe.from_params(ap, bp, at, bt, prior, strategy="population", population=trained[:, :3])
    bad = trained.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="at least 2 finite rows"):
        Probe.from_params(ap, bp, at, bt, prior, strategy="population", population=bad)
    with pytest.raises(InputError, match="needs questions drawn with known inclusion"):
        Probe.from_params(ap, bp, at, bt, prior, strategy="population", estimator="blend",
                          population=trained)  # fmt: skip


def test_a_model_probes_with_its_own_trained_llms(model_path):
    import irt_fast

    m = irt_fast.load(model_path)
    assert m.population.shape[0] == m.n_llms and np.isfinite(m.population).all()
    x = np.random.default_rng(0).standard_normal((40, m.embed_dim)).astype(np.float32)
    pr = m.probe(pool=x[:30], target=x[30:], strategy="population")
    idx = pr.next(5)
    pr.record(idx, np.ones(5))
    e = pr.estimate()
    assert 0 <= e.lo <= e.accuracy <= e.hi <= 1


def test_a_huge_pool_and_target_are_scored_on_bounded_samples(families, monkeypatch):
    import irt_fast.onboard.probe as probe_mod

    monkeypatch.setattr(probe_mod, "MAX_SCORED_QUESTIONS", 16)
    monkeypatch.setattr(probe_mod, "MAX_SCORED_TARGET", 50)
    trained, ap, bp, at, bt, y_pool, y_t = families
    pr = Probe.from_params(ap, bp, at, bt, Prior.from_population(trained),
                           strategy="population", population=trained)  # fmt: skip
    assert pr._pop_acc.shape == (len(trained),)
    seen: set[int] = set()
    for _ in range(10):
        idx = pr.next(3)
        assert len(idx) == 3 and not seen & set(idx.tolist())
        seen |= set(idx.tolist())
        pr.record(idx, y_pool[0, idx])
    assert abs(pr.estimate().accuracy - y_t[0].mean()) < 0.15


def test_an_llm_unlike_the_population_falls_back_to_the_gaussian_prior(families):
    """An LLM far from every trained family: the Gaussian prior's evidence wins, and the
    population estimate follows it instead of the nearest trained LLM; a fine-tune of a trained
    family keeps the population."""
    trained, ap, bp, at, bt, y_pool, y_t = families
    rng = np.random.default_rng(5)
    far = 4.0 * rng.standard_normal(trained.shape[1])
    yf_pool = (rng.random(600) < _sigmoid(ap @ far - bp)).astype(float)
    yf_t = (rng.random(400) < _sigmoid(at @ far - bt)).astype(float)
    shares, errs = {}, {}
    for name, yp, yt in (("far", yf_pool, yf_t), ("family", y_pool[0], y_t[0])):
        pr = _probe(families, "population", population=trained)
        while pr.n_answers < 60:
            idx = pr.next(5)
            pr.record(idx, yp[idx])
        shares[name] = pr.population_share()
        errs[name] = abs(pr.estimate().accuracy - yt.mean())
    assert shares["far"] < 0.5 < shares["family"]
    assert errs["far"] < 0.08 and errs["family"] < 0.05
