"""Head-to-head evaluation of every method on one fixed split, with paired-bootstrap CIs.

    python -m training.evaluate --data DIR --out DIR [--quick] [--seeds N] [--costs FILE]

Trains IrtNet, its no-MoE MLP ablation, MF and JE-IRT with the same options on the same split,
each with ``--seeds`` training seeds; exports each method's first-seed model to
OUT/models/<method>.safetensors and checks that the Rust engine serves it (max |P_engine −
P_torch| on 16 test queries); runs KNN, the per-LLM prior, the single-best router and the oracle;
fits the routing decision rules (training.evaluation.decision) on validation; with ``--costs``,
traces accuracy against cost; draws the training-size curve; runs the studies its caller hands in
(``python -m training.evaluate``: training.experiments' ood and interpret); and writes
OUT/report.md, OUT/results.json, OUT/split.csv and PNG figures.

Routing is always among the LLMs observed on a query (a missing answer never counts as a
win). Correctness metrics are over observed test pairs. A method's number is the mean over its
training seeds; its CI is the percentile interval of that seed-mean over test queries resampled
with replacement, the same resamples for every method, so differences vs IrtNet are paired.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.phases import (
    EvalRun,
    Study,
    reference_routers,
    rules_and_costs,
    size_curve,
    studies,
    summarize,
    train_methods,
    write_outputs,
)
from training.evaluation.stats import bootstrap_all, mean_over_seeds, point_metrics, seed_metrics
from training.numerics import flushing_denormals

__all__ = ["bootstrap_all", "main", "mean_over_seeds", "point_metrics", "seed_metrics"]

NEURAL = ("irtnet", "mlp", "mf", "jeirt")


def build_parser(study_names: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The command line; ``study_names`` each get a ``--skip-NAME`` flag."""
    p = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="small models, few epochs, one seed")
    p.add_argument("--seeds", type=int, default=None,
                   help="training seeds per neural method (default 2, which keeps the full run on "
                        "the shared data under an hour on 2 cores; --quick 1)")  # fmt: skip
    p.add_argument("--curve-seeds", type=int, default=None,
                   help="training seeds per training-size point (default 2; --quick 1)")  # fmt: skip
    p.add_argument("--epochs", type=int, default=None,
                   help="most epochs (default: from the data as in training.fit, 30 on MMLU-Pro; "
                        "--quick 5)")  # fmt: skip
    p.add_argument("--lr", type=float, default=None,
                   help="default: from the data as in training.fit (training.defaults: 3e-4 on "
                        "MMLU-Pro); --quick 3e-3")  # fmt: skip
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early-stopping patience in epochs (default: from the data, 5 on MMLU-Pro)",
    )
    p.add_argument("--batch-queries", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="first training seed; bootstrap seed")
    p.add_argument("--split-seed", type=int, default=0, help="0: the fixed reference split")
    p.add_argument("--split", default=None,
                   help="a split table (query_id, split), or 'embedllm': the train/val/test CSVs "
                        "an EmbedLLM-layout --data directory ships (default: the seeded "
                        "80/10/10 split by question)")  # fmt: skip
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default 1000)")
    p.add_argument("--methods", default=",".join(NEURAL), help="neural methods to train")
    p.add_argument("--costs", type=Path, default=None,
                   help="table (parquet/csv/jsonl) of model,cost: adds the accuracy-vs-cost curve")  # fmt: skip
    p.add_argument("--curve-sizes", default=None, help="default 1000,2000,full; --quick 200,full")
    p.add_argument("--curve-methods", default="irtnet,mf")
    p.add_argument("--skip-curve", action="store_true")
    for name in study_names:
        p.add_argument(f"--skip-{name}", action="store_true", help=f"do not run the {name} study")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def choose_split(args: argparse.Namespace, ds: Any) -> dict[str, np.ndarray]:
    """The split ``--split`` names (see the flag's help); every part must hold questions."""
    from irt_fast import splits

    if args.split is None:
        split = splits.fixed_split(ds.queries["query_id"].to_numpy(), seed=args.split_seed)
        what = f"the seeded split (seed {args.split_seed})"
    elif args.split == "embedllm":
        d = args.data if args.data.is_dir() else args.data.parent
        split = splits.embedllm_split(d)
        what = f"the split shipped in {d}"
    else:
        split = splits.read_split_file(args.split, ds)
        what = str(args.split)
    empty = [k for k in ("train", "val", "test") if len(split.get(k, [])) == 0]
    if empty:
        raise SystemExit(f"{what}: no {'/'.join(empty)} questions; the evaluation needs all three")
    return split


