"""One contender of the engine report, timed in a process of its own (run by engine_report.py).

    python benches/_contender.py WHO MODEL_PATH BATCHES REPS  → one JSON line on stdout

WHO is ``rust:<dtype>`` (the Rust engine through the public ``Model.route``; ``rust:bf16-widen``
is bf16 with the AVX512_BF16 kernel turned off, ``IRT_FAST_BF16_KERNEL=widen``), ``torch_fused``,
``torch_fused_bf16`` (the same in bfloat16 under ``torch.inference_mode``),
``torch_bf16_prepacked`` (``baselines.FusedBf16``: bf16 weights prepacked for oneDNN),
``torch_loop`` or
``yardsticks`` (torch/numpy GEMM GFLOP/s and a streaming read). A Rust
contender's process never imports torch, and a torch contender's never starts the engine's rayon
pool, so no contender is timed while another's threads spin. Each batch size is warmed up once,
then timed REPS times (min and median); the input rows differ between repetitions' batches only
by a cyclic shift of one pre-made, normalised query block (no generation cost in the timing).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

THREADS = 2
EMBED_DIM = 768
#: Share of the expert weights made subnormal in the "dense_subnormal" model (as in the GEMM
#: that took 86× longer on an Intel Xeon: 20% subnormal weights).
SUBNORMAL_SHARE = 0.2


def queries(n: int, dim: int = EMBED_DIM) -> np.ndarray:
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _time(fn, reps: int) -> dict[str, float]:
    fn()  # warm-up: first-touch of buffers, lazy initialisation
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return {"min": min(ts), "median": float(np.median(ts)), "n": len(ts)}


def _reps(base: int, batch: int) -> int:
    # same total work per batch size, within [2, base]
    return max(2, min(base, base * 64 // max(batch, 1)))


def run_rust(dtype: str, path: str, batches: list[int], reps: int) -> dict:
    if dtype.endswith("-widen"):
        # read once by the engine, before its first load
        os.environ["IRT_FAST_BF16_KERNEL"] = "widen"
        dtype = dtype.removesuffix("-widen")
    import irt_fast

    kwargs = {} if dtype == "f32" else {"dtype": dtype}
    try:
        model = irt_fast.load(path, threads=THREADS, **kwargs)
    except TypeError as e:  # an engine without the dtype option
        return {"error": f"irt_fast.load does not take dtype: {e}"}
    x = queries(max(batches))
    out = {"weight_bytes": _weight_bytes(model, dtype), "times": {}}
    out["kernel"] = getattr(model._engine, "kernel", "unknown")
    out["flushed_subnormals"] = getattr(model, "flushed_subnormals", None)
    for b in batches:
        xb = x[:b]
        out["times"][b] = _time(lambda xb=xb: model.route(xb), _reps(reps, b))
    return out


def _weight_bytes(model, dtype: str) -> int:
    eng = model._engine
    if hasattr(eng, "weight_bytes"):
        return int(eng.weight_bytes)
    return int(eng.n_weights) * (2 if dtype in ("bf16", "f16") else 4)


def run_torch(who: str, path: str, batches: list[int], reps: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from baselines import Fused, FusedBf16, RefLoop

    x = torch.from_numpy(queries(max(batches)))
    out: dict = {"times": {}}
    if who in ("torch_fused_bf16", "torch_bf16_prepacked"):
        # torch in bf16: every weight bf16 (oneDNN's bf16 GEMMs, with AVX512_BF16 or AMX where
        # the CPU has them), no autograd bookkeeping at all; plain tensors, or prepacked
        if who == "torch_fused_bf16":
            model = Fused(path).to_dtype(torch.bfloat16)
        else:
            import warnings

            warnings.simplefilter("ignore", FutureWarning)  # torch.utils.mkldnn's jit use
            model = FusedBf16(path)
            if not model.prepacked:
                return {"error": "this torch cannot prepack bf16 weights (torch.utils.mkldnn)"}
        x = x.to(torch.bfloat16)
        with torch.inference_mode():
            for b in batches:
                xb = x[:b]
                out["times"][b] = _time(lambda xb=xb: model.route(xb), _reps(reps, b))
        return out
    model = (Fused if who == "torch_fused" else RefLoop)(path)
    for b in batches:
        xb = x[:b]
        out["times"][b] = _time(lambda xb=xb: model.route(xb), _reps(reps, b))
    return out


def run_yardsticks() -> dict:
    """fp32 GEMM GFLOP/s (torch and numpy, 2 threads) and streaming-read GB/s (torch sum)."""
    import torch

    torch.set_num_threads(THREADS)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    t_mm = _time(lambda: torch.mm(a, b), 5)["min"]
    an, bn = a.numpy(), b.numpy()
    t_np = _time(lambda: an @ bn, 5)["min"]
    nbytes = 512 << 20
    buf = torch.ones(nbytes // 4)
    t_rd = _time(buf.sum, 10)["min"]
    return {
        "torch_gemm_gflops": 2 * n**3 / t_mm / 1e9,
        "numpy_gemm_gflops": 2 * n**3 / t_np / 1e9,
        "read_gbps": nbytes / t_rd / 1e9,
    }


def run_text(path: str, reps: int) -> dict:
    """Strings → the model's embedder → engine → decision, one text per call, public route()."""
    import irt_fast

    model = irt_fast.load(path, threads=THREADS)
    words = "the of a which energy court price cell enzyme theorem market law force".split()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(8, 60)))) + "?" for _ in range(256)]
    model.route([texts[0]])  # load the embedder
    i = iter(range(10**9))
    t = _time(lambda: model.route([texts[next(i) % len(texts)]]), reps)
    return {"times": {1: t}}


