"""One TCP connection of the FIX acceptor, before and after Logon (sans-IO, like ``session.py``).

``Acceptor`` knows the configured sessions. A ``Connection`` frames the bytes
of its socket; before Logon it lets through only a valid, signed (where the
session asks for it) Logon for a configured session that is not connected
elsewhere, and closes the connection without a reply otherwise; once bound, it
hands every frame to its ``Session``. Replies are appended to ``outbox``: the
I/O layer (``server.py``) writes them, after the whole read for replies to it.

Bounds: a connection that has not logged on within ``LOGON_TIMEOUT_S`` is
closed; the outbox holds at most ``MAX_OUTBOX_BYTES`` (past that the peer is a
slow consumer and the connection closes); while a resend is produced, messages
it holds back (``hold``) count against the same bound. The I/O layer drops a
peer that takes nothing for ``send_timeout_s()`` (its HeartBtInt).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from adapters.fix.codec import BEGIN_STRING, Framer, Garbled, Overflow, decode, parse_utc_timestamp
from adapters.fix.dictionary import SessionReject, validate
from adapters.fix.session import MAX_LATENCY_US, SHUTTING_DOWN, Authenticator, Session

LOGON_TIMEOUT_S: Final = 3.0
MAX_OUTBOX_BYTES: Final = 16 * 1024 * 1024


class Intake(Protocol):
    """Brackets the messages of one read (``Engine.hold_markets``/``release_markets``): the orders
    of a read reach the market as one batch, decided in the reader's own step when it is idle."""

    def hold_markets(self) -> bool: ...

    def release_markets(self) -> None: ...


class Acceptor:
    """The configured sessions and the application behind them."""

    def __init__(
        self, sessions: list[Session], *, authenticate: Authenticator | None = None, intake: Intake | None = None,
    ) -> None:
        self.sessions = {(s.config.target_comp_id, s.config.sender_comp_id): s for s in sessions}
        self.authenticate = authenticate
        self.intake = intake
        self.stopping = False  # the server is shutting down: Logons are refused (``log_out_all``)

    def log_out_all(self, text: str, now: float) -> None:
        """The server is shutting down: every logged-on session gets a Logout; new Logons are refused."""
        self.stopping = True
        for session in self.sessions.values():
            if session.logged_on:
                session.logout(text, now)

    def close(self) -> None:
        """Flush and close every session's store (the server is stopping)."""
        for session in self.sessions.values():
            session.store.close()

    def find(self, sender: str | None, target: str | None) -> Session | None:
        return self.sessions.get((sender or "", target or ""))


