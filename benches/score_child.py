"""The parts of the scoring report that run in a process of their own (run by score_report.py).

    python benches/score_child.py gen OUT ROWS ROW_GROUP SEED   → writes a synthetic Parquet file
    python benches/score_child.py engine MODEL ROWS             → the engine alone, rows in memory
    python benches/score_child.py wide OUT_DIR N_LLMS           → reference-size models, N LLMs
    python benches/score_child.py ray MODEL INPUT OUT_DIR BATCHES → Ray Data, Parquet in and out

Each prints one JSON line on stdout. The synthetic queries are unit-norm 768-d float32 vectors
(as the reference embedder's), ids 0..ROWS-1 and a ``bench`` label of 20 values, written in row
groups of ROW_GROUP rows, so only one row group is ever in the generator's memory.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THREADS = 2
DIM = 768


def gen(out: str, rows: int, row_group: int, seed: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema(
        [
            ("query_id", pa.int64()),
            ("embedding", pa.list_(pa.float32(), DIM)),
            ("bench", pa.string()),
        ]
    )
    labels = pa.array([f"bench-{i:02d}" for i in range(20)])
    t0 = time.perf_counter()
    with pq.ParquetWriter(out, schema) as w:
        for start in range(0, rows, row_group):
            n = min(row_group, rows - start)
            x = rng.standard_normal((n, DIM), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            table = pa.table(
                {
                    "query_id": pa.array(np.arange(start, start + n)),
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), DIM),
                    "bench": labels.take(pa.array(rng.integers(0, 20, n))),
                },
                schema=schema,
            )
            w.write_table(table, row_group_size=row_group)
    return {"seconds": time.perf_counter() - t0, "bytes": os.path.getsize(out)}


def engine(model_path: str, rows: int) -> dict:
    """Rows/s of ``Model.route`` on in-memory batches of 16,384 (no I/O): the engine's share."""
    import irt_fast

    m = irt_fast.load(model_path, threads=THREADS)
    x = np.random.default_rng(0).standard_normal((16384, m.embed_dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    m.route(x[:256])  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < rows:
        m.route(x)
        done += len(x)
    dt = time.perf_counter() - t0
    return {
        "rows": done,
        "seconds": dt,
        "kernel": m._engine.kernel,
        "macs": active_macs(m.config),
    }


def active_macs(c: dict) -> int:
    """Multiply-adds per query that a top-k IrtNet computes: the gate, the shared and the k
    selected experts, the heads and one score per LLM (the engine's ``macs_per_query`` counts
    every expert)."""
    dm, h, o, d, n = c["embed_dim"], c["hidden_dim"], c["expert_dim"], c["d"], c["n_llms"]
    routed = c["n_routed"]
    k = min(c.get("top_k") or routed, routed)
    return dm * routed + (c["n_shared"] + k) * (dm * h + h * o) + o * (d + 1) + d * n


def wide(out_dir: str, n_llms: int) -> dict:
    """Reference-size IrtNets (dense and top-2) over ``n_llms`` LLMs, random weights."""
    import torch

    from training.export import save_model
    from training.model import IrtNetConfig, build_model

    paths = {}
    names = [f"llm-{i:05d}" for i in range(n_llms)]
    for key, kw in {"dense": {}, "top2": {"top_k": 2}}.items():
        torch.manual_seed(0)
        model = build_model(IrtNetConfig(n_llms=n_llms, **kw)).eval()
        p = Path(out_dir) / f"{key}_{n_llms}.safetensors"
        save_model(model, p, llm_names=names, embedder={"name": "x", "dim": DIM, "normalize": True})
        paths[key] = str(p)
    return paths


def ray_run(model_path: str, src: str, out_dir: str, batches: list[int]) -> dict:
    """Ray Data: read_parquet → map_batches(Scorer) → write_parquet, once per batch size, on a
    local 2-CPU Ray: one actor (1 CPU, engine threads 2), the read/write tasks on the rest."""
    import logging

    import ray

    import irt_fast.ray_data as ird

    t0 = time.perf_counter()
    ray.init(
        num_cpus=THREADS,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    res: dict = {"init_seconds": time.perf_counter() - t0, "runs": {}}
    rows = None
    for b in batches:
        ds = ray.data.read_parquet(src, columns=["query_id", "embedding"])
        out = ds.map_batches(
            ird.Scorer,
            fn_constructor_kwargs={"model": model_path, "threads": THREADS},
            batch_size=b,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=1),
        )
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            out.write_parquet(tmp)
            dt = time.perf_counter() - t0
            if rows is None:
                import pyarrow.dataset as pads

                rows = pads.dataset(tmp).count_rows()
        res["runs"][b] = dt
    ray.shutdown()
    res["rows"] = rows
    return res


def main(argv: list[str]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
    who = argv[0]
    if who == "gen":
        res = gen(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    elif who == "engine":
        res = engine(argv[1], int(argv[2]))
    elif who == "wide":
        res = wide(argv[1], int(argv[2]))
    elif who == "ray":
        res = ray_run(argv[1], argv[2], argv[3], [int(b) for b in argv[4].split(",")])
    else:
        raise SystemExit(f"unknown part {who!r}")
    print(json.dumps(res))


if __name__ == "__main__":
    sys.path[:0] = [
        str(Path(__file__).resolve().parents[1] / "python"),
        str(Path(__file__).resolve().parents[1]),
    ]
    main(sys.argv[1:])
