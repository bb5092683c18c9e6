"""The embedders: one registry that turns a name or path into an encoder, once.

- :mod:`.registry`: the ids irt_fast builds, the models directory, :func:`resolve` (name ->
  :class:`Spec`, with a strict mode for names read from weights files) and :func:`load`
  (Spec -> encoder);
- :mod:`.st`, :mod:`.onnx`, :mod:`.static`: the encoders (sentence-transformers; ONNX Runtime;
  model2vec static table), one interface (:mod:`.base`);
- :mod:`.build`: builds the offline models (``irt-fast models setup``);
- :mod:`.cache`: the on-disk embedding cache used by :mod:`irt_fast.embed`.

Importing this package imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from .base import MARKER, Encoder, check_texts, dim_of
from .registry import (
    ALL_EMBEDDERS,
    Spec,
    is_known_id,
    kind_of,
    load,
    load_local,
    local_dir,
    models_dir,
    packaged_model_path,
    resolve,
)

__all__ = [
    "ALL_EMBEDDERS",
    "MARKER",
    "Encoder",
    "Spec",
    "check_texts",
    "dim_of",
    "is_known_id",
    "kind_of",
    "load",
    "load_local",
    "local_dir",
    "models_dir",
    "packaged_model_path",
    "resolve",
]
