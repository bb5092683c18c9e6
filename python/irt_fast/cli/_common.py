"""What every subcommand shares: bad input becomes ``error: ...`` and exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from irt_fast.errors import IrtFastError

EXIT_BAD_INPUT = 2

# Errors that mean "the input is wrong", never a bug of the program: a typed irt_fast error, or
# the operating system refusing a path (missing, a directory, under a file, no permission).
BAD_INPUT: tuple[type[BaseException], ...] = (IrtFastError, OSError)

# Quoted input is cut to this many characters, so a garbage file cannot flood the terminal.
MAX_MESSAGE = 2000


def message(exc: BaseException) -> str:
    """The error's message, cut to ``MAX_MESSAGE`` characters with non-printable text escaped."""
    text = str(exc)
    if not text.isprintable():
        text = "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + f" ... ({len(text) - MAX_MESSAGE} more characters)"
    return text


def guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Wrap a subcommand so bad input prints ``error: ...`` and returns exit status 2."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except BAD_INPUT as exc:
            print(f"error: {message(exc)}", file=sys.stderr)
            return EXIT_BAD_INPUT

    wrapper.__doc__ = run.__doc__
    return wrapper
