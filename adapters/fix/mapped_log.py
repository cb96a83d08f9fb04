"""An append-only file written through a shared memory mapping (the FIX session stores and the ClOrdID file).

A record copied into a ``MAP_SHARED`` mapping of a file is in the kernel's
page cache at once: a crash of the process cannot lose it, exactly as if it had
been written with ``write``, but no system call is made. The FIX adapter
appends to its files before every burst of output (the peer never sees a
sequence number or ClOrdID the files could lose in a crash of the process), so
on the one-order round trip this saves a system call per file per order.

The mapping reaches ``GROW_BYTES`` past the records; the file is extended and
mapped again when a record does not fit (``MAP_POPULATE``: the pages are
faulted in once then, not one at a time while appending). The unused tail
is zeros; ``close`` trims it, and after a crash the loaders stop at the first
record that does not parse, as they do at a torn one. No fsync (neither file
ever had one): after a power loss the files may lose their last records.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Final

GROW_BYTES: Final = 1 << 20
_POPULATE: Final = getattr(mmap, "MAP_POPULATE", 0)  # Linux; elsewhere the pages fault in as they are written


class MappedLog:
    """Appends records to ``path``, which must end with its last whole record (the loaders trim torn tails).

    One writer per file, as with the append-mode file it replaces: each
    instance keeps its own end, and ``close`` trims the file to it.
    """

    __slots__ = ("_end", "_map", "closed", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map: mmap.mmap | None = None
        self._end = 0  # bytes of the file in use; the mapping is zeros beyond
        self.closed = True  # ``_map is None``, as a plain attribute: asked at every flush
        self._map_from(None)

    def write(self, record: bytes) -> bool:
        """Append ``record`` (in the page cache when this returns); False when closed (the caller is memory-only)."""
        mapped = self._map
        if mapped is None:
            return False
        end = self._end
        stop = end + len(record)
        if stop > len(mapped):
            self._map_from(mapped, stop)
            mapped = self._map
            assert mapped is not None
        mapped[end:stop] = record
        self._end = stop
        return True

    def _map_from(self, previous: mmap.mmap | None, needed: int = 0) -> None:
        """Map the file with ``GROW_BYTES`` of zeros beyond ``needed`` (or its current end), replacing ``previous``."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if previous is None:
                self._end = os.fstat(fd).st_size
            else:
                previous.close()
                self._map = None  # closed (memory only) should mapping again fail
                self.closed = True
            size = max(needed, self._end) + GROW_BYTES
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE)  # keeps its own descriptor
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
