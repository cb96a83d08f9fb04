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

A long answer (a resend, a mass status) is produced by the writer a slice at
a time, each slice once the previous one is written (``Connection.produce``),
with a checkpoint between slices: other connections run in between, and a
peer that does not read gets nothing more built for it.

With a TLS context (``[adapters.fix] tls_cert``/``tls_key``) every connection
runs through a ``TlsSession`` (``_read``, ``_TlsOutput``): a read is
decrypted before the connection sees it and its replies (handshake records
included) are encrypted where they are written; the plaintext path is chosen
once per connection and does no TLS work. Ciphertext is produced once: what a
write does not take waits, in order, for the writer task (``_TlsOutput.backlog``)
and is never encrypted again. A handshake that fails, or bytes that are not
TLS, close that connection only; one that never completes is a connection
without a Logon (``LOGON_TIMEOUT_S``). A connection that closes cleanly sends
its close_notify, best effort.

Bounds: reads of at most ``READ_BYTES``; the outbox is bounded by the session
layer (a slow consumer is disconnected); a peer that takes none of our bytes
for its HeartBtInt (``Connection.send_timeout_s``; ``LOGON_TIMEOUT_S`` before
Logon) is disconnected, and once a connection is closing its last bytes get
at most ``CLOSE_TIMEOUT_S``; either way the socket is reset (nothing lingers in
the kernel) and the session's disconnect (cancel-on-disconnect) runs. At most
``MAX_CONNECTIONS`` connections at once (more are closed on accept), of which at
most ``max_pre_logon`` (``MAX_PRE_LOGON``) have not logged on: when they are
all taken, the oldest is closed to make room, so idle connections cannot keep
a configured session from logging on.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import ssl
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import trio

from adapters.fix.connection import Acceptor, Connection
from adapters.fix.session import LOGOUT_TIMEOUT_S, SHUTTING_DOWN
from adapters.tls import TlsError, TlsSession

log = logging.getLogger("satchel.fix")

READ_BYTES: Final = 65_536
MAX_CONNECTIONS: Final = 1_000
MAX_PRE_LOGON: Final = 900  # the rest of MAX_CONNECTIONS is for logged-on sessions
CLOSE_TIMEOUT_S: Final = 1.0
STOP_POLL_S: Final = 0.01


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class FixServer:
    """Serves an ``Acceptor`` on a TCP address (over TLS with ``tls``); ``address`` is the bound (host, port)."""

    def __init__(self, acceptor: Acceptor, host: str, port: int, *, wall_us: Callable[[], int] = wall_clock_us,
                 max_pre_logon: int = MAX_PRE_LOGON, tls: ssl.SSLContext | None = None) -> None:
        self.acceptor = acceptor
        self.tls = tls
        self.host = host
        self.port = port
        self.wall_us = wall_us
        self.max_pre_logon = max_pre_logon
        self.address: tuple[str, int] = (host, port)
        self.connections = 0
        self.pre_logon: OrderedDict[Connection, None] = OrderedDict()  # not (yet) logged on, oldest first

    async def serve(self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        sockname = listeners[0].socket.getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("FIX acceptor listening on %s:%d%s", *self.address, " (TLS)" if self.tls is not None else "")
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
        if self.connections >= MAX_CONNECTIONS or not self._make_room():
            await stream.aclose()
            return
        self.connections += 1
        connection = Connection(self.acceptor, trio.current_time(), self.wall_us)
        self.pre_logon[connection] = None
        output = _Output(stream, connection) if self.tls is None else _TlsOutput(stream, connection, TlsSession(self.tls))
        connection.flush_hook = output.write_now
        connection.on_close = output.closing
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, stream, connection, output)
                await self._write(stream, connection, output)
                nursery.cancel_scope.cancel()
        except Exception:  # a bug closes this connection, never the acceptor
            log.exception("FIX connection failed")
        finally:
            log.info("FIX connection closed: %s", connection.close_reason)
            self.pre_logon.pop(connection, None)
            connection.disconnected()
            self.connections -= 1
            with trio.move_on_after(CLOSE_TIMEOUT_S) as cleanup:
                cleanup.shield = True
                if output.aborted:  # a reset: the kernel keeps nothing for a peer that does not read
                    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    output.finish()
                await stream.aclose()

    def _make_room(self) -> bool:
        """Room for one more connection before Logon: the oldest one waiting for its Logon is closed if needed."""
        pre_logon = self.pre_logon
        while pre_logon and len(pre_logon) >= self.max_pre_logon:
            oldest, _ = pre_logon.popitem(last=False)  # logged-on ones leave the pool as they are met
            if oldest.session is None and not oldest.closing:
                oldest.close("pre-logon connections full: the oldest is dropped")
        return len(pre_logon) < self.max_pre_logon

    async def _write(self, stream: trio.SocketStream, connection: Connection, output: _Output) -> None:
        """Flush the outbox, run the timers, and stop when the session closes or the peer is gone."""
        wake = _Wake()
        connection.wakeup = wake.set
        try:
            while True:
                await output.flush()
                if connection.closing:
                    return
                if connection.producing():  # a long answer: the next slice, after the other tasks had a turn
                    await trio.lowlevel.checkpoint()
                    connection.produce()
                    if trio.current_time() < connection.next_deadline():
                        continue
                else:
                    output.deadline = connection.next_deadline()
                    await wake.wait_until(output.deadline)
                    output.deadline = -math.inf  # awake: the next read must wake it again if timers moved
                connection.poll(trio.current_time())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            connection.close("peer gone")

    async def _read(self, stream: trio.SocketStream, connection: Connection, output: _Output) -> None:
        """Wait until readable, then read (``receive_some`` tries first: one failing ``recv`` per message
        when orders arrive one at a time, as in the RTT benchmark). Over TLS each read is decrypted first
        and what it completes (plaintext, handshake replies) is answered in the same write; bytes that are
        not TLS close the connection."""
        sock = stream.socket
        tls = output.tls
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
                if tls is not None:
                    try:
                        data = tls.receive(data)
                    except TlsError as exc:
                        connection.close(str(exc))  # the writer still sends the alert OpenSSL queued, if any
                        break
                if data:
                    connection.receive(data, trio.current_time())
                    if connection.session is not None:
                        connection.session.store.flush()
                output.write_now()  # the replies to this read (acks, rejects, the handshake's) in one write
                if (connection.outbox or output.backlog or connection.closing
                        or connection.next_deadline() < output.deadline or connection.producing()):
                    connection.wakeup()  # output left, closing, a timer moved earlier or a long answer; else no switch
                if tls is not None and tls.closed:  # the peer's close_notify: nothing more comes
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        connection.close(connection.close_reason or "peer closed the connection")


