"""The inference API against docs/format.md's function computed in float64 numpy (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_fixtures import config, numpy_proba, random_tensors, write

import irt_fast

CONFIGS = {
    "dense": config(),
    "topk": config(n_routed=5, top_k=2),
    "top1_two_shared": config(n_shared=2, n_routed=4, top_k=1),
    "no_shared": config(n_shared=0, n_routed=3, top_k=2),
    "mlp": config(n_routed=0, top_k=0, llm_bias=False),
    "mf": config(method="mf"),
    "jeirt": config(method="jeirt", hidden_dim=20),
}


def make(tmp_path: Path, name: str, seed: int = 0, **load_kw):
    cfg = CONFIGS[name]
    t = random_tensors(cfg, seed)
    m = irt_fast.load(write(tmp_path / f"{name}.safetensors", cfg, t), **load_kw)
    return m, cfg, t


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_the_spec(tmp_path: Path, name: str) -> None:
    m, cfg, t = make(tmp_path, name)
    x = np.random.default_rng(1).standard_normal((37, cfg["embed_dim"])).astype(np.float32)
    want = numpy_proba(cfg, t, x)
    got = m.predict_proba(x)
    assert got.dtype == np.float32 and got.shape == (37, cfg["n_llms"])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # the probabilities are not all ~0.5: the comparison has teeth
    assert np.ptp(want) > 0.3


def test_topk_selection_bias_changes_the_choice(tmp_path: Path) -> None:
    # selection_bias must steer which experts are used, but not the softmax weights
    cfg = CONFIGS["topk"]
    t = random_tensors(cfg)
    t["gate.selection_bias"] = np.array([0, 0, 0, 50, 50], np.float32)  # always experts 3, 4
    m = irt_fast.load(write(tmp_path / "m.safetensors", cfg, t))
    x = np.random.default_rng(2).standard_normal((20, 24)).astype(np.float32)
    np.testing.assert_allclose(m.predict_proba(x), numpy_proba(cfg, t, x), atol=1e-5)
    t2 = dict(t, **{"gate.selection_bias": np.zeros(5, np.float32)})
    assert np.abs(numpy_proba(cfg, t2, x) - numpy_proba(cfg, t, x)).max() > 1e-3


def test_item_params_and_metadata(tmp_path: Path) -> None:
    m, cfg, t = make(tmp_path, "jeirt")
    x = np.random.default_rng(3).standard_normal((4, 24)).astype(np.float32)
    alpha, beta = m.item_params(x)
    assert alpha.shape == (4, cfg["d"]) and beta.shape == (4,)
    np.testing.assert_allclose(np.linalg.norm(alpha, axis=1), 1, atol=1e-5)  # JE-IRT: unit α
    assert m.llm_names == [f"llm-{i}" for i in range(4)]
    assert m.embed_dim == 24 and m.d == cfg["d"] and m.method == "jeirt"
    assert m.config == cfg
    assert m.embedder == {"name": "test-embedder", "dim": 24, "normalize": True}
    assert m.training is None
    assert "jeirt" in repr(m)


def test_one_query_as_vector_and_float64_input(tmp_path: Path) -> None:
    m, _, _ = make(tmp_path, "dense")
    x = np.random.default_rng(4).standard_normal((3, 24))
    p64 = m.predict_proba(x)  # float64 is converted (documented)
    np.testing.assert_array_equal(p64, m.predict_proba(x.astype(np.float32)))
    np.testing.assert_array_equal(m.predict_proba(x[1].astype(np.float32))[0], p64[1])
    np.testing.assert_array_equal(m.predict_proba(x.tolist()), p64)


@pytest.fixture
def dense(tmp_path: Path):
    """(model, 300 random float32 queries, their P(correct)) of the dense test model."""
    m, _, _ = make(tmp_path, "dense")
    x = np.random.default_rng(7).standard_normal((300, 24)).astype(np.float32)
    return m, x, m.predict_proba(x)


def test_route_best_is_the_argmax(dense) -> None:
    m, x, p = dense
    r = m.route(x)
    np.testing.assert_array_equal(r.indices, p.argmax(1))
    np.testing.assert_array_equal(r.proba, p.max(1))
    assert r.names == [m.llm_names[i] for i in p.argmax(1)]
    # module-level function, model given as a path, same answer
    r2 = irt_fast.route(x, model=m.path)
    np.testing.assert_array_equal(r2.indices, r.indices)


def test_route_among_candidates(dense) -> None:
    m, x, p = dense
    cands = ["llm-3", "llm-1"]
    r = m.route(x, candidates=cands)
    sub = p[:, [3, 1]]
    np.testing.assert_array_equal(r.indices, np.array([3, 1])[sub.argmax(1)])
    assert set(r.names) <= set(cands)


def test_route_cost_penalty(dense) -> None:
    m, x, p = dense
    cost = np.array([0.5, 0.1, 2.0, 0.0])
    for lam in (0.0, 0.05, 0.3, 10.0):
        r = m.route(x, cost=cost.tolist(), lam=lam)
        np.testing.assert_array_equal(r.indices, (p - lam * cost).argmax(1))
    # huge λ: always the free LLM
    assert set(m.route(x, cost=cost.tolist(), lam=1e3).names) == {"llm-3"}
    # a mapping works too and gives the same routing
    by_name = dict(zip(m.llm_names, cost.tolist(), strict=True))
    np.testing.assert_array_equal(
        m.route(x, cost=by_name, lam=0.3).indices, m.route(x, cost=cost.tolist(), lam=0.3).indices
    )


def test_route_cost_margin(dense) -> None:
    m, x, p = dense
    cost = np.array([3.0, 1.0, 2.0, 4.0])
    for margin in (0.0, 0.05, 0.2, 1.0):
        r = m.route(x, cost=cost.tolist(), margin=margin)
        ok = p >= p.max(1, keepdims=True) - np.float32(margin)
        want = np.where(ok, cost, np.inf).argmin(1)
        np.testing.assert_array_equal(r.indices, want)
    assert set(m.route(x, cost=cost.tolist(), margin=1.0).names) == {"llm-1"}


def test_route_cost_aligned_with_candidates(tmp_path: Path) -> None:
    m, _, _ = make(tmp_path, "dense")
    x = np.random.default_rng(9).standard_normal((50, 24)).astype(np.float32)
    a = m.route(x, candidates=["llm-2", "llm-0"], cost=[0.0, 1.0], lam=100.0)
    assert set(a.names) == {"llm-2"}
    # a full-length cost list is read in llm_names order even with candidates
    b = m.route(x, candidates=["llm-2", "llm-0"], cost=[0.0, 1.0, 5.0, 1.0], lam=100.0)
    assert set(b.names) == {"llm-0"}


def test_predict_accuracy_is_the_mean_probability(tmp_path: Path) -> None:
    m, _, _ = make(tmp_path, "topk")
    x = np.random.default_rng(10).standard_normal((1000, 24)).astype(np.float32)
    want = m.predict_proba(x).astype(np.float64).mean(0)
    acc = m.predict_accuracy(x, chunk_size=97)  # ragged chunks
    assert list(acc) == m.llm_names
    np.testing.assert_allclose(list(acc.values()), want, atol=1e-6)
    acc2 = irt_fast.predict_accuracy(x, model=m)
    np.testing.assert_allclose(list(acc2.values()), want, atol=1e-6)


def test_predict_accuracy_grouped_streamed_and_framed(tmp_path: Path) -> None:
    m, _, _ = make(tmp_path, "dense")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((500, 24)).astype(np.float32)
    labels = rng.choice(["mmlu", "gsm8k", "arc"], 500)
    p = m.predict_proba(x).astype(np.float64)
    got = m.predict_accuracy(x, groups=labels, chunk_size=64)
    assert set(got) == {"mmlu", "gsm8k", "arc"}
    for g, accs in got.items():
        np.testing.assert_allclose(list(accs.values()), p[labels == g].mean(0), atol=1e-6)
    # a stream of (chunk, labels) pairs gives the same
    stream = ((x[i : i + 128], labels[i : i + 128]) for i in range(0, 500, 128))
    got2 = m.predict_accuracy(stream, groups=True)
    for g in got:
        np.testing.assert_allclose(list(got2[g].values()), list(got[g].values()), atol=1e-9)
    # an ungrouped stream of arrays
    got3 = m.predict_accuracy(x[i : i + 100] for i in range(0, 500, 100))
    np.testing.assert_allclose(list(got3.values()), p.mean(0), atol=1e-6)
    df = m.predict_accuracy(x, groups=labels, as_frame=True)
    assert df.columns == ["group", "llm", "accuracy", "n"] and df.height == 3 * 4
    assert df.filter(df["group"] == "arc")["n"][0] == int((labels == "arc").sum())


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("name", ["dense", "topk"])  # topk runs the sparse mixture
def test_same_answer_whatever_batch_and_threads(tmp_path: Path, threads: int, name: str) -> None:
    ref, cfg, _ = make(tmp_path, name, threads=1)
    m = irt_fast.load(ref.path, threads=threads)
    assert m.threads == threads
    x = np.random.default_rng(12).standard_normal((700, 24)).astype(np.float32)
    full = ref.predict_proba(x)
    for b in (1, 3, 64, 65, 257, 700):  # 700 rows: several chunks, a ragged last one
        parts = [m.predict_proba(x[i : i + b]) for i in range(0, 700, b)]
        np.testing.assert_allclose(np.concatenate(parts), full, atol=1e-6, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.integers(1, 90),
    scale=st.floats(0.01, 10.0),
)
def test_property_route_is_argmax_and_accuracy_is_mean(seed: int, b: int, scale: float) -> None:
    m = _PROP_MODEL
    x = (np.random.default_rng(seed).standard_normal((b, 24)) * scale).astype(np.float32)
    p = m.predict_proba(x)
    assert np.all((p >= 0) & (p <= 1))
    r = m.route(x)
    np.testing.assert_array_equal(r.proba, p[np.arange(b), r.indices])
    assert np.all(r.proba >= p.max(1))
    np.testing.assert_allclose(list(m.predict_accuracy(x).values()), p.mean(0), atol=1e-6)


def _prop_model() -> irt_fast.Model:
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="irt_fast_prop_"))
    cfg = config(n_routed=6, top_k=3)
    return irt_fast.load(write(d / "m.safetensors", cfg, random_tensors(cfg, 5)))


_PROP_MODEL = _prop_model()


def test_text_input_is_embedded_with_the_given_embedder(tmp_path: Path, minilm_dir: Path) -> None:
    from irt_fast.embed import embed_texts

    cfg = config(embed_dim=384)
    t = random_tensors(cfg, 3)
    # the file names a local path: untrusted, never resolved; embedder= is trusted
    emb = json.dumps({"name": str(minilm_dir), "dim": 384, "normalize": True})
    m = irt_fast.load(write(tmp_path / "m.safetensors", cfg, t, embedder=emb))
    texts = ["What is the derivative of x^2?", "Name the capital of France."]
    with pytest.raises(irt_fast.EmbedderError, match="embedder="):
        m.route(texts)
    vecs = embed_texts(texts, str(minilm_dir), normalize=True, progress=False)
    r = m.route(texts, embedder=minilm_dir)
    np.testing.assert_array_equal(r.indices, m.route(vecs).indices)
    np.testing.assert_allclose(
        m.predict_proba(texts, embedder=str(minilm_dir)), numpy_proba(cfg, t, vecs), atol=1e-5
    )
    acc = m.predict_accuracy(texts, groups=["math", "geo"], embedder=minilm_dir)
    assert set(acc) == {"math", "geo"}
