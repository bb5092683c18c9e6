"""Static (model2vec) sentence embedder served without torch: HF ``tokenizers`` + a numpy table.

A query's vector is the mean of its tokens' rows in a ``[vocab, dim]`` table (then L2-normalised
when the model says so): tokenisation (Rust, batched) plus one gather and one segmented sum.

A static embedder directory is a model2vec ``save_pretrained`` folder (``model.safetensors`` with
``embeddings`` [+ ``weights``, ``mapping``], ``tokenizer.json``, ``config.json``) plus
``irt_fast_embedder.json`` = ``{"kind": "static", "name", "dim", "normalize", "source",
"pca_dims"}`` written by :func:`distill`. Plain model2vec folders (without that file) load too.

:class:`StaticEmbedder.encode` reproduces ``model2vec.StaticModel.encode`` (same tokenisation
without special tokens, same unknown-token removal, same character pre-truncation and token
truncation to ``max_length``, same mean and normalisation); it computes in float32 where
model2vec returns the table's float16, so outputs agree to about 1e-3.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .base import MARKER, check_texts, marker_kind
from .words import WordIds

#: Batches up to this many texts are tokenised word by word from the cache (:mod:`.words`):
#: 21 against 43-54 µs of CPU per text in the gateway's batches of 32 short texts; larger
#: batches of long texts with new words are as fast through the tokenizer's batch call.
WORD_BATCH = 64

try:  # optional: makes the segmented mean ~20x faster (numpy fallback otherwise)
    import scipy.sparse as _sparse
except ImportError:  # pragma: no cover
    _sparse = None

KIND = "static"
DEFAULT_MAX_LENGTH = 512  # model2vec's default when the config has none


def is_static_dir(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    if not all((p / f).is_file() for f in ("model.safetensors", "tokenizer.json", "config.json")):
        return False
    if (p / MARKER).is_file():
        return marker_kind(p) == KIND
    return "embeddings" in _safetensors_names(p / "model.safetensors")  # a plain model2vec folder


def _safetensors_names(file: Path) -> set[str]:
    """Tensor names in a safetensors file's header (no data read); empty when unreadable."""
    try:
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if not 0 < n < 100_000_000:
                return set()
            header = json.loads(f.read(n))
        return {k for k in header if k != "__metadata__"}
    except (OSError, ValueError, AttributeError):
        return set()


