"""Keep training's numbers out of the subnormal range, where x86 arithmetic is slow.

Dead hidden units (a ReLU that no longer fires) get no gradient from the loss, only Adam's
weight decay, so their weights and Adam's moments shrink geometrically. After some epochs they
are subnormal floats (|x| < 1.18e-38), and on processors that handle those in microcode (Intel
Xeon: a 768 × 20,480 GEMM at batch 64 went from 30 ms to 2.6 s with 20% subnormal weights) every
step gets slower. Two measures, chosen per run by :func:`keep_normal`:

1. **Flush-to-zero** (FTZ and DAZ, ``torch.set_flush_denormal``): arithmetic then never writes a
   subnormal and reads one as zero, at no cost. It is a per-thread CPU flag (MXCSR): a thread
   copies it from the thread that created it, so it holds on torch's intra-op (OpenMP) threads,
   which also run MKL's and oneDNN's GEMMs, only when set before that pool started.
   The training CLIs (``training.fit``, ``evaluate``, ``experiment``, ``leaderboard_eval``,
   ``time_epoch``) set it first thing (:func:`flush_denormals`).
2. **Snapping**, when a probe finds an intra-op thread that still computes subnormals (the pool
   started earlier in this process, e.g. under pytest or in a notebook, or nobody set the
   flag) or the device is not the CPU: every floating gradient is snapped before each
   optimiser step, and every parameter and optimiser state (Adam's ``exp_avg``,
   ``exp_avg_sq``) after it: ``|x| <= TINY`` becomes 0. This costs one pass over them per step
   (about a sixth of a step of the reference IrtNet on 2 cores), which is why it is the
   fallback and not the rule.

Either way the parameters and the optimiser state stay normal or zero. The threshold ``TINY``
is 1e-30 rather than the subnormal bound: a weight below it changes a layer's output by less
than 1e-30 × Σ|x|, far below float32 resolution at any output size the model produces, and
the margin keeps a value snapped before it can decay into the subnormal range within a step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

#: Values with ``|x| <= TINY`` are snapped to zero (see the module docs for why not 1.18e-38).
TINY = 1e-30
#: Smallest positive normal float32: below it a float32 is subnormal.
FLOAT32_MIN_NORMAL = float(torch.finfo(torch.float32).tiny)

# Per probe chunk: above torch's grain size (32,768 elements), so every thread gets one chunk.
_PROBE_CHUNK = 1 << 16


def flush_denormals() -> bool:
    """Turn on flush-to-zero and denormals-are-zero for the calling thread (and every thread it
    creates afterwards, such as torch's intra-op pool if it has not started yet).

    Returns:
        Whether this CPU supports it (``torch.set_flush_denormal``'s answer).
    """
    return bool(torch.set_flush_denormal(True))


F = TypeVar("F", bound=Callable[..., Any])


def this_thread_flushes() -> bool:
    """Whether the calling thread flushes subnormal results to zero (read from the bits)."""
    x = torch.full((1,), 1e-20, dtype=torch.float32)
    return bool(((x * x).view(torch.int32) == 0).all())


def flushing_denormals(fn: F) -> F:
    """Decorate a command's ``main``: flush-to-zero is on while it runs (:func:`flush_denormals`,
    before torch starts its threads) and the calling thread's own flag is put back afterwards,
    so a caller that runs the command in-process (a test, a notebook) keeps its arithmetic.
    torch's intra-op threads keep flushing: they run torch's operations only."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        was = this_thread_flushes()
        flush_denormals()
        try:
            return fn(*args, **kwargs)
        finally:
            if not was:
                torch.set_flush_denormal(False)

    return wrapper  # type: ignore[return-value]


def intra_op_threads_flush() -> bool:
    """Whether every thread that runs torch's CPU operations flushes subnormals to zero.

    Multiplies ``1e-20 × 1e-20`` (subnormal, or 0 under FTZ) over one chunk per intra-op thread;
    the parallel loop hands chunk *i* to thread *i*, and the caller is thread 0. The result is
    read as integer bits, so a thread with DAZ cannot hide a subnormal by comparing it to 0.

    Returns:
        True when every chunk came out zero.
    """
    n = max(torch.get_num_threads(), 1)
    x = torch.full((n * _PROBE_CHUNK,), 1e-20, dtype=torch.float32)
    bits = (x * x).view(torch.int32)
    return bool((bits == 0).all())


def count_subnormal(t: torch.Tensor) -> int:
    """Number of subnormal values in a float tensor, read from the bits (a thread with
    denormals-are-zero compares a subnormal equal to 0, so arithmetic cannot count them).

    Args:
        t: any floating tensor (a non-float32 one is converted to float32 first).

    Returns:
        The count (0 for a non-floating tensor).
    """
    if not t.is_floating_point():
        return 0
    bits = t.detach().to(torch.float32).contiguous().view(torch.int32)
    exponent, mantissa = bits & 0x7F800000, bits & 0x007FFFFF
    return int(((exponent == 0) & (mantissa != 0)).sum())


@torch.no_grad()
def snap_tiny_(tensors: Iterable[torch.Tensor | None], threshold: float = TINY) -> None:
    """Set ``|x| <= threshold`` to zero in place (NaN and infinities are left as they are).

    Args:
        tensors: tensors to snap; None and non-floating tensors are skipped.
        threshold: the snap bound (default ``TINY``).
    """
    for t in tensors:
        if t is not None and t.is_floating_point():
            torch.hardshrink(t, threshold, out=t)


def _params(optim: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for group in optim.param_groups:
        yield from group["params"]


def _grads(optim: torch.optim.Optimizer) -> Iterator[torch.Tensor | None]:
    return (p.grad for p in _params(optim))


def _params_and_state(optim: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for p in _params(optim):
        yield p
        # Adam's moments have the parameter's shape; its scalar step count is not a value
        for s in optim.state.get(p, {}).values():
            if isinstance(s, torch.Tensor) and s.shape == p.shape:
                yield s


def keep_normal(optim: torch.optim.Optimizer, device: torch.device) -> dict[str, Any]:
    """Make sure ``optim``'s parameters, their gradients and its state never become subnormal:
    rely on flush-to-zero when a probe finds it on every intra-op thread, otherwise snap around
    each step (hooks on ``optim``; see the module docs). The calling thread's flags are left as
    they are: a library call does not change a process's arithmetic (entry points opt in with
    ``flush_denormals``).

    Args:
        optim: the training optimiser, already holding the model's parameters.
        device: where the parameters live.

    Returns:
        A JSON record of the choice for metrics.json: ``mode`` ("flush-to-zero" or "snap"),
        ``threshold`` (the snap bound, or None) and ``why``.
    """
    if device.type == "cpu" and intra_op_threads_flush():
        return {
            "mode": "flush-to-zero",
            "threshold": None,
            "why": "every intra-op thread flushes subnormals to zero (probed)",
        }
    optim.register_step_pre_hook(lambda o, args, kwargs: snap_tiny_(_grads(o)))
    optim.register_step_post_hook(lambda o, args, kwargs: snap_tiny_(_params_and_state(o)))
    why = (
        f"device {device.type}: the CPU's flush-to-zero flag does not apply"
        if device.type != "cpu"
        else "an intra-op thread computes subnormals: flush-to-zero was not set before "
        "torch started its threads (probed)"
    )
    return {"mode": "snap", "threshold": TINY, "why": why}


def plant_subnormals(src: str | Path, dst: str | Path, fraction: float, seed: int = 0) -> int:
    """Copy a weights file with a ``fraction`` of every expert weight (``experts.w1``,
    ``experts.w2``) replaced by subnormal values of random sign: a file as a trainer without
    flushing, or another tool, could write. For tests and benchmarks of the readers.

    Args:
        src: a weights file (for example from ``training.export.save_model``).
        dst: where to write the copy (metadata kept).
        fraction: share of each expert matrix's values to replace, in [0, 1].
        seed: for the positions and values.

    Returns:
        The number of subnormal values written.
    """
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(src))
    with safe_open(str(src), framework="np") as f:
        meta = f.metadata()
    rng = np.random.default_rng(seed)
    planted = 0
    for name in ("experts.w1", "experts.w2"):
        if name not in tensors:
            continue
        w = tensors[name].copy()
        mask = rng.random(w.shape) < fraction
        n = int(mask.sum())
        # from the bits: a float conversion would give 0 in a thread with flush-to-zero
        bits = rng.integers(1, 0x00800000, n, dtype=np.int32) | np.where(
            rng.random(n) < 0.5, np.int32(-0x80000000), np.int32(0)
        )
        w[mask] = bits.view(np.float32)
        tensors[name] = w
        planted += n
    save_file(tensors, str(dst), metadata=meta)
    return planted
