"""An append-only file written through a shared memory mapping (the FIX session stores and the ClOrdID file).

A record copied into a ``MAP_SHARED`` mapping of a file is in the kernel's
page cache at once: a crash of the process cannot lose it, exactly as if it had
been written with ``write``, but no system call is made. The FIX adapter
appends to its files before every burst of output (the peer never sees a
sequence number or ClOrdID the files could lose in a crash of the process), so
on the one-order round trip this saves a system call per file per order.

Only a window at the end of the file is mapped: from the page holding the
last record to at least ``GROW_BYTES`` past it, so the mapping (and the pages
it keeps resident) stays the size of one window however long the log grows.
When a record does not fit, the window moves to the end (``MAP_POPULATE``: its
pages are faulted in once then, not one at a time while appending; and
``MADV_POPULATE_WRITE`` makes them writable then too, since a shared mapping
populates read-only and each page's first store would still take a write
fault: about a quarter of the cost of appending, measured; kernels before 5.14
refuse the advice and take those faults). The
window's blocks are allocated before it is mapped (``posix_fallocate``): a
store into a mapped page the disk has no room for kills the process with
SIGBUS, where a refused allocation is an ``OSError`` the caller reports like a
failed write. The unused tail is zeros; ``close`` trims it, and after a crash
the loaders stop at the first record that does not parse, as they do at a torn
one. No fsync (neither file ever had one): after a power loss the files may
lose their last records.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path
from typing import Final

GROW_BYTES: Final = 1 << 20
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)  # Linux; elsewhere the pages fault in as they are written
MADV_POPULATE_WRITE: Final = 23  # Linux >= 5.14; Python 3.11's mmap module does not name it


class MappedLog:
    """Appends records to ``path``, which must end with its last whole record (the loaders trim torn tails).

    One writer per file, as with the append-mode file it replaces: each
    instance keeps its own end, and ``close`` trims the file to it.
    """

    __slots__ = ("_base", "_end", "_map", "closed", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._base = 0  # file offset of the mapping's first byte
        self._end = 0  # bytes of the file in use; the mapping is zeros beyond
        self.closed = True  # ``_map is None``, as a plain attribute: asked at every flush
        self._map_from(None)

    def write(self, record: bytes) -> bool:
        """Append ``record`` (in the page cache when this returns); False when closed (the caller is memory-only)."""
        mapped = self._map
        if mapped is None:
            return False
        at = self._end - self._base
        stop = at + len(record)
        if stop > len(mapped):
            self._map_from(mapped, len(record))
            mapped = self._map
            assert mapped is not None
            at = self._end - self._base
            stop = at + len(record)
        mapped[at:stop] = record
        self._end += len(record)
        return True

    def _map_from(self, previous: mmap.mmap | None, needed: int = 0) -> None:
        """Map a window from the page of the current end to ``GROW_BYTES`` past ``needed`` more bytes."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a session's orders and reports: the operator's eyes only (logs of older versions too)
            if previous is None:
                self._end = os.fstat(fd).st_size
            else:
                previous.close()
                self._map = None  # closed (memory only) should mapping again fail
                self.closed = True
            base = self._end - self._end % mmap.ALLOCATIONGRANULARITY
            size = self._end - base + needed + GROW_BYTES
            os.posix_fallocate(fd, base, size)  # extends the file; ENOSPC here, never SIGBUS at a store
            mapped = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE, offset=base)  # keeps its own descriptor
            with contextlib.suppress(OSError):  # EINVAL before Linux 5.14: the first store to each page faults instead
                mapped.madvise(MADV_POPULATE_WRITE)
            self._map = mapped
            self._base = base
            self.closed = False
        finally:
            os.close(fd)

    def close(self) -> None:
        """Release the mapping and trim the zero tail: the file ends with its last record again."""
        if self._map is not None:
            self._map.close()
            self._map = None
            self.closed = True
            os.truncate(self.path, self._end)


def private(path: str | os.PathLike[str], flags: int) -> int:
    """``open(..., opener=private)``: a file created readable by its owner only, as ``MappedLog`` makes them."""
    return os.open(path, flags, 0o600)