class _Output:
    """Writes a connection's outbox: at once from synchronous code when the socket takes it, else by the writer task.

    ``write_now`` runs where a burst of output ends (the replies to one read,
    the execution reports of one durable batch), so a burst costs one write
    and no task switch. The session store is flushed first, as before any
    write (and with it the application's ClOrdIDs, ``flush_also``): the peer
    never sees a sequence number or ClOrdID the files could lose.
    Whatever the socket does not take at once is left to the writer task,
    which waits for the socket; while it is sending, ``write_now`` leaves
    everything to it so bytes never go out of order.
    """

    __slots__ = ("aborted", "busy", "close_deadline", "connection", "deadline", "fd", "send_scope", "stream")

    tls: TlsSession | None = None  # plaintext; ``_TlsOutput`` has its session
    backlog: bytes | memoryview = b""  # ciphertext waiting for the writer (``_TlsOutput`` only)

    def __init__(self, stream: trio.SocketStream, connection: Connection) -> None:
        self.stream = stream
        self.connection = connection
        self.fd = stream.socket.fileno()
        self.busy = False
        self.deadline = -math.inf  # what the writer task sleeps until (-inf: it is not asleep on the timers)
        self.send_scope: trio.CancelScope | None = None  # the writer's wait for a writable socket
        self.close_deadline = math.inf  # the connection is closing: its last bytes are given until then
        self.aborted = False  # bytes were left unsent: the socket is reset, not closed gracefully

    def closing(self) -> None:
        """The connection is closing (``Connection.on_close``): a blocked send waits ``CLOSE_TIMEOUT_S`` at most."""
        self.close_deadline = trio.current_time() + CLOSE_TIMEOUT_S
        if self.send_scope is not None:
            self.send_scope.deadline = min(self.send_scope.deadline, self.close_deadline)

    def write_now(self) -> None:
        connection = self.connection
        if self.busy or not connection.outbox:
            return
        if connection.session is not None:
            connection.session.store.flush()
        data = connection.take_output()
        sent = self._write(data)
        if sent is not None and sent < len(data):
            connection.unsent(data[sent:])

    def _write(self, data: bytes | memoryview) -> int | None:
        """What the socket takes of ``data`` now, without waiting; None (the connection closed) if the peer is gone."""
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            self.connection.close(f"peer gone: {exc.strerror}")
            return None

    async def flush(self) -> None:
        """Write everything queued, waiting for the socket as needed (the writer task)."""
        connection = self.connection
        while connection.outbox:
            session = connection.session
            if session is not None:
                session.store.flush()
            self.busy = True
            try:
                await self._send(connection.take_output())
            finally:
                self.busy = False

    async def _send(self, data: bytes | memoryview) -> None:
        """Write ``data``, waiting for the socket; the session timers run meanwhile. A peer that takes nothing
        for ``send_timeout_s()``, or a closing connection past ``close_deadline``, is given up on."""
        connection = self.connection
        sock = self.stream.socket
        view = memoryview(data)
        stalled_at = trio.current_time() + connection.send_timeout_s()
        while True:
            sent = self._write(view)
            if sent is None:
                self.aborted = True
                return
            if sent == len(view):
                await trio.lowlevel.checkpoint()  # as ``send_all`` does: a long answer never holds the loop
                return
            now = trio.current_time()
            if sent:
                view = view[sent:]
                stalled_at = now + connection.send_timeout_s()
            give_up = min(stalled_at, self.close_deadline)
            if now >= give_up:
                if not connection.closing:
                    connection.close(f"slow consumer: nothing sent for {connection.send_timeout_s():g} s")
                self.aborted = True
                return
            wake_at = give_up if connection.closing else min(give_up, connection.next_deadline())
            with trio.move_on_at(wake_at) as self.send_scope:
                await trio.lowlevel.wait_writable(sock)
            self.send_scope = None
            now = trio.current_time()
            if now >= connection.next_deadline() and not connection.closing:
                connection.poll(now)  # heartbeats and the peer's timeout, even while the socket is full

    def finish(self) -> None:
        """The connection closes with everything written (plaintext: nothing more to say)."""


