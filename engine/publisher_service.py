"""One publisher per engine: the shared publisher every adapter reads, run as a service.

``serve_publisher`` rebuilds a publisher from the journal (``Publisher.rebuild``)
and keeps it current until cancelled. The daemon starts it once, before the
services, so each durable event is applied to one shadow venue, not one per
protocol; adapters find it through ``shared``/``acquire``. An adapter run on its
own (tests, benchmarks) gets a private one from ``acquire`` instead, so no
adapter's lifetime decides another's. Only the shared one saves its state when it
stops (``publisher_state.save_at_stop``), so the next start replays only the tail.
"""

from __future__ import annotations

import weakref
from functools import partial
from typing import TYPE_CHECKING

import trio

from engine import publisher_state
from engine.publisher import Publisher

if TYPE_CHECKING:
    from engine.runtime import Engine

_SHARED: weakref.WeakKeyDictionary[Engine, Publisher] = weakref.WeakKeyDictionary()


async def serve_publisher(engine: Engine, *, share: bool = True,
                          task_status: trio.TaskStatus[Publisher] = trio.TASK_STATUS_IGNORED) -> None:
    """Rebuild a publisher from the journal and keep it current until cancelled.

    With ``share`` it is the engine's publisher for every adapter (``shared``)
    while it runs, and saves its state when it stops.
    """
    publisher = await Publisher.rebuild(engine)
    if share:
        _SHARED[engine] = publisher
    try:
        await publisher.run(engine, task_status=task_status)
    finally:
        if _SHARED.get(engine) is publisher:
            del _SHARED[engine]
            # seconds for large histories: off the event loop, so the engine drains meanwhile;
            # shielded, because it runs exactly when the services are being cancelled
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(publisher_state.save_at_stop, publisher, engine)


def shared(engine: Engine) -> Publisher | None:
    """The publisher ``serve_publisher`` runs for ``engine``, if one is running."""
    return _SHARED.get(engine)


async def acquire(engine: Engine, nursery: trio.Nursery) -> Publisher:
    """The engine's shared publisher, or a private one run in ``nursery`` when none is shared."""
    found = shared(engine)
    if found is not None:
        return found
    private: Publisher = await nursery.start(partial(serve_publisher, engine, share=False))
    return private
