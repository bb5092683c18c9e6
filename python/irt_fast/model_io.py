"""Writing a Model (its current pool of LLMs) as a weights file, format v2 (docs/format.md).

The engine holds the item network in its own layout, so the network's tensors are read back
from the file the model was loaded from, after checking that file is the one that was loaded
(size, mtime_ns, inode before and after reading). θ, b, the prior, ``llm_info`` and the added
LLMs' answers come from the model. The new file is loaded by the engine once before it is
renamed into place: a file ``save`` writes is always one ``irt_fast.load`` accepts. Subnormal
values are written as zero, as the engine holds them after loading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from irt_fast import inputs
from irt_fast._atomic import atomic_write
from irt_fast._native import _core
from irt_fast.errors import InputError, WeightsFormatError

FORMAT = "irt_fast"
FORMAT_VERSION = "2"
#: Tensors that describe the pool of LLMs rather than the item network.
_POOL_TENSORS = ("theta", "llm_bias")
_POOL_PREFIXES = ("prior.", "answers.")


def save(model: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` (format v2), atomically.

    Args:
        model: an ``irt_fast.Model`` loaded from a file (or derived from one).
        path: the target file; its directory is created if needed.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: the source file is gone.
        WeightsFormatError: the source file changed since it was loaded, or cannot be read.
        InputError: a bad ``path`` (a directory, or under a file).
        OSError: the file cannot be written (disk full, no permission).

    A symlink at ``path`` keeps pointing where it did: the file it points to is replaced.
    The temporary file of a save that was killed is removed by the next save to the same path
    (``irt_fast._atomic``).
    """
    target = _target(Path(inputs.path_arg("path", path)))
    src = model.path
    if src is None or model._source is None:
        raise InputError("this model was not loaded from a weights file, so it cannot be saved")
    meta, network = _read_network(src, model._source)
    tensors = dict(network)
    tensors["theta"] = np.ascontiguousarray(model._engine.theta, dtype=np.float32)
    has_bias = bool(model.config.get("llm_bias", True))
    if has_bias:
        tensors["llm_bias"] = np.ascontiguousarray(model._engine.llm_bias, dtype=np.float32)
    prior = model.prior
    tensors["prior.mean"] = np.ascontiguousarray(prior.mean, dtype=np.float32)
    tensors["prior.cov"] = np.ascontiguousarray(prior.cov, dtype=np.float32)
    answers = model._engine.answers
    if answers is not None and len(answers[2]):
        for key, arr in zip(("alpha", "beta", "correct"), answers, strict=True):
            tensors[f"answers.{key}"] = np.ascontiguousarray(arr, dtype=np.float32)
    # as the engine holds them: subnormal values were set to zero at load
    tensors = {k: _flush_subnormals(v) for k, v in tensors.items()}
    metadata = _metadata(model, meta)

    def write(tmp: str) -> None:
        from safetensors import SafetensorError
        from safetensors.numpy import save_file

        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as exc:  # its own class, no OSError even for a full disk
            if "IoError" in str(exc):
                raise OSError(f"{target}: cannot write the weights file: {exc}") from None
            raise WeightsFormatError(f"{target}: cannot be written as safetensors: {exc}") from None
        check = _core().Engine.load(tmp, 1)
        if list(check.llm_names) != model.llm_names:  # pragma: no cover - a writer bug
            raise WeightsFormatError(f"{tmp}: the written file does not read back its LLMs")

    atomic_write(target, write)
    if _same_file(target, src):
        # ``path`` replaced the source with a file holding the same item network: later saves
        # of this model read it from there.
        st = os.stat(target)
        model._source = (st.st_size, st.st_mtime_ns, st.st_ino)
    return target


def _target(target: Path) -> Path:
    """The file to write: a symlink's target (the link stays a link), checked to be a file
    path whose existing ancestors are directories."""
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    if target.is_dir():
        raise InputError(f"path {str(target)!r} is a directory; give a file name")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"path {str(target)!r}: {str(parent)!r} is not a directory")
            break
    return target


def _read_network(
    src: str, loaded: tuple[int, int, int]
) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The source file's metadata and item-network tensors, checked unchanged since loading."""
    from safetensors import SafetensorError, safe_open

    _check_unchanged(src, loaded)
    try:
        with safe_open(src, framework="np") as f:
            meta = dict(f.metadata() or {})
            network = {
                k: f.get_tensor(k)
                for k in f.keys()  # noqa: SIM118 - safe_open is not a mapping
                if k not in _POOL_TENSORS and not k.startswith(_POOL_PREFIXES)
            }
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsFormatError(f"{src}: cannot read the item network back: {exc}") from exc
    _check_unchanged(src, loaded)  # not replaced while it was read
    return meta, network


def _flush_subnormals(a: np.ndarray) -> np.ndarray:
    """``a`` with its subnormal float32 values (exponent bits 0, mantissa not) set to zero, as
    the engine's loader does; read from the bits, whatever the thread's float flags."""
    if a.dtype != np.float32:
        return a
    bits = a.view(np.int32)
    sub = ((bits & 0x7F800000) == 0) & ((bits & 0x007FFFFF) != 0)
    if not sub.any():
        return a
    out = a.copy()
    out[sub] = 0.0
    return out


def _check_unchanged(src: str, loaded: tuple[int, int, int]) -> None:
    st = os.stat(src)  # FileNotFoundError when it is gone
    now = (st.st_size, st.st_mtime_ns, st.st_ino)
    if now != tuple(loaded):
        raise WeightsFormatError(
            f"{src}: the weights file changed since this model was loaded (size, mtime or "
            "inode differ), so its item network cannot be copied; load it again and redo "
            "the changes"
        )


def _metadata(model: Any, source_meta: dict[str, str]) -> dict[str, str]:
    try:
        cfg = json.loads(source_meta["config"])
    except (KeyError, ValueError, RecursionError) as exc:
        raise WeightsFormatError(f"{model.path}: metadata 'config' unreadable: {exc}") from None
    cfg["n_llms"] = model.n_llms
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(cfg),
        "llm_names": json.dumps(model.llm_names),
        "embedder": source_meta.get("embedder") or json.dumps(model.embedder),
        "llm_info": json.dumps(model.llm_info),
    }
    if "training" in source_meta:
        meta["training"] = source_meta["training"]
    return meta


def _same_file(a: Path, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
