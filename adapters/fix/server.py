"""The trio TCP acceptor: one task pair per connection around a sans-IO ``Connection``.

The reader feeds bytes to the connection; the writer flushes the session store
(sequence numbers are on disk before the peer can see them), writes the
outbox, runs the session timers at ``next_deadline()`` and closes the socket
when the session asks. Bounds: reads of at most ``READ_BYTES``; the outbox is
bounded by the session layer (a slow consumer is disconnected); at most
``MAX_CONNECTIONS`` connections at once (more are closed on accept).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

import trio

from adapters.fix.session import Acceptor, Connection

log = logging.getLogger("satchel.fix")

READ_BYTES: Final = 65_536
MAX_CONNECTIONS: Final = 1_000
CLOSE_TIMEOUT_S: Final = 1.0


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class FixServer:
    """Serves an ``Acceptor`` on a TCP address; ``address`` is the bound (host, port)."""

    def __init__(self, acceptor: Acceptor, host: str, port: int, *, wall_us: Callable[[], int] = wall_clock_us) -> None:
        self.acceptor = acceptor
        self.host = host
        self.port = port
        self.wall_us = wall_us
        self.address: tuple[str, int] = (host, port)
        self.connections = 0

    async def serve(self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        sockname = listeners[0].socket.getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("FIX acceptor listening on %s:%d", *self.address)
        task_status.started(self.address)
        try:
            await trio.serve_listeners(self._handle, listeners)
        finally:
            self.acceptor.close()

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self.connections >= MAX_CONNECTIONS:
            await stream.aclose()
            return
        self.connections += 1
        connection = Connection(self.acceptor, trio.current_time(), self.wall_us)
        wake = trio.Event()

        def wakeup() -> None:
            wake.set()

        connection.wakeup = wakeup
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, stream, connection)
                while True:
                    await self._flush(stream, connection)
                    if connection.closing:
                        break
                    with trio.move_on_at(connection.next_deadline()):
                        await wake.wait()
                    wake = trio.Event()
                    connection.poll(trio.current_time())
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            log.info("FIX connection closed: %s", connection.close_reason)
            connection.disconnected()
            self.connections -= 1
            with trio.move_on_after(CLOSE_TIMEOUT_S) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    async def _read(self, stream: trio.SocketStream, connection: Connection) -> None:
        try:
            while not connection.closing:
                data = await stream.receive_some(READ_BYTES)
                if not data:
                    break
                connection.receive(data, trio.current_time())
                if connection.session is not None:
                    connection.session.store.flush()
                connection.wakeup()  # timers may have moved
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        connection.close(connection.close_reason or "peer closed the connection")

    @staticmethod
    async def _flush(stream: trio.SocketStream, connection: Connection) -> None:
        while connection.outbox:
            session = connection.session
            if session is not None:
                session.store.flush()
            await stream.send_all(connection.take_output())