class _TlsOutput(_Output):
    """``_Output`` through a ``TlsSession``: the outbox is encrypted where it is written, once.

    Everything leaves through ``_ciphertext`` (the outbox encrypted after the
    store is flushed, behind whatever TLS queued itself: handshake records,
    tickets, alerts), in the order it was produced. A write that takes only part
    of it leaves the rest in ``backlog`` for the writer task, which sends it
    before producing more; meanwhile ``write_now`` writes nothing and the outbox
    keeps the session's plaintext, where ``MAX_OUTBOX_BYTES`` still bounds it.
    """

    __slots__ = ("backlog", "session", "tls")

    def __init__(self, stream: trio.SocketStream, connection: Connection, tls: TlsSession) -> None:
        super().__init__(stream, connection)
        self.tls = tls  # what the reader asks (None on plaintext)
        self.session = tls
        self.backlog: bytes | memoryview = b""  # ciphertext a write took only part of: it goes out first

    def write_now(self) -> None:
        if self.busy or self.backlog:
            return  # the writer is sending: it takes what follows, in order
        data = self._ciphertext()
        if not data:
            return
        sent = self._write(data)
        if sent is not None and sent < len(data):
            self.backlog = memoryview(data)[sent:]
            self.connection.wakeup()

    def _ciphertext(self) -> bytes:
        """Encrypt the outbox (the store flushed first) and take every record TLS has queued, in order."""
        connection = self.connection
        if connection.outbox:
            if connection.session is not None:
                connection.session.store.flush()
            try:
                self.session.send(connection.take_output())
            except TlsError as exc:  # output before the handshake is done: a bug, but only this connection's
                connection.close(str(exc))
        return self.session.outgoing()

    async def flush(self) -> None:
        """Write the backlog, then everything queued since, waiting for the socket as needed (the writer task)."""
        while True:
            data = self.backlog or self._ciphertext()
            self.backlog = b""
            if not data:
                return
            self.busy = True
            try:
                await self._send(data)
            finally:
                self.busy = False

    def finish(self) -> None:
        """Best effort: our close_notify, if the socket takes it now (the peer may be gone)."""
        if self.backlog or not self.session.handshaken:
            return
        self.session.close()
        data = self.session.outgoing()
        if data:
            with contextlib.suppress(OSError):
                os.write(self.fd, data)


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
