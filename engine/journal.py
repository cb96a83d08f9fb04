"""The append-only journal's records and reading them back: framing, hash chain, segments, torn-tail recovery.

Record layout (little-endian)::

    u32 payload_len | u32 crc32 | u64 seq | 32-byte prev_hash | payload

* ``crc32`` covers seq, prev_hash and payload, so a torn or flipped record is
  caught before it is parsed.
* ``hash(record) = blake2b-256("satchel/journal/rec/v1" | seq | prev_hash | payload)``
  and each record stores its predecessor's hash, so editing any record (even
  with a recomputed CRC) breaks every later link. The first record's prev_hash
  is all zeros and its payload pins the venue config and plugin set.
* ``seq`` starts at 1 and has no gaps. A record holds the events one actor
  journaled together; replay applies records in seq order.
* Segments are files ``<first seq, 20 digits>.seg``. Writing them (rolls, group
  commit, pre-zeroed segments) is ``engine/journal_writer.py``.

End of data: a valid header is never all zeros (seq >= 1), so a segment's records
end where only zero bytes remain to its end (or at its end). Nothing else ends it.

Recovery rules (etcd's, with zeros counted as "nothing"): in the *last* segment, a
record cut short by the end of the file, or cut short or failing its CRC with
nothing but zeros after it, is a torn write and is truncated away (the cut bytes,
without the zero tail, are saved to ``<segment>.broken`` first) - unless a whole
record with the next seq and a good CRC starts anywhere after it (a flipped length
bit makes a record seem to run to the end). A pre-zeroed segment (overwritten in
place, ``engine/journal_writer.py``) adds one shape of torn write: a power cut can
persist the sectors of the last, unacknowledged write out of order, leaving zeroed
sectors with records after them. ``_lost_write`` says how that is told apart from damage to acknowledged records (the writer bounds its
unsynced bytes to ``UNSYNCED_LIMIT``, so such a hole lies within that distance of
the end of the data, and it is whole sectors of zeros, which a flipped bit is
not); it is cut like any torn tail. Any other bad CRC, seq gap or broken link
refuses to start, naming segment, offset and seq.

What recovery cannot tell apart: a disk that silently zeroes whole sectors of
*acknowledged* records within ``UNSYNCED_LIMIT`` of the end of the journal looks
like an interrupted write; those records are cut, kept in ``<segment>.broken``,
and the warning names the offset (the same holds for a CRC-failing last record
in any append-only log).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs

log = logging.getLogger("satchel.journal")

HEADER: Final = struct.Struct("<IIQ32s")
HASH_DOMAIN: Final = b"satchel/journal/rec/v1"
ZERO_HASH: Final = bytes(32)
MAX_PAYLOAD: Final = 256 * 1024 * 1024
SEGMENT_SUFFIX: Final = ".seg"
UNSYNCED_LIMIT: Final = 1 << 20  # JournalWriter never has more than this written past its last fdatasync
SECTOR: Final = 512  # the unit a disk persists whole (or not at all) when power is cut mid-write
READ_CHUNK: Final = 1 << 20  # the tailing reader reads this much at a time (a segment may be mostly zeros)


class JournalCorrupt(Exception):
    """The journal is damaged somewhere other than a torn tail; the daemon refuses to start."""

    def __init__(self, segment: Path, offset: int, seq: int, problem: str) -> None:
        super().__init__(f"journal corrupt in {segment.name} at offset {offset} (seq {seq}): {problem}")
        self.problem = problem
        self.segment = segment
        self.offset = offset
        self.seq = seq


_DOMAIN_HASHED: Final = hashlib.blake2b(HASH_DOMAIN, digest_size=32)  # copied per record, never updated


def record_hash(seq: int, prev_hash: bytes, payload: bytes) -> bytes:
    h = _DOMAIN_HASHED.copy()
    h.update(seq.to_bytes(8, "little") + prev_hash)
    h.update(payload)
    return h.digest()


def header(seq: int, prev_hash: bytes, payload: bytes) -> bytes:
    """The 48-byte header that goes before ``payload`` as record ``seq``."""
    crc = zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little") + prev_hash))
    return HEADER.pack(len(payload), crc, seq, prev_hash)


def frame_records(payloads: list[bytes], seq: int, prev: bytes) -> tuple[bytes, int, bytes]:
    """Frame payloads as the records after (seq, prev): (bytes, last seq, last hash). No I/O."""
    parts = []
    for payload in payloads:  # header and payload joined once, not copied per record first
        seq += 1
        parts.append(header(seq, prev, payload))
        parts.append(payload)
        prev = record_hash(seq, prev, payload)
    return b"".join(parts), seq, prev


def frame(seq: int, prev_hash: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """(record bytes, this record's hash)."""
    return header(seq, prev_hash, payload) + payload, record_hash(seq, prev_hash, payload)


@attrs.frozen
class Record:
    seq: int
    prev_hash: bytes
    hash: bytes
    payload: bytes
    segment: Path
    offset: int


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit())


