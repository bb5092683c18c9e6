"""The compiled engine module, imported on first use (so the data modules work without it)."""

from __future__ import annotations

from typing import Any


def _core() -> Any:
    """``irt_fast._core``, or an ImportError saying how to build it."""
    try:
        from irt_fast import _core as core
    except ImportError as exc:  # pragma: no cover - only without a build
        raise ImportError(
            "the irt_fast Rust extension is not built: run `make build-dev` "
            "(pip install --no-build-isolation -e .)"
        ) from exc
    return core
