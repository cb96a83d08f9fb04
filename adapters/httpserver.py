"""A lean HTTP/1.1 server on trio around httptools (llhttp, the parser Node.js uses).

Why not hypercorn: measured on this box, hypercorn's trio worker spends ~900 µs of
CPU on a request whose app answers a fixed JSON (~1,800 Python calls: h11's event
machinery, a task and cancel scopes per request, two socket writes per answer),
which caps the REST adapter near 1,100 requests/s however fast the app is. Here
the parsing is llhttp's (C, maintained by the Node.js project, wrapped by
MagicStack's httptools); this module only keeps connections, buffers and timers:

* keep-alive and pipelining: answers go out in request order, every answer
  that is ready in one write (head and body together). Requests the optional
  ``begin`` hook accepts (new orders) are begun in order as soon as they are
  parsed, all those read together in one call (which may await once, e.g. to
  have their signatures verified together); their answers arrive later in a
  ``Later`` the app fills from any task (the engine's reply sink), so a
  connection's task wakes once per batch of answers, not once per request.
  Any other request waits for every earlier answer, as if run one by one;
* bounded: a request head over ``MAX_HEAD_BYTES`` gets 431, a body over the
  handler's limit 413 before it is read (declared ``Content-Length``) or as soon
  as it passes the limit (chunked; the bytes of chunk framing and extensions
  count too, within ``MAX_FRAMING_BYTES``), at most ``MAX_CONNECTIONS``
  connections and ``adapters.admission.PER_PEER_DEFAULT`` from one address
  (more get a 503 and are closed);
* ``Expect: 100-continue`` is answered once the earlier answers are out (curl
  sends it for bodies over 1 KiB and would otherwise wait a second);
* timeouts: an idle keep-alive connection closes after ``keep_alive_s``; a
  request that is not complete within ``request_timeout_s`` of its first byte
  gets 408, however it trickles in (the deadline is set at the first byte, not
  moved by later ones); an answer the client does not read within
  ``send_timeout_s`` closes the connection;
* malformed HTTP (or an Upgrade) gets a clean 400 naming the parser's reason,
  after any complete requests before it are answered; then the connection closes;
* TLS (https) when built with an ``ssl.SSLContext``: each connection gets an
  ``adapters.tls.TlsSession`` between its socket and the parser (the plaintext
  path is a different connection class, chosen once per connection). The
  handshake must complete within ``request_timeout_s`` of the accept, however
  it trickles in; a failed handshake or a damaged record (a plaintext client on
  the https port) closes that connection without an answer, as does a refusal
  for too many connections (a 503 could only be sent after a handshake). Every
  ciphertext record is written whole and in order, a partial write keeping the
  rest; a closing connection sends close_notify when nothing is left unsent.

The handler is one coroutine per request: ``Request`` in, ``(status, body,
content_type)`` out, so the app never builds ASGI dictionaries. No task is
spawned per request: the connection's task runs them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import unquote_to_bytes

import attrs
import httptools
import trio

from adapters.admission import Admission, peer_of
from adapters.tls import TlsError, TlsSession

log = logging.getLogger("satchel.http")

RECV_BYTES: Final = 65_536
MAX_HEAD_BYTES: Final = 16_384
MAX_CONNECTIONS: Final = 4096
MAX_FRAMING_BYTES: Final = 65_536  # chunk sizes, extensions and trailers a body may carry beyond its own bytes
HEADER_NAMES_MAX: Final = 1024  # spellings of header names remembered (clients repeat the same few)
DEADLINE_SLACK_S: Final = 1.0
LINGER_S: Final = 1.0  # after a refusal, unread input is drained this long (at most LINGER_BYTES) before the close
LINGER_BYTES: Final = 1 << 20
UPGRADE_REFUSED: Final = "Connection upgrades are not supported on this port"
REASONS: Final = {s.value: s.phrase.encode() for s in HTTPStatus}
METHODS: Final = {m.encode(): m for m in ("GET", "POST", "DELETE", "PATCH", "PUT", "HEAD", "OPTIONS")}  # no decode per request


@attrs.define(slots=True)
class Request:
    """One parsed request: only the headers the handler asked for, decoded as latin-1."""

    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    body: bytes


Response = tuple[int, bytes, bytes]  # status, body, content type
Handler = Callable[[Request], Awaitable[Response]]
ErrorBody = Callable[[int, str], Response]


class Later:
    """An answer that arrives after ``begin`` returned: the app calls ``fill`` once, from any trio task.

    Filling wakes the connection only if it is waiting for this very answer, and
    never switches tasks itself, so a whole batch of answers the engine releases
    at once costs the connection one wake-up and one write.
    """

    __slots__ = ("_task", "response")

    def __init__(self) -> None:
        self.response: Response | None = None
        self._task: trio.lowlevel.Task | None = None

    def fill(self, response: Response) -> None:
        self.response = response
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> Response:
        """The response; parks the calling task until ``fill`` if it is not there yet."""
        if self.response is None:
            self._task = trio.lowlevel.current_task()

            def abort(_: Any) -> trio.lowlevel.Abort:
                self._task = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
        assert self.response is not None
        return self.response


# Begins the longest run at the start of the given requests that it accepts, in order; one answer
# (ready, or to come) per request begun. May await (once for the whole run), never for an answer.
# If it raises, it must have begun nothing: the first request is answered 500 and the rest offered again.
Begin = Callable[[list[Request]], Awaitable[list["Response | Later"]]]
Begun = tuple[Request, bool, "Response | Later"]  # a request, whether to keep the connection, its answer


class Refused(Exception):
    """A request the server answers itself (too large, malformed) and then closes the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@attrs.define