def _defaults(args: argparse.Namespace) -> None:
    q = args.quick
    for name, quick, full in (
        ("epochs", 5, None), ("lr", 3e-3, None), ("n_boot", 200, 1000), ("seeds", 1, 2),
        ("curve_seeds", 1, 2), ("curve_sizes", "200,full", "1000,2000,full"),
    ):  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    if args.seeds < 1 or args.curve_seeds < 1:
        raise SystemExit("--seeds and --curve-seeds must be at least 1")


def _setup(args: argparse.Namespace, argv: list[str] | None, ds: Any, mats: dict, device: Any,
           seeds: list[int], curve_seeds: list[int]) -> dict[str, Any]:  # fmt: skip
    import torch

    return {
        "command": "python -m training.evaluate " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": str(args.data),
        "n_llms": int(ds.n_llms),
        "llm_names": list(ds.llm_names),
        "sizes": {k: {"queries": m.n_queries, "pairs": m.n_pairs} for k, m in mats.items()},
        "seed": args.seed,
        "train_seeds": seeds,
        "curve_seeds": curve_seeds,
        "split_seed": args.split_seed,
        "split": args.split or "seeded",
        "quick": bool(args.quick),
        "epochs": args.epochs,
        "lr": args.lr,
        "patience": args.patience,
        "n_boot": args.n_boot,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }  # fmt: skip


@flushing_denormals
def main(argv: list[str] | None = None, extra: Mapping[str, Study] | None = None) -> int:
    """Run the suite (see the module docstring) with the studies ``extra`` (name -> run).

    Args:
        argv: the command-line arguments (default ``sys.argv[1:]``).
        extra: studies to run after the curve, each adding a report section.

    Returns:
        The exit status (0).
    """
    extra = dict(extra or {})
    args = build_parser(tuple(extra)).parse_args(argv)
    _defaults(args)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in NEURAL:
            raise SystemExit(f"unknown method {m!r}; choose from {NEURAL}")
    out: Path = args.out

    import torch
    from tqdm.auto import tqdm

    from irt_fast import data as irt_data
    from irt_fast import splits
    from training.loop import resolve_device
    from training.pairs import matrices

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    device = resolve_device(args.device)
    t_start = time.time()
    ds = irt_data.load_dataset(args.data)
    costs = irt_data.load_costs(args.costs, ds.llm_names) if args.costs else None
    split = choose_split(args, ds)
    mats = matrices(ds, split)
    # every input is read and checked above: only now is --out touched
    (out / "models").mkdir(parents=True, exist_ok=True)
    splits.write_split_file(split, out / "split.csv")
    seeds = [args.seed + i for i in range(args.seeds)]
    curve_seeds = [args.seed + i for i in range(args.curve_seeds)]
    curve_sizes = [] if args.skip_curve else [s for s in args.curve_sizes.split(",") if s]
    curve_methods = [m for m in args.curve_methods.split(",") if m]
    skip = {name for name in extra if getattr(args, f"skip_{name}")}
    n_curve = sum(
        len(curve_seeds) for s in curve_sizes for m in curve_methods
        if not (s == "full" and m in methods and set(curve_seeds) <= set(seeds))
    )  # fmt: skip
    n_steps = len(methods) * len(seeds) + 3 + n_curve + len(extra) - len(skip) + 1
    bar = tqdm(total=n_steps, desc="evaluate", disable=args.quiet, file=sys.stderr)
    res = {"setup": _setup(args, argv, ds, mats, device, seeds, curve_seeds), "training": {}}
    run = EvalRun(args, out, ds, split, mats, device, bar, seeds, res)

    train_methods(run, methods)
    reference_routers(run)
    summarize(run)
    rules_and_costs(run, methods, costs)
    size_curve(run, curve_sizes, curve_methods, curve_seeds)
    studies(run, extra, skip)
    write_outputs(run, t_start)
    bar.close()
    print(f"wrote {out / 'report.md'}, results.json, split.csv, models/, PNGs "
          f"({res['setup']['seconds'] / 60:.1f} min)", flush=True)  # fmt: skip
    return 0