def make_models(out_dir: str) -> dict:
    """Reference-size IrtNets (random weights: speed does not depend on their values): dense,
    top-2 of 39, and a top-2 256-wide one (the recommended production configuration) for the
    m2v text path when that embedder is built."""
    import torch

    from training.export import save_model
    from training.model import IrtNetConfig, build_model
    from training.numerics import plant_subnormals

    out, paths = Path(out_dir), {}
    names = [f"llm-{i:02d}" for i in range(29)]
    specs = {"dense": ({}, "x", 768), "top2": ({"top_k": 2}, "x", 768)}
    text_embedder = "m2v-mpnet-256"
    try:
        from irt_fast import embedders

        if embedders.kind_of(embedders.local_dir(text_embedder)) is not None:
            specs["text"] = ({"embed_dim": 256, "top_k": 2}, text_embedder, 256)
    except Exception as e:  # noqa: BLE001 - any failure only means: no text row
        paths["text_error"] = f"{text_embedder} not available ({e})"
    for key, (kw, emb, dim) in specs.items():
        torch.manual_seed(0)
        model = build_model(IrtNetConfig(n_llms=29, **kw)).eval()
        p = out / f"{key}.safetensors"
        save_model(model, p, llm_names=names, embedder={"name": emb, "dim": dim, "normalize": True})
        paths[key] = str(p)
    # the dense file with a share of its expert weights subnormal, as a file from elsewhere
    sub = out / "dense_subnormal.safetensors"
    paths["n_subnormal"] = plant_subnormals(paths["dense"], sub, SUBNORMAL_SHARE, seed=1)
    paths["dense_subnormal"] = str(sub)
    paths["subnormal_share"] = SUBNORMAL_SHARE
    return paths


def main(argv: list[str]) -> None:
    who = argv[0]
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    if who == "make_models":
        res = make_models(argv[1])
    elif who == "yardsticks":
        res = run_yardsticks()
    elif who == "text":
        res = run_text(argv[1], int(argv[2]))
    else:
        path, batches, reps = argv[1], [int(b) for b in argv[2].split(",")], int(argv[3])
        if who.startswith("rust:"):
            res = run_rust(who.split(":", 1)[1], path, batches, reps)
        else:
            res = run_torch(who, path, batches, reps)
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:])
