"""The plumbing every actor uses: where results go (``Sink``) and how inboxes are read and written."""

from __future__ import annotations

from typing import Any, Final, Protocol

import trio

from engine.results import Result

BATCH_MAX: Final = 2048  # messages an actor takes from its inbox per pass


class Sink(Protocol):
    """Where a command's result goes (an awaiting caller, a connection outbox...).

    A sink may also define ``prepare(value)``: when the journal actor syncs a batch
    in its own step, it calls it with the result between the batch's write and its
    fdatasync, so the answer is built while the disk works; ``set`` follows in the
    same step, so nothing changes in between. Not every result is prepared.
    ``prepare`` must make nothing visible (no output, no state anyone else reads):
    the result is not durable yet, and ``set`` may yet get a refusal instead (a full disk).
    """

    def set(self, value: Result) -> None: ...


Delivery = tuple[Sink, Result]


def drain(rx: trio.MemoryReceiveChannel[Any], first: Any) -> list[Any]:
    batch = [first]
    try:
        while len(batch) < BATCH_MAX:
            batch.append(rx.receive_nowait())
    except trio.WouldBlock:
        pass
    return batch


async def send(tx: trio.MemorySendChannel[Any], item: Any) -> None:
    """Send, skipping the scheduler when there is room."""
    try:
        tx.send_nowait(item)
    except trio.WouldBlock:
        await tx.send(item)
