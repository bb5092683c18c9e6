"""Text -> embedding: batches texts through an encoder and caches the vectors on disk, so
nothing is embedded twice.

Which encoder a name means is decided once by :mod:`irt_fast.embedders` (the registry); the
cache lives in :mod:`irt_fast.embedders.cache`. sentence-transformers (and so torch) is imported
only when such a model must actually be loaded: a fully cached call never imports it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .embedders import cache as _cache
from .embedders.base import Encoder, check_texts, dim_of
from .embedders.cache import EmbeddingCache, cache_root, text_keys
from .embedders.registry import ONNX, STATIC, Spec, load, packaged_model_path, resolve
from .errors import EmbedderError

if TYPE_CHECKING:
    from .data import Dataset

__all__ = [
    "DEFAULT_EMBEDDER",
    "EmbeddingCache",
    "cache_root",
    "embed_dataset",
    "embed_stats",
    "embed_texts",
    "embedder_info",
    "packaged_model_path",
    "text_keys",
]

DEFAULT_EMBEDDER = "sentence-transformers/all-mpnet-base-v2"

_MODELS: dict[tuple[str, str | None], Any] = {}  # (target, device) -> loaded encoder
_LOCK = threading.Lock()
_STATS = {"model_loads": 0, "texts_embedded": 0, "cache_hits": 0}


def embed_stats() -> dict[str, int]:
    """Process-wide counters: models loaded, texts run through a model, texts served from cache."""
    return dict(_STATS)


def _encoder(spec: Spec, device: str | None) -> Any:
    key = (spec.target, device)
    with _LOCK:
        if key in _MODELS:
            return _MODELS[key]
    enc = load(spec, device=device)  # outside the lock: loading can take seconds
    with _LOCK:
        _STATS["model_loads"] += 1
        return _MODELS.setdefault(key, enc)


def _object_identity(enc: Any) -> str:
    name = getattr(enc, "name", None)
    if not isinstance(name, str) or not name:
        raise EmbedderError(f"encoder object {enc!r} needs a non-empty str `name` to key its cache")
    return "object:" + name


def embedder_info(
    embedder: str | os.PathLike[str] | Encoder = DEFAULT_EMBEDDER,
    *,
    normalize: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """``{"name", "dim", "normalize"}`` for the weights metadata. ``name`` is the embedder's
    identity: a built id, a hub id (bare names get the ``sentence-transformers/`` prefix) or
    ``local:<absolute path>``. Loads the model (once per process)."""
    if not isinstance(embedder, str | os.PathLike):
        return {"name": _object_identity(embedder), "dim": dim_of(embedder), "normalize": normalize}
    spec = resolve(embedder)
    return {"name": spec.identity, "dim": dim_of(_encoder(spec, device)), "normalize": normalize}


def embed_texts(
    texts: Sequence[str] | Iterable[str],
    embedder: str | os.PathLike[str] | Encoder = DEFAULT_EMBEDDER,
    *,
    batch_size: int = 64,
    normalize: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool | None = None,
    progress: bool = True,
    device: str | None = None,
    from_file: bool = False,
) -> np.ndarray:
    """Embed ``texts`` (float32 ``[n, dim]``, C-contiguous, row i = texts[i]).

    Args:
        embedder: an embedder id (see :mod:`irt_fast.embedders`), a hub id
            (``all-mpnet-base-v2`` means ``sentence-transformers/...``), a local directory, or
            an object with ``encode`` and ``name``.
        normalize: L2-normalise the vectors (part of the cache key).
        cache_dir: cache root (default ``$IRT_FAST_CACHE`` or ``~/.cache/irt_fast``).
        use_cache: False embeds everything and writes nothing. None (default) caches, except
            for the torch-free static and ONNX embedders: they embed a text faster than the
            cache can look it up and write it (fsync), which made one-query routing 10-40x
            slower.
        progress: tqdm bar over the texts that must be embedded.
        device: torch device for sentence-transformers (default: its own choice).
        from_file: the name was read from a weights file, so it is untrusted: it must be an
            embedder id built under the models directory; never a path, a hub id or a download.

    Only texts missing from the cache are embedded (each distinct text once); results are
    written to the cache every ``SHARD_SIZE`` texts, so an interrupted run keeps its progress.

    Raises:
        EmbedderError: sentence-transformers missing, model not found / not loadable offline,
            an untrusted name (``from_file``) that is not a built embedder.
        InputError: a text is not a str, or is not valid Unicode (a lone surrogate).
    """
    if hasattr(texts, "to_list"):
        texts = texts.to_list()
    texts = list(texts)
    check_texts(texts)
    spec: Spec | None = None
    if isinstance(embedder, str | os.PathLike):
        spec = resolve(embedder, from_file=from_file)
        identity = spec.identity
    else:
        identity = _object_identity(embedder)
    if use_cache is None:
        use_cache = spec is None or spec.kind not in (ONNX, STATIC)

    index: dict[str, int] = {}
    inverse = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64, len(texts))
    uniq = list(index)
    cache = (
        _cache.get_cache(_cache.cache_dir_for(identity, normalize, cache_dir))
        if use_cache
        else None
    )
    keys = text_keys(uniq) if cache is not None else None
    vecs: np.ndarray | None = None
    found = np.zeros(len(uniq), dtype=bool)
    if cache is not None and keys is not None and len(cache):
        found, vecs = cache.lookup(keys)
    _STATS["cache_hits"] += int(found.sum())
    missing = np.flatnonzero(~found)

    if len(missing) or vecs is None:
        enc = _encoder(spec, device) if spec is not None else embedder
        if vecs is None and not len(missing):  # no texts at all: ask for the dimension
            vecs = np.zeros((0, dim_of(enc)), dtype=np.float32)
        vecs = _embed_missing(
            enc,
            [uniq[i] for i in missing],
            missing,
            vecs,
            len(uniq),
            keys,
            cache,
            batch_size=batch_size,
            normalize=normalize,
            progress=progress,
        )
    return np.ascontiguousarray(vecs[inverse])


def _embed_missing(
    enc: Any,
    todo: list[str],
    rows: np.ndarray,
    out: np.ndarray | None,
    n_rows: int,
    keys: np.ndarray | None,
    cache: EmbeddingCache | None,
    *,
    batch_size: int,
    normalize: bool,
    progress: bool,
) -> np.ndarray:
    """Embed ``todo`` into ``out[rows]`` (``out`` is allocated from the first batch's width
    when None) and return ``out``."""
    if not todo:
        if out is None:
            raise EmbedderError("internal: nothing to embed and no output array")
        return out
    from tqdm.auto import tqdm

    # Longest first, as sentence-transformers does inside one call: batches of similar length
    # waste less padding, and memory peaks early rather than at the end.
    order = np.argsort([-len(t) for t in todo], kind="stable")
    bar = tqdm(total=len(todo), desc="embedding", unit="text", disable=not progress)
    pending: list[int] = []
    try:
        for start in range(0, len(order), batch_size):
            sel = order[start : start + batch_size]
            batch = [todo[i] for i in sel]
            v = np.asarray(enc.encode(batch, batch_size=batch_size), dtype=np.float32)
            if normalize and v.ndim == 2:
                v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            if out is None and v.ndim == 2:
                out = np.zeros((n_rows, v.shape[1]), dtype=np.float32)
            if out is None or v.shape != (len(batch), out.shape[1]) or not np.isfinite(v).all():
                want = (len(batch), "dim" if out is None else out.shape[1])
                raise EmbedderError(
                    f"the embedder returned shape {v.shape} (expected {want}) or non-finite values"
                )
            out[rows[sel]] = v
            _STATS["texts_embedded"] += len(batch)
            pending.extend(rows[sel].tolist())
            bar.update(len(batch))
            if cache is not None and keys is not None and len(pending) >= _cache.SHARD_SIZE:
                cache.add(keys[pending], out[pending])
                pending = []
    finally:
        # keep what was computed even when interrupted
        if cache is not None and keys is not None and out is not None and pending:
            cache.add(keys[pending], out[pending])
        bar.close()
    if out is None:
        raise EmbedderError("internal: the embedder produced no output")
    return out


def embed_dataset(
    ds: Dataset, embedder: str | os.PathLike[str] | Encoder = DEFAULT_EMBEDDER, **kw: Any
) -> Dataset:
    """A copy of ``ds`` whose embeddings are ``embed_texts`` of its query texts."""
    return ds.with_embeddings(embed_texts(ds.queries["text"].to_list(), embedder, **kw))