_ZEROS: Final = bytes(1 << 16)


def data_end(data: bytes) -> int:
    """Where a segment's records end: before a run of at least HEADER.size zero bytes to its end, else its end.

    A shorter run of zeros is kept as data: it can only be the start of a header cut
    short (a pre-zeroed segment always has room for a whole header after its records).
    """
    end = len(data)
    while end > 0:  # whole zero chunks first: a slice compared to zeros is a memcpy and a memcmp
        start = max(0, end - len(_ZEROS))
        chunk = data[start:end]
        if chunk != _ZEROS[:end - start]:
            end = start + len(chunk.rstrip(b"\0"))
            break
        end = start
    return end if len(data) - end >= HEADER.size else len(data)


def read_records(directory: Path, *, repair: bool = True, upto: int | None = None) -> Iterator[Record]:
    """Yield every valid record in order (through seq ``upto`` if given); repair a torn tail if ``repair``.

    Raises JournalCorrupt for anything that is not a torn tail.
    """
    files = segments(directory)
    seq, prev = 0, ZERO_HASH
    for index, path in enumerate(files):
        data = path.read_bytes()
        end = data_end(data)  # records stop here; only zeros follow
        last_file = index == len(files) - 1
        if int(path.stem) != seq + 1:
            raise JournalCorrupt(path, 0, seq + 1, f"segment starts at seq {int(path.stem)}, expected {seq + 1}")
        offset = 0
        while offset < end:
            torn = _torn_reason(data, offset, end)
            if torn is not None:
                if not last_file or (_record_follows(data, offset, end, seq + 2) and not _lost_write(data, offset, end)):
                    raise JournalCorrupt(path, offset, seq + 1, torn)
                _truncate(path, data, offset, end, torn, repair, seq + 1)
                return
            length, crc, rec_seq, rec_prev = HEADER.unpack_from(data, offset)
            start = offset + HEADER.size
            payload = data[start:start + length]
            if zlib.crc32(payload, zlib.crc32(data[offset + 8:start])) != crc:
                if last_file and start + length >= end and not _record_follows(data, offset, end, seq + 2):
                    _truncate(path, data, offset, end, "last record fails its CRC (torn write)", repair, seq + 1)
                    return
                if last_file and _lost_write(data, offset, end):
                    _truncate(path, data, offset, end, "zeroed sectors of an unsynced write (out-of-order write)", repair,
                              seq + 1)
                    return
                raise JournalCorrupt(path, offset, rec_seq, "CRC mismatch")
            if rec_seq != seq + 1:
                raise JournalCorrupt(path, offset, rec_seq, f"sequence gap: expected seq {seq + 1}")
            if rec_prev != prev:
                raise JournalCorrupt(path, offset, rec_seq, "hash chain broken: prev_hash does not match the previous record")
            digest = record_hash(rec_seq, rec_prev, payload)
            yield Record(rec_seq, rec_prev, digest, payload, path, offset)
            if rec_seq == upto:
                return
            seq, prev = rec_seq, digest
            offset = start + length


