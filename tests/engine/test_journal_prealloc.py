"""Pre-zeroed journal segments (engine/journal_writer.py, engine/journal.py): the zero tail is the end, torn writes into zeros, the roll.

Journals here are written with ``JournalWriter`` directly (small segments, so rolls
and preparations happen within a few records); the last test runs the engine on them.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from pathlib import Path

import pytest
import trio

from engine import journal, journal_writer
from engine.audit import verify_journal
from engine.config import DEFAULT, parse_config
from engine.journal import (
    HEADER,
    ZERO_HASH,
    JournalCorrupt,
    JournalReader,
    Record,
    read_records,
    records_end,
    segments,
)
from engine.journal_writer import PREPARED_NAME, JournalWriter
from engine.runtime import Engine

SEGMENT = 16 * 1024


def payload(i: int) -> bytes:
    return b'[["event",%d,"%s"]]' % (i, b"x" * (i % 37))


def wait_prepared(writer: JournalWriter) -> None:
    deadline = time.monotonic() + 10
    while not writer.preparer.ready:
        assert time.monotonic() < deadline, "the next segment was never prepared"
        time.sleep(0.005)


def write_into_prepared(directory: Path, count: int) -> JournalWriter:
    """A journal whose second segment was pre-zeroed, with ``count`` records in it; the writer stays open."""
    directory.mkdir(exist_ok=True)
    writer = JournalWriter(directory, SEGMENT, 0, ZERO_HASH)
    i = 0
    while writer._size < SEGMENT:  # fill the first, plain segment; passing half starts the preparation
        writer.append([payload(i)])
        i += 1
    wait_prepared(writer)
    for _ in range(count):
        writer.append([payload(i)])
        i += 1
    return writer


def all_records(directory: Path) -> list[Record]:
    return list(read_records(directory, repair=False))


def test_the_roll_takes_the_prepared_segment_and_its_zero_tail_is_the_end(tmp_path: Path) -> None:
    writer = write_into_prepared(tmp_path, 5)
    _, second = segments(tmp_path)
    assert second.stat().st_size == SEGMENT  # pre-zeroed in place, not grown
    assert not (tmp_path / PREPARED_NAME).exists()  # renamed into place by the roll
    recs = all_records(tmp_path)
    assert [r.seq for r in recs] == list(range(1, writer.seq + 1))
    assert [r.segment for r in recs[-5:]] == [second] * 5
    tail = second.read_bytes()[recs[-1].offset + HEADER.size + len(recs[-1].payload):]
    assert len(tail) > HEADER.size and not any(tail)
    writer.close()
    # recovery with repair on finds nothing to cut: the zeros are room, not a torn record
    assert [r.seq for r in read_records(tmp_path)] == [r.seq for r in recs]
    assert second.stat().st_size == SEGMENT and not list(tmp_path.glob("*.broken"))


def test_a_reopened_writer_continues_after_the_last_record_not_after_the_zeros(tmp_path: Path) -> None:
    writer = write_into_prepared(tmp_path, 3)
    writer.close()
    recs = all_records(tmp_path)
    again = JournalWriter(tmp_path, SEGMENT, recs[-1].seq, recs[-1].hash)
    again.append([b"[1]", b"[2]"])
    again.close()
    after = all_records(tmp_path)
    assert [r.seq for r in after] == list(range(1, recs[-1].seq + 3))
    assert after[-2].offset == recs[-1].offset + HEADER.size + len(recs[-1].payload)
    assert segments(tmp_path)[-1].stat().st_size == SEGMENT


def test_a_record_ending_in_zero_bytes_is_not_mistaken_for_the_tail(tmp_path: Path) -> None:
    """records_end hops headers; it never trims a payload's own trailing zeros."""
    writer = write_into_prepared(tmp_path, 1)
    writer.append([b"\x01" + bytes(100)])
    writer.close()
    recs = all_records(tmp_path)
    again = JournalWriter(tmp_path, SEGMENT, recs[-1].seq, recs[-1].hash)
    again.append([b"[9]"])
    again.close()
    after = all_records(tmp_path)
    assert after[-2].payload == b"\x01" + bytes(100) and after[-1].payload == b"[9]"


