"""Write a file atomically: readers see the old file or the whole new one, never a part."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["write_atomic"]

#: Attempts at a fresh temporary name (48 random bits each; a clash is already unlikely).
_NAME_ATTEMPTS = 10


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and
    :func:`os.replace`: readers see the old file or the whole new one, never a partial file,
    and a failure leaves no temporary file behind.

    The file gets the permissions a plain ``open(path, "w")`` would give: it is created with
    mode 0666, which the operating system reduces by the umask (not mkstemp's private 0600).
    The process-wide umask is never read or changed, so other threads creating files at the
    same time are not affected.
    """
    fd, tmp = _create_temporary(path)
    try:
        try:
            handle = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        except BaseException:
            os.close(fd)
            raise
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create a new hidden file beside ``path`` (mode 0666 less the umask); its descriptor
    and name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_NAME_ATTEMPTS):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {str(path)!r} after {_NAME_ATTEMPTS} tries")
