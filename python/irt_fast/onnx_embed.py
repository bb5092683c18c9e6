"""Old import name of :mod:`irt_fast.embedders.onnx` (the ONNX Runtime encoder)."""

from __future__ import annotations

import os

from .embedders.onnx import KIND, OnnxEmbedder, export_onnx, is_onnx_dir, quantize_int8
from .embedders.registry import local_dir

__all__ = ["KIND", "OnnxEmbedder", "export_onnx", "is_onnx_dir", "load_embedder", "quantize_int8"]


def load_embedder(name_or_path: str | os.PathLike[str], **kw: object) -> OnnxEmbedder:
    """Load an ONNX embedder by id (resolved in the models dir) or path."""
    return OnnxEmbedder(local_dir(name_or_path), **kw)  # type: ignore[arg-type]
