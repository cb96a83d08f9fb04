"""The FIX files' append-only log written through a shared mapping (adapters/fix/mapped_log.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from adapters.fix import mapped_log
from adapters.fix.mapped_log import MappedLog


def records(n: int, start: int = 0) -> list[bytes]:
    return [b"record %06d %s\n" % (i, b"x" * (i % 37)) for i in range(start, start + n)]


def test_records_are_in_the_file_at_once_and_the_window_stays_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapped_log, "GROW_BYTES", 1000)  # the window moves many times below
    path = tmp_path / "log"
    log = MappedLog(path)
    written = records(2000)
    for i, record in enumerate(written):
        assert log.write(record)
        if i % 400 == 0:  # no flush, no close: another reader of the file sees it already
            assert path.read_bytes().startswith(b"".join(written[: i + 1]))
    assert log._map is not None and len(log._map) < 2 * mapped_log.GROW_BYTES + os.sysconf("SC_PAGE_SIZE")
    log.close()
    assert path.read_bytes() == b"".join(written)  # the zero tail is trimmed
    assert log.closed and not log.write(b"late\n")  # closed: the caller goes on in memory


def test_after_a_crash_the_loader_trims_the_zeros_and_appending_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "log"
    first = records(50)
    log = MappedLog(path)
    for record in first:
        log.write(record)
    data = path.read_bytes()  # the process dies here: no close, the window's zeros stay
    assert data.startswith(b"".join(first)) and data[len(b"".join(first)):].strip(b"\0") == b""
    os.truncate(path, len(b"".join(first)))  # what the stores' loaders do with a tail that does not parse
    again = MappedLog(path)
    more = records(50, start=50)
    for record in more:
        again.write(record)
    again.close()
    assert path.read_bytes() == b"".join(first + more)


def test_a_full_disk_is_an_error_when_the_window_moves_never_a_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks are reserved before a window is mapped, so running out of them surfaces as OSError."""
    monkeypatch.setattr(mapped_log, "GROW_BYTES", 100)
    log = MappedLog(tmp_path / "log")

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mapped_log.os, "posix_fallocate", full)
    assert log.write(b"fits in the first window\n")
    with pytest.raises(OSError, match="No space left"):
        log.write(b"y" * 200)  # past the window: it has to move
    assert log.closed and not log.write(b"after\n")


def test_a_kernel_that_refuses_to_populate_for_writing_only_costs_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``MADV_POPULATE_WRITE`` is Linux >= 5.14: an older kernel's EINVAL leaves appending as it was."""
    monkeypatch.setattr(mapped_log, "GROW_BYTES", 1000)
    monkeypatch.setattr(mapped_log, "MADV_POPULATE_WRITE", -1)  # no kernel knows it: EINVAL at every window
    path = tmp_path / "log"
    log = MappedLog(path)
    written = records(500)
    for record in written:
        assert log.write(record)
    log.close()
    assert path.read_bytes() == b"".join(written)
