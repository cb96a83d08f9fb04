"""Durable file writes: tmp -> fsync -> rename -> fsync dir.

``write_synced`` writes a file under a temporary name and fsyncs it; ``install``
renames it over the final name and then fsyncs the directory, so the rename itself
survives a crash. A reader (or a restart after a crash) finds the old file or the
whole new one, never part of it.

The files hold balances, keys and orders: they are the operator's only (mode 0600).

``start_writeback`` lets a caller that is about to fdatasync overlap the disk's
data write with its own work (the journal's group commit).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

SYNC_FILE_RANGE_WRITE: Final = 2  # <linux/fs.h>: start writeback of the range's dirty pages, do not wait


def write_synced(path: Path, parts: Iterable[bytes]) -> None:
    """Create or truncate ``path`` (mode 0600), write ``parts`` and fsync it; a failed write removes it."""
    try:
        _write(path, parts)
    except OSError:
        path.unlink(missing_ok=True)
        raise


def _write(path: Path, parts: Iterable[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a file left behind under this name keeps its old mode through O_TRUNC
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def install(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` (written by ``write_synced``) over ``final``, then fsync the directory."""
    os.replace(tmp, final)
    fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux; the os module has no binding), or None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_SYNC_FILE_RANGE: Final = _sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing ``length`` bytes of ``fd`` from ``offset`` to the disk, without waiting.

    Only a head start for an fdatasync that follows, never instead of one: the
    fdatasync then waits for a write already under way (and the disk's cache
    flush), so what the caller does in between overlaps the transfer. On this
    project's reference disk a 20 KB group commit's fdatasync fell from ~140 us
    to ~65 us after 150 us of other work. An error is left for the fdatasync to
    report (it sees the same failed pages); without ``sync_file_range`` this does nothing.
    """
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, SYNC_FILE_RANGE_WRITE)