def _torn_reason(data: bytes, offset: int, end: int) -> str | None:
    """Why the record at ``offset`` cannot be read whole, given that only zeros follow ``end``."""
    if end - offset < HEADER.size:
        return "record header cut short"
    length = int.from_bytes(data[offset:offset + 4], "little")
    if length > MAX_PAYLOAD:
        return f"record length {length} is implausible"
    if offset + HEADER.size + length > len(data):
        return "record payload cut short"
    return None


def _lost_write(data: bytes, offset: int, end: int) -> bool:
    """Whether the bad record at ``offset`` is where a write that was never acknowledged lost sectors.

    A pre-zeroed segment is overwritten in place, so a power cut can persist the
    sectors of the last, unsynced write in any order: a lost one reads as it was
    before the write (zeros after the last synced byte), with later records intact
    after it. Such a hole is told apart from damage to acknowledged records by two
    facts. Where: ``JournalWriter`` never has more than ``UNSYNCED_LIMIT`` bytes
    written past its last completed fdatasync, and a roll fsyncs the old segment
    first, so an interrupted write lies in the last segment and ends (``end``, the
    last non-zero byte) within ``UNSYNCED_LIMIT`` of the bad record. What: the bad
    record's bytes to the end of their sector are zeros (the sector where the
    unsynced write began, lost), or a whole ``SECTOR`` of zeros follows it (JSON
    payloads hold no NUL bytes; a header's hash and CRC are not zeros): a lost
    sector, never a flipped bit. Anything else, a flipped bit inside the window
    included, is corruption.
    """
    if end - offset > UNSYNCED_LIMIT:
        return False
    boundary = -(-offset // SECTOR) * SECTOR  # the first sector that starts at or after the bad record
    if boundary > offset and not any(data[offset:boundary]):
        return True
    zeros = _ZEROS[:SECTOR]
    return any(data[at:at + SECTOR] == zeros for at in range(boundary, end - SECTOR + 1, SECTOR))


def _record_follows(data: bytes, offset: int, end: int, next_seq: int) -> bool:
    """Whether a whole record numbered ``next_seq``, with a good CRC, starts after ``offset``.

    Then the bad record at ``offset`` is not the last thing written (a flipped length
    bit can make a record seem to run to the end): it is corruption, never a torn tail.
    """
    needle = next_seq.to_bytes(8, "little")
    hit = data.find(needle, offset + 9, end)
    while hit >= 0:
        at = hit - 8
        length = int.from_bytes(data[at:at + 4], "little")
        start = at + HEADER.size
        if start + length <= len(data):
            crc = int.from_bytes(data[at + 4:at + 8], "little")
            if zlib.crc32(data[start:start + length], zlib.crc32(data[at + 8:start])) == crc:
                return True
        hit = data.find(needle, hit + 1, end)
    return False


def _truncate(path: Path, data: bytes, offset: int, end: int, reason: str, repair: bool, seq: int) -> None:
    """Cut the torn tail at ``offset`` (where record ``seq`` would be), keeping its bytes (the bad record, not the
    zeros after it) in ``.broken``."""
    if not repair:
        raise JournalCorrupt(path, offset, seq, f"torn tail ({reason}); run the daemon once to repair it")
    extent = offset + HEADER.size
    length = int.from_bytes(data[offset:offset + 4], "little") if len(data) - offset >= 4 else 0
    if length <= MAX_PAYLOAD:
        extent += length
    kept = data[offset:max(end, min(len(data), extent))]
    log.warning("journal %s: torn tail at offset %d (%s); truncating %d bytes", path.name, offset, reason, len(kept))
    path.with_suffix(".broken").write_bytes(kept)
    with open(path, "r+b") as f:
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())


def records_end(path: Path) -> int:
    """Offset just past the last record in a segment already checked by recovery (its zero tail excluded).

    Hops header to header; a header of zeros or one cut short is where the records end.
    """
    offset = 0
    with open(path, "rb") as f:
        while True:
            head = f.read(HEADER.size)
            if len(head) < HEADER.size or not any(head):
                return offset
            offset += HEADER.size + int.from_bytes(head[:4], "little")
            f.seek(offset)


