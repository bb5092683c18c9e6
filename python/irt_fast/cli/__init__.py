"""The ``irt-fast`` command (``python -m irt_fast`` is the same): one entry point for what a user
runs. Each subcommand is a module of this package with ``register(subparsers)``, which adds its
parser and sets ``run`` (``args -> exit status``); registering imports nothing heavy, so
``irt-fast --help`` answers at once and a route-only install can list every command.

Exit status: 0 on success, 2 on bad input (the message starts with ``error:``; nothing is
written), 1 only for a failure of the program itself.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

# Module names under irt_fast.cli, in the order `irt-fast --help` lists them.
COMMANDS = ("add_llm", "anchors", "models", "score", "serve", "train")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``irt-fast`` with every subcommand registered."""
    p = argparse.ArgumentParser(
        prog="irt-fast",
        description=(
            "Item response theory for LLM routing and benchmark prediction: train a model, "
            "add LLMs to it, choose anchor questions to score new LLMs, score query sets of any "
            "size, serve it as a routing gateway, build the offline embedders."
        ),
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = build_parser()
    # `train` hands every argument on to training.fit, `--help` included; any other command
    # refuses arguments it does not know.
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "forward_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return int(args.run(args))
