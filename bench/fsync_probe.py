"""fdatasync latency by file layout: which way of writing the journal makes its fsync cheap on this disk?

``python -m bench.fsync_probe [DIR] [--writes N] [--noise-mb-per-s M]`` writes N
records of 4-64 KiB (seeded sizes) and times write + make-durable per record for
each layout below. The layouts take turns write by write (a, b, c, a, b, c, ...),
so a stall of the shared disk lands on all of them alike:

* ``append``: O_APPEND to a growing file, so each fdatasync also commits the
  size/extent change through ext4's journal (jbd2).
* ``prezeroed``: buffered overwrite of a file whose blocks were written with
  zeros and fsynced beforehand: fdatasync has data to flush but no metadata.
* ``fallocate``: buffered overwrite of a ``posix_fallocate`` file: its extents
  are *unwritten*, so the first write to each is again a metadata change.
* ``dsync``: the pre-zeroed file opened with O_DSYNC (the write is the flush).
* ``direct``: the pre-zeroed file with O_DIRECT: the record goes straight to
  the device (whole 4 KiB blocks, the tail block rewritten with what follows
  it), then fdatasync, which here is only the device cache flush. The page
  cache's writeback (and its throttling, blk-wbt) is not on the path.

``--noise-mb-per-s M`` adds what other programs on a shared disk do: a thread
writing M MB/s of buffered data (no fsync) to fresh 64 MiB files, each deleted
when the next starts. Prints one JSON line per layout, latencies in microseconds.

``--group-commit RATE`` instead times what an ack waits for: 300-byte records
made at RATE/s (in 1 ms ticks, as orders arrive), one thread writing whatever
is pending, and ``--flushers K`` threads calling fdatasync; a record is durable
once an fdatasync that *started* after its write returned (fdatasync covers
everything written to the file before the call, whichever thread wrote it), so
with K > 1 flushes overlap instead of queueing behind each other. Latency runs
from the record's creation to that return. Layouts ``append``, ``prezeroed`` and ``fallocate``.
"""

from __future__ import annotations

import argparse
import mmap
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

CHUNK = 1 << 20
BLOCK = 4096
MODES = ("append", "prezeroed", "fallocate", "dsync", "direct")


def _sizes(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(4096, 65537) for _ in range(count)]


def _prezero(path: Path, size: int) -> None:
    zeros = bytes(CHUNK)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(0, size, CHUNK):
            os.write(fd, zeros)
        os.fsync(fd)
    finally:
        os.close(fd)


class Target:
    """One layout's file and how a record is made durable in it."""

    def __init__(self, mode: str, path: Path, total: int) -> None:
        self.mode = mode
        self.path = path
        self.pos = 0
        self.samples: list[float] = []
        self.buf = mmap.mmap(-1, 65536 + 2 * BLOCK)  # page-aligned, as O_DIRECT needs
        if mode == "append":
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        elif mode == "fallocate":
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.posix_fallocate(self.fd, 0, total)
            os.fsync(self.fd)
        else:
            _prezero(path, total)
            extra = {"dsync": os.O_DSYNC, "direct": os.O_DIRECT}.get(mode, 0)
            self.fd = os.open(path, os.O_WRONLY | extra)

    def put(self, record: bytes) -> None:
        started = time.perf_counter()
        if self.mode == "direct":
            self._put_direct(record)
        else:
            os.write(self.fd, record)
        if self.mode != "dsync":
            os.fdatasync(self.fd)
        self.samples.append((time.perf_counter() - started) * 1e6)

    def _put_direct(self, record: bytes) -> None:
        # buf[0:tail] already holds the partial block the last record ended in.
        tail = self.pos % BLOCK
        end = tail + len(record)
        self.buf[tail:end] = record
        padded = -(-end // BLOCK) * BLOCK
        self.buf[end:padded] = bytes(padded - end)
        os.pwrite(self.fd, memoryview(self.buf)[:padded], self.pos - tail)
        self.pos += len(record)
        keep = end - end % BLOCK
        self.buf[0:end % BLOCK] = self.buf[keep:end]

    def close(self) -> None:
        os.close(self.fd)
        self.buf.close()
        self.path.unlink()


class Noise:
    """A background writer of buffered data at a fixed rate, to fresh 64 MiB files (see the module doc)."""

    FILE_BYTES = 64 << 20

    def __init__(self, directory: Path, mb_per_s: float) -> None:
        self.directory = directory
        self.interval_s = 1 / mb_per_s  # one 1 MiB chunk per interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        chunk = os.urandom(CHUNK)
        index, written, fd = 0, 0, -1
        path = self.directory / "noise-0.dat"
        while not self.stop.wait(self.interval_s):
            if fd < 0 or written >= self.FILE_BYTES:
                if fd >= 0:
                    os.close(fd)
                    path.unlink()
                index += 1
                path = self.directory / f"noise-{index}.dat"
                fd, written = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 0
            os.write(fd, chunk)
            written += CHUNK
        if fd >= 0:
            os.close(fd)
            path.unlink()


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))])

    return {"n": len(ordered), "p50_us": pct(0.5), "p90_us": pct(0.9), "p99_us": pct(0.99),
            "max_us": round(ordered[-1]), "mean_us": round(statistics.fmean(ordered)),
            "over_5ms": sum(1 for s in ordered if s > 5000), "over_50ms": sum(1 for s in ordered if s > 50_000)}


