"""The checkpointer: signed checkpoints, snapshots and PoR roots at exact journal positions.

Live state is spread over many actors and is always a little ahead of the disk
(markets apply before the journal syncs), so no moment of it is "the state at
seq S". The checkpointer therefore keeps its own *replica*: a ``Venue`` that
follows the durable journal on disk, record by record (``Publisher.catch_up``
over a ``JournalReader``, which checks CRC, sequence and chain hash as recovery
does; the checkpoints it passes are not re-verified there). At seq S the replica is exactly the state after S,
so its state hash, snapshot and proof-of-reserves tree are taken through the
event order, never by pausing intake.

The replica lives in a child process (engine/replica.py says why); the event
loop only decides when a checkpoint is due, waits for the child in a worker
thread (the wait holds no GIL), signs the answer and hands the record to the
journal actor.

Due: ``checkpoint_every_records`` new records, or ``checkpoint_every_s`` seconds
with new events, or a request (``satchel snapshot``, ``satchel por publish``).
A snapshot is also due every ``snapshot_every_events`` applied events.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import trio

from engine import por
from engine.audit import checkpoint_body, checkpoint_payload
from engine.replica import POR, POR_DIR, SNAPSHOT, Advanced, ReplicaProcess, write_private
from engine.results import Result

if TYPE_CHECKING:
    from engine.channels import Sink
    from engine.runtime import Engine
    from engine.signing import VenueKey

POLL_S: Final = 0.25
INTERVAL: Final = "interval"
OPERATOR: Final = "operator"  # `satchel checkpoint`: asked for, not due
POR_SALT_LABEL: Final = b"satchel/por/salt"


class Checkpointer:
    def __init__(self, engine: Engine, key: VenueKey) -> None:
        self.engine = engine
        self.key = key
        self.directory = engine.directory
        journal = engine.config.journal
        self.every_records = journal.checkpoint_every_records
        self.every_s = journal.checkpoint_every_s
        self.replica = ReplicaProcess(engine.config, engine.directory, journal.snapshot_every_events, key.public_b64)
        self.requests: list[tuple[str, Sink]] = []
        self.wake = trio.Event()
        self.covered = engine.recovered_seq  # seq named by the newest checkpoint (or recovery point)
        self.last_time = time.monotonic()
        self.busy = False

    def request(self, kind: str, sink: Sink) -> None:
        """Ask for a checkpoint of ``kind`` (snapshot or por) now; the result goes to ``sink``."""
        self.requests.append((kind, sink))
        self.wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.to_thread.run_sync(self.replica.start)
            await self._loop()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.replica.close)

    async def _loop(self) -> None:
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
            kinds = frozenset(kind for kind, _ in requests)
            salt = self.key.secret(POR_SALT_LABEL) if POR in kinds else None
            now_us = self.engine.clock()
            self.busy = True
            try:
                found = await trio.to_thread.run_sync(self.replica.advance, target, kinds, now_us, salt)
                payload, value = await trio.to_thread.run_sync(self._sign, found, now_us, bool(requests))
            except BaseException as exc:
                for _, sink in requests:
                    self.engine.deliver(sink, Result(value={"error": str(exc)}))
                raise
            finally:
                self.busy = False
            self.covered = target
            self.last_time = time.monotonic()
            deliveries = [(sink, Result(value=value)) for _, sink in requests]
            await journal.submit(payload, deliveries)

    def _sign(self, found: Advanced, now_us: int, asked: bool) -> tuple[bytes, dict[str, Any]]:
        """The signed checkpoint record for what the replica found, and the reply for requesters."""
        reason = (POR if found.por is not None else SNAPSHOT if found.snapshot is not None
                  else OPERATOR if asked else INTERVAL)
        body = checkpoint_body(found.seq, found.chain_hash, found.state_hash, now_us, reason, found.por)
        payload = checkpoint_payload(self.key, body)
        value: dict[str, Any] = {"seq": found.seq, "state_hash": found.state_hash}
        if found.snapshot is not None:
            value["snapshot"] = found.snapshot
        if found.snapshot_error is not None:
            value["snapshot_error"] = found.snapshot_error
        if found.por is not None:
            # The public publication: the root, the totals, and the signed checkpoint that carries them.
            signed = orjson.loads(payload)
            public = {**found.por, "venue_key": self.key.public_b64, "checkpoint": signed["body"],
                      "signature": signed["signature"]}
            path = self.directory / POR_DIR / f"{found.seq:020d}.json"
            write_private(path, orjson.dumps(public, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
            os.chmod(path, 0o644)
            value["por"] = {**found.por, "published": str(path)}
        value["checkpoint"] = body
        return payload, value


def load_tree(directory: Path, seq: int | None = None) -> tuple[int, por.SumTree]:
    """Rebuild the PoR tree of the newest (or given) publication from its private leaves file."""
    folder = directory / POR_DIR
    # a publication's files are named by its seq in 20 digits (so they sort by seq); anything else is not one
    files = sorted(f for f in folder.glob("*.leaves") if len(f.stem) == 20 and f.stem.isdigit()) if folder.is_dir() else []
    if seq is not None:
        files = [f for f in files if int(f.stem) == seq]
    if not files:
        raise por.PorError("no proof-of-reserves publication found" + (f" at seq {seq}" if seq else ""))
    try:
        doc = orjson.loads(files[-1].read_bytes())
        return int(doc["seq"]), por.from_leaves(doc)
    except (OSError, orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise por.PorError(f"proof-of-reserves leaves file {files[-1]} is unreadable: {exc!r}") from None
