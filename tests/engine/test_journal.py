"""Record framing (engine/journal.py): the bytes and hashes the module docstring promises."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest

from engine import durable, journal_writer
from engine.journal import HASH_DOMAIN, HEADER, ZERO_HASH, frame, read_records, record_hash
from engine.journal_writer import JournalWriter


def test_record_hash_is_the_documented_blake2b_over_domain_seq_prev_and_payload() -> None:
    prev = bytes(range(32))
    expected = hashlib.blake2b(HASH_DOMAIN + (7).to_bytes(8, "little") + prev + b"[1,2]", digest_size=32).digest()
    assert record_hash(7, prev, b"[1,2]") == expected
    assert record_hash(7, prev, b"[1,2]") == expected  # the shared domain state is copied, never updated


def test_frame_is_header_then_payload_with_crc_over_seq_prev_and_payload() -> None:
    data, digest = frame(3, ZERO_HASH, b'[["x"]]')
    length, crc, seq, prev = HEADER.unpack_from(data)
    assert (length, seq, prev, data[HEADER.size:]) == (7, 3, ZERO_HASH, b'[["x"]]')
    assert crc == zlib.crc32((3).to_bytes(8, "little") + ZERO_HASH + b'[["x"]]')
    assert digest == record_hash(3, ZERO_HASH, b'[["x"]]')


def test_a_framed_batch_is_its_records_framed_one_by_one_and_reads_back(tmp_path: Path) -> None:
    payloads = [b"[1]", b"[22]", b"", b"[333]"]
    writer = JournalWriter(tmp_path, 1 << 20, 0, ZERO_HASH)
    data, last_seq, last_hash = writer.frame_batch(payloads)
    one_by_one, prev = b"", ZERO_HASH
    for seq, payload in enumerate(payloads, 1):
        framed, prev = frame(seq, prev, payload)
        one_by_one += framed
    assert (data, last_seq, last_hash) == (one_by_one, 4, prev)
    writer.write_and_sync(data, 1, last_seq, last_hash)
    writer.close()
    records = list(read_records(tmp_path, repair=False))
    assert [r.payload for r in records] == payloads and records[-1].hash == last_hash


def test_write_and_sync_runs_meanwhile_after_the_write_with_the_disk_write_of_a_big_batch_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[tuple[int, int]] = []

    def start_writeback(fd: int, offset: int, length: int) -> None:
        started.append((offset, length))
        durable.start_writeback(fd, offset, length)  # the real call: a hint the fdatasync after it must not mind

    monkeypatch.setattr(journal_writer, "start_writeback", start_writeback)
    writer = JournalWriter(tmp_path, 1 << 20, 0, ZERO_HASH)
    seen: list[tuple[int, int]] = []  # (records readable, durable seq) when meanwhile runs

    def meanwhile() -> None:
        seen.append((len(list(read_records(tmp_path, repair=False))), writer.seq))

    small, last, last_hash = writer.frame_batch([b"one order"])
    writer.write_and_sync(small, 1, last, last_hash, meanwhile)
    big, last, last_hash = writer.frame_batch([b"x" * 300] * 20)
    writer.write_and_sync(big, 2, last, last_hash, meanwhile)
    assert seen == [(1, 0), (21, 1)]  # written, not yet durable
    assert started == [(len(small), len(big))]  # only the batch worth a head start, where it was written
    assert writer.seq == 21
    writer.close()
    assert [r.payload for r in read_records(tmp_path)][-1] == b"x" * 300