def measure(directory: Path, modes: list[str], writes: int, noise_mb_per_s: float = 0.0) -> dict[str, list[float]]:
    """Latency samples (us) per layout, the layouts taking turns write by write."""
    sizes = _sizes(writes, 0)
    payload = os.urandom(65536)
    total = sum(sizes) + CHUNK
    targets = [Target(m, directory / f"probe-{m}.dat", total) for m in modes]
    noise = Noise(directory, noise_mb_per_s) if noise_mb_per_s > 0 else None
    if noise is not None:
        noise.thread.start()
    try:
        for size in sizes:
            for target in targets:
                target.put(payload[:size])
    finally:
        if noise is not None:
            noise.stop.set()
            noise.thread.join()
        for target in targets:
            target.close()
    return {t.mode: t.samples for t in targets}


class GroupCommit:
    """The group-commit simulation of the module doc: one writer, K overlapping flushers."""

    RECORD = 300

    def __init__(self, path: Path, layout: str, rate: float, seconds: float) -> None:
        self.total = int(rate * seconds)
        self.rate = rate
        if layout == "prezeroed":
            _prezero(path, self.total * self.RECORD + CHUNK)
            self.fd = os.open(path, os.O_WRONLY)
        elif layout == "fallocate":
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.posix_fallocate(self.fd, 0, self.total * self.RECORD + CHUNK)
            os.fsync(self.fd)
        else:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        self.path = path
        self.cond = threading.Condition()
        self.t0 = 0.0
        self.made = 0  # records created so far (record i is due at t0 + i / rate)
        self.written = 0  # records in the file (not yet durable)
        self.covered = 0  # records a started fdatasync covers
        self.durable = 0
        self.latency_us: list[float] = []
        self.sync_us: list[float] = []

    def run(self, flushers: int) -> None:
        self.t0 = time.perf_counter()
        threads = [threading.Thread(target=self._make), threading.Thread(target=self._write)]
        threads += [threading.Thread(target=self._flush) for _ in range(flushers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        os.close(self.fd)
        self.path.unlink()

    def _make(self) -> None:
        while self.made < self.total:
            due = min(self.total, int((time.perf_counter() - self.t0) * self.rate))
            with self.cond:
                self.made = max(self.made, due)
                self.cond.notify_all()
            time.sleep(0.001)

    def _write(self) -> None:
        record = os.urandom(self.RECORD)
        while self.written < self.total:
            with self.cond:
                while self.made == self.written:
                    self.cond.wait()
                count = self.made - self.written
            os.write(self.fd, record * count)
            with self.cond:
                self.written += count
                self.cond.notify_all()

    def _flush(self) -> None:
        while True:
            with self.cond:
                while self.written == self.covered:
                    if self.covered == self.total:
                        return
                    self.cond.wait(0.05)
                covers = self.covered = self.written
            started = time.perf_counter()
            os.fdatasync(self.fd)
            done = time.perf_counter()
            with self.cond:
                self.sync_us.append((done - started) * 1e6)
                for seq in range(self.durable, covers):
                    self.latency_us.append((done - self.t0 - seq / self.rate) * 1e6)
                self.durable = max(self.durable, covers)
                self.cond.notify_all()


def group_commit(directory: Path, rate: float, seconds: float, flushers: list[int], rounds: int) -> None:
    """Print record-to-durable latency per (layout, flushers), configurations taking turns round by round."""
    configs = [(layout, k) for layout in ("append", "prezeroed", "fallocate") for k in flushers]
    latency: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    syncs: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    for _ in range(rounds):
        for layout, k in configs:
            sim = GroupCommit(directory / f"commit-{layout}.dat", layout, rate, seconds)
            sim.run(k)
            latency[(layout, k)] += sim.latency_us
            syncs[(layout, k)] += sim.sync_us
    for layout, k in configs:
        row = {"name": f"record_durable_{layout}_{k}_flushers", "dir": str(directory.parent.resolve()),
               "rate_per_s": rate, "seconds": seconds, "rounds": rounds, **_summary(latency[(layout, k)]),
               "fdatasync": _summary(syncs[(layout, k)])}
        sys.stdout.write(orjson.dumps(row).decode() + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("dir", nargs="?", default=".", help="a directory on the disk to measure")
    parser.add_argument("--writes", type=int, default=3000, help="records per layout")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--noise-mb-per-s", type=float, default=0.0)
    parser.add_argument("--group-commit", type=float, default=0.0, metavar="RATE", help="records/s; see the module doc")
    parser.add_argument("--flushers", default="1,2,3")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.group_commit > 0:
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="fsync-probe-") as tmp:
            flushers = [int(k) for k in args.flushers.split(",")]
            group_commit(Path(tmp), args.group_commit, args.seconds, flushers, args.rounds)
        return
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="fsync-probe-") as tmp:
        results = measure(Path(tmp), args.modes.split(","), args.writes, args.noise_mb_per_s)
    for mode, samples in results.items():
        row = {"name": f"fdatasync_{mode}", "dir": str(Path(args.dir).resolve()),
               "noise_mb_per_s": args.noise_mb_per_s, **_summary(samples)}
        sys.stdout.write(orjson.dumps(row).decode() + "\n")


if __name__ == "__main__":
    main()
