"""What every encoder is, and the checks every embedding path shares.

An encoder has ``name`` (str), ``dim`` (int) and ``encode(texts: list[str], batch_size) ->
float32 [n, dim]`` (rows in input order). ``normalize`` says whether it already returns unit
vectors. Encoders built here are :class:`~irt_fast.embedders.st.StEncoder`,
:class:`~irt_fast.embedders.onnx.OnnxEmbedder` and
:class:`~irt_fast.embedders.static.StaticEmbedder`; any user object with ``encode`` and ``name``
works with :func:`irt_fast.embed.embed_texts` too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import EmbedderError, InputError

# Marks a directory built by irt_fast (ONNX or static embedder): {"kind", "name", "dim", ...}.
MARKER = "irt_fast_embedder.json"


def marker_kind(directory: Path) -> str | None:
    """The ``kind`` recorded in a directory's marker file; None when absent or unreadable."""
    try:
        meta = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if isinstance(kind, str) else None


class Encoder(Protocol):
    """Anything with ``encode(texts, batch_size=...) -> array``; ``name`` keys its cache."""

    name: str

    def encode(self, texts: list[str], batch_size: int = ...) -> Any: ...


def check_texts(texts: Sequence[object]) -> None:
    """InputError unless every item is a str that UTF-8 can encode (no lone surrogates).

    Tokenizers and hashing fail on a lone surrogate with TypeError / UnicodeEncodeError deep
    inside a library; this names the text instead.
    """
    if isinstance(texts, str):
        raise EmbedderError("encode() takes a list of strings, not one string")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"texts[{i}] is {type(t).__name__}, not str")
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise InputError(
                    f"texts[{i}] is not valid Unicode: {e.reason} at position {e.start} "
                    f"({t[max(0, e.start - 10) : e.start]!r}...)"
                ) from None


def dim_of(enc: Any) -> int:
    """The encoder's output width: its ``dim``, or one probe encode for foreign objects."""
    dim = getattr(enc, "dim", None)
    if isinstance(dim, int | np.integer) and dim > 0:
        return int(dim)
    out = np.asarray(enc.encode(["dimension probe"], batch_size=1))
    if out.ndim != 2:
        raise EmbedderError(f"encoder {enc!r} returned shape {out.shape} for one text")
    return int(out.shape[1])
