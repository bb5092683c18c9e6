"""Time one training epoch, query-major against the paper's random row batches, in one run.

    python -m training.experiments.time_epoch --data ../shared/data/mmlu_pro [--row-steps 10]

Both use the same model, data (the fixed split's training queries), optimiser and thread
count. Query-major runs a full epoch; row batching runs ``--row-steps`` steps and extrapolates
to its full epoch (the step cost is constant), which the output says.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch

from training.loop import TrainOptions, fit_model
from training.numerics import flushing_denormals
from training.pairs import matrices
from training.presets import model_config


@flushing_denormals
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m training.experiments.time_epoch", description=__doc__
    )
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--row-steps", type=int, default=10, help="row-batch steps to time")
    p.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = p.parse_args(argv)

    from irt_fast.data import load_dataset
    from irt_fast.splits import fixed_split

    ds = load_dataset(args.data)
    split = fixed_split(ds.queries["query_id"].to_numpy(), seed=0)
    train = matrices(ds, split)["train"]
    cfg = model_config("irtnet", "paper", embed_dim=ds.embeddings.shape[1], n_llms=ds.n_llms)
    base = TrainOptions(epochs=1, progress=False, device="cpu", patience=99)

    t0 = time.perf_counter()
    fit_model(cfg, train, None, replace(base, batching="query"))
    query_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    fit_model(cfg, train, None, replace(base, batching="rows", max_steps_per_epoch=args.row_steps))
    rows_s = time.perf_counter() - t0
    row_steps_full = math.ceil(train.n_pairs / base.batch_rows)
    rows_epoch = rows_s / args.row_steps * row_steps_full

    res = {
        "threads": torch.get_num_threads(),
        "train_queries": train.n_queries,
        "train_pairs": train.n_pairs,
        "query_major_epoch_s": round(query_s, 1),
        "query_major_steps": math.ceil(train.n_queries / base.batch_queries),
        "row_batch_steps_timed": args.row_steps,
        "row_batch_epoch_s_extrapolated": round(rows_epoch, 1),
        "row_batch_steps_per_epoch": row_steps_full,
        "speedup": round(rows_epoch / query_s, 1),
    }
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
