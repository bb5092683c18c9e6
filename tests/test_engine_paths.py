"""Every product path of the engine against torch, and its invariance to batch size and threads.

The engine takes the panel GEMV kernel up to 16 rows, the GEMM crate above, splits columns over
threads below 2 × 192 rows and rows above, and stores the big matrices in f32 or bf16
(``irt_fast.load(path, dtype=...)``). bf16 is checked two ways: against torch run on the same
bf16-rounded weights (the only difference is then f32 summation order: 1e-5), and against the
exact f32 model within the stated accuracy cost (max |ΔP| below 0.02 on these models). On a CPU
with AVX512_BF16 bf16 runs the dot-product kernel, which rounds the products' activations too:
the torch reference then rounds them at the same places (``_bf16_rounded(activations=True)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_parity import export  # noqa: E402

import irt_fast  # noqa: E402
from irt_fast.errors import InputError  # noqa: E402
from training.model import IrtNetConfig  # noqa: E402

# Experts wider than one 64-column panel and not a multiple of it (padding), several k blocks.
MID = dict(embed_dim=200, d=20, n_llms=9, hidden_dim=80, expert_dim=70)
CONFIGS = {
    "dense": dict(MID, n_shared=1, n_routed=5),
    "top2": dict(MID, n_shared=1, n_routed=6, top_k=2),
    "mf": dict(MID, method="mf"),
    "jeirt": dict(MID, method="jeirt"),
}
# both sides of the GEMV/GEMM switch (16) and of the column/row split (2 threads × 192)
BATCHES = (1, 2, 3, 5, 16, 17, 64, 383, 384, 700)
BF16_KEYS = ("experts.w1", "experts.w2", "proj.weight", "mlp.w1", "mlp.w2")


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def exported(request, tmp_path_factory) -> tuple[str, Path, torch.nn.Module]:
    name = request.param
    path = tmp_path_factory.mktemp(name) / "m.safetensors"
    model = export(path, IrtNetConfig(**CONFIGS[name]), seed=3)
    return name, path, model


def _queries(b: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, dim)).astype(np.float32)


def _bf16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).to(torch.float32)


def _bf16_rounded(model: torch.nn.Module, activations: bool = False) -> torch.nn.Module:
    """The same model with the matrices the engine stores in bf16 rounded to bf16, and with
    ``activations``, their inputs too, as the AVX512_BF16 kernel rounds them: the query for
    the first layers, the gate-weighted hidden units for the second (f32 sums throughout)."""
    import copy
    import types

    m = copy.deepcopy(model)
    t = {k: v.detach().clone() for k, v in m.export_tensors().items()}
    for k in BF16_KEYS:
        if k in t:
            t[k] = _bf16(t[k])
    m.load_exported(t)
    if activations:
        net = m.item_net
        if hasattr(net, "w1"):
            net.hidden = types.MethodType(_hidden_rounded, net)
        for name in ("proj", "l1", "l2"):  # MF's and JE-IRT's packed layers
            if hasattr(net, name):
                getattr(net, name).register_forward_pre_hook(lambda _, a: (_bf16(a[0]),))
    return m.eval()


def _hidden_rounded(net, v: torch.Tensor, share: object = None) -> torch.Tensor:
    """MoEItemNet.hidden in the engine's order: gate weight on the hidden units, then the
    second layer, the bf16 kernel's roundings at both products' inputs (eval mode: no dropout,
    so the batch share is not needed)."""
    e, hdim = net.w1.shape[0], net.w1.shape[1]
    h1 = torch.relu(torch.addmm(net.b1.reshape(-1), _bf16(v), net.w1.reshape(e * hdim, -1).t()))
    w = torch.ones(v.shape[0], e)
    if net.cfg.n_routed > 0:
        w[:, net.cfg.n_shared :] = net.gate_weights(v)
    h1 = _bf16(h1.reshape(-1, e, hdim) * w[:, :, None]).transpose(0, 1)  # [E, B, H]
    out = torch.bmm(h1, net.w2.transpose(1, 2))  # [E, B, O]
    return out.sum(0) + w @ net.b2


def _torch_proba(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.predict_proba(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_every_path_matches_torch(exported, dtype: str) -> None:
    name, path, model = exported
    native = dtype == "bf16" and irt_fast.load(path, dtype=dtype).kernel == "avx512bf16"
    ref = model if dtype == "f32" else _bf16_rounded(model, activations=native)
    # The bf16 dot-product kernel rounds activations: a hidden unit whose f32 sum differs from
    # torch's in its last bit can round to the neighbouring bf16 value (2^-8 apart), which
    # moves a few P by up to ~5e-4; all the others agree to f32 summation order.
    tol, most = (1e-3, 1e-5) if native else (1e-5, 1e-5)
    dim = CONFIGS[name]["embed_dim"]
    for threads in (1, 2):
        m = irt_fast.load(path, threads=threads, dtype=dtype)
        for b in BATCHES:
            x = _queries(b, dim, seed=b)
            err = np.abs(m.predict_proba(x) - _torch_proba(ref, x))
            assert err.max() <= tol, f"{name} {dtype} threads={threads} batch {b}: {err.max()}"
            assert np.quantile(err, 0.99) <= most, f"{name} {dtype} batch {b}: 1% above {most}"


def test_bf16_accuracy_cost_is_bounded(exported) -> None:
    name, path, _ = exported
    dim = CONFIGS[name]["embed_dim"]
    x = _queries(2000, dim, seed=7)
    p32 = irt_fast.load(path, dtype="f32").predict_proba(x)
    p16 = irt_fast.load(path, dtype="bf16").predict_proba(x)
    dp = np.abs(p16 - p32).max()
    assert 0 < dp <= 0.02, f"{name}: max |ΔP| = {dp}"  # > 0: the weights really are rounded
    same = (p16.argmax(1) == p32.argmax(1)).mean()
    assert same >= 0.95, f"{name}: {same:.3f} identical routing decisions"


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.integers(0, 699), min_size=1, max_size=40),
    threads=st.integers(1, 3),
    dtype=st.sampled_from(["f32", "bf16"]),
)
def test_rows_do_not_depend_on_batch_or_threads(exported, rows, threads, dtype) -> None:
    """A query's P is the same (to f32 rounding) whatever batch it comes in and on any threads."""
    name, path, _ = exported
    x = _queries(700, CONFIGS[name]["embed_dim"], seed=11)
    full = _load(path, 2, dtype).predict_proba(x)
    got = _load(path, threads, dtype).predict_proba(x[rows])
    np.testing.assert_allclose(got, full[rows], atol=2e-6, rtol=0)


_loaded: dict[tuple, irt_fast.Model] = {}


def _load(path: Path, threads: int, dtype: str) -> irt_fast.Model:
    key = (str(path), threads, dtype)
    if key not in _loaded:
        _loaded[key] = irt_fast.load(path, threads=threads, dtype=dtype)
    return _loaded[key]


def test_dtype_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    export(path, IrtNetConfig(**CONFIGS["dense"]), seed=0)
    for ok in ("f32", "float32", "bf16", "bfloat16"):
        irt_fast.load(path, dtype=ok)
    for bad in ("f16", "int8", "", 16):
        with pytest.raises(InputError, match="dtype"):
            irt_fast.load(path, dtype=bad)