def test_a_torn_record_followed_by_zeros_is_cut_at_every_byte_offset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A crash mid-write into a pre-zeroed segment leaves a prefix of the record and zeros after it."""
    writer = write_into_prepared(tmp_path / "pristine", 4)
    writer.close()
    recs = all_records(tmp_path / "pristine")
    last = recs[-1]
    size = HEADER.size + len(last.payload)
    original = last.segment.read_bytes()
    for cut in range(size):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(tmp_path / "pristine", work)
        segment = work / last.segment.name
        data = bytearray(original)
        data[last.offset + cut:last.offset + size] = bytes(size - cut)
        segment.write_bytes(bytes(data))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="satchel.journal"):
            got = [r.seq for r in read_records(work)]
        assert got == list(range(1, last.seq)), cut
        broken = segment.with_suffix(".broken")
        if cut == 0:  # nothing of it reached the disk: a clean end, nothing to cut
            assert segment.stat().st_size == SEGMENT and not broken.exists() and not caplog.records
        else:
            assert segment.stat().st_size == last.offset, cut
            kept = broken.read_bytes()
            assert kept[:cut] == original[last.offset:last.offset + cut] and not any(kept[cut:]), cut
            assert "torn tail" in caplog.text
        shutil.rmtree(work)


@pytest.mark.parametrize("where", ["payload", "length", "seq", "crc"])
def test_a_flipped_bit_mid_segment_is_refused_with_its_position(tmp_path: Path, where: str) -> None:
    writer = write_into_prepared(tmp_path, 6)
    writer.close()
    recs = all_records(tmp_path)
    victim = recs[-3]  # in the pre-zeroed segment, with records after it
    at = {"payload": HEADER.size + len(victim.payload) // 2, "length": 1, "seq": 8, "crc": 5}[where]
    data = bytearray(victim.segment.read_bytes())
    data[victim.offset + at] ^= 0x10
    victim.segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="CRC mismatch") as info:
        list(read_records(tmp_path))
    assert (info.value.segment, info.value.offset) == (victim.segment, victim.offset)
    assert f"offset {victim.offset}" in str(info.value)
    assert not list(tmp_path.glob("*.broken"))


def _zero(segment: Path, start: int, stop: int) -> None:
    data = bytearray(segment.read_bytes())
    data[start:stop] = bytes(stop - start)
    segment.write_bytes(bytes(data))


@pytest.mark.parametrize("lost", ["first", "whole"])
def test_sectors_of_an_unsynced_write_lost_out_of_order_are_cut_as_a_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, lost: str,
) -> None:
    """A power cut mid-write can keep later sectors and lose an earlier one: zeros, then records.

    Within UNSYNCED_LIMIT of the end of the data that can only be the last write, never
    acknowledged: recovery cuts there (keeping the bytes in .broken) and a writer goes on.
    """
    writer = write_into_prepared(tmp_path, 40)
    writer.close()
    recs = all_records(tmp_path)
    segment = recs[-1].segment
    if lost == "first":  # the sector where the write began: zeros from the record to the sector's end
        def boundary(offset: int) -> int:
            return -(-offset // journal.SECTOR) * journal.SECTOR

        victim = next(r for r in recs[-2::-1] if r.offset % journal.SECTOR and boundary(r.offset) < recs[-1].offset)
        _zero(segment, victim.offset, boundary(victim.offset))
    else:  # the first whole sector of the last ~1 KiB: it lands inside some record's bytes
        sector = -(-(recs[-1].offset - 1024) // journal.SECTOR) * journal.SECTOR
        _zero(segment, sector, sector + journal.SECTOR)
        victim = next(r for r in reversed(recs) if r.offset <= sector)
    before = segment.read_bytes()
    with caplog.at_level(logging.WARNING, logger="satchel.journal"):
        kept = [r.seq for r in read_records(tmp_path)]
    assert kept == list(range(1, victim.seq))
    assert segment.stat().st_size == victim.offset
    broken = segment.with_suffix(".broken").read_bytes()
    assert broken == before[victim.offset:journal.data_end(before)]
    assert "torn tail" in caplog.text and f"offset {victim.offset}" in caplog.text
    again = JournalWriter(tmp_path, SEGMENT, recs[victim.seq - 2].seq, recs[victim.seq - 2].hash)
    again.append([b"[1]"])
    again.close()
    assert [r.seq for r in all_records(tmp_path)][-1] == victim.seq


def test_a_zero_gap_farther_than_the_unsynced_limit_from_the_end_is_refused_not_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Acknowledged records cannot be in an interrupted write: a hole this far back is damage, start is refused."""
    writer = write_into_prepared(tmp_path, 40)
    writer.close()
    recs = all_records(tmp_path)
    victim = recs[-30]
    monkeypatch.setattr(journal, "UNSYNCED_LIMIT", recs[-1].offset - victim.offset)  # the data end is farther
    _zero(victim.segment, victim.offset, victim.offset + journal.SECTOR)
    with pytest.raises(JournalCorrupt, match="CRC mismatch") as info:
        list(read_records(tmp_path))
    assert info.value.offset == victim.offset
    assert victim.segment.stat().st_size == SEGMENT and not list(tmp_path.glob("*.broken"))


