"""A weights file with subnormal weights (written elsewhere: not by training.export, which
flushes) loads with them set to zero, counts them, computes what the flushed file computes, and
``Model.save`` writes none back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.numpy import load_file, save_file  # noqa: E402

import irt_fast  # noqa: E402
from training.export import load_torch, save_model  # noqa: E402
from training.model import IrtNetConfig, build_model  # noqa: E402
from training.numerics import plant_subnormals  # noqa: E402

CFG = IrtNetConfig(embed_dim=40, d=10, n_llms=7, hidden_dim=24, expert_dim=12, n_routed=6)


def is_subnormal(a: np.ndarray) -> np.ndarray:
    bits = a.view(np.int32)
    return ((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("subnormal")
    torch.manual_seed(0)
    model = build_model(CFG).eval()
    with torch.no_grad():
        model.theta.normal_()  # P spread over (0, 1)
    emb = {"name": "test", "dim": CFG.embed_dim, "normalize": True}
    names = [f"m{i}" for i in range(CFG.n_llms)]
    save_model(model, d / "src.safetensors", llm_names=names, embedder=emb)
    planted = plant_subnormals(d / "src.safetensors", d / "sub.safetensors", 0.2, seed=1)
    # the same file with those values written as zero
    t = load_file(str(d / "sub.safetensors"))
    from safetensors import safe_open

    with safe_open(str(d / "sub.safetensors"), framework="np") as f:
        meta = f.metadata()
    n = 0
    for k, a in t.items():
        n += int(is_subnormal(a).sum())
        t[k] = np.where(is_subnormal(a), np.float32(0), a)
    assert n == planted > 1000
    save_file(t, str(d / "zeroed.safetensors"), metadata=meta)
    return {"sub": d / "sub.safetensors", "zeroed": d / "zeroed.safetensors", "dir": d}


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_subnormal_weights_load_flushed_and_counted(files: dict[str, Path], dtype: str) -> None:
    sub = irt_fast.load(files["sub"], dtype=dtype, threads=2)
    zeroed = irt_fast.load(files["zeroed"], dtype=dtype, threads=2)
    n = int(sum(is_subnormal(a).sum() for a in load_file(str(files["sub"])).values()))
    assert sub.flushed_subnormals == n > 0
    assert zeroed.flushed_subnormals == 0
    x = np.random.default_rng(0).standard_normal((300, CFG.embed_dim)).astype(np.float32)
    for b in (1, 16, 17, 300):  # the few-row kernel and the batched path
        np.testing.assert_array_equal(sub.predict_proba(x[:b]), zeroed.predict_proba(x[:b]))


def test_flushed_engine_matches_torch_on_the_subnormal_file(files: dict[str, Path]) -> None:
    """Setting values below 1.2e-38 to zero changes no output measurably."""
    model, _ = load_torch(files["sub"])
    m = irt_fast.load(files["sub"])
    x = np.random.default_rng(1).standard_normal((65, CFG.embed_dim)).astype(np.float32)
    with torch.no_grad():
        want = model.predict_proba(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(m.predict_proba(x), want, atol=1e-5, rtol=0)
    assert np.ptp(want) > 0.5


def test_save_writes_no_subnormal(files: dict[str, Path]) -> None:
    m = irt_fast.load(files["sub"])
    out = m.save(files["dir"] / "saved.safetensors")
    for k, a in load_file(str(out)).items():
        assert not is_subnormal(a).any(), k
    again = irt_fast.load(out)
    assert again.flushed_subnormals == 0
    x = np.random.default_rng(2).standard_normal((5, CFG.embed_dim)).astype(np.float32)
    np.testing.assert_array_equal(again.predict_proba(x), m.predict_proba(x))
