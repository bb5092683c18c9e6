"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

The temporary file sits beside the target as ``.<name>.<pid>.<random>.tmp<suffix>``. A process
killed while writing (SIGKILL, power loss) cannot remove it, so every later write to the same
target first removes the temporary files of writers that are no longer running (the pid in
the name; a live process's file is never touched). ``stale_temp_files`` lists them.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

# The process umask, read once: os.umask can only be read by setting it, which is not
# thread-safe, so it is not done per write.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _temp_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(
        rf"^\.{re.escape(path.name)}\.(\d+)\.[A-Za-z0-9_]+\.tmp{re.escape(path.suffix)}$"
    )


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (another user's counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's live process (or an absurd pid): leave its file alone
    return True


def stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files left beside ``path`` by writers that were killed.

    Args:
        path: the target file.

    Returns:
        Their paths (the writer's pid, in the name, is no running process).
    """
    path = Path(path)
    pat = _temp_pattern(path)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    out = []
    for n in names:
        m = pat.match(n)
        if m and not pid_alive(int(m.group(1))):
            out.append(path.parent / n)
    return out


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[str], object], *, fsync: bool = True
) -> Path:
    """Call ``write(tmp)`` with a temporary path beside ``path``, then rename it over ``path``.

    The temporary name keeps ``path``'s suffix, for writers that pick a format from it. The file
    gets the mode a plain ``open(path, "w")`` would (0666 less the umask; ``mkstemp`` alone
    gives 0600, which would hide model files from the rest of a team). On any error the
    temporary file is removed and ``path`` is left as it was; the temporary files of earlier
    writers that were killed are removed first. ``fsync=False`` skips the flush to disk, for
    caches where a lost write only costs a recomputation.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in stale_temp_files(path):
        old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