class Connection:
    """One TCP connection: framing, the pre-logon gate, and the session once bound."""

    def __init__(self, acceptor: Acceptor, now: float, wall_us: Callable[[], int]) -> None:
        self.acceptor = acceptor
        self.framer = Framer()
        self.session: Session | None = None
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        self.closing = False
        self.close_reason = ""
        self.opened = now
        self.wall_us = wall_us
        self.wakeup: Callable[[], None] = _nothing
        # set by the I/O layer: write the outbox now if the socket takes it (no task switch); else the writer does
        self.flush_hook: Callable[[], None] = _nothing
        self.holding = False  # inside receive(): replies are written by the caller afterwards
        self.on_close: Callable[[], None] = _nothing  # set by the I/O layer: stop waiting on a blocked send
        self.held: list[bytes] | None = None  # a resend is being produced: messages sequenced meanwhile wait here
        self.held_bytes = 0

    # --- I/O entry points ----------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the socket; outputs land in ``outbox`` (the caller writes them: no wake-up per reply)."""
        self.framer.feed(data)
        self.holding = True
        intake = self.acceptor.intake
        batch = intake is not None and intake.hold_markets()
        try:
            self._frames(now)
        except Overflow as exc:
            self.close(str(exc))
        finally:
            self.holding = False
            if batch:
                intake.release_markets()  # type: ignore[union-attr]

    def _frames(self, now: float) -> None:
        """Every complete frame read so far, one at a time and in order, to the pre-logon gate or the session.

        Once the session knows compiled shapes, each frame is first matched where it starts in the read
        (``ShapeCache.match_at``): a match is the frame the framer would cut there, decoded and validated, so it
        is neither searched for nor read twice. Anything else is cut by the framer and taken by ``on_frame``.
        A frame that closes the connection drops the rest of the read.
        """
        framer = self.framer
        data = framer.take()
        text: str | None = None  # the read as latin-1 text, once a shape is tried
        pos = 0
        while pos < len(data):  # a read of whole messages ends exactly at a frame's end
            if self.closing:
                return
            session = self.session
            tried = False
            if session is not None and session.shapes.recent:
                if text is None:
                    text = data.decode("latin-1")
                known = session.shapes.match_at(data, text, pos)
                if known is not None:
                    message, parts = known
                    pos += len(message.raw)
                    session.on_matched(message, parts, now)
                    continue
                tried = True
            start = pos
            frame, pos = framer.next_frame(data, pos)
            if frame is None:
                break
            if session is None:
                self._pre_logon(frame, now)
            else:  # a frame that starts where the shapes just failed would fail them again
                session.on_frame(frame, now, unshaped=tried and pos - len(frame) == start)
        framer.keep(data, pos)

    def poll(self, now: float) -> None:
        if self.session is not None:
            self.session.poll(now)
        elif now - self.opened >= LOGON_TIMEOUT_S:
            self.close("no Logon")

    def next_deadline(self) -> float:
        if self.session is not None:
            return self.session.next_deadline()
        return self.opened + LOGON_TIMEOUT_S

    def send_timeout_s(self) -> float:
        """How long the peer may take none of our bytes before it is dropped: its HeartBtInt once logged on."""
        if self.session is not None and self.session.logged_on:
            return self.session.heartbeat_s
        return LOGON_TIMEOUT_S

    def producing(self) -> bool:
        """A long answer (``session.Backlog``) has slices left to produce."""
        return self.session is not None and bool(self.session.backlog) and not self.closing

    def produce(self) -> None:
        """Queue the next slice of the long answer (the outbox was written)."""
        if self.session is not None:
            self.session.produce()

    def disconnected(self) -> None:
        """The socket is gone (either side closed it)."""
        self.closing = True
        if self.session is not None:
            session, self.session = self.session, None
            session.detach()

    def take_output(self) -> bytes:
        data = b"".join(self.outbox)
        self.outbox.clear()
        self.outbox_bytes = 0
        return data

    def unsent(self, rest: bytes) -> None:
        """The socket took only part of ``take_output()``: ``rest`` goes out first, by the writer."""
        self.outbox.insert(0, rest)
        self.outbox_bytes += len(rest)
        self.wakeup()

    def flush_output(self) -> None:
        """A burst of output is complete: hand it to the socket now rather than at the writer's next turn."""
        if self.outbox:
            self.flush_hook()
            if self.outbox:  # the socket did not take it all (or there is no hook): the writer's turn
                self.wakeup()

    # --- used by the session -----------------------------------------------------------

    def emit(self, raw: bytes, *, wake: bool = True, resent: bool = False) -> None:
        """Queue ``raw``; ``wake=False``: the caller ends its burst with ``flush_output`` (no task switch per message).
        ``resent``: a resent message or gap fill, which goes ahead of anything ``hold`` holds back."""
        if self.closing:
            return
        if self.held is not None and not resent:
            self._hold(raw)
            return
        self.outbox.append(raw)
        self.outbox_bytes += len(raw)
        if self.outbox_bytes > MAX_OUTBOX_BYTES:
            self.close("slow consumer: outbox full")
        if wake and not self.holding:
            self.wakeup()

    def hold(self) -> None:
        """A resend starts: messages sequenced from now on wait until ``release`` (the wire stays in order)."""
        if self.held is None:
            self.held = []
            self.held_bytes = 0

    def release(self) -> None:
        """The resend is done (or abandoned): what it held back follows it."""
        held = self.held
        if held is None:
            return
        self.held = None
        self.held_bytes = 0
        if held:
            self.outbox.extend(held)
            self.outbox_bytes += sum(len(raw) for raw in held)
            if not self.holding:
                self.wakeup()

    def _hold(self, raw: bytes) -> None:
        assert self.held is not None
        self.held.append(raw)
        self.held_bytes += len(raw)
        if self.outbox_bytes + self.held_bytes > MAX_OUTBOX_BYTES:
            self.close("slow consumer: outbox full")

    def close(self, reason: str) -> None:
        if not self.closing:
            self.release()  # a Logout sent while a resend was produced still goes out
            self.closing = True
            self.close_reason = reason
            self.wakeup()
            self.on_close()

    # --- before Logon -------------------------------------------------------------------

    def _pre_logon(self, frame: bytes, now: float) -> None:
        try:
            message = decode(frame)
        except Garbled as exc:
            self.close(f"garbled message before Logon: {exc}")
            return
        if message.get(8) != BEGIN_STRING or message.msg_type != "A":
            self.close("first message is not a FIX.4.4 Logon")
            return
        session = self.acceptor.find(message.get(49), message.get(56))
        if session is None:
            self.close(f"unknown session {message.get(49)!r} -> {message.get(56)!r}")
            return
        if session.connection is not None:
            self.close(f"session {session.name} is already logged on")
            return
        if self.acceptor.stopping:
            self.emit(session.unsequenced_logout(SHUTTING_DOWN))
            self.close(SHUTTING_DOWN)
            return
        try:
            validate(message)
        except SessionReject as exc:
            self.close(f"invalid Logon: {exc.text} ({exc.tag})")
            return
        sent = parse_utc_timestamp(message.get(52) or "")
        if sent is None or abs(self.wall_us() - sent) > MAX_LATENCY_US:
            self.close("Logon SendingTime is not within 120 s of ours")
            return
        if session.config.require_signature and self.acceptor.authenticate is not None:
            problem = self.acceptor.authenticate(message, session.config)
            if problem is not None:
                self.emit(session.unsequenced_logout(problem))
                self.close(problem)
                return
        self.session = session
        session.attach(self, now)
        session.on_logon(message, now)


def _nothing() -> None:
    return None
