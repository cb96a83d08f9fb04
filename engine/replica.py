"""The checkpointer's replica venue, kept in its own OS process.

The replica follows the durable journal on disk and re-applies every event,
which costs about as much CPU as the live engine's own bookkeeping. In a
thread of the engine's process that work competed with matching for the GIL:
every checkpoint (by default each 1,000 records) stalled the event loop in
5 ms GIL slices, and the order-ack p99 at a light 2,000 orders/s was ~15 ms
instead of ~2 ms. In a child process it runs on the machine's other core and
the event loop never waits for it.

The child holds no secret. It replays, hashes, writes snapshots and builds the
proof-of-reserves leaves; the parent signs the checkpoint (so the venue key
never crosses a process boundary) and writes the public PoR document. The PoR
leaf salt, derived from the key, is sent only with a PoR request.

Protocol over one ``multiprocessing`` pipe, one request at a time:
``(target_seq, kinds, now_us, por_salt | None)`` → ``("ok", Advanced)`` or
``("error", message)``. The child exits when the pipe closes (the parent
stopped, or died: a SIGKILLed daemon leaves no orphan behind).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import attrs
import orjson

from engine import durable, por, publisher_state, signing, snapshot
from engine.audit import liabilities
from engine.config import Config
from engine.journal import JournalCorrupt, JournalReader
from engine.publisher import PositionMismatch, Publisher
from engine.venue import Venue

log = logging.getLogger("satchel.replica")

SNAPSHOT: Final = "snapshot"
POR: Final = "por"
POR_DIR: Final = "por"
JOIN_S: Final = 0.5  # at close no request is in flight: an idle child exits at EOF at once; a warming one is killed


class ReplicaError(RuntimeError):
    """The replica could not reach the asked position (its message says why), or its process died."""


@attrs.frozen
class Advanced:
    """What the replica found at ``seq``: everything the parent needs to sign a checkpoint."""

    seq: int
    chain_hash: bytes
    state_hash: str
    snapshot: str | None = None  # path of the snapshot written at seq
    snapshot_error: str | None = None
    por: dict[str, Any] | None = None  # the PoR publication's body (root, totals), leaves already on disk


class Replica:
    """A venue that follows the journal on disk (runs inside the child process).

    It is a quiet ``Publisher`` (engine/publisher.py): its shadow venue is the
    replica the checkpoints hash, and the histories, trades and klines it
    derives alongside are saved as ``publisher.state`` with every snapshot. So
    a daemon that crashed replays at most one snapshot interval of journal into
    its publisher before the adapters listen, not everything since its last
    clean stop. It starts from the newest publisher state file, or from genesis.
    What it hashes is signed, so a state loaded from the file is checked against
    the journal's signed checkpoints (``publisher_state.vouch``, at the first
    request: that names a durable seq to look up to) before anything is hashed.
    """

    def __init__(self, config: Config, directory: Path, snapshot_every: int, venue_key: str) -> None:
        self.config = config
        self.directory = directory
        self.snapshot_every = snapshot_every
        self.public = signing.load_public(venue_key)
        self.from_state = False
        self.publisher, self.reader, self.skip = self._start()
        self.vouched = not self.from_state
        self.events_at_snapshot = self.publisher.events

    def _start(self, *, from_genesis: bool = False) -> tuple[Publisher, JournalReader, int]:
        loaded = None
        if not from_genesis:
            try:
                loaded = publisher_state.load(self.directory, self.config)
            except publisher_state.StateInvalid as exc:
                log.warning("publisher state unusable (%s); the replica replays from genesis", exc)
        self.from_state = loaded is not None
        if loaded is None:
            return Publisher(Venue(self.config)), JournalReader(self.directory), 0
        publisher, seq, prev_hash, skip = loaded
        return publisher, JournalReader(self.directory, seq, prev_hash), skip

    @property
    def venue(self) -> Venue:
        return self.publisher.venue

    def advance(self, target: int, kinds: frozenset[str], now_us: int, por_salt: bytes | None) -> Advanced:
        try:
            if not self.vouched:
                position = (self.reader.seq, self.reader.hash, self.skip)
                self.reader = publisher_state.vouch(self.publisher, self.directory, self.public, position, target)
                self.skip, self.vouched = 0, True
            self.publisher.catch_up(self.reader, target, self.skip, quiet=True)
        except (JournalCorrupt, PositionMismatch, publisher_state.StateInvalid) as exc:
            if not self.from_state:
                raise  # the journal itself is damaged: nothing to fall back to
            # a saved state that does not fit this journal, or that no signature vouches for: the journal is the truth
            log.warning("publisher state not usable (%s); the replica replays from genesis", exc)
            self.publisher, self.reader, self.skip = self._start(from_genesis=True)
            self.vouched = True
            self.publisher.catch_up(self.reader, target, 0, quiet=True)
        self.skip = 0
        publisher, venue, chain = self.publisher, self.venue, self.reader.hash
        publisher.settle_tops()
        publisher.at_position(self.reader.seq, chain)
        state_hash = venue.state_hash()
        snapshot_path = snapshot_error = None
        if SNAPSHOT in kinds or publisher.events - self.events_at_snapshot >= self.snapshot_every:
            self.events_at_snapshot = publisher.events
            try:
                snapshot_path = str(snapshot.write(self.directory, venue, target, chain, state_hash, now_us))
                publisher_state.save(publisher, self.directory)
            except OSError as exc:
                # A snapshot is a cache: failing to write one (a full disk) costs recovery
                # time, never history. Say so and carry on with the checkpoint.
                log.error("snapshot at seq %d not written: %s", target, exc)
                snapshot_error = str(exc)
        por_doc = self._build_por(target, por_salt) if POR in kinds and por_salt is not None else None
        return Advanced(target, chain, state_hash, snapshot_path, snapshot_error, por_doc)

    def _build_por(self, seq: int, salt: bytes) -> dict[str, Any]:
        venue = self.venue
        tree = por.venue_tree(venue, salt, seq, por.WORKERS)
        totals = liabilities(venue)
        assert tree.assets == list(totals) and tree.totals == list(totals.values())
        folder = self.directory / POR_DIR
        folder.mkdir(exist_ok=True)
        write_private(folder / f"{seq:020d}.leaves", orjson.dumps(tree.leaves_doc(seq)))
        return tree.publication(seq)


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by the operator only: tmp, fsync, rename, fsync the directory (the journal
    already names the publication these files hold: after a crash the rename must be there too)."""
    tmp = path.with_suffix(".tmp")
    durable.write_synced(tmp, (data,))
    durable.install(tmp, path)


