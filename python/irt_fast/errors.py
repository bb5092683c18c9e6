"""Exception hierarchy for irt_fast.

Every error the package raises on bad input is an ``IrtFastError`` subclass that also derives
from the matching builtin (``ValueError``, ``KeyError``...), so callers can catch either.
The Rust extension raises these same classes (it imports this module), so Python and Rust
errors share one hierarchy.
"""

from __future__ import annotations


class IrtFastError(Exception):
    """Base class of every irt_fast error."""


class WeightsFormatError(IrtFastError, ValueError):
    """A weights file is corrupt, truncated, of another format version, or has a tensor of the
    wrong name, dtype or shape."""


class InputError(IrtFastError, ValueError):
    """An input array or argument is malformed: wrong shape or dtype, NaN/Inf, empty."""


class UnknownLLMError(IrtFastError, KeyError):
    """An LLM name is not in the model."""

    def __str__(self) -> str:  # KeyError's str() quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class DataError(IrtFastError, ValueError):
    """A dataset file is malformed: missing column, bad label, unmatched query id, bad embedding."""


class EmbedderError(IrtFastError, RuntimeError):
    """The sentence embedder cannot be loaded or does not match the model."""


__all__ = [
    "DataError",
    "EmbedderError",
    "InputError",
    "IrtFastError",
    "UnknownLLMError",
    "WeightsFormatError",
]
