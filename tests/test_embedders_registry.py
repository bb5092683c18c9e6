"""The embedder registry and what a weights file may make it do (a file is untrusted input).

A name read from a weights file (``from_file=True``) resolves only to an embedder built under
the models directory: never a path, a hub id, or any network access. Texts that UTF-8 cannot
encode are InputErrors on every embedder path. sentence-transformers loads never trust code.
"""

from __future__ import annotations

import json
import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from irt_fast import embedders
from irt_fast.embed import embed_texts, embedder_info
from irt_fast.embedders import registry
from irt_fast.errors import EmbedderError, InputError

SURROGATE = "abc \ud800"
CRAFTED = [
    "../../etc",
    "/etc",
    "~/.ssh",
    "sentence-transformers/foo",
    "someone/all-MiniLM-L6-v2-onnx",
    "local:/tmp/x",
    "synthetic",
    "m2v-mpnet-256",  # a known id, but not built in this models dir
    "all-mpnet-base-v2",
    "",
    "a" * 300 + "/../x",
]


class Enc:
    name = "registry-test-encoder"

    def encode(self, texts, batch_size=32):
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


@pytest.fixture()
def no_network(monkeypatch):
    """Any connection attempt fails the test loudly (and the hub is NOT marked offline)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture()
def models_home(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("IRT_FAST_MODELS", str(d))
    return d


def _tokenizer_json() -> Path:
    try:
        return embedders.packaged_model_path() / "tokenizer.json"
    except EmbedderError as e:
        pytest.skip(str(e))


def tiny_static(dst: Path) -> Path:
    """A static embedder directory (random 8-d table over MiniLM's vocabulary), no model2vec."""
    pytest.importorskip("tokenizers")
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer

    tok_json = _tokenizer_json()
    n = max(Tokenizer.from_file(str(tok_json)).get_vocab().values()) + 1
    dst.mkdir(parents=True)
    table = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
    save_file({"embeddings": table}, str(dst / "model.safetensors"))
    (dst / "tokenizer.json").write_bytes(tok_json.read_bytes())
    (dst / "config.json").write_text(json.dumps({"normalize": True}))
    meta = {"kind": "static", "name": dst.name, "dim": 8, "normalize": True}
    (dst / embedders.MARKER).write_text(json.dumps(meta))
    return dst


# ----------------------------------------------------------------------------------------------
# names from weights files


@pytest.mark.parametrize("name", CRAFTED)
def test_untrusted_names_never_resolve_outside_built_embedders(
    name, models_home, tmp_path, no_network, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "etc").mkdir()  # '../../etc' etc. must not reach a directory relative to cwd
    with pytest.raises(EmbedderError, match="pass embedder= explicitly"):
        embed_texts(["hello"], name, progress=False, from_file=True, cache_dir=tmp_path)


def test_built_id_from_file_resolves_and_embeds(models_home, tmp_path, no_network, monkeypatch):
    built = tiny_static(models_home / "m2v-mpnet-256")
    a = embed_texts(["hello", "world"], "m2v-mpnet-256", progress=False, from_file=True)
    assert a.shape == (2, 8)
    assert embedders.resolve("m2v-mpnet-256", from_file=True).target == str(built)
    # the same directory by path: fine from the user, refused from a file
    monkeypatch.chdir(models_home)
    b = embed_texts(["hello", "world"], "./m2v-mpnet-256", progress=False, cache_dir=tmp_path)
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(EmbedderError, match="pass embedder= explicitly"):
        embed_texts(["hello"], "./m2v-mpnet-256", progress=False, from_file=True)
    with pytest.raises(EmbedderError, match="pass embedder= explicitly"):
        embed_texts(["hello"], str(built), progress=False, from_file=True)


def test_hub_prefixed_built_st_id_from_file(models_home, no_network):
    """Weights files trained with mpnet record 'sentence-transformers/all-mpnet-base-v2': that
    resolves to the local build, never to the hub."""
    d = models_home / "all-mpnet-base-v2"
    d.mkdir()
    (d / "modules.json").write_text("[]")
    (d / "model.safetensors").write_bytes(b"")
    spec = embedders.resolve("sentence-transformers/all-mpnet-base-v2", from_file=True)
    assert spec.local and spec.target == str(d) and spec.kind == "sentence-transformers"
    assert spec.identity == "sentence-transformers/all-mpnet-base-v2"


def test_synthetic_is_never_a_hub_id(models_home, no_network, tmp_path):
    for from_file in (False, True):
        with pytest.raises(EmbedderError, match="synthetic"):
            embed_texts(["x"], "synthetic", progress=False, from_file=from_file, cache_dir=tmp_path)


def test_user_paths_stay_allowed(tmp_path, monkeypatch):
    d = tiny_static(tmp_path / "my-embedder")
    monkeypatch.chdir(tmp_path)
    spec = embedders.resolve("my-embedder")  # relative to cwd: the user's own choice
    assert spec.target == str(d.resolve()) and spec.kind == "static"
    assert spec.identity == "local:" + str(d.resolve())
    with pytest.raises(EmbedderError, match="does not exist"):
        embedders.resolve("./nope")


# ----------------------------------------------------------------------------------------------
# texts UTF-8 cannot encode


def test_lone_surrogate_is_input_error_through_embed_texts(tmp_path):
    with pytest.raises(InputError, match=r"texts\[1\] is not valid Unicode"):
        embed_texts(["fine", SURROGATE], Enc(), cache_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match=r"texts\[0\]"):
        embed_texts([SURROGATE], Enc(), use_cache=False, progress=False)


def test_lone_surrogate_static_encoder(tmp_path):
    from irt_fast.embedders.static import StaticEmbedder

    enc = StaticEmbedder(tiny_static(tmp_path / "s"))
    with pytest.raises(InputError, match="not valid Unicode"):
        enc.encode(["ok", SURROGATE])
    with pytest.raises(InputError, match="not valid Unicode"):
        embed_texts([SURROGATE], tmp_path / "s", progress=False)


def test_lone_surrogate_onnx_encoder():
    pytest.importorskip("onnxruntime")
    try:
        path = embedders.local_dir("all-MiniLM-L6-v2-onnx-int8")
    except EmbedderError as e:
        pytest.skip(f"{e}")
    if embedders.kind_of(path) != "onnx":
        pytest.skip("ONNX embedder not built: irt-fast models setup")
    from irt_fast.embedders.onnx import OnnxEmbedder

    with pytest.raises(InputError, match="not valid Unicode"):
        OnnxEmbedder(path).encode([SURROGATE])
    with pytest.raises(InputError, match="not valid Unicode"):
        embed_texts([SURROGATE], "all-MiniLM-L6-v2-onnx-int8", progress=False)


def test_lone_surrogate_sentence_transformers(minilm_dir):
    with pytest.raises(InputError, match="not valid Unicode"):
        embed_texts([SURROGATE], minilm_dir, use_cache=False, progress=False)
    from irt_fast.embedders.st import StEncoder

    with pytest.raises(InputError, match="not valid Unicode"):
        StEncoder(minilm_dir).encode(["x", SURROGATE])


# ----------------------------------------------------------------------------------------------
# sentence-transformers loads


@pytest.fixture()
def fake_st(monkeypatch):
    calls = []

    class FakeST:
        def __init__(self, target, **kw):
            calls.append((target, kw))

        def get_embedding_dimension(self):
            return 3

        def encode(self, texts, **kw):
            return np.ones((len(texts), 3), dtype=np.float32)

    mod = types.ModuleType("sentence_transformers")
    mod.SentenceTransformer = FakeST
    monkeypatch.setitem(sys.modules, "sentence_transformers", mod)
    return calls


def _st_dir(d: Path, types_: list[str]) -> Path:
    d.mkdir()
    (d / "modules.json").write_text(
        json.dumps([{"idx": i, "path": "", "type": t} for i, t in enumerate(types_)])
    )
    (d / "model.safetensors").write_bytes(b"")
    return d


def test_st_loads_local_only_and_never_trust_remote_code(fake_st, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    d = _st_dir(tmp_path / "st", ["sentence_transformers.models.Transformer"])
    info = embedder_info(d)
    assert info["dim"] == 3
    (target, kw) = fake_st[-1]
    assert target == str(d.resolve())
    assert kw["trust_remote_code"] is False and kw["local_files_only"] is True


def test_st_dir_with_custom_module_code_is_refused(fake_st, tmp_path):
    d = _st_dir(tmp_path / "evil", ["sentence_transformers.models.Transformer", "evil.Module"])
    with pytest.raises(EmbedderError, match="never runs code from a model directory"):
        embed_texts(["x"], d, progress=False, use_cache=False)
    assert fake_st == []  # refused before sentence-transformers saw it


def test_registry_resolves_once_per_call(monkeypatch, tmp_path):
    tiny_static(tmp_path / "s")
    calls = []
    real = registry.resolve

    def counting(*a, **k):
        calls.append(a)
        return real(*a, **k)

    monkeypatch.setattr("irt_fast.embed.resolve", counting)
    embed_texts(["a", "b"], tmp_path / "s", progress=False)
    assert len(calls) == 1


def test_found_ids_are_remembered_until_their_folder_changes(models_home, no_network):
    """One-text routing resolved the file's embedder id through the models directory on every
    call (~1 ms); found specs are kept, and a removed folder is noticed (one stat)."""
    import shutil

    built = tiny_static(models_home / "m2v-mpnet-256")
    first = embedders.resolve("m2v-mpnet-256", from_file=True)
    assert embedders.resolve("m2v-mpnet-256", from_file=True) is first  # remembered
    shutil.rmtree(built)
    with pytest.raises(EmbedderError, match="not built"):
        embedders.resolve("m2v-mpnet-256", from_file=True)
    tiny_static(built)
    assert embedders.resolve("m2v-mpnet-256", from_file=True).target == str(built)
