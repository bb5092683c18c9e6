"""Time one all-reduce of a float32 buffer across the torchrun processes (gloo on CPU), as DDP
does per training step with the gradients. Run by benches/ddp_report.py:

    torchrun --standalone --nproc_per_node 2 -m benches._allreduce 21092112 20

Prints (rank 0) one JSON line: the buffer's bytes and the median and minimum seconds.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch
import torch.distributed as dist


def main(argv: list[str]) -> None:
    n, reps = int(argv[0]), int(argv[1])
    dist.init_process_group("gloo")
    buf = torch.ones(n)
    dist.all_reduce(buf)  # connect and warm up
    times = []
    for _ in range(reps):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        times.append(time.perf_counter() - t0)
    if dist.get_rank() == 0:
        print(
            json.dumps({"bytes": 4 * n, "median_s": statistics.median(times), "min_s": min(times)})
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