def test_a_zero_gap_in_an_earlier_segment_is_refused(tmp_path: Path) -> None:
    writer = write_into_prepared(tmp_path, 6)
    writer.close()
    victim = all_records(tmp_path)[3]  # in the first, plain segment
    _zero(victim.segment, victim.offset, victim.offset + journal.SECTOR)
    with pytest.raises(JournalCorrupt, match="CRC mismatch"):
        list(read_records(tmp_path))


@pytest.mark.parametrize("seed", range(40))
def test_any_power_cut_mid_write_recovers_every_acknowledged_record_and_never_refuses(tmp_path: Path, seed: int) -> None:
    """Model of a power cut while an unsynced write is in flight into a pre-zeroed segment.

    Each sector the write touched persists either as written or as it was at the
    last fdatasync, independently (the disk's unit of atomicity; page-cache writeback
    has no order). Recovery must start, keep every acknowledged record, and keep
    only whole, chained records after them.
    """
    rng = random.Random(seed)
    writer = write_into_prepared(tmp_path, rng.randint(1, 6))
    acknowledged = writer.seq
    segment = segments(tmp_path)[-1]
    synced_image, synced_at = segment.read_bytes(), writer._size
    data, last_seq, _ = writer.frame_batch([payload(1000 + i) for i in range(rng.randint(1, 25))])
    writer.write(data, acknowledged + 1)  # never synced: the power goes now
    written_image = segment.read_bytes()
    writer.close = lambda: None  # type: ignore[method-assign]  # a crash closes nothing
    image = bytearray(written_image)
    first = synced_at - synced_at % journal.SECTOR
    for at in range(first, synced_at + len(data), journal.SECTOR):
        if rng.random() < 0.5:
            image[at:at + journal.SECTOR] = synced_image[at:at + journal.SECTOR]
    segment.write_bytes(bytes(image))
    got = [r.seq for r in read_records(tmp_path)]
    assert got[:acknowledged] == list(range(1, acknowledged + 1))
    assert acknowledged <= len(got) <= last_seq and got == list(range(1, len(got) + 1))
    assert [r.seq for r in all_records(tmp_path)] == got  # repaired: a second start reads the same, cleanly


