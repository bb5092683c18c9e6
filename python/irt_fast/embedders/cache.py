"""The on-disk embedding cache: text -> vector, per (embedder identity, normalize).

Layout: ``<root>/embeddings/<embedder key>/`` where root is ``cache_dir``, ``$IRT_FAST_CACHE``
or ``~/.cache/irt_fast``, and the key names the embedder identity and whether vectors are
normalised. Each directory holds append-only shards: ``<id>.vecs.npy`` (float32 [k, dim]) then
``<id>.keys.npy`` (sha256 hex of each text, ``S64`` [k]), each written to a temporary name,
fsynced and renamed; the keys file is written last and is the commit marker, so a shard is
either complete or invisible. Concurrent runs write distinct shards (duplicates are harmless:
the first one found wins); a killed run leaves at most ``.tmp`` files, never read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .._atomic import atomic_write
from ..errors import InputError

__all__ = ["EmbeddingCache", "cache_dir_for", "cache_key", "cache_root", "get_cache", "text_keys"]

log = logging.getLogger(__name__)

SHARD_SIZE = 4096  # texts per shard: a killed run loses at most this much work
MAX_SMALL_SHARDS = 32  # merge small shards (from many small calls) once there are this many

_CACHES: dict[Path, EmbeddingCache] = {}
_LOCK = threading.Lock()


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("IRT_FAST_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "irt_fast"


def cache_key(identity: str, normalize: bool) -> str:
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


def get_cache(directory: Path) -> EmbeddingCache:
    with _LOCK:
        c = _CACHES.get(directory)
        if c is None:
            c = _CACHES[directory] = EmbeddingCache(directory)
    c.refresh()
    return c


def cache_dir_for(
    identity: str, normalize: bool, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The cache directory of one (embedder identity, normalize) pair."""
    return cache_root(cache_dir) / "embeddings" / cache_key(identity, normalize)
