"""A run directory that always holds one consistent run, even when a run fails or is killed.

``staged_run(out)`` hands the caller a fresh directory beside ``out``
(``.<name>.tmp-<pid>-<random>``) to write every file into, and only when the caller finishes
swaps it in: ``out`` → ``.<name>.old-<pid>-…``, the temp → ``out``, then the old run is deleted.
An interrupted run (exception, Ctrl-C, SIGKILL) never touches ``out``; its temp directory is
removed then (exception) or by the next run (``clean_stale``: temps of processes that are gone).
A kill between the two renames leaves no ``out`` but the previous run in ``.old-…``: the next
run puts it back before anything else, so ``out`` is the previous run, whole.

``out`` is replaced only when it is empty or holds nothing but a previous run's files
(``run_files``); anything else is refused, so a mistyped ``--out ~`` cannot delete a home
directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from irt_fast._atomic import pid_alive
from irt_fast.errors import InputError


def _siblings(out: Path, kind: str) -> list[tuple[Path, int]]:
    """``(path, pid)`` of the ``.<name>.<kind>-<pid>-…`` directories beside ``out``."""
    prefix = f".{out.name}.{kind}-"
    found = []
    if not out.parent.is_dir():
        return found
    for p in out.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit():
            found.append((p, int(pid)))
    return found


def clean_stale(out: Path) -> list[Path]:
    """Restore a run lost between the swap's renames, then delete the temp and old directories
    of processes that no longer run. Returns the deleted paths."""
    out = Path(out).resolve()
    removed = []
    olds = [(p, pid) for p, pid in _siblings(out, "old") if not pid_alive(pid)]
    if olds and not out.exists():
        newest = max(olds, key=lambda t: t[0].stat().st_mtime)
        os.replace(newest[0], out)
        olds.remove(newest)
    for p, pid in [*olds, *_siblings(out, "tmp")]:
        if not pid_alive(pid) and p.exists():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def check_out(out: Path, run_files: Iterable[str]) -> None:
    """Refuse an ``out`` this run may not replace (see the module docstring)."""
    out = Path(out).resolve()
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"--out {out} exists and is not a directory")
    allowed = set(run_files)
    other = sorted(p.name for p in out.iterdir() if p.name not in allowed)
    if other:
        raise InputError(
            f"--out {out} holds files that are not a previous run's ({', '.join(other[:5])}"
            f"{' …' if len(other) > 5 else ''}); choose an empty or a previous run directory"
        )


@contextlib.contextmanager
def staged_run(out: Path, run_files: Iterable[str]) -> Iterator[Path]:
    """Yield a fresh temp directory beside ``out``; on normal exit swap it in as ``out``."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    check_out(out, run_files)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{tag}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(out.parent)


def _fsync_dir(d: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
