"""What the daemon asks of the machine while it runs: the CPUs' wake-up latency (Linux PM QoS).

An idle CPU halts. Waking it costs time, and every order pays it at least
twice: once when its bytes arrive, and once when the journal's fdatasync
completes. On the 2-vCPU VM the benchmarks run on (its cpuidle driver halts
at once: ``haltpoll.guest_halt_poll_ns=0``), the halts came to ~100 us of a
FIX order's round trip: p50 295-332 us with the kernel's idle states, 198-213
us with the CPUs polling instead (3 x 3,000 orders each, interleaved, one
sitting; reference/performance.md's closed-loop method). Tuned exchanges and
trading engines run this way; the price is power: an idle CPU spins instead
of sleeping.

``[host] cpu_latency_us`` is that choice. The request is the kernel's own
interface for it (``Documentation/power/pm_qos_interface.rst``): write the
most wake-up latency you accept, as a 32-bit integer, to
``/dev/cpu_dma_latency`` and keep the file open. The kernel then uses no idle
state whose exit takes longer (0: the CPUs poll). Closing the file, which the
kernel also does when the process dies, withdraws the request, so nothing
outlives the daemon. Opening the device needs root (or write access granted
to the daemon's user); without it the daemon says so once and runs with the
kernel's idle states, which changes its latency, never its results.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from typing import Final

log = logging.getLogger("satchel.host")

CPU_LATENCY_DEVICE: Final = "/dev/cpu_dma_latency"
CPU_LATENCY_DEFAULT: Final = -1  # leave the CPUs' idle states to the kernel
CPU_LATENCY_MAX_US: Final = 2_000_000_000  # the kernel's own "no constraint" value (PM_QOS_CPU_LATENCY_DEFAULT_VALUE)


@contextlib.contextmanager
def cpu_latency(us: int, device: str | None = None) -> Iterator[bool]:
    """Hold the request that no CPU's wake-up takes longer than ``us`` microseconds, for the block.

    Yields whether the request is held: False when ``us`` is
    ``CPU_LATENCY_DEFAULT`` or the machine refused it (logged as a warning
    naming the device and the reason). ``device``: ``CPU_LATENCY_DEVICE`` unless given.
    """
    fd = -1 if us == CPU_LATENCY_DEFAULT else _request(us, device or CPU_LATENCY_DEVICE)
    if fd < 0:
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)  # withdraws the request


def _request(us: int, device: str) -> int:
    """The open device holding the request, or -1 (logged) when the machine refuses it."""
    try:
        fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        log.warning("host.cpu_latency_us = %d not applied: cannot open %s: %s; the CPUs keep the kernel's idle "
                    "states (run the daemon as root, or give its user write access to the device)",
                    us, device, exc.strerror)
        return -1
    try:
        os.write(fd, struct.pack("=i", us))  # four bytes: a binary s32 (any other length is read as hex text)
    except OSError as exc:
        os.close(fd)
        log.warning("host.cpu_latency_us = %d not applied: writing %s failed: %s", us, device, exc.strerror)
        return -1
    log.info("holding CPU wake-up latency <= %d us (%s) while the daemon runs", us, device)
    return fd
