"""The CPU wake-up latency request the daemon holds while it runs (engine/host.py, ``[host] cpu_latency_us``)."""

from __future__ import annotations

import copy
import logging
import os
import struct
from pathlib import Path

import pytest
import trio

from engine import host
from engine.config import DEFAULT, Config, parse_config
from engine.host import CPU_LATENCY_DEVICE, cpu_latency
from engine.runtime import Engine


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _holding(device: Path) -> bool:
    """Whether this process has ``device`` open."""
    return any(os.path.realpath(f"/proc/self/fd/{fd}") == str(device) for fd in _open_fds())


def _config(us: int) -> Config:
    data = copy.deepcopy(DEFAULT)
    data["host"] = {"cpu_latency_us": us}
    return parse_config(data)


def test_the_request_is_written_as_an_s32_and_withdrawn_on_exit(tmp_path: Path) -> None:
    device = tmp_path / "device"
    device.write_bytes(b"")
    before = _open_fds()
    with cpu_latency(250, str(device)) as held:
        assert held
        assert len(_open_fds() - before) == 1  # the open file is the request
        assert device.read_bytes() == struct.pack("=i", 250)
    assert _open_fds() == before


def test_minus_one_leaves_the_machine_alone(tmp_path: Path) -> None:
    device = tmp_path / "device"
    device.write_bytes(b"untouched")
    with cpu_latency(-1, str(device)) as held:
        assert not held
    assert device.read_bytes() == b"untouched"


def test_a_missing_device_is_a_warning_not_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "no-such-device"
    with caplog.at_level(logging.WARNING, logger="satchel.host"), cpu_latency(0, str(missing)) as held:
        assert not held
    assert f"host.cpu_latency_us = 0 not applied: cannot open {missing}: No such file or directory" in caplog.text


def test_a_refused_write_closes_the_device_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    before = _open_fds()
    with caplog.at_level(logging.WARNING, logger="satchel.host"), cpu_latency(0, "/dev/full") as held:
        assert not held
        assert _open_fds() == before
    assert "host.cpu_latency_us = 0 not applied: writing /dev/full failed: No space left on device" in caplog.text


async def test_the_engine_holds_the_request_while_it_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device = tmp_path / "device"
    device.write_bytes(b"")
    monkeypatch.setattr(host, "CPU_LATENCY_DEVICE", str(device))
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(_config(40), tmp_path / "journal").run)
        assert engine.cpu_latency_held and engine.status()["cpuLatencyHeld"] is True and _holding(device)
        assert device.read_bytes() == struct.pack("=i", 40)
        engine.stop()
    assert not engine.cpu_latency_held
    assert not _holding(device)


async def test_an_engine_the_machine_refuses_serves_anyway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(host, "CPU_LATENCY_DEVICE", str(tmp_path / "absent"))
    with caplog.at_level(logging.WARNING, logger="satchel.host"):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(_config(0), tmp_path / "journal").run)
            account = (await engine.create_account()).value
            assert (await engine.deposit(account, "USDC", "5")).ok
            assert engine.status()["cpuLatencyHeld"] is False
            engine.stop()
    assert "cannot open" in caplog.text


def _kernel_value() -> int:
    with open(CPU_LATENCY_DEVICE, "rb") as f:  # reading gives the aggregate of every request in force
        value: int = struct.unpack("=i", f.read(4))[0]
        return value


@pytest.mark.skipif(not os.access(CPU_LATENCY_DEVICE, os.R_OK | os.W_OK), reason=f"{CPU_LATENCY_DEVICE} not writable here")
def test_the_kernel_enforces_the_request_and_forgets_it_after() -> None:
    before = _kernel_value()
    if before <= 7:
        pytest.skip(f"another process already holds {before} us")
    with cpu_latency(7) as held:
        assert held and _kernel_value() == 7
    assert _kernel_value() == before