def child_main(conn: multiprocessing.connection.Connection) -> None:
    """The child process: read its setup, build the replica lazily, answer requests until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the daemon's to handle; it closes our pipe
    try:
        config, directory, snapshot_every, venue_key = conn.recv()
    except (EOFError, OSError):
        return
    replica: Replica | None = None
    try:  # warm up before the first request: load the saved state, or start the replay from genesis
        replica = Replica(config, Path(directory), snapshot_every, venue_key)
    except Exception as exc:  # reported with the first request's answer, rebuilt then
        log.warning("checkpoint replica could not start yet: %s", exc)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if replica is None:
                replica = Replica(config, Path(directory), snapshot_every, venue_key)
            answer: tuple[str, Any] = ("ok", replica.advance(*request))
        except Exception as exc:  # every failure goes back to the parent, which decides
            answer = ("error", f"{type(exc).__name__}: {exc}")
            replica = None  # rebuild from the newest snapshot next time rather than trust a half-fed venue
        try:
            conn.send(answer)
        except OSError:
            return


class ReplicaProcess:
    """The parent's handle on the child. ``advance`` blocks: call it from a worker thread.

    The child is a fresh interpreter (``python -m engine.replica FD``) talking over
    one end of a socketpair, not a ``multiprocessing.Process``: forking the trio
    process (threads) is unsafe, and spawn/forkserver re-import the parent's main
    script, which breaks any unguarded script that runs an Engine.
    """

    def __init__(self, config: Config, directory: Path, snapshot_every: int, venue_key: str) -> None:
        self.setup = (config, str(directory), snapshot_every, venue_key)  # venue_key: the public key, base64
        self.process: subprocess.Popen[bytes] | None = None
        self.conn: multiprocessing.connection.Connection | None = None

    def advance(self, target: int, kinds: frozenset[str], now_us: int, por_salt: bytes | None) -> Advanced:
        """The replica at ``target``. A child that died is replaced once (it rebuilds from the newest
        snapshot, so nothing is lost but time); a second death, or an error the replica reports,
        raises ReplicaError."""
        for attempt in (1, 2):
            if self.conn is None:
                self._start()
            assert self.conn is not None
            try:
                self.conn.send((target, kinds, now_us, por_salt))
                status, value = self.conn.recv()
            except (EOFError, OSError) as exc:
                code = self.process.poll() if self.process is not None else None
                self.close()
                if attempt == 2:
                    raise ReplicaError(f"checkpoint replica process died (exit code {code}): {exc!r}") from None
                log.warning("checkpoint replica process died (exit code %s); starting a new one", code)
                continue
            if status != "ok":
                raise ReplicaError(f"checkpoint replica failed at seq {target}: {value}")
            assert isinstance(value, Advanced)
            return value
        raise AssertionError("unreachable")

    def start(self) -> None:
        """Start the child now, so it builds its replica while the engine warms up. Blocking (fork/exec)."""
        if self.conn is None:
            self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "engine.replica", str(theirs.fileno())], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                # its own process group: a terminal's Ctrl-C is the daemon's to handle (it closes our pipe); it
                # reached the child too, and one that was still importing died with a KeyboardInterrupt traceback
                process_group=0,
            )
        finally:
            theirs.close()  # only the child holds its end now: its exit shows here as EOF
        conn = multiprocessing.connection.Connection(ours.detach())
        conn.send(self.setup)
        self.process, self.conn = process, conn

    def close(self) -> None:
        """Close the pipe (the child exits on EOF) and reap the child. Blocking."""
        conn, process = self.conn, self.process
        self.conn = self.process = None
        if conn is not None:
            conn.close()
        if process is not None:
            try:
                process.wait(JOIN_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    # Run the importable module's copy, so what the child pickles (Advanced) names engine.replica, not __main__.
    from engine import replica

    replica.child_main(multiprocessing.connection.Connection(int(sys.argv[1])))