class Limits:
    max_body_bytes: int = 65_536
    keep_alive_s: float = 75.0
    request_timeout_s: float = 30.0
    send_timeout_s: float = 30.0


class _Parsing:
    """httptools' callback target for one connection: collects complete requests in ``ready``."""

    def __init__(self, wanted: Mapping[bytes, str], max_body: int, names: dict[bytes, str] | None = None) -> None:
        self.wanted = wanted
        self.names = names if names is not None else {}  # header names as clients spell them -> key or ""
        self.max_body = max_body
        self.ready: deque[tuple[Request, bool]] = deque()
        self.started = 0.0  # trio time of the current request's first byte: its deadline counts from here
        self.body_wire = 0  # bytes read in its body phase, framing included
        self.parser = httptools.HttpRequestParser(self)
        self.in_message = False
        self.head_done = False
        self.expect_continue = False  # the client waits for "100 Continue" before it sends the body
        self.head_bytes = 0
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0

    def on_message_begin(self) -> None:
        self.in_message = True
        self.head_done = False
        self.head_bytes = 0
        self.body_wire = 0
        self.started = trio.current_time()
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = self.names.get(name)
        if key is None:
            key = self._learn(name)
        if key and key not in self._headers:  # the first of a repeated header wins
            self._headers[key] = value.decode("latin-1")

    def _learn(self, name: bytes) -> str:
        """The key for a header name as spelled on the wire ("" if unwanted), remembered for the next requests."""
        key = self.wanted.get(name.lower(), "")
        if len(self.names) < HEADER_NAMES_MAX:
            self.names[name] = key
        return key

    def on_headers_complete(self) -> None:
        self.head_done = True
        if self.parser.should_upgrade():
            raise Refused(400, UPGRADE_REFUSED)
        declared = self._headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > self.max_body:
            raise Refused(413, f"Body too large: limit is {self.max_body} bytes")
        expect = self._headers.get("expect")
        self.expect_continue = expect is not None and expect.lower() == "100-continue"

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.max_body:
            raise Refused(413, f"Body too large: limit is {self.max_body} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = self.expect_continue = False
        url = self._url
        target, _, query = url.partition(b"?")
        if not target.startswith(b"/"):  # absolute form: http://host/path
            target = httptools.parse_url(url).path or b"/"
        if b"%" in target:
            target = unquote_to_bytes(target)
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        raw_method = self.parser.get_method()
        method = METHODS.get(raw_method) or raw_method.decode("ascii")
        request = Request(method, target.decode("utf-8", "replace"), query, self._headers, body)
        # HTTP/1.0 closes after each answer (its opt-in keep-alive is left out, as h11 does)
        keep_alive = self.parser.should_keep_alive() and self.parser.get_http_version() == "1.1"
        self.ready.append((request, keep_alive))

    def feed(self, data: bytes) -> Refused | None:
        """Parse ``data``; a refusal stops the connection after the complete requests before it."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            return Refused(400, UPGRADE_REFUSED)
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, Refused):
                return cause
            return Refused(400, f"Malformed HTTP request: {exc}")
        if self.in_message:
            if not self.head_done:
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD_BYTES:
                    return Refused(431, f"Request head too large: limit is {MAX_HEAD_BYTES} bytes")
            else:  # a chunked body's framing (sizes, extensions) is not body, but it is read all the same
                self.body_wire += len(data)
                if self.body_wire > self.max_body + MAX_FRAMING_BYTES + RECV_BYTES:  # + the read it began in
                    return Refused(413, f"Body too large: limit is {self.max_body} bytes, with its framing")
        return None


class _Date:
    """The ``Date`` header, formatted once per second."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self.second:
            self.second = second
            self.value = formatdate(second, usegmt=True).encode()
        return self.value


class HttpServer:
    """Serves one handler on trio listeners; see the module docstring for the rules it keeps."""

    def __init__(self, handler: Handler, error_body: ErrorBody, wanted_headers: Mapping[bytes, str],
                 limits: Limits | None = None, begin: Begin | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.begin = begin
        self.tls = tls  # None: plaintext (http); else every connection is https
        self.error_body = error_body
        self.wanted = {**wanted_headers, b"content-length": "content-length", b"expect": "expect"}
        self.limits = limits or Limits()
        self.admission = Admission(MAX_CONNECTIONS)
        self._date = _Date()
        self._names: dict[bytes, str] = {}  # shared by the connections' parsers: saves a lower() per header

    @property
    def connections(self) -> int:
        return self.admission.open

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        await trio.serve_listeners(self.connection, listeners)

    def head(self, status: int, length: int, content_type: bytes, close: bool) -> bytes:
        return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\ndate: %s\r\n%s\r\n" % (
            status, REASONS.get(status, b"Unknown"), content_type, length, self._date.now(),
            b"connection: close\r\n" if close else b"",
        )

    async def connection(self, stream: trio.SocketStream) -> None:
        """One client: read, parse, answer in order; every wait has a deadline.

        The connection runs on the plain socket (taken over from trio's stream, TCP_NODELAY
        kept) with trio's ``wait_readable``/``wait_writable``: trio's stream costs two
        scheduler passes and a conflict detector per receive and per send, which measured
        as a third of this server's CPU per request.
        """
        sock = socket.socket(fileno=stream.socket.detach())
        with sock:
            peer = peer_of(sock)
            refused = self.admission.admit(peer)
            if refused is not None:
                if self.tls is None:  # over TLS it could only be said after a handshake: just closed
                    status, body, content_type = self.error_body(503, f"Service unavailable: {refused}")
                    with contextlib.suppress(OSError):  # one try, never a wait: the slot is not ours
                        sock.send(self.head(status, len(body), content_type, True) + body)
                return
            parsing = _Parsing(self.wanted, self.limits.max_body_bytes, self._names)
            if self.tls is None:
                connection = _Connection(sock, parsing, self.limits)
            else:
                connection = _TlsConnection(sock, parsing, self.limits, TlsSession(self.tls))
            try:
                with trio.CancelScope() as connection.deadline:
                    await self._serve_connection(connection)
                if connection.deadline.cancelled_caught and parsing.in_message and not parsing.ready:
                    with trio.move_on_after(1):  # a slow request (not a slow reader): say why, briefly
                        await self._refuse(connection, Refused(408, "Request not completed in time"))
                connection.close()
            except (OSError, TlsError):
                pass  # the client went away (reset, broken pipe) or broke its TLS session
            finally:
                self.admission.release(peer)

    async def _serve_connection(self, connection: _Connection) -> None:
        parsing = connection.parsing
        ready = parsing.ready
        while True:
            data = await connection.receive()
            if not data:
                return
            refused = parsing.feed(data)
            if not await self._answer_ready(connection, ready):
                return
            if refused is not None:
                await self._refuse(connection, refused)
                await connection.linger()
                return
            if parsing.expect_continue:  # every earlier answer is out, so this one is next in order
                parsing.expect_continue = False
                await connection.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    async def _answer_ready(self, connection: _Connection, ready: deque[tuple[Request, bool]]) -> bool:
        """Answer the parsed requests in order; False once the connection is to close.

        With a ``begin`` hook, requests it accepts are begun in order at once and
        answered as their answers arrive (pipelined order entry); any other request
        first waits for every earlier answer, so it sees their effects as if they had
        run one by one.
        """
        begun: deque[Begun] = deque()
        keep_alive = True
        while ready and keep_alive:
            if self.begin is not None:
                run = []
                for request, alive in ready:  # up to the first request that closes the connection
                    run.append(request)
                    if not alive:
                        break
                started = await self._begin(run)
                for answer in started:
                    request, keep_alive = ready.popleft()
                    begun.append((request, keep_alive, answer))
                if started:
                    continue
            request, keep_alive = ready.popleft()
            await self._send_begun(connection, begun)
            answer = await self._answer(request)
            await connection.send(self._encode(request, answer, keep_alive))
        await self._send_begun(connection, begun)
        return keep_alive

    async def _send_begun(self, connection: _Connection, begun: deque[Begun]) -> None:
        """Send the begun requests' answers in order: whatever is ready in one write, then wait for the next."""
        out: list[bytes] = []
        while begun:
            request, keep_alive, started = begun.popleft()
            if isinstance(started, Later):
                later = started.response
                if later is None:
                    if out:  # what is ready goes out before waiting for the rest
                        await connection.send(b"".join(out))
                        out.clear()
                    later = await started.wait()
                started = later
            out.append(self._encode(request, started, keep_alive))
        if out:
            await connection.send(out[0] if len(out) == 1 else b"".join(out))

    def _encode(self, request: Request, answer: Response, keep_alive: bool) -> bytes:
        status, body, content_type = answer
        head = self.head(status, len(body), content_type, not keep_alive)
        return head if request.method == "HEAD" else head + body

    async def _begin(self, requests: list[Request]) -> list[Response | Later]:
        assert self.begin is not None
        try:
            return await self.begin(requests)
        except Exception:  # a bug: the first request gets the 500; the rest are tried again
            log.exception("HTTP begin failed for %s %s", requests[0].method, requests[0].path)
            return [self.error_body(500, "Internal error; the request may not have been applied")]

    async def _answer(self, request: Request) -> Response:
        try:
            return await self.handler(request)
        except Exception:
            log.exception("HTTP handler failed for %s %s", request.method, request.path)
            return self.error_body(500, "Internal error; the request may not have been applied")

    async def _refuse(self, connection: _Connection, refused: Refused) -> None:
        status, body, content_type = self.error_body(refused.status, refused.message)
        await connection.send(self.head(status, len(body), content_type, True) + body)


class _Connection:
    """A non-blocking socket with the connection's one deadline.

    The deadline is moved lazily (at most once per ``DEADLINE_SLACK_S`` while the
    client is active; at once when it must come nearer), since every move costs
    trio a heap update. So a handler is never cut off unless it waits longer than
    the timeout minus the slack; the engine answers in milliseconds.
    """

    def __init__(self, sock: socket.socket, parsing: _Parsing, limits: Limits) -> None:
        self.sock = sock
        self.parsing = parsing
        self.limits = limits
        self.deadline = trio.CancelScope()

    def _expire_at(self, target: float) -> None:
        current = self.deadline.deadline
        if current > target or current < target - DEADLINE_SLACK_S:
            self.deadline.deadline = target

    async def receive(self) -> bytes:
        """The next bytes (b"" at end of stream); yields to trio once either way."""
        limits, parsing = self.limits, self.parsing
        if parsing.in_message:  # from the request's first byte, however slowly the rest arrives
            self._expire_at(parsing.started + limits.request_timeout_s)
        else:
            self._expire_at(trio.current_time() + limits.keep_alive_s)
        try:
            data = self.sock.recv(RECV_BYTES)
        except BlockingIOError:
            pass
        else:
            await trio.lowlevel.checkpoint()  # data was waiting: still let the other connections run
            return data
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            try:
                return self.sock.recv(RECV_BYTES)
            except BlockingIOError:
                continue

    async def linger(self) -> None:
        """Half-close, then read and drop what the client is still sending, briefly.

        Closing a socket with unread input makes the kernel answer with a reset,
        which can destroy the refusal just sent before the client reads it (a client
        still uploading the body a 413 refuses); draining first lets it arrive.
        """
        with contextlib.suppress(OSError), trio.move_on_after(LINGER_S):
            self.sock.shutdown(socket.SHUT_WR)
            drained = 0
            while drained < LINGER_BYTES:
                data = await _Connection.receive(self)  # the socket's bytes: TLS records are dropped undeciphered
                if not data:
                    return
                drained += len(data)

    def close(self) -> None:
        """The connection ends (its socket closes next): nothing to say in plaintext."""

    async def send(self, data: bytes) -> None:
        """Write all of ``data``; waits (with the send timeout) only if the kernel buffer is full."""
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)
        self.deadline.deadline = trio.current_time() + self.limits.send_timeout_s
        while sent < len(data):
            await trio.lowlevel.wait_writable(self.sock)
            try:
                sent += self.sock.send(view[sent:])
            except BlockingIOError:
                continue


