"""``irt-fast anchors --model M --queries DIR --k 100 --out anchors.parquet``: choose, once, the k
questions of a benchmark to run on every new LLM, with the weight each stands for; the new
LLM's answers to them then give its estimated accuracy
(``Model.estimate_from_anchors(read_anchors(path), answers)``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from irt_fast.cli._common import guarded


def register(sub: Any) -> None:
    """Add the ``anchors`` subcommand to ``sub`` (an argparse subparsers object)."""
    a = sub.add_parser(
        "anchors",
        help="choose a fixed set of k questions to score new LLMs with",
        description=(
            "Choose k anchor questions of a dataset directory (queries.* with query_id, text "
            "and optionally benchmark; query_embeddings.* used when its size matches the "
            "model) for the model: clusters of similar items per benchmark, one anchor per "
            "cluster, weighted by the share of the benchmark it stands for. The target is the "
            "whole directory. Writes a Parquet file (query_id, group, weight, ...) that "
            "irt_fast.onboard.read_anchors reads back."
        ),
    )
    a.add_argument("--model", required=True, help="the weights file")
    a.add_argument("--queries", required=True, help="dataset directory with the questions")
    a.add_argument("--k", required=True, type=int, help="how many anchors")
    a.add_argument("--out", required=True, help="the anchors file to write (.parquet)")
    a.add_argument("--seed", type=int, default=0, help="seeds the clustering (default 0)")
    a.add_argument("--embedder", help="embedder id or local directory for text questions")
    a.set_defaults(run=guarded(run))


def run(args: argparse.Namespace) -> int:
    """Run ``anchors``: print the summary, return 0."""
    print(anchors(args))
    return 0


def anchors(args: argparse.Namespace) -> str:
    """Run ``anchors``.

    Args:
        args: the parsed command line.

    Returns:
        The summary printed on success.
    """
    from pathlib import Path

    import irt_fast
    from irt_fast.errors import InputError

    out = Path(args.out)
    if out.suffix.lower() != ".parquet":
        raise InputError(f"--out must name a .parquet file, got {args.out}")
    if out.is_dir():
        raise InputError(f"--out {args.out} is a directory; give a file name")
    model = irt_fast.load(args.model)
    ids, x, groups = read_questions(Path(args.queries), model.embed_dim)
    if args.k > len(ids):
        raise InputError(f"--k {args.k} is more than the {len(ids)} questions of {args.queries}")
    if isinstance(x, list):  # the one slow step: say what is happening, once it can start
        from irt_fast.embedders.registry import resolve

        which = args.embedder or model.embedder["name"]
        resolve(which, from_file=args.embedder is None)
        print(f"embedding {len(x)} question texts with {which} ...", file=sys.stderr)
        x = model._queries(x, args.embedder)
    anc = model.anchors(pool=x, k=args.k, groups=groups, query_ids=ids, seed=args.seed)
    path = anc.write(out)
    n_groups = len(set(anc.group)) if groups is not None else 0
    by = f" over {n_groups} groups" if n_groups else ""
    return (
        f"{anc.k} anchors of {len(ids)} questions{by}; weights sum to "
        f"{float(anc.weight.sum()):.3f}; written to {path}"
    )


def read_questions(directory: Any, embed_dim: int) -> tuple[list[Any], Any, list[str] | None]:
    """(query ids, embeddings [n, embed_dim] or texts, benchmark labels or None) of a dataset
    directory, in the order of its queries file.

    Args:
        directory: the dataset directory.
        embed_dim: the model's embedding size (shipped embeddings of another size are not used).

    Returns:
        The ids, the questions, the benchmark per question (None without a benchmark column).
    """
    import numpy as np

    from irt_fast.answers_file import query_keys
    from irt_fast.data.tables import embedding_matrix, find_table, read_table, text_column
    from irt_fast.errors import DataError

    if not directory.is_dir():
        raise FileNotFoundError(f"--queries directory not found: {directory}")
    q_file = find_table(directory, "queries")
    if q_file is None:
        raise DataError(f"{directory}: no queries.parquet/.csv/.jsonl")
    qdf = read_table(q_file, ["query_id", "text"], optional=["benchmark"])
    if qdf.height == 0:
        raise DataError(f"{q_file}: no queries (the file has no data rows)")
    keys = query_keys(qdf["query_id"], q_file)
    if len(set(keys)) != len(keys):
        raise DataError(f"{q_file}: column 'query_id' holds duplicate ids")
    # integer ids stay integers in the anchors file; others are kept as canonical strings
    ids: list[Any] = [int(k) for k in keys] if qdf["query_id"].dtype.is_integer() else keys
    groups = text_column(qdf, "benchmark", q_file).to_list() if "benchmark" in qdf.columns else None
    emb_file = find_table(directory, "query_embeddings")
    if emb_file is not None:
        edf = read_table(emb_file, ["query_id", "embedding"])
        pos = {k: i for i, k in enumerate(query_keys(edf["query_id"], emb_file))}
        missing = [k for k in keys if k not in pos]
        emb = embedding_matrix(edf["embedding"], emb_file)
        if not missing and emb.shape[1] == embed_dim:
            rows = np.array([pos[k] for k in keys], dtype=np.int64)
            return ids, np.ascontiguousarray(emb[rows]), groups
    return ids, text_column(qdf, "text", q_file).to_list(), groups
