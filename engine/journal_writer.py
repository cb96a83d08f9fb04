"""Writing the journal durably: ``JournalWriter``, the group-commit ``SyncThread``, pre-zeroed segments.

Records are framed as ``engine/journal.py`` lays them out, in segments named as it
says; a new segment starts once the current one passes ``segment_bytes``, and
creating one fsyncs the directory. The writer never has more than
``UNSYNCED_LIMIT`` bytes written past its last completed fdatasync: recovery's
torn-tail rules rely on that bound (``engine.journal._lost_write``). A failed
fsync is never retried: the error propagates and the daemon stops. A full disk
(``DiskFull``) rolls the partial write back, so the segment ends on a whole record.

Pre-zeroed segments: once the current segment is half full, a background thread
writes the next one ahead of time as ``segment_bytes`` of zeros, fsynced, under
a name readers ignore (``next.prep.tmp``, renamed ``next.prep`` when whole); the
roll renames it into place. A plain segment (a new journal's first, or one made
while no prepared file was ready) starts a preparation once it holds
``EARLY_ROLL_BYTES`` and rolls into the prepared one as soon as it is ready, so a
long-running journal writes into pre-zeroed blocks after its first MiB; short
journals (tests, tools) never write the zeros. Costs: one segment of disk held
ahead (``next.prep`` stays across restarts and is reused), and each segment's
blocks are written twice; the fill is paced (``ZERO_FILL_BYTES_PER_S``, one
fdatasync per MiB) because an unpaced one stalled the journal's own fsyncs.
Records then overwrite blocks that already exist, so an fdatasync flushes data
only, without committing the file system's own journal for a size or extent
change (and without queueing behind whatever else that commit carries).
Measured on this VM's virtio disk (bench/fsync_probe.py, layouts interleaved):
fdatasync p50 91 us pre-zeroed vs 188 us appending for 4-64 KiB writes, 58 vs
71 us for 300-byte ones; the engine's ack p99 at 20k orders/s was 2.1-2.3 ms in
8 of 9 runs pre-zeroed vs 2.4-48 ms appending (one sitting, interleaved). The
device's cache flush (occasional 50-250 ms stalls) is the floor either way. A roll never waits for it: if no prepared file is ready,
the new segment is an ordinary growing file. A crash mid-preparation leaves only
a ``.tmp`` that the next writer deletes.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from engine.durable import fsync_dir, start_writeback
from engine.journal import HEADER, SEGMENT_SUFFIX, UNSYNCED_LIMIT, frame_records, records_end, segments

log = logging.getLogger("satchel.journal")

PREPARED_NAME: Final = "next.prep"  # a zero-filled segment waiting for the next roll; never matches *.seg
PREPARE_FROM: Final = 0.5  # start preparing the next segment once the current one is this full
EARLY_ROLL_BYTES: Final = 1 << 20  # a plain (growing) segment this long prepares a pre-zeroed one and rolls into it when ready
ZERO_CHUNK: Final = 1 << 20  # preparation writes and fdatasyncs zeros this many bytes at a time
ZERO_FILL_BYTES_PER_S: Final = 16 << 20  # and no faster: an unpaced fill (~350 MB/s here) took journal fsync p99 from ~8 to ~85 ms


class DiskFull(OSError):
    """The journal's disk is full (or over quota): the partial write was rolled back, intake stops."""