def test_the_writer_never_has_more_than_the_unsynced_limit_written_past_its_last_fdatasync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bound _lost_write relies on, for batches and single records larger than the limit."""
    limit = 4096
    monkeypatch.setattr(journal_writer, "UNSYNCED_LIMIT", limit)
    writer = JournalWriter(tmp_path, 1 << 20, 0, ZERO_HASH)
    widest = 0
    real_pwrite, real_fdatasync = os.pwrite, os.fdatasync
    synced = 0

    def pwrite(fd: int, data: memoryview, at: int) -> int:
        nonlocal widest
        widest = max(widest, at + len(data) - synced)
        return real_pwrite(fd, data, at)

    def fdatasync(fd: int) -> None:
        nonlocal synced
        real_fdatasync(fd)
        synced = os.fstat(fd).st_size

    monkeypatch.setattr(journal_writer.os, "pwrite", pwrite)
    monkeypatch.setattr(journal_writer.os, "fdatasync", fdatasync)
    writer.append([b"[%d]" % i for i in range(2000)])  # one batch of ~100 KiB
    writer.append([b"[" + b"1" * 20_000 + b"]"])  # one record of five limits
    writer.close()
    monkeypatch.undo()
    assert 0 < widest <= limit
    assert [r.seq for r in all_records(tmp_path)] == list(range(1, 2002))


def test_a_crash_mid_preparation_leaves_nothing_a_reader_or_writer_uses(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, SEGMENT, 0, ZERO_HASH)
    writer.append([b"[1]"])
    writer.close()
    (tmp_path / f"{PREPARED_NAME}.tmp").write_bytes(bytes(SEGMENT // 3))  # cut off mid-way
    assert [r.seq for r in read_records(tmp_path)] == [1]
    recs = all_records(tmp_path)
    again = JournalWriter(tmp_path, SEGMENT, 1, recs[0].hash)
    assert not (tmp_path / f"{PREPARED_NAME}.tmp").exists() and not again.preparer.ready
    again.close()


def test_a_prepared_segment_survives_a_restart_unless_the_segment_size_changed(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, SEGMENT, 0, ZERO_HASH)
    writer.preparer.want()
    wait_prepared(writer)
    writer.close()
    assert (tmp_path / PREPARED_NAME).stat().st_size == SEGMENT
    assert JournalWriter(tmp_path, SEGMENT, 0, ZERO_HASH).preparer.ready
    assert not JournalWriter(tmp_path, 2 * SEGMENT, 0, ZERO_HASH).preparer.ready
    assert not (tmp_path / PREPARED_NAME).exists()


def test_a_crash_right_after_the_roll_leaves_an_all_zero_last_segment_that_is_simply_empty(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, SEGMENT, 0, ZERO_HASH)
    writer.append([b"[1]", b"[2]"])
    writer.close()
    (tmp_path / f"{3:020d}.seg").write_bytes(bytes(SEGMENT))  # renamed into place, nothing written yet
    recs = list(read_records(tmp_path))
    assert [r.seq for r in recs] == [1, 2] and not list(tmp_path.glob("*.broken"))
    again = JournalWriter(tmp_path, SEGMENT, 2, recs[-1].hash)
    again.append([b"[3]"])
    again.close()
    assert [(r.seq, r.segment.name, r.offset) for r in all_records(tmp_path)][-1] == (3, f"{3:020d}.seg", 0)


def test_without_a_prepared_segment_the_roll_grows_a_plain_file(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, 4096, 0, ZERO_HASH)
    writer.append([bytes(5000)])  # one write past the whole segment: no half-way point to start preparing at
    writer.append([b"[2]"])
    writer.close()
    assert [p.stat().st_size for p in segments(tmp_path)] == [HEADER.size + 5000, HEADER.size + 3]


def test_the_tailing_reader_follows_pre_zeroed_segments_and_never_reads_zeros_as_a_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "READ_CHUNK", 64)  # records longer than a chunk are read whole
    writer = write_into_prepared(tmp_path, 2)
    reader = JournalReader(tmp_path)
    assert [r.seq for r in reader.read(writer.seq)] == list(range(1, writer.seq + 1))
    assert list(reader.read(writer.seq)) == []
    with pytest.raises(JournalCorrupt, match="durable record missing"):
        list(reader.read(writer.seq + 1))  # asked for more than was written: zeros are not a record
    writer.append([payload(1000)])
    follower = JournalReader(tmp_path, reader.seq, reader.hash)
    assert [r.payload for r in follower.read(writer.seq)] == [payload(1000)]
    writer.close()


async def test_the_engine_runs_recovers_and_verifies_on_pre_zeroed_segments(tmp_path: Path) -> None:
    data = dict(DEFAULT)
    data["journal"] = {**DEFAULT["journal"], "segment_bytes": 4096, "checkpoint_every_records": 10}
    config = parse_config(data)
    directory = tmp_path / "j"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(config, directory).run)
            buyer = (await engine.create_account(country="DE")).value
            seller = (await engine.create_account(country="FR")).value
            assert (await engine.deposit(buyer, "USDC", "100000")).ok
            assert (await engine.deposit(seller, "SOL", "1000")).ok
            for i in range(40):
                assert (await engine.place_order(seller, "SOL_USDC", "Ask", "Limit", price=str(20 + i % 5), quantity="1")).ok
                assert (await engine.place_order(buyer, "SOL_USDC", "Bid", "Limit", price=str(20 + i % 5), quantity="1")).ok
                if i % 10 == 9:
                    await trio.to_thread.run_sync(os.sync)  # let the preparer keep up now and then
            done = await engine.checkpoint("snapshot")  # the replica follows the same segments
            assert done.ok and done.value["state_hash"] == engine.venue.state_hash()
            await engine.wait_idle()
            state = engine.venue.state_hash()
            engine.stop()
    assert len(segments(directory)) > 3
    assert verify_journal(directory, progress=False)["ok"]
    recovered = Engine(config, directory)
    writer = recovered._recover()
    writer.close()
    os.close(recovered._lock_fd)
    assert recovered.venue.state_hash() == state


def test_a_length_flip_that_runs_past_the_end_of_a_plain_segment_is_refused_not_cut(tmp_path: Path) -> None:
    """Before pre-zeroing this counted as a torn tail and cut the valid records after it."""
    writer = JournalWriter(tmp_path, 1 << 20, 0, ZERO_HASH)
    for i in range(6):
        writer.append([payload(i)])
    writer.close()
    recs = all_records(tmp_path)
    victim = recs[2]
    data = bytearray(victim.segment.read_bytes())
    data[victim.offset + 2] ^= 0x01  # + 64 KiB: past the end of the file
    victim.segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="payload cut short") as info:
        list(read_records(tmp_path))
    assert (info.value.offset, info.value.seq) == (victim.offset, victim.seq)
    assert victim.segment.stat().st_size == len(data) and not list(tmp_path.glob("*.broken"))


def test_a_plain_segment_rolls_early_into_a_prepared_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new journal's first segment grows; once it holds EARLY_ROLL_BYTES the next write after the
    preparation finishes goes to a pre-zeroed segment, long before the first one is full."""
    monkeypatch.setattr(journal_writer, "EARLY_ROLL_BYTES", 1024)
    writer = JournalWriter(tmp_path, SEGMENT, 0, ZERO_HASH)
    i = 0
    while writer._size < 1024:
        writer.append([payload(i)])
        i += 1
    writer.append([payload(i)])  # asks for the preparation
    wait_prepared(writer)
    writer.append([payload(i + 1)])  # rolls into it
    writer.close()
    first, second = segments(tmp_path)
    assert 1024 <= first.stat().st_size < SEGMENT // 2 and second.stat().st_size == SEGMENT
    assert [r.seq for r in all_records(tmp_path)] == list(range(1, i + 3))
    again = JournalWriter(tmp_path, SEGMENT, writer.seq, writer.hash)  # reopened: the pre-zeroed one is not plain
    assert not again._plain
    again.close()


