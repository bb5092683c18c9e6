"""One way to make a figure: headless matplotlib, written atomically (no half-written PNG)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from irt_fast._atomic import atomic_write


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend (imported lazily: optional dep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(path: str | os.PathLike[str], *args: Any, dpi: int = 120, **kw: Any) -> Iterator[Any]:
    """``with figure(path, 1, 2, figsize=...) as (fig, axes):`` draw, then the figure is laid
    out, saved to ``path`` through a temporary file in the same directory, and closed."""
    plt = pyplot()
    fig, axes = plt.subplots(*args, **kw)
    try:
        yield fig, axes
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), fsync=False)
    finally:
        plt.close(fig)
