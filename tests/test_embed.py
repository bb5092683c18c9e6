"""Embeddings: the real MiniLM model, the on-disk cache, and the error paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from irt_fast import embed, embedders
from irt_fast.embed import (
    EmbeddingCache,
    embed_dataset,
    embed_stats,
    embed_texts,
    embedder_info,
    text_keys,
)
from irt_fast.embedders import cache as emb_cache
from irt_fast.errors import EmbedderError, InputError
from irt_fast.synthetic import make_synthetic

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["What is the capital of France?", "hello world", "Solve 2x + 3 = 7.", "hello world"]


class CountingEncoder:
    """A deterministic stand-in embedder that counts what it is asked to embed."""

    name = "counting-test-encoder"

    def __init__(self, fail_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.fail_after = fail_after

    def encode(self, texts, batch_size=32):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.seen.extend(texts)
        return np.array([[len(t), sum(map(ord, t)) % 97, 1.0] for t in texts], dtype=np.float32)


def test_packaged_minilm_path(minilm_dir):
    assert (minilm_dir / "modules.json").is_file()
    assert (minilm_dir / "model.safetensors").is_file()
    with pytest.raises(EmbedderError, match="no packaged model"):
        embed.packaged_model_path("gpt-17")


def test_real_minilm_embeddings_and_cache(minilm_dir, tmp_path):
    out = embed_texts(TEXTS, minilm_dir, cache_dir=tmp_path, progress=False)
    assert out.shape == (4, 384) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # reference values of all-MiniLM-L6-v2 for "hello world"
    np.testing.assert_allclose(
        out[1, :5], [-0.03447721, 0.03102321, 0.00673498, 0.02610898, -0.039362], atol=1e-4
    )
    np.testing.assert_array_equal(out[1], out[3])
    # a paraphrase is closer than an unrelated text
    para = embed_texts(
        ["Which city is France's capital?"], minilm_dir, cache_dir=tmp_path, progress=False
    )
    assert para[0] @ out[0] > para[0] @ out[2] + 0.3

    # second call: everything from disk, no model load, nothing embedded
    embed._MODELS.clear()
    before = embed_stats()
    again = embed_texts(TEXTS[::-1], minilm_dir, cache_dir=tmp_path, progress=False)
    after = embed_stats()
    np.testing.assert_array_equal(again, out[::-1])
    assert after["model_loads"] == before["model_loads"]
    assert after["texts_embedded"] == before["texts_embedded"]
    assert after["cache_hits"] - before["cache_hits"] == 3  # distinct texts
    assert not embed._MODELS

    # a partly new call embeds only the new text; normalize=False is a separate cache
    embed_texts(TEXTS + ["a new one"], minilm_dir, cache_dir=tmp_path, progress=False)
    assert embed_stats()["texts_embedded"] - after["texts_embedded"] == 1
    assert embed_stats()["model_loads"] - after["model_loads"] == 1
    raw = embed_texts(TEXTS[:1], minilm_dir, cache_dir=tmp_path, normalize=False, progress=False)
    assert embed_stats()["texts_embedded"] - after["texts_embedded"] == 2
    np.testing.assert_allclose(raw[0] / np.linalg.norm(raw[0]), out[0], atol=1e-5)

    info = embedder_info(minilm_dir)
    assert info == {"name": "local:" + str(minilm_dir.resolve()), "dim": 384, "normalize": True}


def test_hub_name_of_packaged_model_loads_locally(minilm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IRT_FAST_MODELS", str(tmp_path / "no_models"))
    info = embedder_info("all-MiniLM-L6-v2")
    assert info["name"] == "sentence-transformers/all-MiniLM-L6-v2" and info["dim"] == 384


def test_embed_dataset(minilm_dir, tmp_path):
    ds, _ = make_synthetic(n_llms=3, n_queries=20, embed_dim=8, seed=0)
    out = embed_dataset(ds, minilm_dir, cache_dir=tmp_path, progress=False)
    assert out.embeddings.shape == (20, 384)
    assert out.responses is ds.responses and ds.embeddings.shape == (20, 8)


def test_fully_cached_call_does_not_import_sentence_transformers(minilm_dir, tmp_path):
    embed_texts(TEXTS, minilm_dir, cache_dir=tmp_path, progress=False)
    code = (
        "import sys; from irt_fast.embed import embed_texts; "
        f"v = embed_texts({TEXTS!r}, {str(minilm_dir)!r}, cache_dir={str(tmp_path)!r}, progress=False); "
        "print(v.shape, 'sentence_transformers' in sys.modules, 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert res.stdout.strip() == "(4, 384) False False"


def test_cache_with_counting_encoder(tmp_path):
    enc = CountingEncoder()
    texts = ["b", "aa", "b", "ccc"]
    v = embed_texts(texts, enc, cache_dir=tmp_path, batch_size=2, progress=False)
    assert sorted(enc.seen) == ["aa", "b", "ccc"]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(v[0], v[2])
    enc2 = CountingEncoder()
    v2 = embed_texts(["ccc", "dddd", "aa"], enc2, cache_dir=tmp_path, progress=False)
    assert enc2.seen == ["dddd"]
    np.testing.assert_array_equal(v2[[0, 2]], v[[3, 1]])
    # use_cache=False embeds everything and writes nothing new
    n_files = len(os.listdir(next((tmp_path / "embeddings").iterdir())))
    enc3 = CountingEncoder()
    embed_texts(["aa"], enc3, cache_dir=tmp_path, use_cache=False, progress=False)
    assert enc3.seen == ["aa"]
    assert len(os.listdir(next((tmp_path / "embeddings").iterdir()))) == n_files
    # empty input keeps the dimension
    assert embed_texts([], enc, cache_dir=tmp_path, progress=False).shape == (0, 3)


def test_interrupted_run_keeps_completed_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(emb_cache, "SHARD_SIZE", 4)
    texts = [f"text number {i}" for i in range(20)]
    with pytest.raises(KeyboardInterrupt):
        embed_texts(
            texts, CountingEncoder(fail_after=10), cache_dir=tmp_path, batch_size=2, progress=False
        )
    enc = CountingEncoder()
    embed_texts(texts, enc, cache_dir=tmp_path, batch_size=2, progress=False)
    assert len(enc.seen) == 10  # the 10 texts embedded before the kill were kept
    enc2 = CountingEncoder()
    embed_texts(texts, enc2, cache_dir=tmp_path, progress=False)
    assert enc2.seen == []


def test_cache_ignores_partial_and_corrupt_shards(tmp_path):
    d = tmp_path / "c"
    c = EmbeddingCache(d)
    keys = text_keys(["x", "y"])
    c.add(keys, np.array([[1, 2], [3, 4]], dtype=np.float32))
    # a killed writer: temp files, and vectors without their keys (commit marker) file
    (d / ".123.keys.npy.abcd.tmp").write_bytes(b"garbage")
    np.save(d / "999-1-dead.vecs.npy", np.ones((1, 2), dtype=np.float32))
    # a corrupt committed shard and one of the wrong dimension
    (d / "998-1-bad.keys.npy").write_bytes(b"not npy")
    np.save(d / "997-1-wd.vecs.npy", np.ones((1, 5), dtype=np.float32))
    np.save(d / "997-1-wd.keys.npy", text_keys(["z"]))
    fresh = EmbeddingCache(d)
    found, vecs = fresh.lookup(text_keys(["y", "z", "x", "w"]))
    assert found.tolist() == [True, False, True, False]
    np.testing.assert_array_equal(vecs[[0, 2]], [[3, 4], [1, 2]])
    # a second writer on the same directory (another process) becomes visible on refresh
    other = EmbeddingCache(d)
    other.add(text_keys(["w"]), np.array([[7, 8]], dtype=np.float32))
    fresh.refresh()
    assert fresh.lookup(text_keys(["w"]))[0].tolist() == [True]
    with pytest.raises(InputError):
        fresh.add(text_keys(["q"]), np.ones((1, 3), dtype=np.float32))


def test_errors(tmp_path, monkeypatch):
    with pytest.raises(EmbedderError, match="does not exist"):
        embed_texts(["a"], tmp_path / "missing_model", cache_dir=tmp_path)
    with pytest.raises(InputError, match=r"texts\[1\] is int"):
        embed_texts(["a", 3], CountingEncoder(), cache_dir=tmp_path)
    with pytest.raises(EmbedderError, match="needs a non-empty str `name`"):
        embed_texts(["a"], object(), cache_dir=tmp_path)

    not_a_model = tmp_path / "empty_dir"
    not_a_model.mkdir()
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(EmbedderError, match="pip install 'irt_fast\\[text\\]'"):
        embed_texts(["a"], not_a_model, cache_dir=tmp_path)


def test_offline_hub_name_error(tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("IRT_FAST_MODELS", str(tmp_path))
    with pytest.raises(EmbedderError, match="HF_HUB_OFFLINE is set.*local model directory"):
        embed_texts(["a"], "irt-fast-test/no-such-model-xyz", cache_dir=tmp_path, progress=False)
    not_a_model = tmp_path / "empty_dir"
    not_a_model.mkdir()
    with pytest.raises(EmbedderError, match="not a loadable sentence-transformers model"):
        embed_texts(["a"], not_a_model, cache_dir=tmp_path, progress=False)


def _built(name: str) -> Path:
    p = embedders.models_dir() / name
    if not p.is_dir():
        pytest.skip(f"embedder {name} not built at {p} (irt-fast models setup)")
    return p


def test_onnx_and_static_ids_embed_without_torch(tmp_path):
    _built("all-MiniLM-L6-v2-onnx-int8")
    _built("m2v-mpnet-256")
    code = (
        "import sys; from irt_fast.embed import embed_texts, embedder_info; "
        f"a = embed_texts({TEXTS!r}, 'all-MiniLM-L6-v2-onnx-int8', cache_dir={str(tmp_path)!r}, progress=False); "
        f"b = embed_texts({TEXTS!r}, 'm2v-mpnet-256', cache_dir={str(tmp_path)!r}, progress=False); "
        "print(a.shape, b.shape, embedder_info('m2v-mpnet-256')['name'], 'torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert res.stdout.strip() == "(4, 384) (4, 256) m2v-mpnet-256 False"


@pytest.mark.realdata
def test_mpnet_reproduces_shared_embeddings(mmlu_pro, tmp_path):
    """embed_texts with the reference embedder gives the vectors shipped with MMLU-Pro."""
    pytest.importorskip("sentence_transformers")
    _built("all-mpnet-base-v2")
    q = mmlu_pro.queries.with_row_index("row")
    q = q.with_columns(n=q["text"].str.len_chars()).sort("n").head(8)  # short ones: fast
    v = embed_texts(q["text"].to_list(), "all-mpnet-base-v2", cache_dir=tmp_path, progress=False)
    ref = mmlu_pro.embeddings[q["row"].to_numpy()]
    np.testing.assert_allclose((v * ref).sum(axis=1), 1.0, atol=1e-4)


def test_many_small_calls_are_compacted_and_stay_correct(tmp_path, monkeypatch):
    """Routing one query at a time must not leave one file per call, nor lose any vector."""
    monkeypatch.setattr(emb_cache, "MAX_SMALL_SHARDS", 8)
    enc = CountingEncoder()
    texts = [f"query {i}" for i in range(50)]
    singles = [embed_texts([t], enc, cache_dir=tmp_path, progress=False)[0] for t in texts]
    cache = emb_cache.get_cache(
        tmp_path / "embeddings" / emb_cache.cache_key("object:" + enc.name, True)
    )
    assert cache.n_shard_files() < 8
    assert len(enc.seen) == 50
    fresh = EmbeddingCache(cache.dir)  # a new process sees everything, once
    found, vecs = fresh.lookup(text_keys(texts))
    assert found.all()
    np.testing.assert_array_equal(vecs, np.array(singles))
    enc2 = CountingEncoder()
    np.testing.assert_array_equal(
        embed_texts(texts, enc2, cache_dir=tmp_path, progress=False), np.array(singles)
    )
    assert enc2.seen == []


def test_delta_index_and_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(emb_cache, "SHARD_SIZE", 4)
    c = EmbeddingCache(tmp_path)
    all_keys, all_vecs = [], []
    for i in range(12):  # a mix of delta-only refreshes and full rebuilds
        k = text_keys([f"t{i}-{j}" for j in range(i % 5 + 1)])
        v = np.random.default_rng(i).standard_normal((len(k), 3)).astype(np.float32)
        c.add(k, v)
        all_keys.append(k)
        all_vecs.append(v)
        found, got = c.lookup(np.concatenate(all_keys))
        assert found.all()
        np.testing.assert_array_equal(got, np.concatenate(all_vecs))


def test_threads_share_one_cache(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(emb_cache, "MAX_SMALL_SHARDS", 4)
    texts = [f"thread text {i}" for i in range(64)]

    def one(i):
        return embed_texts(texts[i : i + 3], CountingEncoder(), cache_dir=tmp_path, progress=False)

    with ThreadPoolExecutor(4) as ex:
        parts = list(ex.map(one, range(0, 62)))
    ref = embed_texts(texts, CountingEncoder(), cache_dir=tmp_path, use_cache=False, progress=False)
    for i, p in enumerate(parts):
        np.testing.assert_array_equal(p, ref[i : i + 3])
    enc = CountingEncoder()
    embed_texts(texts, enc, cache_dir=tmp_path, progress=False)
    assert enc.seen == []
