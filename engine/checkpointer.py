"""The checkpointer: signed checkpoints, snapshots and PoR roots at exact journal positions.

Live state is spread over many actors and is always a little ahead of the disk
(markets apply before the journal syncs), so no moment of it is "the state at
seq S". The checkpointer therefore keeps its own *replica*: a ``Venue`` that
follows the durable journal on disk, record by record, through the same
``Replayer`` recovery uses. At seq S the replica is exactly the state after S,
so its state hash, snapshot and proof-of-reserves tree are taken through the
event order, never by pausing intake.

The replica's catching up, hashing and file writing run in a worker thread
(the replica is touched by nothing else); the event loop only decides when a
checkpoint is due and hands the signed record to the journal actor.

Due: ``checkpoint_every_records`` new records, or ``checkpoint_every_s`` seconds
with new events, or a request (``satchel snapshot``, ``satchel por publish``).
A snapshot is also due every ``snapshot_every_events`` applied events.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import trio

from engine import por, snapshot
from engine.audit import Replayer, checkpoint_body, checkpoint_payload, liabilities
from engine.journal import JournalReader
from engine.results import Result
from engine.venue import Venue

if TYPE_CHECKING:
    from engine.actors import Sink
    from engine.runtime import Engine
    from engine.signing import VenueKey

log = logging.getLogger("satchel.checkpointer")

POLL_S: Final = 0.25
POR_DIR: Final = "por"
SNAPSHOT: Final = "snapshot"
POR: Final = "por"
INTERVAL: Final = "interval"


class Checkpointer:
    def __init__(self, engine: Engine, key: VenueKey) -> None:
        self.engine = engine
        self.key = key
        self.directory = engine.directory
        journal = engine.config.journal
        self.every_records = journal.checkpoint_every_records
        self.every_s = journal.checkpoint_every_s
        self.snapshot_every = journal.snapshot_every_events
        self.requests: list[tuple[str, Sink]] = []
        self.wake = trio.Event()
        self.replica: Venue | None = None
        self.replayer: Replayer | None = None
        self.reader: JournalReader | None = None
        self.covered = engine.recovered_seq  # seq named by the newest checkpoint (or recovery point)
        self.events_at_snapshot = 0
        self.last_time = time.monotonic()
        self.busy = False

    def request(self, kind: str, sink: Sink) -> None:
        """Ask for a checkpoint of ``kind`` (snapshot or por) now; the result goes to ``sink``."""
        self.requests.append((kind, sink))
        self.wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        journal = self.engine.journal
        journal.on_watermark = self.wake.set
        while True:
            journal.watermark = self.covered + self.every_records
            with trio.move_on_after(POLL_S):
                await self.wake.wait()
            self.wake = trio.Event()
            journal.on_watermark = self.wake.set
            target = journal.durable_seq
            requests, self.requests = self.requests, []
            due = bool(requests) or target - self.covered >= self.every_records or (
                journal.durable_event_seq > self.covered and time.monotonic() - self.last_time >= self.every_s
            )
            if not due or target <= 0:
                continue
            kinds = {kind for kind, _ in requests}
            self.busy = True
            try:
                payload, body, value = await trio.to_thread.run_sync(self._advance, target, kinds)
            except BaseException as exc:
                for _, sink in requests:
                    self.engine.deliver(sink, Result(value={"error": str(exc)}))
                raise
            finally:
                self.busy = False
            self.covered = target
            self.last_time = time.monotonic()
            deliveries = [(sink, Result(value={**value, "checkpoint": body})) for _, sink in requests]
            await journal.submit(payload, deliveries)

    # --- worker thread ---------------------------------------------------------------------

    def _advance(self, target: int, kinds: set[str]) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
        """Bring the replica to ``target``; hash it; write what was asked for. Runs in a thread."""
        if self.replica is None:
            self._build_replica()
        assert self.replica is not None and self.reader is not None and self.replayer is not None
        for record in self.reader.read(target):
            self.replayer.feed(record)
        venue, chain = self.replica, self.reader.hash
        state_hash = venue.state_hash()
        now_us = self.engine.clock()
        value: dict[str, Any] = {"seq": target, "state_hash": state_hash}
        reason = INTERVAL
        if SNAPSHOT in kinds or self.replayer.events - self.events_at_snapshot >= self.snapshot_every:
            self.events_at_snapshot = self.replayer.events
            try:
                path = snapshot.write(self.directory, venue, target, chain, state_hash, now_us)
            except OSError as exc:
                # A snapshot is a cache: failing to write one (a full disk) costs recovery
                # time, never history. Say so and carry on with the checkpoint.
                log.error("snapshot at seq %d not written: %s", target, exc)
                value["snapshot_error"] = str(exc)
            else:
                value["snapshot"] = str(path)
                reason = SNAPSHOT
        por_doc = None
        if POR in kinds:
            por_doc = self._build_por(venue, target)
            reason = POR
        body = checkpoint_body(target, chain, state_hash, now_us, reason, por_doc)
        payload = checkpoint_payload(self.key, body)
        if por_doc is not None:
            # The public publication: the root, the totals, and the signed checkpoint that carries them.
            signed = orjson.loads(payload)
            public = {**por_doc, "venue_key": self.key.public_b64, "checkpoint": signed["body"],
                      "signature": signed["signature"]}
            path = self.directory / POR_DIR / f"{target:020d}.json"
            _write_private(path, orjson.dumps(public, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
            os.chmod(path, 0o644)
            value["por"] = {**por_doc, "published": str(path)}
        return payload, body, value

    def _build_replica(self) -> None:
        found = snapshot.newest_valid(self.directory, self.engine.config)
        if found is not None:
            header, venue = found
            self.reader = JournalReader(self.directory, header.seq, bytes.fromhex(header.chain_hash))
            base = header.seq
        else:
            venue = Venue(self.engine.config)
            self.reader = JournalReader(self.directory)
            base = 0
        self.replica = venue
        self.replayer = Replayer(venue, self.key.public, apply_from=base)

    def _build_por(self, venue: Venue, seq: int) -> dict[str, Any]:
        tree = por.venue_tree(venue, self.key.secret(b"satchel/por/salt"), seq)
        assets = tree.assets
        leaves = tree.leaves
        totals = liabilities(venue)
        assert tree.totals == [totals[a] for a in assets]
        doc = {"scheme": por.SCHEME, "seq": seq, "root": tree.root.hex(), "assets": assets,
               "totals": [str(v) for v in tree.totals], "accounts": len(leaves)}
        folder = self.directory / POR_DIR
        folder.mkdir(exist_ok=True)
        leaves_doc = {"scheme": por.SCHEME, "seq": seq, "assets": assets,
                      "leaves": [[a, s.hex(), [str(v) for v in atoms]] for a, s, atoms in tree.leaves]}
        _write_private(folder / f"{seq:020d}.leaves", orjson.dumps(leaves_doc))
        return doc


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_tree(directory: Path, seq: int | None = None) -> tuple[int, por.SumTree]:
    """Rebuild the PoR tree of the newest (or given) publication from its private leaves file."""
    folder = directory / POR_DIR
    files = sorted(folder.glob("*.leaves")) if folder.is_dir() else []
    if seq is not None:
        files = [f for f in files if int(f.stem) == seq]
    if not files:
        raise por.PorError("no proof-of-reserves publication found" + (f" at seq {seq}" if seq else ""))
    doc = orjson.loads(files[-1].read_bytes())
    leaves = [(int(a), bytes.fromhex(s), [int(v) for v in atoms]) for a, s, atoms in doc["leaves"]]
    return int(doc["seq"]), por.SumTree(list(doc["assets"]), leaves)
