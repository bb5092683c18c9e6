"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

# The process umask, read once: os.umask can only be read by setting it, which is not
# thread-safe, so it is not done per write.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[str], object], *, fsync: bool = True
) -> Path:
    """Call ``write(tmp)`` with a temporary path beside ``path``, then rename it over ``path``.

    The temporary name keeps ``path``'s suffix, for writers that pick a format from it. The file
    gets the mode a plain ``open(path, "w")`` would (0666 less the umask; ``mkstemp`` alone
    gives 0600, which would hide model files from the rest of a team). On any error the
    temporary file is removed and ``path`` is left as it was. ``fsync=False`` skips the flush
    to disk, for caches where a lost write only costs a recomputation.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
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
