"""Durable file writes: tmp -> fsync -> rename -> fsync dir.

``write_synced`` writes a file under a temporary name and fsyncs it; ``install``
renames it over the final name and then fsyncs the directory, so the rename itself
survives a crash. A reader (or a restart after a crash) finds the old file or the
whole new one, never part of it.

The files hold balances, keys and orders: they are the operator's only (mode 0600).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


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
