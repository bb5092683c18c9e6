"""Helpers shared by the engine tests: weights files written with numpy only (no torch), so the
error paths can be exercised byte by byte. (No tests here.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

SMALL = {
    "method": "irtnet",
    "embed_dim": 24,
    "d": 6,
    "n_llms": 4,
    "llm_bias": True,
    "hidden_dim": 16,
    "expert_dim": 8,
    "n_shared": 1,
    "n_routed": 3,
    "top_k": 3,
}


def config(**changes: Any) -> dict[str, Any]:
    return {**SMALL, **changes}


def shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of docs/format.md for a config."""
    dm, d, n = cfg["embed_dim"], cfg["d"], cfg["n_llms"]
    if cfg["method"] == "irtnet":
        e, h, o, r = (
            cfg["n_shared"] + cfg["n_routed"],
            cfg["hidden_dim"],
            cfg["expert_dim"],
            cfg["n_routed"],
        )
        s = {
            "experts.w1": (e, h, dm),
            "experts.b1": (e, h),
            "experts.w2": (e, o, h),
            "experts.b2": (e, o),
            "alpha.weight": (d, o),
            "alpha.bias": (d,),
            "beta.weight": (1, o),
            "beta.bias": (1,),
        }
        if r:
            s |= {"gate.weight": (r, dm), "gate.bias": (r,), "gate.selection_bias": (r,)}
    elif cfg["method"] == "mf":
        s = {"proj.weight": (d, dm), "proj.bias": (d,), "out.weight": (1, d), "out.bias": (1,)}
    else:
        h = cfg["hidden_dim"]
        s = {"mlp.w1": (h, dm), "mlp.b1": (h,), "mlp.w2": (d, h), "mlp.b2": (d,)}
    s["theta"] = (n, d)
    if cfg["llm_bias"]:
        s["llm_bias"] = (n,)
    return s


def random_tensors(cfg: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        k: (rng.standard_normal(v) * (1.0 if k == "theta" else 0.3)).astype(np.float32)
        for k, v in shapes(cfg).items()
    }


def metadata(cfg: dict[str, Any], **changes: str) -> dict[str, str]:
    meta = {
        "format": "irt_fast",
        "format_version": "1",
        "config": json.dumps(cfg),
        "llm_names": json.dumps([f"llm-{i}" for i in range(cfg["n_llms"])]),
        "embedder": json.dumps(
            {"name": "test-embedder", "dim": cfg["embed_dim"], "normalize": True}
        ),
    }
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


def write(
    path: Path,
    cfg: dict[str, Any] | None = None,
    tensors: dict[str, np.ndarray] | None = None,
    **meta_changes: Any,
) -> Path:
    cfg = cfg or config()
    tensors = random_tensors(cfg) if tensors is None else tensors
    save_file(tensors, str(path), metadata=metadata(cfg, **meta_changes))
    return path


def numpy_proba(cfg: dict[str, Any], t: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """docs/format.md's function in float64 numpy: the spec, independent of torch and Rust."""
    x = x.astype(np.float64)
    t = {k: v.astype(np.float64) for k, v in t.items()}
    if cfg["method"] == "irtnet":
        ns, nr, k = cfg["n_shared"], cfg["n_routed"], cfg["top_k"]
        h1 = np.maximum(np.einsum("ehd,bd->beh", t["experts.w1"], x) + t["experts.b1"], 0)
        out = np.einsum("eoh,beh->beo", t["experts.w2"], h1) + t["experts.b2"]
        h = out[:, :ns].sum(1)
        if nr:
            g = x @ t["gate.weight"].T + t["gate.bias"]
            key = g + t["gate.selection_bias"]
            w = np.zeros_like(g)
            for i in range(len(x)):
                sel = np.argsort(-key[i], kind="stable")[:k]
                e = np.exp(g[i, sel] - g[i, sel].max())
                w[i, sel] = e / e.sum()
            h = h + np.einsum("br,bro->bo", w, out[:, ns:])
        alpha = h @ t["alpha.weight"].T + t["alpha.bias"]
        beta = (h @ t["beta.weight"].T + t["beta.bias"])[:, 0]
    elif cfg["method"] == "mf":
        alpha = (x @ t["proj.weight"].T + t["proj.bias"]) * t["out.weight"][0]
        beta = -t["out.bias"][0] * np.ones(len(x))
    else:
        b = np.maximum(x @ t["mlp.w1"].T + t["mlp.b1"], 0) @ t["mlp.w2"].T + t["mlp.b2"]
        beta = np.linalg.norm(b, axis=1)
        alpha = b / np.maximum(beta, 1e-12)[:, None]
    z = alpha @ t["theta"].T - beta[:, None]
    if cfg["llm_bias"]:
        z = z + t["llm_bias"]
    return 1 / (1 + np.exp(-z))
