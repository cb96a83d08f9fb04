"""ClOrdID (11) <-> Satchel order id, per account, remembered across daemon restarts.

A ClOrdID is the client's name for an order; Satchel's order ids are its own.
FIX clients cancel, replace and ask for status by ClOrdID (41/11), often long
after placing the order, so the mapping lives in an append-only file beside the
session stores (``<journal dir>/fix/clordids.log``), one line per change:

    + <account> <order id> <ClOrdID>\\n    the order's current ClOrdID
    - <account> <order id>\\n              the order was refused: forget its ClOrdID

ClOrdIDs are latin-1 text (as the codec decodes them) and run to the end of the
line; the rare one holding a newline is kept in memory only.

A change is in memory at once and goes into the file at the next ``flush``,
with the others of its burst in one copy into a shared mapping
(``mapped_log``): in the page cache without a system call. Every session
store's flush calls this one (``FileStore.flush_also``), and the server
flushes the store before every write to the socket, so the peer never sees a
ClOrdID the file could lose in a crash of the process (the same rule as the
sequence store). No fsync, like the sequence store. A torn last line (or the
mapping's zero tail after a crash) is ignored on load.

Bounds: ``MAX_PER_ACCOUNT`` ClOrdIDs per account (past it, the oldest tenth is forgotten at once);
the file is rewritten compactly at start and whenever it holds more than
``COMPACT_FACTOR`` times the live entries.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Final

from adapters.fix.mapped_log import MappedLog, private

MAX_PER_ACCOUNT: Final = 100_000
COMPACT_FACTOR: Final = 4
COMPACT_MIN_RECORDS: Final = 10_000


class ClOrdIds:
    """The mapping in memory, optionally backed by a file (``path=None``: memory only)."""

    def __init__(self, path: Path | None = None, *, per_account: int = MAX_PER_ACCOUNT) -> None:
        self.path = path
        self.per_account = per_account
        # account -> ClOrdID -> order id, oldest first: a plain dict, whose insert costs half an OrderedDict's
        self.by_account: dict[int, dict[str, int]] = {}
        self.current: dict[int, str] = {}  # order id -> its current ClOrdID
        self.records = 0
        self._pending: list[bytes] = []  # records for the file at the next flush
        self._log: MappedLog | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._load(path.read_bytes())
            self._compact()

    # --- queries -------------------------------------------------------------------------

    def order_id(self, account: int, cl_ord_id: str) -> int | None:
        known = self.by_account.get(account)
        return known.get(cl_ord_id) if known is not None else None

    def cl_ord_id(self, order_id: int) -> str | None:
        return self.current.get(order_id)

    # --- changes -------------------------------------------------------------------------

    def remember(self, account: int, cl_ord_id: str, order_id: int) -> None:
        """``cl_ord_id`` now names ``order_id`` (a new order, or a replace/cancel that took effect)."""
        if not cl_ord_id:
            return
        known = self.by_account.get(account)
        if known is not None and cl_ord_id not in known and len(known) < self.per_account:
            known[cl_ord_id] = order_id  # ``_set`` for a new ClOrdID with room, inlined: once per order
            self.current[order_id] = cl_ord_id
        else:
            self._set(account, cl_ord_id, order_id)
        log = self._log
        if "\n" not in cl_ord_id and log is not None and not log.closed:  # ``_write``, inlined: once per order
            self._pending.append(b"+ %d %d %s\n" % (account, order_id, cl_ord_id.encode("latin-1")))
            self.records += 1

    def forget(self, account: int, order_id: int) -> None:
        """The order never happened (refused): its ClOrdID may be used again."""
        cl_ord_id = self.current.pop(order_id, None)
        if cl_ord_id is not None:
            known = self.by_account.get(account)
            if known is not None and known.get(cl_ord_id) == order_id:
                del known[cl_ord_id]
            self._write(b"- %d %d\n" % (account, order_id))

    def _set(self, account: int, cl_ord_id: str, order_id: int) -> None:
        known = self.by_account.get(account)
        if known is None:
            known = self.by_account[account] = {}
        elif cl_ord_id in known:
            del known[cl_ord_id]  # a name given again is the newest: it goes to the end
        known[cl_ord_id] = order_id
        self.current[order_id] = cl_ord_id
        if len(known) > self.per_account:
            self._evict(known)

    def _evict(self, known: dict[str, int]) -> None:
        """Forget the oldest names past the bound and a tenth of the bound more (at least one).

        In bulk because a plain dict finds its oldest keys by scanning from its
        first slot, past every one deleted before: once per tenth, not per order.
        """
        current = self.current
        for evicted in list(islice(known, len(known) - self.per_account + self.per_account // 10)):
            old = known.pop(evicted)
            if current.get(old) == evicted:  # an order renamed since keeps its newer name
                del current[old]

    # --- the file ------------------------------------------------------------------------------

    def _load(self, data: bytes) -> None:
        for line in data.split(b"\n")[:-1]:  # the part after the last newline is torn (or a crashed mapping's zeros)
            try:
                kind, account, order_id, *rest = line.split(b" ", 3)
                if kind == b"+" and rest:
                    self._set(int(account), rest[0].decode("latin-1"), int(order_id))
                elif kind == b"-":
                    self.forget(int(account), int(order_id))
                else:
                    continue
            except ValueError:
                continue  # a damaged line costs one mapping, never the service
            self.records += 1

    def _compact(self) -> None:
        """Rewrite the file with the live mappings only (tmp -> rename)."""
        assert self.path is not None
        if self._log is not None:
            self._log.close()
        self._pending.clear()  # the new file is written from memory, which has them
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb", opener=private) as out:
            for account, known in self.by_account.items():
                for cl_ord_id, order_id in known.items():
                    if "\n" not in cl_ord_id:
                        out.write(b"+ %d %d %s\n" % (account, order_id, cl_ord_id.encode("latin-1")))
        tmp.replace(self.path)
        self._log = MappedLog(self.path)
        self.records = self._live()

    def _write(self, record: bytes) -> None:
        """Keep ``record`` for the next flush (nothing while loading, in memory only, or after close)."""
        log = self._log
        if log is not None and not log.closed:
            self._pending.append(record)
            self.records += 1

    def flush(self) -> None:
        """Put the changes since the last flush in the file (one write), compacting instead when due."""
        pending = self._pending
        if not pending:
            return
        assert self._log is not None  # ``_write`` keeps nothing without a file
        if self.records > COMPACT_MIN_RECORDS and self.records > COMPACT_FACTOR * self._live():
            self._compact()  # written from memory: what is pending included
        else:
            self._pending = []
            self._log.write(b"".join(pending))

    def _live(self) -> int:
        return sum(len(known) for known in self.by_account.values())

    def close(self) -> None:
        if self._log is not None:
            self.flush()
            self._log.close()
