"""``irt-fast add-llm --model M --answers FILE --out M2``: add one LLM to a trained model from
its answers (no retraining, no torch) and write the new model atomically."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from irt_fast.cli._common import guarded


def register(sub: Any) -> None:
    """Add the ``add-llm`` subcommand to ``sub`` (an argparse subparsers object)."""
    a = sub.add_parser(
        "add-llm",
        help="add an LLM to a model from its answers",
        description=(
            "Fit a new LLM's ability (θ, b) from its 0/1 answers, with the item network frozen, "
            "and write the model with it added. The answers file (.parquet/.csv/.jsonl) has "
            "query_id and correct columns and the questions as an 'embedding' or 'text' column, "
            "or --queries gives a dataset directory holding them. An LLM added earlier under "
            "the same name is re-fitted from all its answers."
        ),
    )
    a.add_argument("--model", required=True, help="the weights file to add to")
    a.add_argument(
        "--answers", required=True, help="answers file: query_id, correct, text|embedding"
    )
    a.add_argument("--out", required=True, help="where to write the new weights file")
    a.add_argument("--name", help="the LLM's name (default: the file's single 'model' value)")
    a.add_argument(
        "--queries", help="dataset directory (queries.*, query_embeddings.*) with the questions"
    )
    a.add_argument(
        "--replace",
        action="store_true",
        help="replace an LLM of that name (a trained one, or an added one's earlier answers)",
    )
    a.add_argument("--embedder", help="embedder id or local directory for text questions")
    a.add_argument(
        "--in-place",
        action="store_true",
        help="allow --out to be the --model file itself (it is rewritten); refused otherwise",
    )
    a.set_defaults(run=guarded(run))


def run(args: argparse.Namespace) -> int:
    """Run ``add-llm``: print the summary, return 0."""
    print(add_llm(args))
    return 0


def add_llm(args: argparse.Namespace) -> str:
    """Run ``add-llm``.

    Args:
        args: the parsed command line.

    Returns:
        The summary printed on success.
    """
    import irt_fast
    from irt_fast import inputs
    from irt_fast.answers_file import read_answers
    from irt_fast.errors import DataError

    if args.name is not None:
        inputs.llm_name(args.name)
    _check_out(args.model, args.out, args.in_place)
    model = irt_fast.load(args.model)
    ans = read_answers(
        args.answers, name=args.name, queries=args.queries, embed_dim=model.embed_dim
    )
    name = args.name or ans.name
    if name is None:
        raise DataError(f"{args.answers}: no 'model' column to take the name from: pass --name")
    name = inputs.llm_name(name)
    model._check_clash(name, args.replace, allow_added=True)
    x: Any = ans.embeddings if ans.embeddings is not None else ans.texts
    if ans.texts is not None:  # the one slow step: say what is happening, once it can start
        from irt_fast.embedders.registry import resolve

        which = args.embedder or model.embedder["name"]
        resolve(which, from_file=args.embedder is None)
        print(f"embedding {len(ans.texts)} question texts with {which} ...", file=sys.stderr)
    new, post, alpha, beta, correct = model._add_llm(
        name, x, ans.correct, replace=args.replace, embedder=args.embedder
    )
    out = new.save(args.out)
    acc, sd = predicted_accuracy(post, alpha, beta, has_bias=new._has_bias)
    merged = len(correct) - len(ans.correct)
    lines = [
        f"{name}: fitted from {len(correct)} answers"
        + (f" ({merged} recorded earlier, {len(ans.correct)} from this file)" if merged else "")
        + (f"; {ans.n_merged} repeated answers merged by majority vote" if ans.n_merged else ""),
        f"  observed accuracy on the answered questions:  {float(correct.mean()):.4f}",
        f"  predicted mean accuracy on them:              {acc:.4f} (posterior sd {sd:.4f})",
        f"  the model now has {new.n_llms} LLMs; written to {out}",
    ]
    return "\n".join(lines)


def _check_out(model: str, out: str, in_place: bool) -> None:
    """Refuse ``--out`` naming the ``--model`` file (same path, or the same file through a
    link) unless ``--in-place``: rewriting the model a team loads should be deliberate."""
    import os

    from irt_fast.errors import InputError

    same = os.path.realpath(out) == os.path.realpath(model)
    if not same and os.path.exists(out) and os.path.exists(model):
        same = os.path.samefile(out, model)
    if same and not in_place:
        raise InputError(
            f"--out {out} is the --model file: pass --in-place to rewrite it, or write elsewhere"
        )


def predicted_accuracy(
    post: Any, alpha: np.ndarray, beta: np.ndarray, *, has_bias: bool
) -> tuple[float, float]:
    """Mean P(correct) over the questions under the MAP (θ, b) and its posterior sd.

    The sd is the delta method on the Laplace posterior: the gradient of the mean probability
    with respect to (θ, b) is the mean of p(1-p)·(α, 1) over the questions.

    Args:
        post: the Posterior (``theta`` [d], ``bias``, ``cov`` [p, p]).
        alpha: item parameters ``[k, d]``.
        beta: item difficulties ``[k]``.
        has_bias: whether (θ, b) includes the offset b (p = d + 1).

    Returns:
        (mean accuracy, posterior sd).
    """
    a = np.asarray(alpha, dtype=np.float64)
    b = float(post.bias) if has_bias else 0.0
    p = 1.0 / (1.0 + np.exp(-(a @ np.asarray(post.theta, dtype=np.float64) - beta + b)))
    w = p * (1.0 - p)
    grad = (w[:, None] * a).mean(0)
    if has_bias:
        grad = np.append(grad, w.mean())
    var = float(grad @ np.asarray(post.cov, dtype=np.float64) @ grad)
    return float(p.mean()), float(np.sqrt(max(var, 0.0)))
