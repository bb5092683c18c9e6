"""Old import name of :mod:`irt_fast.embedders.static` (the model2vec static encoder)."""

from __future__ import annotations

import os

from .embedders.registry import local_dir
from .embedders.static import KIND, StaticEmbedder, distill, is_static_dir

__all__ = ["KIND", "StaticEmbedder", "distill", "is_static_dir", "load_embedder"]


def load_embedder(name_or_path: str | os.PathLike[str]) -> StaticEmbedder:
    """Load a static embedder by id (resolved in the models dir) or path."""
    return StaticEmbedder(local_dir(name_or_path))