class _TlsConnection(_Connection):
    """A connection over TLS: the socket carries ciphertext, ``receive`` and ``send`` deal in plaintext.

    Every read goes through the session, and what it has to send (handshake
    records, alerts, session tickets) is written before the plaintext is used.
    Until the handshake completes, the deadline is the accept plus the request
    timeout, however the handshake trickles in; then the HTTP deadlines apply.
    """

    def __init__(self, sock: socket.socket, parsing: _Parsing, limits: Limits, tls: TlsSession) -> None:
        super().__init__(sock, parsing, limits)
        self.tls = tls
        self.accepted = trio.current_time()
        self.unsent = False  # a write of ciphertext did not finish (cancelled, or the peer went away)

    async def receive(self) -> bytes:
        """The next plaintext (b"" at the end of the stream, a close_notify or a TLS failure)."""
        tls = self.tls
        while not tls.closed:  # after the peer's close_notify nothing more comes: no read waits for it
            data = await super().receive() if tls.handshaken else await self._handshake_read()
            try:
                plaintext = tls.receive(data)
            except TlsError as exc:
                log.debug("TLS connection from %s closed: %s", peer_of(self.sock), exc)
                return b""
            await self._flush()
            if plaintext or not data:
                return plaintext
        return b""

    async def _handshake_read(self) -> bytes:
        self._expire_at(self.accepted + self.limits.request_timeout_s)
        while True:
            await trio.lowlevel.wait_readable(self.sock)  # a few reads per connection: always a checkpoint
            try:
                return self.sock.recv(RECV_BYTES)
            except BlockingIOError:
                continue

    async def send(self, data: bytes) -> None:
        self.tls.send(data)
        await self._flush()

    async def _flush(self) -> None:
        """Write the session's ciphertext whole (a partial write keeps its rest; nothing is encrypted twice)."""
        ciphertext = self.tls.outgoing()
        if ciphertext:
            self.unsent = True
            await super().send(ciphertext)
            self.unsent = False

    async def linger(self) -> None:
        self.close()  # the close_notify goes out before the half-close
        await super().linger()

    def close(self) -> None:
        """Best effort, never a wait: close_notify (or the alert of a failed handshake) in one try."""
        if self.unsent:  # a record cut short: anything after it would be garbage to the peer
            return
        self.tls.close()
        ciphertext = self.tls.outgoing()
        if ciphertext:
            with contextlib.suppress(OSError):
                self.sock.send(ciphertext)
