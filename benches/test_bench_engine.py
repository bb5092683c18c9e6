"""Rust engine vs two torch baselines on the same reference-size weights, 2 threads each.

Groups: route at batch 1, 64, 1024, 8192; predict_accuracy over 100,000 queries; plus the
yardsticks (a large torch matmul, a streaming read) timed in the same run. The closing table
(conftest.py) turns the timings into ratios. With --benchmark-disable every contender runs once
on small sizes and the outputs are checked against each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from baselines import matmul_roofline, read_bandwidth
from conftest import record

ROUNDS = {1: 40, 64: 10, 1024: 3, 8192: 1}
N_ACCURACY = 100_000
BLOCK = 8192


def _disabled(benchmark) -> bool:
    return bool(getattr(benchmark, "disabled", False))


def test_yardstick_matmul(benchmark) -> None:
    n = 512 if _disabled(benchmark) else 4096
    a, b = torch.randn(n, n), torch.randn(n, n)
    benchmark.group = "yardstick"
    benchmark.pedantic(torch.mm, args=(a, b), rounds=3 if n > 512 else 1, warmup_rounds=1)
    record(
        benchmark,
        "yardstick",
        "torch_matmul",
        gflops=2 * n**3 / benchmark.stats.stats.min / 1e9 if not _disabled(benchmark) else 0.0,
    )


def test_yardstick_read_bandwidth(benchmark) -> None:
    nbytes = (16 << 20) if _disabled(benchmark) else (512 << 20)
    x = torch.ones(nbytes // 4)
    benchmark.group = "yardstick"
    benchmark.pedantic(x.sum, rounds=10, warmup_rounds=1)
    if not _disabled(benchmark):
        record(
            benchmark, "yardstick", "read_bandwidth", gbps=nbytes / benchmark.stats.stats.min / 1e9
        )


def test_yardsticks_sane() -> None:
    # the helpers themselves (used by the report) give positive, finite numbers
    assert 0 < matmul_roofline(256, 1) < 1e5
    assert 0 < read_bandwidth(8 << 20, 1) < 1e4


@pytest.mark.parametrize("batch", [1, 64, 1024, 8192])
@pytest.mark.parametrize("who", ["rust", "torch_fused", "torch_loop"])
def test_route(benchmark, engine, baselines, queries, batch: int, who: str) -> None:
    group = f"route_b{batch}"
    benchmark.group = group
    b = batch if not _disabled(benchmark) else min(batch, 300)
    x = queries[:b]
    if who == "rust":
        fn = lambda: engine.route(x)  # noqa: E731
    else:
        model, xt = baselines[who], torch.from_numpy(x)
        fn = lambda: model.route(xt)  # noqa: E731
    if _disabled(benchmark):
        out = benchmark(fn)  # runs once when disabled
        ref = engine.predict_proba(x)
        idx = out.indices if who == "rust" else out[0].numpy()
        # every contender picks an LLM within float noise of the best
        assert np.all(ref[np.arange(b), idx] >= ref.max(1) - 1e-5)
        return
    benchmark.pedantic(fn, rounds=ROUNDS[batch], warmup_rounds=1 if batch <= 1024 else 0)
    mf = engine._engine.macs_per_query * 2
    record(
        benchmark,
        group,
        who,
        queries=batch,
        flop=batch * mf,
        weight_bytes=engine._engine.n_weights * 4,
    )


def _stream(queries: np.ndarray, n: int):
    """n queries as blocks (views of one pre-made block: no generation cost, no growth)."""
    done = 0
    while done < n:
        k = min(BLOCK, n - done)
        yield queries[:k]
        done += k


def _torch_accuracy(model, queries: np.ndarray, n: int, chunk: int = 1024) -> np.ndarray:
    s = torch.zeros(model.theta.shape[0], dtype=torch.float64)
    for block in _stream(queries, n):
        xt = torch.from_numpy(block)
        for i in range(0, xt.shape[0], chunk):
            s += model.predict_proba(xt[i : i + chunk]).sum(0, dtype=torch.float64)
    return (s / n).numpy()


@pytest.mark.parametrize("who", ["rust", "torch_fused", "torch_loop"])
def test_predict_accuracy(benchmark, engine, baselines, queries, who: str) -> None:
    group = "predict_accuracy_100000"
    benchmark.group = group
    n = N_ACCURACY if not _disabled(benchmark) else 600
    if who == "rust":
        fn = lambda: engine.predict_accuracy(_stream(queries, n))  # noqa: E731
    else:
        fn = lambda: _torch_accuracy(baselines[who], queries, n)  # noqa: E731
    if _disabled(benchmark):
        got = benchmark(fn)
        want = engine.predict_proba(queries[:n]).astype(np.float64).mean(0)
        vals = np.array(list(got.values())) if isinstance(got, dict) else got
        np.testing.assert_allclose(vals, want, atol=1e-5)
        return
    benchmark.pedantic(fn, rounds=1, warmup_rounds=0)
    record(benchmark, group, who, queries=n, flop=n * engine._engine.macs_per_query * 2)


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_predict_accuracy_memory_is_bounded(benchmark, engine, queries) -> None:
    """Peak RSS growth of a streamed predict_accuracy does not grow with the number of queries."""
    benchmark.group = "memory"
    small, large = (2_000, 20_000) if _disabled(benchmark) else (10_000, 100_000)

    def peak_growth(n: int) -> float:
        engine.predict_accuracy(_stream(queries, 4096))  # warm the allocator
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
        before = _rss_mb("VmRSS")
        engine.predict_accuracy(_stream(queries, n))
        return _rss_mb("VmHWM") - before

    a, b = peak_growth(small), peak_growth(large)
    benchmark.pedantic(lambda: None, rounds=1)
    if not _disabled(benchmark):
        record(
            benchmark,
            "memory",
            "predict_accuracy",
            small_n=small,
            large_n=large,
            small_mb=a,
            large_mb=b,
        )
    # 10× the queries may not need more than a little extra memory (allocator noise)
    assert b <= a + 64, (a, b)


@pytest.fixture(scope="session")
def top2_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference sizes with top-2 of the 39 routed experts (sparse mixture)."""
    from training.export import save_model
    from training.model import IrtNetConfig, build_model

    torch.manual_seed(0)
    cfg = IrtNetConfig(n_llms=29, top_k=2)
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("bench_top2") / "top2.safetensors"
    names = [f"llm-{i:02d}" for i in range(cfg.n_llms)]
    save_model(model, path, llm_names=names, embedder={"name": "x", "dim": 768, "normalize": True})
    return path


