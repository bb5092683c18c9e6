"""Argument checking for the public API: every bad argument becomes an ``InputError`` naming it.

Python's own conversions (``float("abc")``, ``range(0, n, 1.5)``, a Rust ``usize`` given
``10**30``) raise ``ValueError``/``TypeError``/``OverflowError`` that do not say which argument
was wrong; the helpers here check first and say it.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from irt_fast.errors import InputError, WeightsFormatError

#: Upper bound of ``threads=``: a thread pool of 10**6 workers would exhaust the process, not
#: speed it up; no machine irt_fast runs on has more cores than this.
MAX_THREADS = 1024


def positive_int(name: str, value: Any, *, maximum: int | None = None) -> int:
    """``value`` as a Python int in ``[1, maximum]``.

    Args:
        name: the argument's name, for the message.
        value: an integer (numpy integers too); bools, floats and strings are refused.
        maximum: the largest accepted value (None: no bound).

    Returns:
        The value as ``int``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    v = int(value)
    if v < 1:
        raise InputError(f"{name} must be a positive integer, got {v}")
    if maximum is not None and v > maximum:
        raise InputError(f"{name} must be at most {maximum}, got {v}")
    return v


def real(name: str, value: Any) -> float:
    """``value`` as a finite float; bools, strings and None are refused.

    Args:
        name: the argument's name, for the message.
        value: a real number (int, float, numpy scalar).

    Returns:
        The value as ``float``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {v}")
    return v


def name_list(name: str, values: Any) -> list[str]:
    """A list of LLM names: one string alone, a non-iterable or a non-string item is refused.

    Args:
        name: the argument's name, for the message.
        values: an iterable of strings.

    Returns:
        The names as a new list.
    """
    if isinstance(values, (str, bytes)):
        raise InputError(f"{name} must be a list of LLM names, not one string")
    if not isinstance(values, Iterable):
        raise InputError(f"{name} must be a list of LLM names, got {type(values).__name__}")
    out = list(values)
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise InputError(f"{name} must hold strings, got {bad[0]!r}")
    return out


def llm_name(value: Any) -> str:
    """A new LLM's name: a non-empty string without surrounding whitespace, valid Unicode.

    Args:
        value: the proposed name.

    Returns:
        The name.
    """
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"name must be a non-empty string, got {value!r}")
    if value != value.strip():
        raise InputError(f"name must not start or end with whitespace, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"name {value!r} is not valid Unicode (a lone surrogate, e.g. from undecodable "
            "command-line bytes): names are stored as UTF-8"
        ) from None
    return value


def path_arg(name: str, value: Any) -> str:
    """``os.fspath(value)``, refusing None and non-path types by name.

    Args:
        name: the argument's name, for the message.
        value: a str or os.PathLike.

    Returns:
        The path as a string.
    """
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(f"{name} must be a path (str or os.PathLike), got {value!r}")
    p = os.fspath(value)
    if not isinstance(p, str) or not p:
        raise InputError(f"{name} must be a non-empty path, got {value!r}")
    return p


def unmasked(name: str, value: Any) -> Any:
    """``value`` with a numpy masked array replaced by its data when nothing is masked.

    irt_fast has no notion of a missing embedding, label or answer, so a masked entry is
    refused rather than silently used (numpy would hand over the hidden value) or dropped.

    Args:
        name: the argument's name, for the message.
        value: anything; only ``numpy.ma.MaskedArray`` is touched.

    Returns:
        ``value``, or the masked array's data.
    """
    if isinstance(value, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(value)
        if mask.any():
            first = np.argwhere(mask)[0].tolist()
            raise InputError(
                f"{name} is a masked array with {int(mask.sum())} masked value(s) (first at "
                f"{first}); irt_fast does not guess missing values: drop or fill them"
            )
        return np.asarray(value.data)
    return value


def is_texts(x: Any) -> bool:
    """True for a non-empty list or tuple of strings (query texts)."""
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(t, str) for t in x)


def is_missing_label(v: Any) -> bool:
    """None, or a value unequal to itself (float/numpy/Decimal NaN)."""
    if v is None:
        return True
    try:
        return bool(v != v)
    except (TypeError, ValueError):  # arrays as labels: refused later as unhashable
        return False


def group_labels(groups: Any, n: int, name: str = "groups") -> list[Any]:
    """The ``groups=`` labels of one chunk as a list, checked.

    NaN and None are refused (NaN is unequal to itself, so each NaN would silently become a
    group of its own): give missing labels an explicit name such as ``"unknown"``.

    Args:
        groups: a sequence or array of ``n`` hashable labels.
        n: the number of queries in the chunk.
        name: the argument's name, for the messages.

    Returns:
        The labels (numpy scalars converted to Python values).
    """
    groups = unmasked(name, groups)
    if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
        raise InputError(
            f"{name} must be a sequence of labels, one per query, got {type(groups).__name__}"
        )
    labs = groups.tolist() if isinstance(groups, np.ndarray) else list(groups)
    if len(labs) != n:
        raise InputError(f"{len(labs)} labels in {name} for {n} queries")
    for i, v in enumerate(labs):
        if is_missing_label(v):
            raise InputError(
                f"{name}[{i}] is {v!r}: every query needs a label (name missing ones, e.g. "
                "'unknown'; NaN labels would each form a group of their own)"
            )
        try:
            hash(v)
        except TypeError:
            raise InputError(f"{name}[{i}] is not hashable: {v!r}") from None
    return labs


def binary_answers(correct: Any, n: int | None = None) -> np.ndarray:
    """0/1 answers as float32 ``[k]``: bools, 0/1 ints or floats; NaN, other values refused.

    Args:
        correct: a 1-D sequence or array of answers.
        n: the expected length (the number of questions), or None.

    Returns:
        float32 array of 0.0/1.0.
    """
    if correct is None:
        raise InputError("correct is None: give one 0/1 answer per question")
    correct = unmasked("correct", correct)
    try:
        arr = np.asarray(correct)
    except (ValueError, TypeError) as exc:
        raise InputError(f"correct must be a 1-D array of 0/1 answers: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise InputError(f"correct must hold 0/1 numbers or bools, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise InputError(f"correct must be 1-D, got shape {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise InputError("correct is empty: at least one answer is needed")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{arr.shape[0]} answers for {n} questions")
    v = arr.astype(np.float64)
    bad = ~((v == 0.0) | (v == 1.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"correct[{i}] is {arr[i]!r}: answers must be 0 or 1")
    return v.astype(np.float32)


def training_metadata(tj: str | None) -> dict[str, Any] | None:
    """The weights file's ``training`` metadata parsed; any failure is a WeightsFormatError.

    Args:
        tj: the raw JSON string, or None when the file has none.

    Returns:
        The parsed JSON object, or None.
    """
    if tj is None:
        return None
    try:
        out = json.loads(tj)
    except (ValueError, RecursionError, TypeError) as exc:
        raise WeightsFormatError(f"metadata 'training' is not valid JSON: {exc}") from None
    if not isinstance(out, dict):
        raise WeightsFormatError(
            f"metadata 'training' must be a JSON object, got {type(out).__name__}"
        )
    return out
