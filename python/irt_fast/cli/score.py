"""``irt-fast score --model M --queries IN --out OUT``: route and score a query set of any size,
streaming it from Parquet/CSV/JSONL to Parquet with bounded memory."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from irt_fast.cli._common import guarded

#: Exit status of a run stopped by SIGINT / SIGTERM (128 + the signal number, as shells report).
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def register(sub: Any) -> None:
    """Add the ``score`` subcommand to ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser(
        "score",
        help="route / score a query set of any size, Parquet in and out",
        description=(
            "Read queries in batches (a .parquet file, a glob or a directory of Parquet files, "
            "or a .csv/.jsonl file with query_id and embedding or text columns), score each "
            "batch in the engine and write Parquet row groups as it goes; memory is bounded by "
            "--batch, not by the input. OUT gets, per query, the routed LLM and its "
            "probability (--route, the default) and/or every LLM's probability (--proba); "
            "with --group-col, the predicted accuracy per (group, LLM). Output is written "
            "beside its path and renamed at the end: an interrupted run leaves none."
        ),
    )
    p.add_argument("--model", required=True, help="the weights file")
    p.add_argument("--queries", required=True, help="input: file, glob or Parquet directory")
    p.add_argument("--out", required=True, help="the Parquet file to write")
    p.add_argument("--route", action="store_true", help="the routed LLM and its P (default)")
    p.add_argument("--proba", action="store_true", help="every LLM's P (column proba_all)")
    p.add_argument("--candidates", help="comma-separated LLM names to route among (default: all)")
    p.add_argument(
        "--cost", help="per-LLM cost: a JSON object {name: cost} or a .json file holding one"
    )
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--lam", type=float, help="route to the max of P - lam*cost")
    rule.add_argument(
        "--margin", type=float, help="route to the cheapest LLM within margin of the best P"
    )
    p.add_argument("--group-col", help="column of group labels: per-(group, LLM) accuracy")
    p.add_argument(
        "--accuracy-out",
        help="where the accuracy table goes when --route/--proba rows go to OUT",
    )
    p.add_argument("--embedder", help="embedder id or local directory for text queries")
    p.add_argument(
        "--batch",
        type=int,
        help="rows per batch (default 16384 Parquet, 1024 CSV/JSONL; with --proba, at most "
        "64 MB of probabilities)",
    )
    p.add_argument("--threads", type=int, help="engine threads (default: every core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=guarded(run))


def run(args: argparse.Namespace) -> int:
    """Run ``score``: print the summary, return 0 (130/143 when interrupted, nothing written)."""
    caught: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        caught.append(signum)
        raise KeyboardInterrupt

    try:  # SIGTERM (a scheduler stopping the job) cleans up like Ctrl-C
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals cannot be caught here
        previous = None
    try:
        print(score(args))
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return EXIT_SIGNAL[signal.Signals(caught[0]) if caught else signal.SIGINT]
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def score(args: argparse.Namespace) -> str:
    """Run ``score``.

    Args:
        args: the parsed command line.

    Returns:
        The summary printed on success.
    """
    import irt_fast
    from irt_fast.scoring import score as score_queries

    model = irt_fast.load(args.model, threads=args.threads)
    candidates = None
    if args.candidates is not None:
        candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    res = score_queries(
        model,
        args.queries,
        args.out,
        route=True if args.route else None,
        proba=args.proba,
        group_col=args.group_col,
        accuracy_out=args.accuracy_out,
        candidates=candidates,
        cost=_cost(args.cost),
        lam=args.lam,
        margin=args.margin,
        embedder=args.embedder,
        batch=args.batch,
        progress=not args.quiet,
    )
    lines = [f"scored {res.rows:,} queries in {res.seconds:.1f} s ({res.rows_per_second:,.0f}/s)"]
    if res.out is not None:
        lines.append(f"  per-query rows written to {res.out}")
    if res.accuracy_out is not None:
        lines.append(f"  accuracy of {res.groups:,} group(s) written to {res.accuracy_out}")
    return "\n".join(lines)


def _cost(text: str | None) -> dict[str, float] | None:
    """``--cost``: a JSON object, or a path to a file holding one."""
    from irt_fast.errors import InputError

    if text is None:
        return None
    raw = text
    if not text.lstrip().startswith("{"):
        raw = Path(text).read_text()  # a missing file: FileNotFoundError, exit 2
    try:
        cost = json.loads(raw)
    except ValueError as e:
        raise InputError(f"--cost is not valid JSON: {e}") from None
    if not isinstance(cost, dict):
        raise InputError(f"--cost must be a JSON object {{name: cost}}, got {type(cost).__name__}")
    return cost
