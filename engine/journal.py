"""The append-only journal: framing, hash chain, segments, torn-tail recovery.

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
* Segments are files ``<first seq, 20 digits>.seg``; a new one starts once the
  current one passes ``segment_bytes``. Creating one fsyncs the directory.

Recovery rules (etcd's): a record cut short at the end of the *last* segment,
or whose CRC fails and which ends exactly at EOF, is a torn write and is
truncated away (the cut bytes are saved to ``<segment>.broken`` first) - unless a
whole record with the next seq and a good CRC starts after it (a flipped length
bit makes a record seem to run past the end). Any other bad CRC, seq gap or
broken link refuses to start, naming segment, offset and seq. A failed fsync is never retried: the error propagates and the daemon stops.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import attrs

log = logging.getLogger("satchel.journal")

HEADER: Final = struct.Struct("<IIQ32s")
HASH_DOMAIN: Final = b"satchel/journal/rec/v1"
ZERO_HASH: Final = bytes(32)
MAX_PAYLOAD: Final = 256 * 1024 * 1024
SEGMENT_SUFFIX: Final = ".seg"


class DiskFull(OSError):
    """The journal's disk is full (or over quota): the partial write was rolled back, intake stops."""


DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


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


def read_records(directory: Path, *, repair: bool = True, upto: int | None = None) -> Iterator[Record]:
    """Yield every valid record in order (through seq ``upto`` if given); repair a torn tail if ``repair``.

    Raises JournalCorrupt for anything that is not a torn tail.
    """
    files = segments(directory)
    seq, prev = 0, ZERO_HASH
    for index, path in enumerate(files):
        data = path.read_bytes()
        last_file = index == len(files) - 1
        if int(path.stem) != seq + 1:
            raise JournalCorrupt(path, 0, seq + 1, f"segment starts at seq {int(path.stem)}, expected {seq + 1}")
        offset = 0
        while offset < len(data):
            torn = _torn_reason(data, offset)
            if torn is not None:
                if not last_file or _record_follows(data, offset, seq + 2):
                    raise JournalCorrupt(path, offset, seq + 1, torn)
                _truncate(path, data, offset, torn, repair)
                return
            length, crc, rec_seq, rec_prev = HEADER.unpack_from(data, offset)
            start = offset + HEADER.size
            payload = data[start:start + length]
            if zlib.crc32(payload, zlib.crc32(data[offset + 8:start])) != crc:
                if last_file and start + length == len(data) and not _record_follows(data, offset, seq + 2):
                    _truncate(path, data, offset, "last record fails its CRC (torn write)", repair)
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


def _torn_reason(data: bytes, offset: int) -> str | None:
    if len(data) - offset < HEADER.size:
        return "record header cut short"
    length = int.from_bytes(data[offset:offset + 4], "little")
    if length > MAX_PAYLOAD:
        return f"record length {length} is implausible"
    if offset + HEADER.size + length > len(data):
        return "record payload cut short"
    return None


def _record_follows(data: bytes, offset: int, next_seq: int) -> bool:
    """Whether a whole record numbered ``next_seq`` with a good CRC starts somewhere after ``offset``.

    A torn write is the last thing in the journal. A record that only looks torn
    (a flipped bit in its length makes it run past the end of the file) but has
    its successor after it is corruption: cutting there would drop acknowledged
    records without a word.
    """
    needle = next_seq.to_bytes(8, "little")  # the seq field, 8 bytes into a header
    hit = data.find(needle, offset + 9)
    while hit >= 0:
        at = hit - 8
        length = int.from_bytes(data[at:at + 4], "little")
        start = at + HEADER.size
        if start + length <= len(data):
            crc = int.from_bytes(data[at + 4:at + 8], "little")
            if zlib.crc32(data[start:start + length], zlib.crc32(data[hit:start])) == crc:
                return True
        hit = data.find(needle, hit + 1)
    return False