WRITEBACK_FROM_BYTES: Final = 4096  # ``write_and_sync``'s ``meanwhile`` starts the disk's write first from this size
DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class SegmentPreparer:
    """Writes the next segment ahead of time as zeros in a background thread (see the module doc).

    ``want()`` starts one preparation if none is ready or running; ``take(path)``
    renames a ready one to ``path`` and says whether it did, never waiting for one
    still being written. A crash mid-way leaves only ``next.prep.tmp``, deleted here.
    """

    def __init__(self, directory: Path, size: int) -> None:
        self.size = size
        self.path = directory / PREPARED_NAME
        self.tmp = directory / f"{PREPARED_NAME}.tmp"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: OSError | None = None  # the last preparation's failure (a roll then grows a plain file)
        self.tmp.unlink(missing_ok=True)
        if self.path.exists() and self.path.stat().st_size != size:  # prepared for another segment_bytes
            self.path.unlink()
        self.ready = self.path.exists()

    def want(self) -> None:
        if self.ready or self._thread is not None:  # read without the lock: at worst one more call takes it
            return
        with self._lock:
            if self.ready or self._thread is not None:
                return
            self._thread = threading.Thread(target=self._prepare, name="satchel-journal-prepare", daemon=True)
            self._thread.start()

    def take(self, path: Path) -> bool:
        with self._lock:
            if not self.ready:
                return False
            os.rename(self.path, path)
            self.ready = False
            return True

    def close(self) -> None:
        """Stop a preparation in progress (its partial file is deleted); a finished one stays for the next start."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _prepare(self) -> None:
        try:
            done = self._zero_fill()
        except OSError as exc:  # a full disk: the journal goes on in plain segments
            log.warning("journal: preparing the next segment failed (%s); the next one grows as written", exc)
            self.error, done = exc, False
        if not done:
            self.tmp.unlink(missing_ok=True)
        with self._lock:
            self._thread = None
            self.ready = done

    def prepare_now(self) -> None:
        """Prepare the next segment in the caller's thread, unpaced, unless one is ready.

        For a fresh journal that should start in the steady state of a running one
        (benchmarks): its first segment is then pre-zeroed too.
        """
        if not self.ready:
            self.ready = self._zero_fill(bytes_per_s=0)

    def _zero_fill(self, bytes_per_s: int = ZERO_FILL_BYTES_PER_S) -> bool:
        zeros = bytes(ZERO_CHUNK)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written, started = 0, time.monotonic()
            while written < self.size:
                written += os.write(fd, zeros[:min(ZERO_CHUNK, self.size - written)])
                os.fdatasync(fd)  # a chunk at a time: never a burst of dirty pages for the journal's fsync to wait behind
                ahead_s = written / bytes_per_s - (time.monotonic() - started) if bytes_per_s else 0.0
                if self._stop.wait(max(0.0, ahead_s)):
                    return False
            os.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            os.rename(self.tmp, self.path)  # whole and durable before it has the name a roll takes
        return True


class JournalWriter:
    """Appends framed records and makes them durable. Blocking; run it off the event loop.

    One writer per directory; ``open`` positions it after the last valid record
    (before a pre-zeroed segment's zero tail). Records are written with pwrite at
    that position, so a pre-zeroed segment is overwritten in place and a plain
    one grows.
    """

    def __init__(self, directory: Path, segment_bytes: int, last_seq: int, last_hash: bytes) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.seq = last_seq
        self.hash = last_hash
        self._fd = -1
        self._size = 0
        self._plain = True  # the current segment grows as written (no zero tail to overwrite)
        self._synced = 0  # offset in the current segment through which an fdatasync has returned
        self.preparer = SegmentPreparer(directory, segment_bytes)
        files = segments(directory)
        if files:
            self._fd = os.open(files[-1], os.O_WRONLY)
            self._size = self._synced = records_end(files[-1])
            self._plain = os.fstat(self._fd).st_size - self._size < HEADER.size
            os.fdatasync(self._fd)  # what a crashed process left in the page cache counts as synced from here

    def frame_batch(self, payloads: list[bytes]) -> tuple[bytes, int, bytes]:
        """Frame payloads as the records after the last durable one: (bytes, last seq, last hash)."""
        return frame_records(payloads, self.seq, self.hash)

    def write(self, data: bytes, first_seq: int) -> None:
        """Write framed records (not yet durable: ``sync`` makes them so). Any OSError is fatal."""
        size = self._size
        if self._fd < 0 or size >= self.segment_bytes or (self._plain and size >= EARLY_ROLL_BYTES and self.preparer.ready):
            self._roll(first_seq)
        elif size >= self.segment_bytes * PREPARE_FROM or (self._plain and size >= EARLY_ROLL_BYTES):
            self.preparer.want()
        view = memoryview(data)
        at = self._size
        try:
            while view:
                if at - self._synced >= UNSYNCED_LIMIT:  # recovery relies on this bound (see _lost_write)
                    os.fdatasync(self._fd)
                    self._synced = at
                written = os.pwrite(self._fd, view[:UNSYNCED_LIMIT - (at - self._synced)], at)
                view = view[written:]
                at += written
        except OSError as exc:
            if exc.errno not in DISK_FULL_ERRNOS:
                raise
            # Roll the partial write back so the file ends on a whole record; nothing
            # in this batch was acknowledged, so nothing acknowledged is lost.
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
            self._plain, self._synced = True, min(self._synced, self._size)
            raise DiskFull(exc.errno, f"journal disk full writing {len(data)} bytes at seq {first_seq}: {exc.strerror}") from exc
        self._size += len(data)

    def sync(self, last_seq: int, last_hash: bytes) -> None:
        """fdatasync what ``write`` wrote; the records through ``last_seq`` are now durable."""
        os.fdatasync(self._fd)
        self._synced = self._size
        self.seq, self.hash = last_seq, last_hash

    def write_and_sync(self, data: bytes, first_seq: int, last_seq: int, last_hash: bytes,
                       meanwhile: Callable[[], None] | None = None) -> None:
        """Write framed records and fdatasync them. Any OSError is fatal to the caller.

        ``meanwhile`` runs between the write and the fdatasync, with the disk's
        write of a batch of at least ``WRITEBACK_FROM_BYTES`` already started
        (``start_writeback``): work that must wait for durability to show, but
        not to be done, overlaps the transfer. A smaller write (one order) is
        left to the fdatasync alone: starting it separately costs a system call
        and saves nothing.
        """
        self.write(data, first_seq)
        if meanwhile is not None:
            if len(data) >= WRITEBACK_FROM_BYTES:
                start_writeback(self._fd, self._size - len(data), len(data))  # where ``write`` put it, rolled or not
            meanwhile()
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
        self._plain = not self.preparer.take(path)
        if self._plain:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        else:
            self._fd = os.open(path, os.O_WRONLY)
        self._size = self._synced = 0
        fsync_dir(self.directory)

    def close(self) -> None:
        self.preparer.close()
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
