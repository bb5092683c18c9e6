"""sentence-transformers encoder (needs torch): local directories, or a hub id on request.

Loads never run code from the model directory (``trust_remote_code=False``) and never touch the
network for a local directory (``local_files_only=True``); a hub id is downloaded only when the
user passed it and ``HF_HUB_OFFLINE`` is not set.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .base import check_texts


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class StEncoder:
    """``encode(texts, batch_size)`` -> float32 ``[n, dim]`` with a SentenceTransformer."""

    def __init__(
        self, target: str | os.PathLike[str], *, device: str | None = None, local: bool = True
    ) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise EmbedderError(
                f"embedding texts needs sentence-transformers, which is not importable ({e}); "
                "pip install 'irt_fast[text]' (or pip install sentence-transformers)"
            ) from e
        target = os.fspath(target)
        if local:
            _check_modules(Path(target))
        try:
            self._m = SentenceTransformer(
                target,
                device=device,
                local_files_only=local or offline(),
                trust_remote_code=False,
            )
        except Exception as e:  # the hub client raises many unrelated types
            raise EmbedderError(
                f"cannot load embedder {target!r}: {type(e).__name__}: {e}. {_hint(local)}"
            ) from e
        dim = (
            self._m.get_embedding_dimension()
            if hasattr(self._m, "get_embedding_dimension")
            else self._m.get_sentence_embedding_dimension()
        )
        self.path = Path(target) if local else None
        self.name = Path(target).name if local else target
        self.dim = int(dim)
        self.normalize = _has_normalize(Path(target)) if local else False

    def __repr__(self) -> str:
        return f"StEncoder({self.name!r}, dim={self.dim})"

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        check_texts(texts)
        v = self._m.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(v, dtype=np.float32).reshape(len(texts), self.dim)


def _check_modules(path: Path) -> None:
    """Refuse a directory whose ``modules.json`` names a class outside sentence_transformers:
    loading it would import code from the directory or from another package. (>= 6.0 refuses it
    too; this also holds if an older sentence-transformers is installed.)"""
    try:
        modules = json.loads((path / "modules.json").read_text())
    except FileNotFoundError:
        return  # not a sentence-transformers directory: the load below says so
    except (OSError, ValueError) as e:
        raise EmbedderError(f"{path / 'modules.json'} is not readable JSON: {e}") from e
    if not isinstance(modules, list):
        raise EmbedderError(f"{path / 'modules.json'}: expected a list of modules")
    for m in modules:
        t = m.get("type") if isinstance(m, dict) else None
        if not isinstance(t, str) or not t.startswith("sentence_transformers."):
            raise EmbedderError(
                f"{path / 'modules.json'} names module type {t!r}, which is not part of "
                "sentence-transformers; irt_fast never runs code from a model directory"
            )


def _has_normalize(path: Path) -> bool:
    try:
        modules = json.loads((path / "modules.json").read_text())
        return any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def _hint(local: bool) -> str:
    if local:
        return "it is not a loadable sentence-transformers model directory"
    if offline():
        return (
            "HF_HUB_OFFLINE is set, so downloading from the Hugging Face hub is impossible; "
            "pass a local model directory instead (e.g. "
            "irt_fast.embed.packaged_model_path('all-MiniLM-L6-v2'))"
        )
    return (
        "the name is neither a local directory nor a downloadable hub model; offline, "
        "pass a local model directory instead (e.g. "
        "irt_fast.embed.packaged_model_path('all-MiniLM-L6-v2'))"
    )
