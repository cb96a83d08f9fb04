"""engine.durable: whole files or nothing, the operator's eyes only, renames that survive a crash."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import durable, replica


def test_write_synced_then_install_replaces_the_file_with_mode_0600(tmp_path: Path) -> None:
    final = tmp_path / "state.bin"
    final.write_bytes(b"old")
    final.chmod(0o644)
    tmp = tmp_path / "state.tmp"
    durable.write_synced(tmp, (b"new ", b"state"))
    assert final.read_bytes() == b"old"  # nothing is replaced before install
    durable.install(tmp, final)
    assert final.read_bytes() == b"new state"
    assert not tmp.exists()
    assert stat.S_IMODE(final.stat().st_mode) == 0o600


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    def parts() -> Iterator[bytes]:
        yield b"first half"
        raise OSError(28, "No space left on device")

    tmp = tmp_path / "state.tmp"
    with pytest.raises(OSError, match="No space left"):
        durable.write_synced(tmp, parts())
    assert not tmp.exists()


def test_install_and_write_private_fsync_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    real = durable.fsync_dir

    def recording(directory: Path) -> None:
        synced.append(directory)
        real(directory)

    monkeypatch.setattr(durable, "fsync_dir", recording)
    target = tmp_path / "leaves" / "00000000000000000042.leaves"
    target.parent.mkdir()
    replica.write_private(target, b"leaf data")
    assert target.read_bytes() == b"leaf data"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert synced == [target.parent]  # the rename is on disk before the caller goes on


def test_start_writeback_is_a_hint_that_never_fails_the_caller(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 10_000)
        durable.start_writeback(fd, 0, 10_000)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    durable.start_writeback(fd, 0, 10_000)  # a closed descriptor: the fdatasync that follows would report it
    assert (tmp_path / "data").read_bytes() == b"x" * 10_000
