"""Training and export keep numbers out of the subnormal range (training.numerics).

Dead hidden units are planted the way training makes them: a bias that keeps the ReLU off and
tiny weights, which weight decay then shrinks into the subnormal range, plus a few weights that
are subnormal already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.numpy import load_file  # noqa: E402

from irt_fast.synthetic import make_synthetic  # noqa: E402
from training import loop, numerics  # noqa: E402
from training.data import random_split_matrices  # noqa: E402
from training.export import save_model  # noqa: E402
from training.loop import TrainOptions, fit_model  # noqa: E402
from training.model import IrtModel, IrtNetConfig, build_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMALL = IrtNetConfig(embed_dim=16, d=4, n_llms=5, hidden_dim=8, expert_dim=6, n_routed=3)
TINY_NORMAL = 1e-36  # normal, but weight decay (1e-4 ×) turns its gradient subnormal


def subnormal(bits: int) -> torch.Tensor:
    """A float32 subnormal from its bits: a conversion from a Python float would come out 0 in
    a thread with flush-to-zero."""
    assert 0 < bits & 0x7FFFFFFF < 0x00800000
    return torch.tensor([bits], dtype=torch.int32).view(torch.float32)[0]


SUBNORMAL = subnormal(0x000AE398)  # about 1e-39


def plant_dead_units(model: IrtModel) -> None:
    """Units 0-3 of every expert: off (bias -10), weights 1e-36, a few already 1e-39."""
    net = model.item_net
    with torch.no_grad():
        net.b1[:, :4] = -10.0
        net.w1[:, :4, :] = TINY_NORMAL
        net.w2[:, :, :4] = TINY_NORMAL
        net.w1[:, 0, :3] = SUBNORMAL
        net.w2[:, 0, 1] = subnormal(0x000AE398 | -0x80000000)  # about -1e-39


def n_subnormal(tensors) -> int:
    return sum(numerics.count_subnormal(t) for t in tensors)


def test_count_subnormal_and_snap() -> None:
    x = torch.tensor([0.0, 0.0, 0.0, 1.2e-38, 1e-31, -1e-30, 2e-30, 1.0, float("nan")])
    x[1], x[2] = SUBNORMAL, subnormal(0x00000001)
    assert numerics.count_subnormal(x) == 2
    numerics.snap_tiny_([x, None, torch.arange(3)])
    want = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2e-30, 1.0, float("nan")])
    torch.testing.assert_close(x, want, equal_nan=True, rtol=0, atol=0)


def _python(code: str, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter at the repository's root; its last line of output."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return (out.stdout.strip().splitlines() or [""])[-1]


def _probe(flush_first: bool) -> bool:
    """In a fresh process with 2 intra-op threads: do they all flush?"""
    code = (
        "import torch; from training import numerics; torch.set_num_threads(2)\n"
        f"if {flush_first}: numerics.flush_denormals()\n"
        "torch.ones(1 << 18).mul(2.0)  # starts the intra-op pool\n"
        "numerics.flush_denormals()\n"
        "print(numerics.intra_op_threads_flush())\n"
    )
    return _python(code) == "True"


def _ftz_supported() -> bool:
    return _python("import torch; print(torch.set_flush_denormal(True))", 60) == "True"


def test_flush_to_zero_reaches_only_threads_started_after_it() -> None:
    # why training.fit sets it first thing, and why keep_normal probes before relying on it
    if not _ftz_supported():
        pytest.skip("this CPU has no flush-to-zero for torch to set")
    assert _probe(flush_first=True)
    assert not _probe(flush_first=False)


def _fit_planted(monkeypatch: pytest.MonkeyPatch) -> tuple[IrtModel, torch.optim.Optimizer, dict]:
    """fit_model (the real loop) for 2 epochs on a model with planted dead units; returns the
    trained model, its optimiser and the recipe."""
    seen: dict = {}
    real_build, real_adam = loop.build_model, torch.optim.Adam

    def build(cfg, init=None):
        m = real_build(cfg, init)
        plant_dead_units(m)
        assert n_subnormal(m.parameters()) > 0
        return m

    class Adam(real_adam):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **kw) -> None:
            super().__init__(*a, **kw)
            seen["optim"] = self

    monkeypatch.setattr(loop, "build_model", build)
    monkeypatch.setattr(torch.optim, "Adam", Adam)
    ds, _ = make_synthetic(n_llms=5, n_queries=120, embed_dim=16, seed=2)
    tr, va, _ = random_split_matrices(ds)
    opts = TrainOptions(epochs=2, lr=1e-3, progress=False, device="cpu", patience=9)
    fit = fit_model(SMALL, tr, va, opts)
    return fit.model, seen["optim"], fit.recipe


def _state(optim: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [s for st in optim.state.values() for k, s in st.items() if k != "step"]


def test_training_with_snapping_leaves_no_subnormal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback: an intra-op thread without flush-to-zero (forced here)."""
    monkeypatch.setattr(numerics, "intra_op_threads_flush", lambda: False)
    model, optim, recipe = _fit_planted(monkeypatch)
    assert recipe["numerics"]["mode"] == "snap"
    params = list(model.parameters())
    assert n_subnormal(params) == 0
    assert n_subnormal(_state(optim)) == 0
    assert n_subnormal(p.grad for p in optim.param_groups[0]["params"] if p.grad is not None) == 0
    # snapped, not frozen: the planted dead weights went to zero, live weights stayed normal
    w1 = model.item_net.w1.detach()
    assert (w1[:, :4].abs() <= numerics.TINY).all()
    assert (w1[:, 4:].abs() > 1e-6).float().mean() > 0.99
    assert len(_state(optim)) == 2 * len(params)  # Adam's moments were checked


