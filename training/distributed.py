"""Data-parallel training over the processes torchrun starts (DistributedDataParallel).

    torchrun --standalone --nproc_per_node 2 -m training.fit --data DIR --out DIR

There is one training loop (``training.loop.fit_model``); a single process is world size 1 and
every helper here is then a no-op. Under torchrun (``WORLD_SIZE`` > 1 in the environment) each
rank holds the whole training set and the same model, and per step:

- draws the same global batch as one process would (the permutation comes from the shared
  seeded generator) and computes its share of it, positions ``rank, rank + W, ...`` (the
  interleaving of torch's ``DistributedSampler``, without its padding: every rank runs the
  same steps, and a short last batch may leave a rank fewer rows or none);
- draws the embedding noise and the dropout masks for the whole global batch and keeps its own
  rows (``training.model.BatchShare``), so the random draws do not depend on the world size;
- weights its summed pair losses by ``W / pairs in the global batch``, so that DDP's mean of
  the ranks' gradients is the gradient of the global batch's mean loss;
- all-reduces the mixture's expert loads before the load-balancing update (``World.sum_``).

Validation runs on rank 0 and its record is broadcast, so the plateau schedule and early
stopping take the same decisions on every rank; only rank 0 writes files (training.fit).
See docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from irt_fast.errors import InputError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (``size == 1``: alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that validates, logs and writes."""
        return self.rank == 0

    def share(self, n: int) -> Tensor:
        """Positions of this rank's rows in a global batch of ``n`` rows (CPU, int64).

        Args:
            n: rows in the global batch.

        Returns:
            ``rank, rank + size, ...`` below ``n`` (all of ``0..n-1`` when alone).
        """
        return torch.arange(self.rank, n, self.size)

    def sum_(self, t: Tensor) -> Tensor:
        """Sum ``t`` over every rank, in place (NCCL needs it on this rank's GPU).

        Args:
            t: the same shape on every rank.

        Returns:
            ``t``, now holding the sum.
        """
        if self.size > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (picklable; other ranks may pass None).

        Args:
            obj: the value on rank 0.

        Returns:
            Rank 0's value.
        """
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def device(self, device: torch.device) -> torch.device:
        """The device this rank computes on: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``.

        Args:
            device: the device asked for (``--device``).

        Returns:
            The device to use.
        """
        if self.size > 1 and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` under DistributedDataParallel, or ``model`` itself when alone.

        Buffers are synced once at the start and not re-broadcast each step: the only one, the
        mixture's selection bias, is updated from all-reduced loads and so is the same on every
        rank already. Gradients are views of DDP's all-reduce buckets (no second copy).

        Args:
            model: the module whose ``forward`` the training step calls.
            device: this rank's device (``World.device``).

        Returns:
            The module to call in the training step.
        """
        if self.size == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        # recent torch renamed broadcast_buffers (now deprecated) to forward_sync_buffers
        renamed = "forward_sync_buffers" in inspect.signature(ddp).parameters
        no_sync = {"forward_sync_buffers" if renamed else "broadcast_buffers": False}
        return ddp(model, device_ids=ids, gradient_as_bucket_view=True, **no_sync)


def current() -> World:
    """The world of the default process group, or a world of one when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit instead of killing outright, so ``finally`` and ``except``
    blocks run: torchrun stops the surviving ranks with SIGTERM when one fails, and the staged
    run directory must then be removed, not left half-written. The old handler comes back at
    the end. (Only the main thread may set handlers; elsewhere this does nothing.)"""
    try:
        old = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def backend_for(device: str) -> str:
    """``nccl`` for CUDA training (``--device cuda…``, or ``auto`` with a GPU), else ``gloo``."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[World]:
    """Join the process group torchrun describes in the environment, for the block.

    Outside torchrun (no ``WORLD_SIZE``, or 1) nothing is initialised and the world is one
    process. Otherwise the group is initialised from torchrun's environment (``env://``:
    ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) with gloo on CPU and NCCL on
    GPU, and destroyed at the end. In both cases SIGTERM unwinds the stack for the block.

    Args:
        device: the ``--device`` value (chooses the backend).

    Yields:
        This process's ``World``.

    Raises:
        InputError: a malformed torchrun environment, or torch without distributed support.
    """
    with _sigterm_unwinds():
        size = os.environ.get("WORLD_SIZE", "1")
        if not size.isdigit() or int(size) < 1:
            raise InputError(f"WORLD_SIZE={size!r} in the environment: expected a positive integer")
        if int(size) == 1 or dist.is_initialized():
            yield current()
            return
        if not dist.is_available():
            raise InputError("this torch build has no torch.distributed: train in one process")
        backend = backend_for(device)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        try:
            dist.init_process_group(backend=backend)
        except ValueError as exc:  # a variable torchrun sets is missing
            raise InputError(f"cannot join the training processes: {exc}") from exc
        try:
            yield current()
        finally:
            dist.destroy_process_group()
