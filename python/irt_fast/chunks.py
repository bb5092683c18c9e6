"""Splitting ``predict_accuracy``'s input into (queries, labels) pieces of bounded size.

The input may be one array, one list of texts, or a stream of chunks. A stream of
``(queries, labels)`` pairs is only read as such with ``groups=True``: without it, a pair is
ambiguous (its labels look like a chunk of query texts) and is refused, as is a stream whose
chunks are not all of one kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from irt_fast.errors import InputError
from irt_fast.inputs import group_labels, is_texts, unmasked

_PAIR_HINT = (
    "for per-group accuracies pass groups=labels (one label per query), or a stream of "
    "(queries, labels) pairs with groups=True"
)


def iter_chunks(x: Any, groups: Any, chunk_size: int) -> Iterator[tuple[Any, list[Any] | None]]:
    """(queries, labels) pieces of at most ``chunk_size`` rows.

    Args:
        x: an array ``[N, embed_dim]``, a list of texts, or an iterable of chunks.
        groups: None, a label per query, or True (``x`` is a stream of (queries, labels)).
        chunk_size: the most rows per piece.

    Returns:
        An iterator of ``(queries, labels or None)``.
    """
    if x is None:
        raise InputError("x is None: give queries (an array [N, embed_dim] or a list of texts)")
    if groups is True:
        if _is_single(x):
            raise InputError(
                "groups=True is for a stream of (queries, labels) chunks; for one array or "
                "list of texts pass the labels as groups="
            )
        yield from _grouped_stream(x, chunk_size)
        return
    if _is_single(x):
        yield from _split(x, groups, chunk_size)
        return
    if groups is not None:
        raise InputError(
            "with a stream of chunks, give labels inside it as (queries, labels) pairs "
            "and pass groups=True"
        )
    yield from _ungrouped_stream(x, chunk_size)


def _is_single(x: Any) -> bool:
    """One query set (array, texts, rows) rather than a stream of chunks."""
    if isinstance(x, (str, np.ndarray)) or is_texts(x):
        return True
    if isinstance(x, (list, tuple)):
        if _looks_like_pair(x):
            raise InputError(f"x looks like a (queries, labels) pair; {_PAIR_HINT}")
        return not _is_chunk_list(x)
    return False


def _is_chunk_list(x: Sequence[Any]) -> bool:
    """A list of chunks (2-D arrays or lists of texts) rather than a list of rows."""
    return len(x) > 0 and (
        (isinstance(x[0], np.ndarray) and x[0].ndim == 2) or is_texts(x[0]) or _is_pair(x[0])
    )


def _is_pair(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and _looks_like_pair(item)


def _looks_like_pair(x: Sequence[Any]) -> bool:
    """``(queries, labels)``: a 2-D array or a list of texts, then as many 1-D labels."""
    if len(x) != 2:
        return False
    q, lab = x
    if isinstance(q, np.ndarray):
        if q.ndim != 2:
            return False
    elif not is_texts(q):
        return False
    if isinstance(lab, (str, bytes)) or not hasattr(lab, "__len__"):
        return False
    if isinstance(lab, np.ndarray) and lab.ndim != 1:
        return False
    if isinstance(lab, (list, tuple)) and any(
        isinstance(v, (list, tuple, np.ndarray)) for v in lab
    ):
        return False  # rows of numbers: a chunk, not labels
    return len(lab) == len(q)


def _split(x: Any, groups: Any, chunk_size: int) -> Iterator[tuple[Any, list[Any] | None]]:
    if isinstance(x, str):
        x = [x]
    if is_texts(x):
        n = len(x)
    else:
        x = unmasked("x", x)
        try:
            arr = np.asarray(x) if not isinstance(x, np.ndarray) else x
        except (ValueError, TypeError) as exc:
            raise InputError(f"x must be a float array [N, embed_dim]: {exc}") from exc
        if arr.ndim == 0 or arr.ndim > 2:
            raise InputError(f"x must be a float array [N, embed_dim], got shape {list(arr.shape)}")
        if arr.ndim == 1:
            arr = arr[None, :]
        x, n = arr, arr.shape[0]
    labs = None if groups is None else group_labels(groups, n)
    for i in range(0, n, chunk_size):
        yield x[i : i + chunk_size], None if labs is None else labs[i : i + chunk_size]


def _kind(item: Any) -> str:
    if isinstance(item, str) or is_texts(item):
        return "texts"
    if _is_pair(item):
        raise InputError(f"a stream chunk is a (queries, labels) pair; {_PAIR_HINT}")
    if isinstance(item, (list, tuple)) and _is_chunk_list(item):
        raise InputError("a stream chunk holds chunks itself: give a flat stream of chunks")
    item = unmasked("x", item)
    try:
        ndim = np.ndim(item)
    except (ValueError, TypeError):
        ndim = -1
    return "rows" if ndim == 2 else f"{ndim}-d array"


def _ungrouped_stream(x: Any, chunk_size: int) -> Iterator[tuple[Any, None]]:
    if x is None or not isinstance(x, Iterable):
        raise InputError(
            f"x must be an array [N, embed_dim], a list of texts or an iterable of chunks, "
            f"got {type(x).__name__}"
        )
    first: str | None = None
    for i, item in enumerate(x):
        kind = _kind(item)
        if first is None:
            first = kind
        elif kind != first:
            # e.g. (X, labels) read as two chunks: the labels would be embedded as texts
            raise InputError(
                f"stream chunk {i} is {kind} but chunk 0 is {first}: a stream must hold one "
                f"kind of chunk; {_PAIR_HINT}"
            )
        yield from _split(item, None, chunk_size)


def _grouped_stream(x: Any, chunk_size: int) -> Iterator[tuple[Any, list[Any]]]:
    if x is None or not isinstance(x, Iterable):
        raise InputError(f"x must be an iterable of (queries, labels) pairs, got {x!r}")
    for item in x:
        try:
            q, lab = item
        except (TypeError, ValueError):
            raise InputError(
                "with groups=True each chunk must be a (queries, labels) pair"
            ) from None
        if not (isinstance(q, (str, np.ndarray)) or is_texts(q) or isinstance(q, (list, tuple))):
            raise InputError(f"a chunk's queries must be an array or texts, got {type(q).__name__}")
        yield from _split(q, lab, chunk_size)  # type: ignore[misc]
