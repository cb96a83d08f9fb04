"""Per-session sequence numbers and the outbound message store (for ResendRequest).

``MemoryStore`` keeps everything in memory; ``FileStore`` adds an append-only
log so sequence numbers and sent application messages survive reconnects and
daemon restarts. Records:

    S <seq> <length>\\n<raw message>   an application message we sent
    A <seq>\\n                         an admin message we sent (resent as gap fill)
    T <next target>\\n                 the next MsgSeqNum we expect
    R\\n                               both sequences reset to 1

Records are kept in memory at once (a resend reads them there) and go into
the log once per ``flush``, all of a burst in one copy into a shared mapping
(``mapped_log``): in the page cache without a system call. The server flushes
before every write to the socket (and after each read), so a crash of the
process never loses a sequence number the peer has seen; the records of a
burst not yet written are of messages nobody has seen. ``flush`` also runs
``flush_also``: the application's file the same rule covers (ClOrdIDs, set by
``ExchangeApplication.register``). The next expected MsgSeqNum is written once
per ``flush``: its last value is all a reload uses. No fsync:
after a power loss the peer may see a sequence reset; FIX recovers from that
with a ResendRequest or ResetSeqNumFlag. A torn last record (or a crashed
mapping's zero tail) is dropped on load.

Bounds: at most ``MAX_STORED`` application messages are kept for resend; older
ones are answered with a gap fill. The log is rewritten compactly when it holds
more than ``COMPACT_RECORDS`` records.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import Final

from adapters.fix.mapped_log import MappedLog, private

MAX_STORED: Final = 100_000
COMPACT_RECORDS: Final = 1_000_000


class MemoryStore:
    """Sequence numbers and recent outbound application messages."""

    def __init__(self) -> None:
        self.next_sender = 1
        self.next_target = 1
        # oldest first (sequence numbers only grow). A plain dict, whose insert costs half an OrderedDict's: the
        # oldest is dropped by key (``_drop_oldest``), never found with ``next(iter(d))``, which scans every slot
        # deleted before it (once MAX_STORED was reached that made each send cost O(MAX_STORED))
        self.messages: dict[int, bytes] = {}
        self._oldest = 1  # no stored message has a lower sequence number
        # another file whose records the peer may see in what follows a flush (the application's ClOrdIDs)
        self.flush_also: Callable[[], None] = _nothing

    def record_sent(self, seq: int, raw: bytes | None) -> None:
        self.next_sender = seq + 1
        if raw is not None:
            messages = self.messages
            messages[seq] = raw
            if len(messages) > MAX_STORED:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        """Forget the stored message with the lowest sequence number."""
        messages = self.messages
        oldest = self._oldest
        for _ in range(64):  # the gaps are admin messages (not stored): a few numbers at a time
            if oldest in messages:
                break
            oldest += 1
        else:  # a long gap (our SequenceReset): take the first key, one scan
            oldest = next(iter(messages))
        del messages[oldest]
        self._oldest = oldest + 1

    def reset(self) -> None:
        self.next_sender = 1
        self.next_target = 1
        self.messages.clear()
        self._oldest = 1

    def get(self, seq: int) -> bytes | None:
        return self.messages.get(seq)

    def stored_between(self, begin: int, end: int) -> list[int]:
        """The sequence numbers of the stored messages from ``begin`` to ``end`` (both included), in order.

        One copy of the keys (in C) and two bisections: the cost follows the messages stored, not the
        width of the range. The keys are in increasing order: ``record_sent`` only ever appends the
        next sequence number, and ``reset`` empties the store.
        """
        seqs = list(self.messages)
        return seqs[bisect_left(seqs, begin):bisect_right(seqs, end)]

    def flush(self) -> None:
        """Nothing of ours to persist; the application's file may have some."""
        self.flush_also()

    def close(self) -> None:
        """Nothing to release."""


class FileStore(MemoryStore):
    """MemoryStore plus an append-only log replayed on start."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.records = 0
        self._pending: list[bytes] = []  # records (and raw messages) for the log at the next flush
        if path.exists():
            self._load(path.read_bytes())  # trims a torn tail: the log appends after the last whole record
        # the next expected MsgSeqNum the log gives (its last T); a flush adds a T when ``next_target`` moved
        self._target_logged = self.next_target
        self._log = MappedLog(path)
        if self.records > COMPACT_RECORDS:
            self._compact()

    def _load(self, data: bytes) -> None:
        pos = 0
        good = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:
                break
            parts = data[pos:end].split(b" ")
            kind = parts[0]
            try:
                if kind == b"S":
                    seq, length = int(parts[1]), int(parts[2])
                    if end + 1 + length > len(data):
                        break
                    MemoryStore.record_sent(self, seq, data[end + 1:end + 1 + length])
                    end += length
                elif kind == b"A":
                    MemoryStore.record_sent(self, int(parts[1]), None)
                elif kind == b"T":
                    self.next_target = int(parts[1])
                elif kind == b"R":
                    MemoryStore.reset(self)
                else:
                    break
            except (IndexError, ValueError):
                break
            pos = end + 1
            good = pos
            self.records += 1
        if good < len(data):  # torn or foreign tail: keep what was whole
            with open(self.path, "r+b") as handle:
                handle.truncate(good)

    def record_sent(self, seq: int, raw: bytes | None) -> None:
        MemoryStore.record_sent(self, seq, raw)
        if self._log.closed:  # after close (shutdown): the session is memory-only
            return
        pending = self._pending
        if raw is None:
            pending.append(b"A %d\n" % seq)
        else:  # the message is not copied into a record of its own: the flush's join copies it once
            pending.append(b"S %d %d\n" % (seq, len(raw)))
            pending.append(raw)
        self.records += 1

    def _write_pending(self) -> None:
        """The records since the last flush, and the next expected MsgSeqNum if it changed, in one write."""
        pending = self._pending
        if self.next_target != self._target_logged:  # one T record per flush: only the last value counts on load
            self._target_logged = self.next_target
            pending.append(b"T %d\n" % self.next_target)
            self.records += 1
        if pending:
            self._pending = []
            self._log.write(b"".join(pending))

    def reset(self) -> None:
        super().reset()
        self._pending.clear()  # records of the sequences the reset ends
        self._target_logged = 1
        self._log.close()
        self.path.write_bytes(b"R\n")
        self._log = MappedLog(self.path)
        self.records = 1

    def _compact(self) -> None:
        self._pending.clear()  # the compacted log is written from memory, which has them
        self._target_logged = self.next_target  # the compacted log ends with the current T
        self._log.close()
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb", opener=private) as out:
            out.write(b"R\n")
            for seq, raw in self.messages.items():
                out.write(b"S %d %d\n" % (seq, len(raw)))
                out.write(raw)
            out.write(b"A %d\n" % (self.next_sender - 1) if self.next_sender > 1 else b"")
            out.write(b"T %d\n" % self.next_target)
        tmp.replace(self.path)
        self._log = MappedLog(self.path)
        self.records = len(self.messages) + 3

    def flush(self) -> None:
        """Put what the peer may see next in the page cache: our records since the last flush, then the application's."""
        if not self._log.closed:
            if self.records > COMPACT_RECORDS:
                self._compact()  # written from memory: what is pending included
            else:
                self._write_pending()
        self.flush_also()

    def close(self) -> None:
        if not self._log.closed:
            self._write_pending()
            self._log.close()


def _nothing() -> None:
    """``flush_also`` of a store whose application keeps no file."""