@pytest.mark.parametrize("who", ["rust_top2", "torch_fused_top2"])
def test_route_sparse_top2(benchmark, top2_path, queries, who: str) -> None:
    """Sparse top-k mode: the engine computes only the selected experts; torch's fused module
    computes all of them and masks. Compare with route_b1024 (dense) for the speed-up."""
    from baselines import Fused

    import irt_fast

    group = "route_b1024_top2"
    benchmark.group = group
    b = 1024 if not _disabled(benchmark) else 200
    x = queries[:b]
    eng = irt_fast.load(top2_path, threads=2)
    if who == "rust_top2":
        fn = lambda: eng.route(x)  # noqa: E731
    else:
        model, xt = Fused(top2_path), torch.from_numpy(x)
        fn = lambda: model.route(xt)  # noqa: E731
    if _disabled(benchmark):
        out = benchmark(fn)
        ref = eng.predict_proba(x)
        idx = out.indices if who == "rust_top2" else out[0].numpy()
        assert np.all(ref[np.arange(b), idx] >= ref.max(1) - 1e-5)
        return
    benchmark.pedantic(fn, rounds=3, warmup_rounds=1)
    # no FLOP figure: the work depends on the selection; compare queries/s with route_b1024
    record(benchmark, group, who.removesuffix("_top2"), queries=b)