def _truncate(path: Path, data: bytes, offset: int, reason: str, repair: bool) -> None:
    if not repair:
        raise JournalCorrupt(path, offset, -1, f"torn tail ({reason}); run the daemon once to repair it")
    log.warning("journal %s: torn tail at offset %d (%s); truncating %d bytes", path.name, offset, reason, len(data) - offset)
    path.with_suffix(".broken").write_bytes(data[offset:])
    with open(path, "r+b") as f:
        f.truncate(offset)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalWriter:
    """Appends framed records and makes them durable. Blocking; run it off the event loop.

    One writer per directory; ``open`` positions it after the last valid record.
    """

    def __init__(self, directory: Path, segment_bytes: int, last_seq: int, last_hash: bytes) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.seq = last_seq
        self.hash = last_hash
        self._fd = -1
        self._size = 0
        files = segments(directory)
        if files:
            self._fd = os.open(files[-1], os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size

    def frame_batch(self, payloads: list[bytes]) -> tuple[bytes, int, bytes]:
        """Frame payloads as the records after the last durable one: (bytes, last seq, last hash)."""
        return frame_records(payloads, self.seq, self.hash)

    def write(self, data: bytes, first_seq: int) -> None:
        """Write framed records (not yet durable: ``sync`` makes them so). Any OSError is fatal."""
        if self._fd < 0 or self._size >= self.segment_bytes:
            self._roll(first_seq)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            if exc.errno not in DISK_FULL_ERRNOS:
                raise
            # Roll the partial write back so the file ends on a whole record; nothing
            # in this batch was acknowledged, so nothing acknowledged is lost.
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
            raise DiskFull(exc.errno, f"journal disk full writing {len(data)} bytes at seq {first_seq}: {exc.strerror}") from exc
        self._size += len(data)

    def sync(self, last_seq: int, last_hash: bytes) -> None:
        """fdatasync what ``write`` wrote; the records through ``last_seq`` are now durable."""
        os.fdatasync(self._fd)
        self.seq, self.hash = last_seq, last_hash

    def write_and_sync(self, data: bytes, first_seq: int, last_seq: int, last_hash: bytes) -> None:
        """Write framed records and fdatasync them. Any OSError is fatal to the caller."""
        self.write(data, first_seq)
        self.sync(last_seq, last_hash)

    def append(self, payloads: list[bytes]) -> int:
        """Frame, write and sync in one call; returns the last seq."""
        data, last_seq, last_hash = self.frame_batch(payloads)
        self.write_and_sync(data, self.seq + 1, last_seq, last_hash)
        return last_seq

    def _roll(self, first_seq: int) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
        path = self.directory / f"{first_seq:020d}{SEGMENT_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._size = 0
        fsync_dir(self.directory)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


class SyncThread:
    """The journal's disk side: a thread that writes what the event loop framed, then fdatasyncs.

    Group commit happens here. Whatever the loop framed while one fdatasync ran is
    written next and covered by the next single fdatasync, so the loop never waits
    on the disk and never pays a thread hand-off per batch. After each fdatasync the
    thread calls ``notify(synced_seq, error)`` (the caller makes that thread-safe).
    An error ends the thread: a failed write or fsync is never retried.
    """

    def __init__(self, writer: JournalWriter, notify: Callable[[int, BaseException | None], None]) -> None:
        self.writer = writer
        self.notify = notify
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[tuple[bytes, int, int, bytes]] = []
        self._closing = False
        self.last_sync_s = 0.0  # how long the last write + fdatasync took
        self._thread = threading.Thread(target=self._run, name="satchel-journal-sync", daemon=True)
        self._thread.start()

    def put(self, data: bytes, first_seq: int, last_seq: int, last_hash: bytes) -> None:
        """Queue framed records for writing; they follow everything queued before."""
        with self._cond:
            self._pending.append((data, first_seq, last_seq, last_hash))
            self._cond.notify()

    def close(self) -> None:
        """Write and sync what is queued, then stop the thread. Blocking."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._pending and not self._closing:
                    cond.wait()
                work, self._pending = self._pending, []
            if not work:
                return
            started = time.perf_counter()
            synced, error = self._write(work)
            self.last_sync_s = time.perf_counter() - started
            self.notify(synced, error)
            if error is not None:
                return

    def _write(self, work: list[tuple[bytes, int, int, bytes]]) -> tuple[int, BaseException | None]:
        writer = self.writer
        written_seq, written_hash = writer.seq, writer.hash
        try:
            for data, first_seq, last_seq, last_hash in work:
                writer.write(data, first_seq)
                written_seq, written_hash = last_seq, last_hash
            writer.sync(written_seq, written_hash)
            return written_seq, None
        except DiskFull as full:
            # The batches before the one that did not fit are on disk whole; make them durable.
            try:
                if written_seq > writer.seq:
                    writer.sync(written_seq, written_hash)
            except OSError as exc:
                return writer.seq, exc
            return writer.seq, full
        except BaseException as exc:  # reported to the event loop, which stops the engine
            return writer.seq, exc


class JournalReader:
    """Reads durable records incrementally from a position: the tail-follower's view.

    ``read(upto)`` yields records ``seq+1 .. upto`` and remembers where it stopped,
    checking CRC, sequence and chain exactly as recovery does. The caller only
    asks for records it knows are durable, so a short record is corruption here,
    never a torn tail.
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
                if len(head) < HEADER.size:
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
            with open(path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
            if not data:  # this segment is finished; the next record opens the next one
                nxt = self.directory / f"{self.seq + 1:020d}{SEGMENT_SUFFIX}"
                if nxt == path or not nxt.exists():
                    raise JournalCorrupt(path, self._offset, self.seq + 1, "durable record missing")
                self._path, self._offset = nxt, 0
                continue
            pos = 0
            while pos < len(data) and self.seq < upto:
                if _torn_reason(data, pos) is not None:
                    break  # the rest is still being written; reread from here
                length, crc, rec_seq, rec_prev = HEADER.unpack_from(data, pos)
                start = pos + HEADER.size
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
