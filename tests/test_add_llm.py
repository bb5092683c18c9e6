"""The Model API for changing the pool of LLMs without retraining: add_llm, add_fitted_llm, drop_llms,
prior, llm_info, save/load (format v2). The fit itself is tested in tests/test_onboard*.py; here:
the right answers reach it, the model serves the fitted row, and nothing else changes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from test_engine_fixtures import config, numpy_proba, random_tensors, write

import irt_fast
from irt_fast.errors import InputError, UnknownLLMError, WeightsFormatError

core = pytest.importorskip("irt_fast._core")
pytestmark = pytest.mark.skipif(
    not hasattr(core.Engine, "with_llms"), reason="the engine has no with_llms yet (rust-core)"
)
fit = pytest.importorskip("irt_fast.onboard.fit")
from irt_fast.onboard.prior import Prior  # noqa: E402

CFG = config(n_llms=6)
D = CFG["embed_dim"]


@pytest.fixture
def model(tmp_path: Path) -> irt_fast.Model:
    return irt_fast.load(write(tmp_path / "m.safetensors", CFG, random_tensors(CFG, 0)))


def data(k: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((k, D)).astype(np.float32)
    return x, (rng.random(k) < 0.6).astype(np.int64)


def expected_fit(m: irt_fast.Model, x: np.ndarray, c: np.ndarray, prior: Prior | None = None):
    a, b = m.item_params(x)
    return fit.fit_llm(a, b, c.astype(np.float32), prior or m.prior, has_bias=CFG["llm_bias"])


def proba_of(m: irt_fast.Model, name: str, x: np.ndarray) -> np.ndarray:
    return m.predict_proba(x)[:, m.llm_names.index(name)]


def test_add_llm_appends_a_fitted_row_and_leaves_the_original(model: irt_fast.Model) -> None:
    x, c = data(60)
    xq = np.random.default_rng(9).standard_normal((30, D)).astype(np.float32)
    before = model.predict_proba(xq)
    m2 = model.add_llm("new", x, c)
    assert m2 is not model and m2.llm_names == [*model.llm_names, "new"]
    assert model.n_llms == 6 and "new" not in model.llm_names
    np.testing.assert_array_equal(model.predict_proba(xq), before)
    assert m2.llm_info[-1] == {"name": "new", "origin": "added", "n_answers": 60}
    assert all(e["origin"] == "trained" for e in m2.llm_info[:6])
    # the served row is the MAP fit of exactly these answers
    post = expected_fit(model, x, c)
    a, b = model.item_params(xq)
    want = 1 / (1 + np.exp(-(a.astype(np.float64) @ post.theta - b + post.bias)))
    np.testing.assert_allclose(proba_of(m2, "new", xq), want, atol=2e-5)
    np.testing.assert_array_equal(m2.predict_proba(xq)[:, :6], before)
    # route and predict_accuracy see it at once
    r = m2.route(xq, candidates=["new"])
    assert set(r.names) == {"new"}
    acc = m2.predict_accuracy(xq)
    assert acc["new"] == pytest.approx(float(want.mean()), abs=1e-5)


def test_same_name_again_refits_from_all_answers(model: irt_fast.Model) -> None:
    x, c = data(40, 1)
    x2, c2 = data(25, 2)
    m2 = model.add_llm("new", x, c).add_llm("other", x2, c2)
    m3 = m2.add_llm("new", x2, c2)
    assert m3.llm_names == m2.llm_names  # keeps its position
    assert m3.llm_info[6] == {"name": "new", "origin": "added", "n_answers": 65}
    post = expected_fit(model, np.concatenate([x, x2]), np.concatenate([c, c2]))
    xq = data(20, 5)[0]
    a, b = model.item_params(xq)
    want = 1 / (1 + np.exp(-(a.astype(np.float64) @ post.theta - b + post.bias)))
    np.testing.assert_allclose(proba_of(m3, "new", xq), want, atol=2e-5)
    np.testing.assert_array_equal(proba_of(m3, "other", xq), proba_of(m2, "other", xq))
    # replace=True: from the new answers only
    m4 = m2.add_llm("new", x2, c2, replace=True)
    assert m4.llm_info[6]["n_answers"] == 25
    post = expected_fit(model, x2, c2)
    want = 1 / (1 + np.exp(-(a.astype(np.float64) @ post.theta - b + post.bias)))
    np.testing.assert_allclose(proba_of(m4, "new", xq), want, atol=2e-5)


def test_trained_name_needs_replace(model: irt_fast.Model) -> None:
    x, c = data(30)
    with pytest.raises(InputError, match="replace=True"):
        model.add_llm("llm-2", x, c)
    m2 = model.add_llm("llm-2", x, c, replace=True)
    assert m2.llm_names == model.llm_names
    assert m2.llm_info[2] == {"name": "llm-2", "origin": "added", "n_answers": 30}
    # the prior stays that of the trained population, whatever is replaced or dropped
    np.testing.assert_array_equal(m2.prior.mean, model.prior.mean)


@pytest.mark.parametrize(
    ("x_rows", "correct", "match"),
    [
        (0, [], "empty"),
        (3, [1, 0], "3 questions in x but 2 answers"),
        (2, [1, float("nan")], r"correct\[1\]"),
        (2, [1, 2], r"correct\[1\]"),
        (2, [1, -1], r"correct\[1\]"),
        (2, ["1", "0"], "dtype"),
        (2, None, "correct is None"),
        (2, [[1, 0]], "1-D"),
    ],
)
def test_bad_answers(model: irt_fast.Model, x_rows: int, correct: object, match: str) -> None:
    x = data(max(x_rows, 1))[0][:x_rows]
    with pytest.raises(InputError, match=match):
        model.add_llm("new", x, correct)


def test_bad_questions_and_names(model: irt_fast.Model) -> None:
    x, c = data(5)
    bad = x.copy()
    bad[1, 3] = np.nan
    with pytest.raises(InputError):
        model.add_llm("new", bad, c)
    with pytest.raises(InputError, match="x is None"):
        model.add_llm("new", None, c)
    with pytest.raises(InputError, match="shape"):
        model.add_llm("new", x[:, :5], c)
    for name in ("", "  ", None, 3, " pad"):
        with pytest.raises(InputError, match="name"):
            model.add_llm(name, x, c)
    with pytest.raises(InputError, match="replace"):
        model.add_llm("new", x, c, replace="yes")
    masked = np.ma.masked_array(c, mask=[0, 1, 0, 0, 0])
    with pytest.raises(InputError, match="masked"):
        model.add_llm("new", x, masked)


@pytest.mark.parametrize("value", [0, 1])
def test_all_equal_answers_stay_finite(model: irt_fast.Model, value: int) -> None:
    x = data(30)[0]
    m2 = model.add_llm("new", x, np.full(30, value))
    p = proba_of(m2, "new", x)
    assert np.isfinite(p).all() and (p > 0).all() and (p < 1).all()
    assert (p.mean() > 0.5) == bool(value)  # it moved the right way


def test_bool_answers_and_a_single_question(model: irt_fast.Model) -> None:
    x, c = data(10)
    m_int = model.add_llm("new", x, c)
    m_bool = model.add_llm("new", x, c.astype(bool))
    np.testing.assert_array_equal(m_int.predict_proba(x), m_bool.predict_proba(x))
    assert model.add_llm("one", x[0], [1]).llm_info[-1]["n_answers"] == 1


def test_add_fitted_llm(model: irt_fast.Model) -> None:
    x, c = data(20)
    a, b = model.item_params(x)
    post = fit.fit_llm(a, b, c.astype(np.float32), model.prior)
    m2 = model.add_fitted_llm("p", post, a, b, c)
    np.testing.assert_array_equal(m2.predict_proba(x), model.add_llm("p", x, c).predict_proba(x))
    with pytest.raises(InputError, match="replace=True"):
        m2.add_fitted_llm("p", post, a, b, c)
    with pytest.raises(InputError, match="replace=True"):
        model.add_fitted_llm("llm-0", post, a, b, c)
    with pytest.raises(InputError, match="alpha"):
        model.add_fitted_llm("q", post, a[:, :2], b, c)
    with pytest.raises(InputError, match="answers"):
        model.add_fitted_llm("q", post, a[:5], b[:5], c[:5])
    # the recorded answers let add_llm merge later ones
    m3 = m2.add_llm("p", x[:4], c[:4])
    assert m3.llm_info[-1]["n_answers"] == 24


def test_drop_llms(model: irt_fast.Model) -> None:
    x, c = data(20)
    m2 = model.add_llm("a", x, c).add_llm("b", x[:10], c[:10])
    m3 = m2.drop_llms(["llm-1", "a"])
    assert m3.llm_names == ["llm-0", "llm-2", "llm-3", "llm-4", "llm-5", "b"]
    assert m2.n_llms == 8  # unchanged
    xq = data(15, 3)[0]
    p2, p3 = m2.predict_proba(xq), m3.predict_proba(xq)
    np.testing.assert_array_equal(p3, p2[:, [0, 2, 3, 4, 5, 7]])
    assert m3.llm_info[-1] == {"name": "b", "origin": "added", "n_answers": 10}
    np.testing.assert_array_equal(m3.prior.cov, model.prior.cov)
    # b's recorded answers survived the drop of a: merging still works
    assert m3.add_llm("b", x[10:], c[10:]).llm_info[-1]["n_answers"] == 20
    with pytest.raises(UnknownLLMError, match="nope"):
        m2.drop_llms(["nope"])
    with pytest.raises(InputError, match="every LLM"):
        m2.drop_llms(m2.llm_names)
    with pytest.raises(InputError, match="one string"):
        m2.drop_llms("a")
    with pytest.raises(InputError, match="twice"):
        m2.drop_llms(["a", "a"])


def test_prior_of_a_v1_file_is_the_population_fallback(model: irt_fast.Model) -> None:
    with safe_open(model.path, framework="np") as f:
        theta, bias = f.get_tensor("theta"), f.get_tensor("llm_bias")
    want = Prior.from_population(theta, bias)
    np.testing.assert_allclose(model.prior.mean, want.mean, atol=1e-6)
    np.testing.assert_allclose(model.prior.cov, want.cov, atol=1e-6)
    assert model.prior.mean.shape == (CFG["d"] + 1,)


def test_no_bias_model(tmp_path: Path) -> None:
    cfg = config(n_llms=5, llm_bias=False, n_routed=0, top_k=0)
    t = random_tensors(cfg, 2)
    m = irt_fast.load(write(tmp_path / "m.safetensors", cfg, t))
    assert m.prior.mean.shape == (cfg["d"],)
    x, c = data(30)
    m2 = m.add_llm("new", x, c)
    np.testing.assert_allclose(m2.predict_proba(x)[:, :5], numpy_proba(cfg, t, x), atol=1e-5)
    back = irt_fast.load(m2.save(tmp_path / "m2.safetensors"))
    np.testing.assert_array_equal(back.predict_proba(x), m2.predict_proba(x))


# ------------------------------------------------------------------------ save / load


def test_save_load_round_trip(model: irt_fast.Model, tmp_path: Path) -> None:
    x, c = data(40)
    m2 = model.add_llm("a", x, c).add_llm("b", x[:7], c[:7]).drop_llms(["llm-4"])
    out = m2.save(tmp_path / "out" / "pool.safetensors")
    back = irt_fast.load(out)
    assert back.llm_names == m2.llm_names and back.llm_info == m2.llm_info
    np.testing.assert_array_equal(back._engine.theta, m2._engine.theta)
    np.testing.assert_array_equal(back._engine.llm_bias, m2._engine.llm_bias)
    for got, want in zip(back._engine.answers, m2._engine.answers, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(back.prior.cov, model.prior.cov, rtol=1e-6, atol=1e-7)
    xq = data(50, 4)[0]
    np.testing.assert_array_equal(back.predict_proba(xq), m2.predict_proba(xq))
    np.testing.assert_array_equal(back.route(xq).indices, m2.route(xq).indices)
    assert back.predict_accuracy(xq) == m2.predict_accuracy(xq)
    assert back.config["n_llms"] == 7 and back.embedder == model.embedder
    with safe_open(out, framework="np") as f:
        meta = f.metadata()
    assert meta["format_version"] == "2"
    assert json.loads(meta["llm_info"]) == m2.llm_info
    # the loaded file can be extended again, merging the recorded answers
    assert back.add_llm("a", x[:3], c[:3]).llm_info[m2.llm_names.index("a")]["n_answers"] == 43
    # saving the re-loaded model gives the same tensors
    again = irt_fast.load(back.save(tmp_path / "again.safetensors"))
    np.testing.assert_array_equal(again._engine.theta, back._engine.theta)
    np.testing.assert_array_equal(again.prior.cov, back.prior.cov)


def test_training_metadata_survives_save(tmp_path: Path) -> None:
    t = {"seed": 7}
    m = irt_fast.load(write(tmp_path / "m.safetensors", CFG, training=json.dumps(t)))
    back = irt_fast.load(m.add_llm("n", *data(10)).save(tmp_path / "o.safetensors"))
    assert back.training == t


def _listing(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_save_refuses_a_changed_source_and_writes_nothing(
    model: irt_fast.Model, tmp_path: Path
) -> None:
    m2 = model.add_llm("n", *data(10))
    target = tmp_path / "out.safetensors"
    target.write_bytes(b"previous contents")
    # the source file is replaced by another model after loading
    write(Path(model.path), CFG, random_tensors(CFG, 99))
    before = _listing(tmp_path)
    with pytest.raises(WeightsFormatError, match="changed since"):
        m2.save(target)
    assert _listing(tmp_path) == before  # no temp file, target untouched
    os.unlink(model.path)
    with pytest.raises(FileNotFoundError):
        m2.save(target)
    assert target.read_bytes() == b"previous contents"


def test_save_bad_paths(model: irt_fast.Model, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        model.save(tmp_path)
    with pytest.raises(InputError, match="path"):
        model.save(None)


def test_save_over_the_source(model: irt_fast.Model) -> None:
    x, c = data(10)
    m2 = model.add_llm("n", x, c)
    m2.save(model.path)
    back = irt_fast.load(model.path)
    np.testing.assert_array_equal(back.predict_proba(x), m2.predict_proba(x))
    m2.save(model.path)  # m2 now reads its network from the file it wrote
    with pytest.raises(WeightsFormatError, match="changed since"):
        model.save(Path(model.path).with_name("x.safetensors"))  # but model's source changed


def test_probe_delegates(model: irt_fast.Model) -> None:
    probe_mod = pytest.importorskip("irt_fast.onboard.probe")
    pool, target = data(50, 1)[0], data(30, 2)[0]
    # the prior at its trained width, as add_llm fits (the probe's default chooses the width)
    p = model.probe(pool=pool, target=target, seed=0, prior_scale=1.0)
    assert isinstance(p, probe_mod.Probe)
    idx = p.next(6)
    y = np.array([1, 0, 1, 1, 0, 1])
    p.record(idx, y)
    m2 = p.add_to(model, "probed")
    assert m2.llm_info[-1] == {"name": "probed", "origin": "added", "n_answers": 6}
    want = model.add_llm("probed", pool[idx], y)
    np.testing.assert_allclose(m2.predict_proba(target), want.predict_proba(target), atol=1e-4)
