"""The journal actor: the durability boundary between the venue's actors and everything outside.

Market and account actors hand it each batch's events with the replies they
owe; it sequences and frames them (seq, chain hash), has the sync thread write
and fdatasync them (group commit), and only when a batch is durable does it
answer the replies and publish the events to subscribers, in journal order
(durable before visible; ARCHITECTURE.md §3 rules 1-4). While the disk writes a
batch in the event loop's step, sinks that can get ahead on their answers
(``Sink.prepare``) do so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from engine.channels import Delivery, Sink, drain, send
from engine.codec import encode_events
from engine.journal import frame_records
from engine.journal_writer import DiskFull, SyncThread
from engine.messages import Event, Rejection
from engine.results import Result

if TYPE_CHECKING:
    from engine.journal_writer import JournalWriter

log = logging.getLogger("satchel.journal")

JOURNAL_INBOX_SIZE: Final = 4096
SUBSCRIBER_BUFFER_SIZE: Final = 1024
PIPELINE_MAX: Final = 64  # batches framed but not yet durable; beyond this the journal takes no more until the disk answers
INLINE_SYNC_MAX_S: Final = 0.001  # the journal syncs on the event loop's thread while fsyncs take less than this


Committed = tuple[list[Event] | bytes, list[Delivery]]  # what the journal is handed: events or a control payload, and replies


class JournalActor:
    """Sequences and frames batches, has the sync thread write them; then releases replies and publishes.

    The event loop never waits on the disk. Batches are framed (seq, chain hash)
    here in order and handed to ``SyncThread``, which writes whatever has been
    framed and covers it with one fdatasync; when it reports a seq durable, the
    batches up to it are answered and published, in journal order. While an
    fsync runs the loop goes on matching and framing, so the next group commit
    is ready the moment the disk is.
    """

    def __init__(
        self, writer: JournalWriter, deliver: Callable[[Sink, Result], None],
        delivered: Callable[[int], None] | None = None,
    ) -> None:
        self.writer = writer
        self.deliver = deliver
        # With ``delivered``, durable results go straight to their sinks and ``delivered(n)``
        # is told once per batch how many went out (the engine's in-flight count), instead
        # of one ``deliver`` call per result.
        self.delivered = delivered
        self.tx, self.rx = trio.open_memory_channel[tuple[list[Event] | bytes, list[Delivery]]](JOURNAL_INBOX_SIZE)
        self.subscribers: list[trio.MemorySendChannel[tuple[int, list[Event]]]] = []
        self.durable_seq = writer.seq
        self.durable_event_seq = writer.seq  # the last record holding events (not a checkpoint)
        self.head_seq, self.head_hash = writer.seq, writer.hash  # the last record framed
        # framed batches not yet durable, in seq order: (last seq, batch, events)
        self.waiting: deque[tuple[int, list[Committed], list[Event]]] = deque()
        self.synced_seq = writer.seq  # the last seq the sync thread reported durable
        self.sync_error: BaseException | None = None
        self.inline_sync = True  # see _commit(): batches sync on the loop's thread while the disk is fast
        # the checkpointer's wake-up: called once durable_seq reaches ``watermark``
        self.watermark = 1 << 62
        self.on_watermark: Callable[[], None] = lambda: None
        self._syncer: SyncThread | None = None
        self._lot = trio.lowlevel.ParkingLot()
        self._parked = False
        self.queued = 0  # items in the inbox not yet taken
        self.committed_this_pass = False  # commit_now has committed in the current scheduler pass

    @property
    def busy(self) -> bool:
        """Batches framed but not yet durable (and so not yet answered)."""
        return bool(self.waiting)

    async def submit(self, events: list[Event] | bytes, deliveries: list[Delivery]) -> None:
        """Queue events (or one ready control-record payload) and the replies they release.

        Through the inbox, not committed in the caller's pass: the actor takes
        everything the markets and accounts queued in one scheduler round as one
        group commit (committing each caller's batch at once was tried: one fsync
        per market pass halved the journal's append rate). ``commit_now`` is the
        one exception, for when no such group can form.
        """
        self.queued += 1
        await send(self.tx, (events, deliveries))
        if self._parked:
            self._wake()

    def commit_now(self, events: list[Event], deliveries: list[Delivery]) -> bool:
        """Commit one market pass in the caller's step, when it is the scheduler pass's first; False otherwise.

        For ``MarketActor.pass_now`` (an adapter's read decided at once). When
        nothing is framed or queued and the actor is parked, the actor's next
        step would only be a task switch on the way to the disk: one order in
        flight alone is committed, synced and answered in the reader's step.
        Only the first such pass of a scheduler pass commits here: the readers
        woken with it run later in the same pass, where nothing shows them
        coming, and each committing on its own would line their fsyncs up one
        behind the other. So a second pass goes through the inbox as ``submit``
        does, and it and everything after it in this scheduler pass share the
        actor's next group commit. ``_PassMarker`` resets the mark when the
        scheduler pass ends.

        (Asking trio whether other tasks are runnable, as this did before, saw
        only tasks woken during the pass, never the rest of the pass, and its
        ``current_statistics`` counted every registered socket on each call.)
        """
        if self.waiting or self.queued or not self._parked or self.committed_this_pass:
            return False
        self.committed_this_pass = True
        self._commit([(events, deliveries)])
        return True

    def subscribe(self) -> trio.MemoryReceiveChannel[tuple[int, list[Event]]]:
        """Durable events, in journal order, each batch with the seq of its last record (the
        ``durable_event_seq`` it made). A subscriber that falls behind is dropped."""
        tx, rx = trio.open_memory_channel[tuple[int, list[Event]]](SUBSCRIBER_BUFFER_SIZE)
        self.subscribers.append(tx)
        return rx

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        token = trio.lowlevel.current_trio_token()

        def notify(synced: int, error: BaseException | None) -> None:  # on the sync thread
            with contextlib.suppress(trio.RunFinishedError):  # the engine is gone; nobody is left to answer
                token.run_sync_soon(self._synced, synced, error)

        self._syncer = SyncThread(self.writer, notify)
        marker = _PassMarker(self)
        trio.lowlevel.add_instrument(marker)
        task_status.started()
        try:
            await self._loop()
        finally:
            with contextlib.suppress(KeyError):  # trio drops an instrument that raised (this one cannot)
                trio.lowlevel.remove_instrument(marker)
            self._syncer.close()  # blocking: the write in progress completes; none is cut in half

    def _wake(self) -> None:
        self._parked = False
        self._lot.unpark_all()

    def _synced(self, seq: int, error: BaseException | None) -> None:
        """The sync thread's report (run on the event loop's thread)."""
        self.synced_seq = seq
        if error is not None:
            self.sync_error = error
        if self._syncer is not None:
            self.inline_sync = self._syncer.last_sync_s < INLINE_SYNC_MAX_S
        if self._parked:
            self._wake()

    async def _loop(self) -> None:
        rx, waiting = self.rx, self.waiting
        while True:
            if waiting and waiting[0][0] <= self.synced_seq:
                self._release()
            if self.sync_error is not None:
                self._fail(self.sync_error)
            if self.queued and len(waiting) < PIPELINE_MAX:  # (a failed receive_nowait raises: costly when idle)
                try:
                    first = rx.receive_nowait()
                except trio.WouldBlock:
                    pass
                else:
                    self._take(drain(rx, first))
                    continue
            # Nothing to take (or no room): wait for a submit or the sync thread's report.
            self._parked = True
            await self._lot.park()

    def _take(self, batch: list[Committed]) -> None:
        self.queued -= len(batch)
        self._commit(batch)

    def _commit(self, batch: list[Committed]) -> None:
        payloads, events = _records(batch)
        waiting = self.waiting
        if not payloads:  # nothing to write: answered in turn, never ahead of earlier batches
            if waiting:
                waiting.append((self.head_seq, batch, events))
            else:
                self._done(self.head_seq, batch, events)
            return
        first_seq = self.head_seq + 1
        data, last_seq, last_hash = frame_records(payloads, self.head_seq, self.head_hash)
        self.head_seq, self.head_hash = last_seq, last_hash
        if not waiting and self.inline_sync:
            # The disk is fast and nothing is on its way to it: sync here. Handing the
            # batch to the thread costs two wake-ups and GIL hand-offs, which on this
            # class of machine took longer than a fast disk's fdatasync (~60 us) and,
            # under load, delayed every reply by milliseconds. A disk that turns slow
            # sends the next batches to the thread, where matching overlaps the fsync,
            # so the event loop (timers, heartbeats, fan-out) never waits long on it.
            started = time.perf_counter()
            try:
                self.writer.write_and_sync(data, first_seq, last_seq, last_hash, functools.partial(_prepare, batch))
            except DiskFull as exc:
                self._refuse_all(batch, str(exc))
                raise
            self.inline_sync = time.perf_counter() - started < INLINE_SYNC_MAX_S
            self.synced_seq = last_seq
            self._done(last_seq, batch, events)
            return
        waiting.append((last_seq, batch, events))
        assert self._syncer is not None
        self._syncer.put(data, first_seq, last_seq, last_hash)

    def _release(self) -> None:
        """Answer and publish every batch the disk now holds, in journal order."""
        synced, waiting = self.synced_seq, self.waiting
        while waiting and waiting[0][0] <= synced:
            last_seq, batch, events = waiting.popleft()
            self._done(last_seq, batch, events)

    def _done(self, last_seq: int, batch: list[Committed], events: list[Event]) -> None:
        if last_seq > self.durable_seq:
            self.durable_seq = last_seq
            if events:
                self.durable_event_seq = last_seq
            if last_seq >= self.watermark:
                self.on_watermark()
        delivered = self.delivered
        if delivered is not None:
            count = 0
            for _, deliveries in batch:
                count += len(deliveries)
            delivered(count)
            for _, deliveries in batch:
                for sink, value in deliveries:
                    sink.set(value)
        else:
            deliver = self.deliver
            for _, deliveries in batch:
                for sink, value in deliveries:
                    deliver(sink, value)
        if events and self.subscribers:
            self._publish(last_seq, events)

    def _fail(self, error: BaseException) -> None:
        """The sync thread failed: a full disk refuses what is not durable and stops intake; anything else stops the engine."""
        if isinstance(error, DiskFull):
            pending = [item for _, batch, _ in self.waiting for item in batch]
            self.waiting.clear()
            self._refuse_all(pending, str(error))
        raise error

    def _refuse_all(self, batch: list[Committed], why: str) -> None:
        """The batch is not on disk: tell everyone waiting on it (and anyone queued) it did not happen."""
        refusal = Result(rejection=Rejection("SERVER_ERROR", f"{why}; not recorded, intake stopped"))
        for _, deliveries in batch + _drain_all(self.rx):
            for sink, _ in deliveries:
                self.deliver(sink, refusal)

    def _publish(self, last_seq: int, events: list[Event]) -> None:
        batch = (last_seq, events)
        for tx in list(self.subscribers):
            try:
                tx.send_nowait(batch)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.subscribers.remove(tx)
                tx.close()  # slow or gone: the subscriber sees the end of its stream


class _PassMarker(trio.abc.Instrument):
    """Ends ``JournalActor.commit_now``'s scheduler pass: trio calls ``before_io_wait`` once per pass.

    One Python call per scheduler pass (trio registers only the hooks an
    instrument defines), so the mark costs nothing per task step.
    """

    def __init__(self, journal: JournalActor) -> None:
        self.journal = journal

    def before_io_wait(self, timeout: float) -> None:
        self.journal.committed_this_pass = False


def _drain_all(rx: trio.MemoryReceiveChannel[Any]) -> list[Any]:
    out = []
    while True:
        try:
            out.append(rx.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return out


def _prepare(batch: list[Committed]) -> None:
    """Give each sink that has a ``prepare`` (see ``Sink``) its result while the batch is on its way to the disk
    (an inline sync: ``set`` follows in the same step, so nothing can change in between).

    A failing ``prepare`` is logged and skipped: it was only a head start, and
    its sink still gets the result from ``set``.
    """
    for _, deliveries in batch:
        for sink, value in deliveries:
            prepare = getattr(sink, "prepare", None)
            if prepare is not None:
                try:
                    prepare(value)
                except Exception:
                    log.exception("preparing a result for %r failed", sink)


def _records(batch: list[Committed]) -> tuple[list[bytes], list[Event]]:
    """One record for all the events of a group commit; control payloads keep their place.

    A record per batch (not per actor message) is what makes framing, hashing and
    replay cost per fsync rather than per order.
    """
    payloads: list[bytes] = []
    events: list[Event] = []
    start = 0
    for item, _ in batch:
        if type(item) is bytes:
            if len(events) > start:
                payloads.append(encode_events(events[start:]))
                start = len(events)
            payloads.append(item)
        else:
            events.extend(item)  # type: ignore[arg-type]
    if len(events) > start:
        payloads.append(encode_events(events[start:]))
    return payloads, events
