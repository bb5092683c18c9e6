"""Write and read the irt_fast weights file (docs/format.md) from torch.

Format v2 adds, for onboarding new LLMs later without torch: ``llm_info`` (every
exported LLM is "trained", with the number of training answers it was fitted from when the
caller gives it) and the population prior over (θ, b), tensors ``prior.mean`` / ``prior.cov``
(``irt_fast.onboard.prior.Prior.from_population`` of the exported rows). v1 files still read.

``save_model`` writes atomically: a temporary file in the target directory, fsync, rename. An
interrupted export never leaves a half-written file under the final name. It writes no
subnormal value: every ``|x| <= training.numerics.TINY`` (1e-30) is written as 0, a change far
below float32 resolution that keeps readers' arithmetic at full speed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from irt_fast._atomic import atomic_write
from irt_fast.errors import WeightsFormatError
from training.model import IrtModel, IrtNetConfig, build_model
from training.numerics import TINY

__all__ = ["atomic_write", "build_metadata", "load_torch", "read_metadata", "save_model"]

FORMAT = "irt_fast"
FORMAT_VERSION = "2"
READ_VERSIONS = ("1", "2")


def build_metadata(
    cfg: IrtNetConfig,
    llm_names: list[str],
    embedder: dict[str, Any],
    training: dict[str, Any] | None = None,
    n_answers: Sequence[int] | None = None,
) -> dict[str, str]:
    if len(llm_names) != cfg.n_llms:
        raise ValueError(f"{len(llm_names)} LLM names for a model of {cfg.n_llms} LLMs")
    if len(set(llm_names)) != len(llm_names):
        raise ValueError("LLM names must be unique")
    if int(embedder.get("dim", -1)) != cfg.embed_dim:
        raise ValueError(
            f"embedder dim {embedder.get('dim')} does not match embed_dim {cfg.embed_dim}"
        )
    emb = {
        "name": str(embedder["name"]),
        "dim": int(embedder["dim"]),
        "normalize": bool(embedder.get("normalize", True)),
    }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(cfg.to_json()),
        "llm_names": json.dumps(list(llm_names)),
        "embedder": json.dumps(emb),
    }
    if n_answers is not None and len(n_answers) != len(llm_names):
        raise ValueError(f"{len(n_answers)} answer counts for {len(llm_names)} LLMs")
    meta["llm_info"] = json.dumps(
        [
            {
                "name": n,
                "origin": "trained",
                "n_answers": None if n_answers is None else int(n_answers[i]),
            }
            for i, n in enumerate(llm_names)
        ]
    )
    if training is not None:
        meta["training"] = json.dumps(training, default=str)
    return meta


def prior_tensors(model: IrtModel) -> dict[str, torch.Tensor]:
    """``prior.mean`` [p], ``prior.cov`` [p, p] (float32): the population prior of the
    model's (trained) LLMs, p = d + 1 with offsets, else d."""
    from irt_fast.onboard.prior import Prior

    theta = model.theta.detach().to("cpu", torch.float64).numpy()
    bias = None
    if model.llm_bias is not None:
        bias = model.llm_bias.detach().to("cpu", torch.float64).numpy()
    prior = Prior.from_population(theta, bias)
    return {
        "prior.mean": torch.from_numpy(prior.mean).float().contiguous(),
        "prior.cov": torch.from_numpy(prior.cov).float().contiguous(),
    }


def save_model(
    model: IrtModel,
    path: str | os.PathLike[str],
    *,
    llm_names: list[str],
    embedder: dict[str, Any],
    training: dict[str, Any] | None = None,
    n_answers: Sequence[int] | None = None,
) -> Path:
    """Export ``model`` (any method) to one safetensors file, atomically (format v2), with
    values ``|x| <= 1e-30`` written as 0 (no subnormal in the file; the model is unchanged).

    ``n_answers``: training answers per LLM (``llm_info``; null when not given)."""
    meta = build_metadata(model.cfg, llm_names, embedder, training, n_answers)
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous()
        for k, v in model.export_tensors().items()
    }
    if model.cfg.n_llms >= 2:  # a single LLM has no population; readers fall back
        tensors.update(prior_tensors(model))
    # No subnormal value leaves: they make x86 arithmetic slow in any reader (training.numerics)
    tensors = {k: torch.nn.functional.hardshrink(t, TINY) for k, t in tensors.items()}
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise ValueError(f"refusing to export: tensor {name!r} holds NaN or Inf")
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``__metadata__`` of a weights file (config as IrtNetConfig)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise WeightsFormatError(f"{path}: not a readable safetensors file ({exc})") from exc
    if raw.get("format") != FORMAT:
        raise WeightsFormatError(
            f"{path}: not an irt_fast weights file (format={raw.get('format')!r})"
        )
    if raw.get("format_version") not in READ_VERSIONS:
        raise WeightsFormatError(
            f"{path}: format version {raw.get('format_version')!r}, this reader supports "
            f"{', '.join(READ_VERSIONS)}"
        )
    try:
        return {
            "config": IrtNetConfig.from_json(json.loads(raw["config"])),
            "llm_names": json.loads(raw["llm_names"]),
            "embedder": json.loads(raw["embedder"]),
            "training": json.loads(raw["training"]) if "training" in raw else None,
            "llm_info": json.loads(raw["llm_info"]) if "llm_info" in raw else None,
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise WeightsFormatError(f"{path}: bad metadata ({exc})") from exc


def load_torch(
    path: str | os.PathLike[str], device: str = "cpu"
) -> tuple[IrtModel, dict[str, Any]]:
    """Rebuild the torch model from a weights file; returns (model in eval mode, metadata)."""
    meta = read_metadata(path)
    model = build_model(meta["config"])
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise WeightsFormatError(f"{path}: cannot read tensors ({exc})") from exc
    try:
        model.load_exported(tensors)
    except (KeyError, ValueError) as exc:
        raise WeightsFormatError(f"{path}: {exc}") from exc
    return model.to(device).eval(), meta