def test_training_with_flush_to_zero_leaves_no_subnormal() -> None:
    """The rule under `python -m training.fit`: flush-to-zero set before the threads start."""
    if not _ftz_supported():
        pytest.skip("this CPU has no flush-to-zero for torch to set")
    code = (
        "import torch, json\n"
        "from training import numerics\n"
        "numerics.flush_denormals()\n"
        "import tests.test_numerics as t\n"
        "import pytest\n"
        "mp = pytest.MonkeyPatch()\n"
        "model, optim, recipe = t._fit_planted(mp)\n"
        "print(json.dumps({'mode': recipe['numerics']['mode'],\n"
        "  'params': t.n_subnormal(model.parameters()), 'state': t.n_subnormal(t._state(optim)),\n"
        "  'tiny': int((model.item_net.w1.detach()[:, :4].abs() > 1e-37).sum())}))\n"
    )
    res = json.loads(_python(code, 300))
    assert res == {"mode": "flush-to-zero", "params": 0, "state": 0, "tiny": res["tiny"]}


def test_export_writes_no_subnormal(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    plant_dead_units(model)
    with torch.no_grad():
        model.theta[0, 0] = SUBNORMAL
        model.item_net.alpha.weight[0, 0] = -1e-31
    before = n_subnormal(model.parameters())
    assert before > 0
    path = tmp_path / "m.safetensors"
    emb = {"name": "test", "dim": SMALL.embed_dim, "normalize": True}
    save_model(model, path, llm_names=[f"m{i}" for i in range(SMALL.n_llms)], embedder=emb)
    tensors = load_file(str(path))
    for name, a in tensors.items():
        bits = a.view(np.int32)
        assert not (((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)).any(), name
        assert not ((a != 0) & (np.abs(a) <= numerics.TINY)).any(), name
    assert tensors["experts.w1"][0, 5, 0] == model.item_net.w1[0, 5, 0].item() != 0
    assert tensors["experts.w1"][0, 1, 0] == 0  # was 1e-36
    assert n_subnormal(model.parameters()) == before  # the model itself is not changed


def test_a_command_run_in_process_gives_the_thread_its_flag_back() -> None:
    """``training.fit.main`` (and the other training commands) flush subnormals while they run
    and leave the calling thread's arithmetic as it was: a test or notebook that runs them
    in-process must still see subnormal numbers (hypothesis, for one, refuses to run without)."""
    code = (
        "from training import numerics\n"
        "seen = []\n"
        "@numerics.flushing_denormals\n"
        "def main():\n"
        "    seen.append(numerics.this_thread_flushes())\n"
        "assert not numerics.this_thread_flushes()\n"
        "main()\n"
        "assert seen == [True], seen\n"
        "assert not numerics.this_thread_flushes()\n"
        "numerics.flush_denormals()\n"
        "main()\n"
        "assert numerics.this_thread_flushes()  # a caller that flushed keeps flushing\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
