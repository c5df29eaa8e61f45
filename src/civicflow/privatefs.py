"""Private runtime state: folders only the owner can enter, files only the owner can read.

``var/`` holds raw source copies (residents' exact addresses, names), private reports
with example values, secrets and the ledger. Nothing in it is for other local users,
so every writer goes through these helpers:

- ``private_dir(path)``: create a folder (and any missing parents) as 0700;
- ``private_file(path)``: write a file atomically (temporary name, then rename) that is
  0600 from the first byte, so it is never readable by others, even half-written;
- ``write_private(path, data)``: the same for data already in memory;
- ``private_umask()``: umask 077 for entry points, so files created by code that does
  not use these helpers (libraries, the portal process) are private too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600
READ_ONLY_MODE = 0o400
UMASK = 0o077

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "READ_ONLY_MODE",
    "UMASK",
    "private_dir",
    "private_file",
    "private_umask",
    "write_private",
]


def private_umask() -> int:
    """Set the process umask to 077 (entry points only); returns the previous one."""
    return os.umask(UMASK)


def private_dir(path: Path | str) -> Path:
    """Create ``path`` and its missing parents as 0700; tighten ``path`` itself if it exists.

    ``Path.mkdir(parents=True, mode=...)`` applies the mode to the last folder only, so
    the missing parents are created one by one here.
    """
    path = Path(path)
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent run made it first
            folder.mkdir(mode=DIR_MODE)
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask
    if path.stat().st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


@contextlib.contextmanager
def private_file(path: Path | str, mode: int = FILE_MODE) -> Iterator[BinaryIO]:
    """Write ``path`` atomically: a private temporary file, renamed into place on success.

    The temporary file is created 0600 by ``mkstemp`` and has a unique name, so two
    runs writing the same path never mix bytes; on an error it is removed and ``path``
    is left as it was. ``mode`` is applied before the rename (0400 for raw copies).
    """
    path = Path(path)
    private_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_private(path: Path | str, data: bytes | str, mode: int = FILE_MODE) -> Path:
    """Atomically write ``data`` (text is UTF-8) to ``path``, private to the owner."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with private_file(path, mode) as fh:
        fh.write(payload)
    return Path(path)
