"""``irt-fast train ...``: the training front (``python -m training.fit``), when torch is here.

Training lives in the source checkout beside the package (``training/``), not in the installed
wheel, because it needs torch and a route-only install must not. This command finds it next to
an editable install (or on ``PYTHONPATH``) and forwards every argument to ``training.fit``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from irt_fast.errors import InputError


def register(sub: Any) -> None:
    """Add the ``train`` subcommand to ``sub`` (an argparse subparsers object)."""
    t = sub.add_parser(
        "train",
        help="train a model (forwards to python -m training.fit; needs torch)",
        description="Every argument goes to `python -m training.fit` (see `irt-fast train --help`).",
        add_help=False,
    )
    t.set_defaults(run=run, forward_args=True)


def _find_training() -> None:
    """Make ``training`` importable: from ``sys.path``, else from the checkout holding the package."""
    if importlib.util.find_spec("training") is not None:
        return
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "training" / "fit.py").is_file():
        sys.path.insert(0, str(checkout))
        return
    raise InputError(
        "the training front (training/) is not here: it lives in the irt_fast source checkout; "
        "run from there after `pip install -e '.[train]'`, or use `python -m training.fit`"
    )


def run(args: argparse.Namespace) -> int:
    """Forward to ``training.fit.main``; say what to install when torch is missing."""
    if importlib.util.find_spec("torch") is None:
        print(
            "error: training needs PyTorch: pip install 'irt_fast[train]' (or `make install` "
            "in the source checkout)",
            file=sys.stderr,
        )
        return 2
    try:
        _find_training()
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from training.fit import main as fit_main

    return int(fit_main(list(args.extra)) or 0)
