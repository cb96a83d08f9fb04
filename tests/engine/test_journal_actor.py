"""The journal actor's group commit through its sync thread (engine/journal_actor.py).

Real files and real fdatasync; a writer subclass only slows the disk down or
fills it up, so the pipeline (framing while an fsync runs) is exercised for sure.
"""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest
import trio

from engine import journal_actor
from engine.codec import decode_events
from engine.journal import ZERO_HASH, read_records
from engine.journal_actor import JournalActor
from engine.journal_writer import DiskFull, JournalWriter
from engine.messages import Deposited
from engine.results import Result


class SlowDisk(JournalWriter):
    """A journal whose fdatasync takes at least ``delay`` seconds; counts the syncs."""

    def __init__(self, directory: Path, delay: float, full_at_write: int = 0) -> None:
        super().__init__(directory, 1 << 20, 0, ZERO_HASH)
        self.delay = delay
        self.syncs = 0
        self.writes = 0
        self.full_at_write = full_at_write
        self.threads: set[str] = set()

    def write(self, data: bytes, first_seq: int) -> None:
        self.writes += 1
        if self.writes == self.full_at_write:
            raise DiskFull(errno.ENOSPC, f"journal disk full writing {len(data)} bytes at seq {first_seq}: test")
        super().write(data, first_seq)

    def sync(self, last_seq: int, last_hash: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        super().sync(last_seq, last_hash)
        self.syncs += 1


def deposit(n: int) -> Deposited:
    return Deposited(n, "USDC", 1_000_000 + n, 1_000)  # account n: the sinks below look it up on disk


class Log:
    """A sink that records, at delivery, which deposits the journal on disk then held."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: list[tuple[str, bool]] = []

    def sink(self, name: str, account_id: int | None) -> Sink:
        return Sink(self, name, account_id)


class Sink:
    def __init__(self, log: Log, name: str, account_id: int | None) -> None:
        self.log, self.name, self.account_id = log, name, account_id

    def set(self, value: Result) -> None:
        on_disk = {e.account_id for r in read_records(self.log.directory, repair=False) for e in decode_events(r.payload)
                   if isinstance(e, Deposited)}
        durable = self.account_id is None or self.account_id in on_disk
        self.log.seen.append((self.name if value.rejection is None else f"{self.name}:refused", durable))


async def run_batches(journal: JournalActor, log: Log, gap_s: float) -> None:
    """Eight deposits and, after the fourth, a reply with nothing to write; wait until all are answered."""
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        for n in range(1, 9):
            await journal.submit([deposit(n)], [(log.sink(f"d{n}", n), Result())])
            if n == 4:  # behind batches possibly still on their way to disk
                await journal.submit([], [(log.sink("rejected", None), Result())])
            await trio.sleep(gap_s)
        while journal.busy or journal.rx.statistics().current_buffer_used:  # noqa: ASYNC110
            await trio.sleep(0.005)
        nursery.cancel_scope.cancel()


ORDER = ["d1", "d2", "d3", "d4", "rejected", "d5", "d6", "d7", "d8"]


async def test_a_slow_disk_moves_syncs_to_the_thread_which_commits_what_arrived_meanwhile_together(tmp_path: Path) -> None:
    writer = SlowDisk(tmp_path, delay=0.02)
    log = Log(tmp_path)
    journal = JournalActor(writer, lambda sink, value: sink.set(value))
    with trio.fail_after(10):
        await run_batches(journal, log, gap_s=0.003)  # several batches arrive while one fsync runs
    assert [name for name, _ in log.seen] == ORDER
    assert all(durable for _, durable in log.seen)
    assert "satchel-journal-sync" in writer.threads  # after the first slow sync on the loop's thread
    assert writer.syncs < 8, "batches framed during an fsync were not committed together"
    # one record per take from the inbox: 8, or fewer when a busy box let two submits queue up together
    assert journal.durable_seq == journal.head_seq == writer.seq <= 8
    writer.close()
    records = list(read_records(tmp_path))
    assert [r.seq for r in records] == list(range(1, writer.seq + 1))
    assert [e.account_id for r in records for e in decode_events(r.payload)] == list(range(1, 9))


async def test_a_fast_disk_syncs_on_the_loops_thread_and_a_fast_thread_sync_brings_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_actor, "INLINE_SYNC_MAX_S", 60.0)  # every fsync counts as fast, whatever this disk does now
    writer = SlowDisk(tmp_path, delay=0.0)
    log = Log(tmp_path)
    journal = JournalActor(writer, lambda sink, value: sink.set(value))
    with trio.fail_after(10):
        await run_batches(journal, log, gap_s=0.001)
    assert [name for name, _ in log.seen] == ORDER and all(durable for _, durable in log.seen)
    # every fsync on the loop's thread; a loaded box may let two submits meet in one batch (one fsync)
    assert writer.threads == {threading.main_thread().name} and 1 <= writer.syncs <= 8

    log.seen.clear()
    more = JournalActor(writer, lambda sink, value: sink.set(value))
    more.inline_sync = False  # as after one slow fsync: the next batch goes to the thread...
    async with trio.open_nursery() as nursery:
        await nursery.start(more.run)
        await more.submit([deposit(9)], [(log.sink("d9", 9), Result())])
        while more.busy or more.queued:  # noqa: ASYNC110
            await trio.sleep(0.002)
        assert more.inline_sync  # ...whose fast fsync sends the following ones back to the loop's thread
        nursery.cancel_scope.cancel()
    assert log.seen == [("d9", True)] and "satchel-journal-sync" in writer.threads
    writer.close()


async def test_a_full_disk_refuses_what_is_not_durable_and_stops_the_journal(tmp_path: Path) -> None:
    writer = SlowDisk(tmp_path, delay=0.0, full_at_write=3)
    log = Log(tmp_path)
    journal = JournalActor(writer, lambda sink, value: sink.set(value))
    with pytest.RaisesGroup(DiskFull), trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            for n in range(1, 6):
                await journal.submit([deposit(n)], [(log.sink(f"d{n}", n), Result())])
                await trio.sleep(0.02)
    assert log.seen[:2] == [("d1", True), ("d2", True)]
    assert log.seen[2:] and all(name.endswith(":refused") for name, _ in log.seen[2:])
    writer.close()
    assert [e.account_id for r in read_records(tmp_path) for e in decode_events(r.payload)] == [1, 2]


class Steps(JournalWriter):
    """A journal that notes each write and fdatasync, in order, beside the sinks' notes."""

    def __init__(self, directory: Path, steps: list[str]) -> None:
        super().__init__(directory, 1 << 20, 0, ZERO_HASH)
        self.steps = steps

    def write(self, data: bytes, first_seq: int) -> None:
        super().write(data, first_seq)
        self.steps.append("write")

    def sync(self, last_seq: int, last_hash: bytes) -> None:
        super().sync(last_seq, last_hash)
        self.steps.append("sync")


class Preparing:
    """A sink with ``prepare``: notes both calls and what the journal had made durable at each."""

    def __init__(self, name: str, writer: JournalWriter, steps: list[str], fail: bool = False) -> None:
        self.name, self.writer, self.steps, self.fail = name, writer, steps, fail

    def prepare(self, value: Result) -> None:
        self.steps.append(f"prepare {self.name} at seq {self.writer.seq}")
        if self.fail:
            raise RuntimeError("a bug in a sink's prepare")

    def set(self, value: Result) -> None:
        self.steps.append(f"set {self.name} at seq {self.writer.seq}{':refused' if value.rejection else ''}")


async def test_an_inline_sync_prepares_each_result_between_the_write_and_the_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_actor, "INLINE_SYNC_MAX_S", 60.0)
    steps: list[str] = []
    writer = Steps(tmp_path, steps)
    journal = JournalActor(writer, lambda sink, value: sink.set(value))
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        sinks = [Preparing("a", writer, steps), Preparing("broken", writer, steps, fail=True)]
        assert journal.commit_now([deposit(1)], [(sink, Result()) for sink in sinks])
        assert steps == [
            "write", "prepare a at seq 0", "prepare broken at seq 0", "sync",  # a failing prepare is only logged
            "set a at seq 1", "set broken at seq 1",
        ]

        steps.clear()  # a sync on the thread: nothing is prepared (the loop runs on between write and set)
        journal.inline_sync = False
        await journal.submit([deposit(2)], [(Preparing("b", writer, steps), Result())])
        while journal.busy or journal.queued:  # noqa: ASYNC110
            await trio.sleep(0.002)
        assert steps == ["write", "sync", "set b at seq 2"]
        nursery.cancel_scope.cancel()
    writer.close()


async def test_a_full_disk_prepares_nothing_and_refuses(tmp_path: Path) -> None:
    steps: list[str] = []
    writer = SlowDisk(tmp_path, delay=0.0, full_at_write=1)
    journal = JournalActor(writer, lambda sink, value: sink.set(value))
    with pytest.RaisesGroup(DiskFull), trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            journal.commit_now([deposit(1)], [(Preparing("a", writer, steps), Result())])
    assert steps == ["set a at seq 0:refused"]
    writer.close()