@pytest.mark.slow
def test_sigkill_while_writing_into_pre_zeroed_segments_loses_no_acknowledged_order(tmp_path: Path) -> None:
    """The daemon on 16 KiB segments (a roll every few dozen orders, each into a segment
    prepared in the background), killed under load several times: every acknowledged
    order is in the journal, recovery cuts only torn tails, and verify accepts the result."""
    from engine.audit import journal_events
    from engine.messages import OrderPlaced
    from tests.engine.test_daemon import Daemon, cli, kill_under_load

    config = tmp_path / "config.toml"
    code, _ = cli(config, "init", str(config))
    assert code == 0
    text = config.read_text().replace('"127.0.0.1:8400"', '"127.0.0.1:0"').replace('"127.0.0.1:8401"', '"127.0.0.1:0"')
    config.write_text(text.replace("segment_bytes = 67108864", f"segment_bytes = {SEGMENT}"))
    rng = random.Random(11)
    acknowledged: set[int] = set()
    directory = config.parent / "var"
    killed_in_zeros = 0  # kills that left the last segment with a zero tail (written into a prepared one)
    for _ in range(4):
        kill_under_load(config, rng, acknowledged, 3, (0.8, 1.6))
        last = segments(directory)[-1]
        killed_in_zeros += last.stat().st_size - records_end(last) >= HEADER.size
    assert len(segments(directory)) > 4 and killed_in_zeros
    survivor = Daemon(config)
    try:
        live = survivor.call("status", state_hash=True)["stateHash"]
    finally:
        assert survivor.stop() == 0
    journaled = {e.order_id for _, e in journal_events(directory) if isinstance(e, OrderPlaced)}
    assert len(acknowledged) > 50 and acknowledged <= journaled
    code, summary = cli(config, "verify", str(directory))
    assert code == 0 and summary["ok"] and summary["state_hash"] == live
