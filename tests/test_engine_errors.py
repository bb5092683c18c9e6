"""Every error path of the engine raises a typed irt_fast exception with a useful message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_engine_fixtures import config, random_tensors, shapes, write

import irt_fast
from irt_fast.errors import (
    EmbedderError,
    InputError,
    IrtFastError,
    UnknownLLMError,
    WeightsFormatError,
)


def load_err(path: Path) -> WeightsFormatError:
    with pytest.raises(WeightsFormatError) as info:
        irt_fast.load(path)
    # the very class of irt_fast.errors, raised from Rust, and catchable as its builtin base
    assert type(info.value) is WeightsFormatError
    assert isinstance(info.value, (IrtFastError, ValueError))
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        irt_fast.load(tmp_path / "nope.safetensors")


def test_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        irt_fast.load(tmp_path)


@pytest.mark.parametrize("keep", [0, 4, 8, 50, -1, -4])
def test_truncated_file(tmp_path: Path, keep: int) -> None:
    data = write(tmp_path / "ok.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    e = load_err(cut)
    assert "cut.safetensors" in str(e)


def test_garbage_file(tmp_path: Path) -> None:
    p = tmp_path / "junk.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}" + bytes(100))
    load_err(p)


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    p = write(tmp_path / "m.safetensors")
    p.write_bytes(p.read_bytes() + b"\x00" * 8)
    load_err(p)


def test_wrong_shape_names_tensor_and_shapes(tmp_path: Path) -> None:
    cfg = config()
    t = random_tensors(cfg)
    t["experts.w2"] = np.zeros((4, 8, 15), np.float32)  # hidden 16 expected
    e = load_err(write(tmp_path / "m.safetensors", cfg, t))
    assert "experts.w2" in str(e) and "[4, 8, 15]" in str(e) and "[4, 8, 16]" in str(e)


def test_shape_disagreeing_with_config(tmp_path: Path) -> None:
    # tensors of a 5-LLM model under a config that says 4
    t = random_tensors(config(n_llms=5))
    e = load_err(write(tmp_path / "m.safetensors", config(), t))
    assert "theta" in str(e) or "llm_bias" in str(e)


def test_missing_tensor(tmp_path: Path) -> None:
    t = random_tensors(config())
    del t["gate.selection_bias"]
    e = load_err(write(tmp_path / "m.safetensors", config(), t))
    assert "gate.selection_bias" in str(e) and "missing" in str(e)


def test_wrong_dtype(tmp_path: Path) -> None:
    t = random_tensors(config())
    t["theta"] = t["theta"].astype(np.float64)
    e = load_err(write(tmp_path / "m.safetensors", config(), t))
    assert "theta" in str(e) and "F64" in str(e)


def test_non_finite_weight(tmp_path: Path) -> None:
    t = random_tensors(config())
    t["alpha.bias"][2] = np.nan
    e = load_err(write(tmp_path / "m.safetensors", config(), t))
    assert "alpha.bias" in str(e)


def test_other_format_version_names_both(tmp_path: Path) -> None:
    e = load_err(write(tmp_path / "m.safetensors", format_version="3"))
    assert '"3"' in str(e) and '"1" and "2"' in str(e)


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"format": "other"}, "format"),
        ({"format": None}, "format"),
        ({"config": None}, "config"),
        ({"config": "{not json"}, "config"),
        ({"llm_names": json.dumps(["a", "b"])}, "llm_names"),
        ({"llm_names": json.dumps(["a", "a", "b", "c"])}, "twice"),
        ({"embedder": json.dumps({"name": "e", "dim": 7, "normalize": True})}, "embed_dim"),
        ({"embedder": json.dumps({"name": "e"})}, "embedder"),
    ],
)
def test_bad_metadata(tmp_path: Path, changes: dict, needle: str) -> None:
    e = load_err(write(tmp_path / "m.safetensors", **changes))
    assert needle in str(e)


@pytest.mark.parametrize(
    "cfg_changes, needle",
    [
        ({"method": "transformer"}, "method"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 4}, "top_k"),
        ({"d": 0}, "d"),
        ({"n_shared": 0, "n_routed": 0, "top_k": 0}, "n_shared"),
        ({"embed_dim": -3}, "embed_dim"),
        ({"hidden_dim": "wide"}, "hidden_dim"),
    ],
)
def test_bad_config(tmp_path: Path, cfg_changes: dict, needle: str) -> None:
    good = config()
    bad = {**good, **cfg_changes}
    e = load_err(write(tmp_path / "m.safetensors", bad, random_tensors(good)))
    assert needle in str(e)


def test_missing_config_key(tmp_path: Path) -> None:
    cfg = config()
    t = random_tensors(cfg)
    del cfg["expert_dim"]
    e = load_err(write(tmp_path / "m.safetensors", cfg, t))
    assert "expert_dim" in str(e)


def test_unknown_config_keys_and_extra_tensors_are_ignored(tmp_path: Path) -> None:
    cfg = {**config(), "dropout": 0.5, "future_knob": [1, 2]}
    t = random_tensors(config())
    t["something.new"] = np.zeros(3, np.float32)
    m = irt_fast.load(write(tmp_path / "m.safetensors", cfg, t))
    assert m.config["future_knob"] == [1, 2]


# ------------------------------------------------------------------- inputs


@pytest.fixture
def model(tmp_path: Path) -> irt_fast.Model:
    return irt_fast.load(write(tmp_path / "m.safetensors"))


def test_wrong_embed_dim(model: irt_fast.Model) -> None:
    with pytest.raises(InputError, match="24"):
        model.predict_proba(np.zeros((3, 23), np.float32))
    with pytest.raises(InputError):
        model._engine.predict_proba(np.zeros((3, 23), np.float32))  # the Rust check itself


def test_non_finite_input(model: irt_fast.Model) -> None:
    x = np.zeros((5, 24), np.float32)
    x[3, 7] = np.inf
    with pytest.raises(InputError, match="row 3, column 7"):
        model.route(x)


@pytest.mark.parametrize("x", [np.zeros((0, 24), np.float32), [], np.zeros((2, 3, 24))])
def test_empty_or_badly_shaped_input(model: irt_fast.Model, x: object) -> None:
    with pytest.raises(InputError):
        model.predict_proba(x)


def test_non_numeric_input(model: irt_fast.Model) -> None:
    with pytest.raises(InputError, match="dtype"):
        model.predict_proba(np.array([[object()] * 24]))


def test_non_contiguous_input_to_core_is_rejected(model: irt_fast.Model) -> None:
    x = np.zeros((4, 48), np.float32)[:, ::2]
    with pytest.raises(InputError, match="contiguous"):
        model._engine.predict_proba(x)
    # the Python wrapper converts explicitly instead
    assert model.predict_proba(x).shape == (4, 4)


def test_unknown_candidate(model: irt_fast.Model) -> None:
    with pytest.raises(UnknownLLMError, match="gpt-9"):
        model.route(np.zeros((1, 24), np.float32), candidates=["llm-0", "gpt-9"])
    with pytest.raises(KeyError):  # UnknownLLMError is also a KeyError
        model.route(np.zeros((1, 24), np.float32), candidates=["gpt-9"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"candidates": []},
        {"candidates": ["llm-1", "llm-1"]},
        {"cost": [1, 2, 3, 4]},
        {"lam": 0.1},
        {"cost": [1, 2, 3, 4], "lam": 0.1, "margin": 0.1},
        {"cost": [1, 2], "lam": 0.1},
        {"cost": [1, 2, float("nan"), 4], "lam": 0.1},
        {"cost": {"llm-0": 1.0}, "lam": 0.1},
        {"cost": [1, 2, 3, 4], "lam": -1.0},
        {"cost": [1, 2, 3, 4], "margin": float("inf")},
    ],
)
def test_bad_route_arguments(model: irt_fast.Model, kwargs: dict) -> None:
    with pytest.raises(InputError):
        model.route(np.zeros((2, 24), np.float32), **kwargs)


def test_bad_rule_in_core(model: irt_fast.Model) -> None:
    with pytest.raises(InputError, match="rule"):
        model._engine.route(np.zeros((1, 24), np.float32), [0], None, "cheapest", 0.0)
    with pytest.raises(InputError, match="out of range"):
        model._engine.route(np.zeros((1, 24), np.float32), [9], None, "best", 0.0)


def test_bad_groups(model: irt_fast.Model) -> None:
    x = np.zeros((3, 24), np.float32)
    with pytest.raises(InputError, match="labels"):
        model.predict_accuracy(x, groups=["a", "b"])
    with pytest.raises(InputError, match="out of range"):
        model._engine.predict_accuracy_sums(x, np.array([0, 1, 5], np.uint32), 2)


def test_bad_threads(tmp_path: Path) -> None:
    p = write(tmp_path / "m.safetensors")
    for bad in (0, -1, 1.5):
        with pytest.raises(InputError):
            irt_fast.load(p, threads=bad)  # type: ignore[arg-type]


def test_text_input_without_embedder(
    model: irt_fast.Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "irt_fast.embed", None)  # makes the import fail
    with pytest.raises(EmbedderError, match="irt_fast\\[text\\]"):
        model.route(["what is 2 + 2?"])


def test_shapes_helper_matches_every_method() -> None:
    # guards the fixture itself: a wrong helper would make the error tests vacuous
    assert set(shapes(config(method="mf"))) == {
        "proj.weight",
        "proj.bias",
        "out.weight",
        "out.bias",
        "theta",
        "llm_bias",
    }
