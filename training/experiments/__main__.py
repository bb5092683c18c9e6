"""Run one study on its own: ood (benchmarks left out of training), interpret (what the learned
parameters mean) or onboard (new LLMs from k answers). ``python -m training.evaluate`` also runs
ood and interpret, as sections of its report.

    python -m training.experiments {ood,interpret,onboard} --data DIR --out DIR [--quick]
        [--seed N] [--max-benchmarks N] (ood) [--folds N] [--synthetic-llms N] (onboard)

Writes ``result.json`` (every number) and ``report.md`` (the section's tables) beside its PNGs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

from training.numerics import flushing_denormals

EXPERIMENTS = ("ood", "interpret", "onboard")
MODULES = {"onboard": "training.experiments.onboard_eval"}


@flushing_denormals
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.experiments", description=__doc__)
    p.add_argument("name", choices=EXPERIMENTS)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0, help="0: the fixed reference split")
    p.add_argument("--max-benchmarks", type=int, help="ood: leave out only this many benchmarks")
    p.add_argument("--folds", type=int, help="onboard: folds of LLMs (default 5)")
    p.add_argument("--synthetic-llms", type=int, help="onboard: also a synthetic pool this size")
    args = p.parse_args(argv)

    from irt_fast.data import load_dataset
    from irt_fast.splits import fixed_split

    ds = load_dataset(args.data)
    split = fixed_split(ds.queries["query_id"].to_numpy(), seed=args.split_seed)
    kw = {"max_benchmarks": args.max_benchmarks} if args.max_benchmarks else {}
    if args.folds:
        kw["n_folds"] = args.folds
    if args.synthetic_llms:
        kw["synthetic_llms"] = args.synthetic_llms
    mod = importlib.import_module(MODULES.get(args.name, f"training.experiments.{args.name}"))
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = mod.run(ds, split, args.out, quick=args.quick, seed=args.seed, **kw)
    res["seconds"] = time.perf_counter() - t0
    res["quick"] = args.quick
    (args.out / "result.json").write_text(json.dumps(res, indent=1, default=float))
    (args.out / "report.md").write_text(res["markdown"])
    print(res["markdown"])
    print(f"{args.name}: {res['seconds']:.0f} s; wrote {args.out}/result.json, report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