class JournalReader:
    """Reads durable records incrementally from a position: the tail-follower's view.

    ``read(upto)`` yields records ``seq+1 .. upto`` and remembers where it stopped,
    checking CRC, sequence and chain exactly as recovery does. The caller only
    asks for records it knows are durable, so a short record is corruption here,
    never a torn tail; a header of zeros is where the writer has not written yet
    (a pre-zeroed segment), never a record. Reads go ``READ_CHUNK`` at a time, so
    a mostly-zero segment is not read whole on every call.
    """

    def __init__(self, directory: Path, seq: int = 0, prev_hash: bytes = ZERO_HASH) -> None:
        self.directory = directory
        self.seq = seq
        self.hash = prev_hash
        self._path: Path | None = None
        self._offset = 0
        if seq:
            self._seek(seq + 1)

    def _seek(self, next_seq: int) -> None:
        """Position at record ``next_seq`` (scanning its segment's headers)."""
        files = segments(self.directory)
        holder = [p for p in files if int(p.stem) <= next_seq]
        if not holder:
            raise JournalCorrupt(self.directory / "?", 0, next_seq, "no segment holds this seq")
        path = holder[-1]
        offset, seq = 0, int(path.stem) - 1
        with open(path, "rb") as f:
            while seq + 1 < next_seq:
                head = f.read(HEADER.size)
                if len(head) < HEADER.size or not any(head):
                    raise JournalCorrupt(path, offset, seq + 1, "segment ends before the expected record")
                length, _, seq, _ = HEADER.unpack(head)
                offset += HEADER.size + length
                f.seek(offset)
        self._path, self._offset = path, offset

    def read(self, upto: int) -> Iterator[Record]:
        while self.seq < upto:
            path = self._path
            if path is None or not path.exists():
                path = self.directory / f"{self.seq + 1:020d}{SEGMENT_SUFFIX}"
                self._path, self._offset = path, 0
            data = self._chunk(path)
            if not data:  # this segment holds no more records; the next record opens the next one
                nxt = self.directory / f"{self.seq + 1:020d}{SEGMENT_SUFFIX}"
                if nxt == path or not nxt.exists():
                    raise JournalCorrupt(path, self._offset, self.seq + 1, "durable record missing")
                self._path, self._offset = nxt, 0
                continue
            pos = 0
            while pos < len(data) and self.seq < upto:
                if len(data) - pos < HEADER.size or not any(data[pos:pos + HEADER.size]):
                    break
                length, crc, rec_seq, rec_prev = HEADER.unpack_from(data, pos)
                start = pos + HEADER.size
                if start + length > len(data):
                    break
                payload = data[start:start + length]
                offset = self._offset + pos
                if zlib.crc32(payload, zlib.crc32(data[pos + 8:start])) != crc:
                    raise JournalCorrupt(path, offset, rec_seq, "CRC mismatch")
                if rec_seq != self.seq + 1:
                    raise JournalCorrupt(path, offset, rec_seq, f"sequence gap: expected seq {self.seq + 1}")
                if rec_prev != self.hash:
                    raise JournalCorrupt(path, offset, rec_seq, "hash chain broken: prev_hash does not match the previous record")
                digest = record_hash(rec_seq, rec_prev, payload)
                yield Record(rec_seq, rec_prev, digest, payload, path, offset)
                self.seq, self.hash = rec_seq, digest
                pos = start + length
            self._offset += pos
            if pos == 0 and self.seq < upto:
                raise JournalCorrupt(path, self._offset, self.seq + 1, "durable record cut short")

    def _chunk(self, path: Path) -> bytes:
        """The bytes from the current offset that hold whole records (at least one if any is there).

        Empty when the segment has no record at the offset: its end, or its zero tail.
        """
        with open(path, "rb") as f:
            f.seek(self._offset)
            data = f.read(READ_CHUNK)
            if len(data) < HEADER.size or not any(data[:HEADER.size]):
                return b""
            need = HEADER.size + int.from_bytes(data[:4], "little")
            if need > len(data) and need <= HEADER.size + MAX_PAYLOAD:  # one record longer than a chunk
                data += f.read(need - len(data))
            return data
