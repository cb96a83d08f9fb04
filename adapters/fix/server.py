"""The trio TCP acceptor: one task pair per connection around a sans-IO ``Connection``.

The reader feeds bytes to the connection; the writer flushes the session store
(sequence numbers are on disk before the peer can see them), writes the
outbox, runs the session timers at ``next_deadline()`` and closes the socket
when the session asks. A burst of output (the replies to one read, the
execution reports of one durable batch) is written where it ends, in one
write and without a task switch (``_Output.write_now``); only what the socket
does not take at once waits for the writer.

``stop`` is the graceful end (the daemon's shutdown): every logged-on session
gets a Logout "Server shutting down" and its connection closes when the peer
answers, or after the session's Logout timeout; the application's
``on_disconnect`` runs for each then, while the engine still takes commands.

Bounds: reads of at most ``READ_BYTES``; the outbox is bounded by the session
layer (a slow consumer is disconnected); at most ``MAX_CONNECTIONS``
connections at once (more are closed on accept).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Final

import trio

from adapters.fix.connection import Acceptor, Connection
from adapters.fix.session import LOGOUT_TIMEOUT_S, SHUTTING_DOWN

log = logging.getLogger("satchel.fix")

READ_BYTES: Final = 65_536
MAX_CONNECTIONS: Final = 1_000
CLOSE_TIMEOUT_S: Final = 1.0
STOP_POLL_S: Final = 0.01


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

    async def stop(self) -> None:
        """Log every session out and wait until their connections are closed (a Logout timeout at most)."""
        self.acceptor.log_out_all(SHUTTING_DOWN, trio.current_time())
        sessions = self.acceptor.sessions.values()
        with trio.move_on_after(LOGOUT_TIMEOUT_S + CLOSE_TIMEOUT_S):
            while any(session.connection is not None for session in sessions):  # noqa: ASYNC110 - sans-IO state
                await trio.sleep(STOP_POLL_S)

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self.connections >= MAX_CONNECTIONS:
            await stream.aclose()
            return
        self.connections += 1
        connection = Connection(self.acceptor, trio.current_time(), self.wall_us)
        output = _Output(stream, connection)
        connection.flush_hook = output.write_now
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, stream, connection, output)
                await self._write(stream, connection, output)
                nursery.cancel_scope.cancel()
        except Exception:  # a bug closes this connection, never the acceptor
            log.exception("FIX connection failed")
        finally:
            log.info("FIX connection closed: %s", connection.close_reason)
            connection.disconnected()
            self.connections -= 1
            with trio.move_on_after(CLOSE_TIMEOUT_S) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    async def _write(self, stream: trio.SocketStream, connection: Connection, output: _Output) -> None:
        """Flush the outbox, run the timers, and stop when the session closes or the peer is gone."""
        wake = _Wake()
        connection.wakeup = wake.set
        try:
            while True:
                await output.flush()
                if connection.closing:
                    return
                output.deadline = connection.next_deadline()
                await wake.wait_until(output.deadline)
                output.deadline = -math.inf  # awake: the next read must wake it again if timers moved
                connection.poll(trio.current_time())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            connection.close("peer gone")

    async def _read(self, stream: trio.SocketStream, connection: Connection, output: _Output) -> None:
        """Wait until readable, then read (``receive_some`` tries first: one failing ``recv`` per message
        when orders arrive one at a time, as in the RTT benchmark)."""
        sock = stream.socket
        try:
            while not connection.closing:
                await trio.lowlevel.wait_readable(sock)
                try:
                    data = os.read(output.fd, READ_BYTES)
                except BlockingIOError:
                    continue  # readable was a false alarm
                except OSError as exc:
                    connection.close(f"peer gone: {exc.strerror}")
                    break
                if not data:
                    break
                connection.receive(data, trio.current_time())
                if connection.session is not None:
                    connection.session.store.flush()
                output.write_now()  # the replies to this read (acks, rejects) in one write
                if connection.outbox or connection.closing or connection.next_deadline() < output.deadline:
                    connection.wakeup()  # output left, closing, or a timer moved earlier; else no task switch
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        connection.close(connection.close_reason or "peer closed the connection")


class _Output:
    """Writes a connection's outbox: at once from synchronous code when the socket takes it, else by the writer task.

    ``write_now`` runs where a burst of output ends (the replies to one read,
    the execution reports of one durable batch), so a burst costs one write
    and no task switch. The session store is flushed first, as before any
    write: the peer never sees a sequence number the store could lose.
    Whatever the socket does not take at once is left to the writer task,
    which waits for the socket; while it is sending, ``write_now`` leaves
    everything to it so bytes never go out of order.
    """

    __slots__ = ("busy", "connection", "deadline", "fd", "stream")

    def __init__(self, stream: trio.SocketStream, connection: Connection) -> None:
        self.stream = stream
        self.connection = connection
        self.fd = stream.socket.fileno()
        self.busy = False
        self.deadline = -math.inf  # what the writer task sleeps until (-inf: it is not asleep on the timers)

    def write_now(self) -> None:
        connection = self.connection
        if self.busy or not connection.outbox:
            return
        if connection.session is not None:
            connection.session.store.flush()
        data = connection.take_output()
        try:
            sent = os.write(self.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            connection.close(f"peer gone: {exc.strerror}")
            return
        if sent < len(data):
            connection.unsent(data[sent:])

    async def flush(self) -> None:
        """Write everything queued, waiting for the socket as needed (the writer task)."""
        connection = self.connection
        while connection.outbox:
            session = connection.session
            if session is not None:
                session.store.flush()
            self.busy = True
            try:
                await self.stream.send_all(connection.take_output())
            finally:
                self.busy = False


class _Wake:
    """A resettable wake-up: ``set`` from anywhere in the trio thread, ``wait_until`` a deadline."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait_until(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._event.wait()
        if self._event.is_set():
            self._event = trio.Event()