class StaticEmbedder:
    """``encode(texts, batch_size)`` -> float32 ``[n, dim]``; no torch."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        if not p.is_dir():
            raise EmbedderError(f"static embedder directory {p} does not exist")
        for f in ("model.safetensors", "tokenizer.json", "config.json"):
            if not (p / f).is_file():
                raise EmbedderError(f"{p} is not a static (model2vec) embedder: no {f}")
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as e:
            raise EmbedderError(
                f"the static embedder needs tokenizers and safetensors ({e})"
            ) from e
        try:
            cfg = json.loads((p / "config.json").read_text())
            meta = json.loads((p / MARKER).read_text()) if (p / MARKER).is_file() else {}
        except ValueError as e:
            raise EmbedderError(f"{p}: bad JSON config ({e})") from e
        if meta and meta.get("kind") != KIND:
            raise EmbedderError(f"{p / MARKER}: kind is {meta.get('kind')!r}, not {KIND!r}")
        try:
            tensors = load_file(str(p / "model.safetensors"))
        except Exception as e:  # safetensors raises its own SafetensorError
            raise EmbedderError(f"cannot read {p / 'model.safetensors'}: {e}") from e
        if "embeddings" not in tensors:
            raise EmbedderError(f"{p / 'model.safetensors'} has no 'embeddings' tensor")
        try:
            tok = Tokenizer.from_file(str(p / "tokenizer.json"))
        except Exception as e:  # tokenizers raises a bare Exception on bad files
            raise EmbedderError(f"cannot load {p / 'tokenizer.json'}: {e}") from e

        emb = tensors["embeddings"]
        if emb.ndim != 2:
            raise EmbedderError(f"{p}: embeddings tensor has shape {emb.shape}, expected 2-D")
        if emb.dtype == np.int8:
            raise EmbedderError(f"{p}: int8-quantised static tables are not supported")
        emb = emb.astype(np.float32)
        vocab = tok.get_vocab()
        n_tokens = max(vocab.values()) + 1 if vocab else 0
        mapping = tensors.get("mapping")
        weights = tensors.get("weights")
        # Fold the optional token->row mapping and per-token weights into one float32 table.
        table = emb[mapping.astype(np.int64)] if mapping is not None else emb
        if weights is not None:
            table = table * weights.astype(np.float32)[:, None]
        if table.shape[0] != n_tokens:
            raise EmbedderError(
                f"{p}: table has {table.shape[0]} rows but the tokenizer has {n_tokens} tokens"
            )
        self._table = np.ascontiguousarray(table, dtype=np.float32)
        self.path = p
        self.dim: int = int(self._table.shape[1])
        self.name: str = str(meta.get("name", p.name))
        self.normalize: bool = bool(cfg.get("normalize", False))
        max_length = cfg.get("max_length", DEFAULT_MAX_LENGTH)
        self.max_length: int | None = None if max_length is None else int(max_length)
        if meta and int(meta.get("dim", self.dim)) != self.dim:
            raise EmbedderError(f"{p}: metadata dim {meta['dim']} != table dim {self.dim}")

        # Same tokeniser set-up as model2vec: no padding, truncation to max_length, unk removed.
        tok.no_padding()
        if self.max_length is None:
            tok.no_truncation()
        else:
            tok.enable_truncation(self.max_length)
        self._tok = tok
        self._word_ids = WordIds(tok, self.max_length)
        self._unk = _unk_token_id(tok)
        tokens = sorted(vocab, key=vocab.__getitem__)
        self._median_len = int(np.median([len(t) for t in tokens])) if tokens else 1
        self._char_cap = None if self.max_length is None else self.max_length * self._median_len
        # encode_batch_fast skips offset tracking (tokenizers >= 0.21)
        self._encode_batch = getattr(tok, "encode_batch_fast", tok.encode_batch)

    def __repr__(self) -> str:
        return f"StaticEmbedder({self.name!r}, dim={self.dim}, normalize={self.normalize})"

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if self._char_cap is not None:
            cap = self._char_cap
            texts = [t[:cap] for t in texts]
        if len(texts) <= WORD_BATCH and self._word_ids.enabled:  # a gateway's micro-batch
            return [self._word_ids(t) for t in texts]
        encs = self._encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encs]

    def encode(self, texts: list[str], batch_size: int = 1024) -> np.ndarray:
        """Embed ``texts`` (rows in input order). ``batch_size`` only bounds working memory."""
        texts = texts if isinstance(texts, str) else list(texts)
        check_texts(texts)
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        bs = max(1, int(batch_size))
        for s in range(0, n, bs):
            out[s : s + bs] = self._encode_chunk(texts[s : s + bs])
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """``encode([text])``: float32 ``[1, dim]``, in as few steps as it takes.

        The gateway's common case is a request with one text, and at a modest request rate
        its caches are cold: every numpy call then costs tens of µs (benches/_cold_path.py).
        So one text is tokenised from cached words where that is exact (:mod:`.words`), else
        without the batch call's thread pool, averaged by a gather, and normalised with a dot
        product (equal to the batch path's norm within 1e-6).
        """
        check_texts([text])
        if self._char_cap is not None:
            text = text[: self._char_cap]
        return self._one(self._word_ids(text))

    def _one(self, ids: list[int]) -> np.ndarray:
        """The ``[1, dim]`` vector of one text's token ids."""
        if self._unk is not None and self._unk in ids:
            ids = [i for i in ids if i != self._unk]
        if not ids:
            return np.zeros((1, self.dim), dtype=np.float32)
        v = np.add.reduce(self._table[ids], axis=0, keepdims=True)
        scale = 1.0 / len(ids)
        if self.normalize:
            row = v[0]
            scale = 1.0 / (math.sqrt(float(row @ row)) + 1e-32)
        v *= np.float32(scale)
        return v

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        ids_list = self._ids(texts)
        n = len(texts)
        if n == 1:  # a lone text: a gather, at ~1/3 of the CPU of the sparse product
            return self._one(ids_list[0])
        lengths = np.fromiter(map(len, ids_list), dtype=np.int64, count=n)
        flat = np.fromiter(
            itertools.chain.from_iterable(ids_list), dtype=np.int64, count=int(lengths.sum())
        )
        if self._unk is not None:
            keep = flat != self._unk
            if not keep.all():
                seg = np.repeat(np.arange(n), lengths)
                lengths = np.bincount(seg[keep], minlength=n).astype(np.int64)
                flat = flat[keep]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        if _sparse is not None:
            # mean = (row-normalised token-count matrix) @ table, without materialising the
            # [n_tokens, dim] gather: ~20x faster than gather + reduceat.
            inv = np.divide(1.0, lengths, out=np.zeros(n), where=lengths > 0).astype(np.float32)
            weights = np.repeat(inv, lengths)
            m = _sparse.csr_matrix((weights, flat, indptr), shape=(n, self._table.shape[0]))
            out = np.asarray(m @ self._table, dtype=np.float32)
        else:
            out = np.zeros((n, self.dim), dtype=np.float32)
            nz = lengths > 0
            if flat.size:
                out[nz] = np.add.reduceat(self._table[flat], indptr[:-1][nz], axis=0)
                out[nz] /= lengths[nz, None].astype(np.float32)
        return self._finish(out)

    def _finish(self, out: np.ndarray) -> np.ndarray:
        if self.normalize:
            out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-32
        return out


def _unk_token_id(tok: object) -> int | None:
    """The unknown token's id, as model2vec finds it (removed from every sequence)."""
    model = tok.model  # type: ignore[attr-defined]
    if hasattr(model, "unk_token"):
        token = model.unk_token
        return None if token is None else tok.token_to_id(token)  # type: ignore[attr-defined]
    unk = json.loads(tok.to_str())["model"].get("unk_id")  # type: ignore[attr-defined]
    return None if unk is None else int(unk)


def distill(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    pca_dims: int = 256,
    name: str | None = None,
    normalize: bool = True,
) -> Path:
    """Distil a model2vec static embedder from the local sentence-transformers directory ``src``
    (offline) into ``dst``. Needs ``model2vec[distill]`` (and torch) at build time only."""
    try:
        from model2vec.distill import distill as m2v_distill
    except ImportError as e:
        raise EmbedderError(f"distilling needs model2vec[distill]: {e}") from e
    src, dst = Path(src), Path(dst)
    model = m2v_distill(model_name=str(src), pca_dims=pca_dims, device="cpu")
    model.normalize = normalize
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    meta = {
        "kind": KIND,
        "name": name or dst.name,
        "dim": int(model.dim),
        "normalize": normalize,
        "source": src.name,
        "pca_dims": pca_dims,
    }
    (dst / MARKER).write_text(json.dumps(meta, indent=2))
    return dst
