"""The FIX 4.4 session layer as a sans-IO state machine (no sockets, no trio, no clock reads).

``connection.Acceptor`` knows the configured sessions; one
``connection.Connection`` per TCP connection turns bytes into messages and,
once a Logon is accepted, hands them to its ``Session`` (this module). A
``Session`` outlives connections: its sequence numbers and sent messages live
in a store (``store.py``). Output is appended to the
connection's ``outbox``; the I/O layer writes it, calls ``poll`` at
``next_deadline()`` and closes the socket when ``closing`` is set.

Behaviour follows QuickFIX's acceptor, byte for byte where the QuickFIX
acceptance suite looks (reference/fix.md §2):

* before Logon, anything but a valid Logon for a configured, idle session
  closes the connection without a reply; a failed signature check answers with
  a Logout naming the problem and changes nothing;
* messages are validated against the dictionary first (session Reject with
  SessionRejectReason); then SendingTime (±120 s) and CompIDs (Reject + Logout);
  then the sequence number: too high queues the message and sends one
  ResendRequest per gap, too low without PossDup logs out, too low with PossDup
  is dropped (or rejected without OrigSendingTime / with OrigSendingTime later
  than SendingTime);
* ResendRequest and Logout skip the sequence checks; a ResendRequest is answered
  from the store (``resend.py``);
* long answers (a ResendRequest, the exchange's OrderMassStatusRequest) are
  ``Backlog`` jobs: one slice (``SLICE_MESSAGES`` messages or ``SLICE_BYTES``)
  is produced at once, the rest by ``produce``, which the I/O layer calls each
  time the previous slice is written, so other connections run in between and
  nothing is built for a peer that does not read. At most ``MAX_BACKLOG`` wait
  per session; more are refused. While a resend is produced, newly sequenced
  messages wait behind it (``Connection.hold``), so the wire stays in order;
* Heartbeat after HeartBtInt of silence, TestRequest ``TEST`` after 1.2 x
  HeartBtInt without input, disconnect after 2.4 x; after our own Logout we wait
  2 s for the peer's;
* garbled frames are ignored and consume no sequence number;
* rate limits (``throttle.py``): an application message over the rate consumes
  its MsgSeqNum and goes to ``Application.refuse``; admin messages are never
  refused; a peer far over the rate gets a Logout naming it and is disconnected;
* while the server stops (``Acceptor.log_out_all``) every logged-on session
  gets a Logout "Server shutting down" and a Logon gets only that Logout.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import attrs

from adapters.fix.codec import (
    BEGIN_STRING,
    Field,
    Garbled,
    Message,
    Timestamps,
    decode,
    encode_body,
    frame_message,
    frame_text,
    parse_utc_timestamp,
)
from adapters.fix.dictionary import SessionReject, Validated, validate
from adapters.fix.resend import Resend
from adapters.fix.shapes import ShapeCache
from adapters.fix.store import MemoryStore
from adapters.fix.throttle import Throttle
from engine.config import FIX_BURST_MESSAGES, FIX_MAX_MESSAGES_PER_S

if TYPE_CHECKING:
    from adapters.fix.connection import Connection

log = logging.getLogger("satchel.fix")

LOGOUT_TIMEOUT_S: Final = 2.0
SHUTTING_DOWN: Final = "Server shutting down"
MAX_LATENCY_US: Final = 120_000_000
# Messages that arrive ahead of a gap wait for the resend that fills it: at most MAX_QUEUED of them and
# MAX_QUEUED_BYTES of their frames (past either they are not kept: the peer is asked for them again later).
# A message more than MAX_SEQ_AHEAD past the gap (or past the next expected number) is a broken peer: Logout.
MAX_QUEUED: Final = 10_000
MAX_QUEUED_BYTES: Final = 2 * 1024 * 1024
MAX_SEQ_AHEAD: Final = MAX_QUEUED
# Long answers are produced a slice at a time (``Backlog``), at most MAX_BACKLOG waiting per session.
MAX_BACKLOG: Final = 4
SLICE_MESSAGES: Final = 100
SLICE_BYTES: Final = 64 * 1024
REVERSE_ROUTE: Final = ((115, 128), (116, 129), (144, 145), (128, 115), (129, 116), (145, 144))


@attrs.frozen
class SessionConfig:
    """One FIX session: our CompID, the peer's, and the policies for it."""

    sender_comp_id: str  # ours
    target_comp_id: str  # the peer's
    account_id: int = -1
    heartbeat_min_s: int = 1
    heartbeat_max_s: int = 300
    reset_on_logon: bool = False
    require_signature: bool = False
    drop_copy: bool = False
    cancel_on_disconnect: bool = False
    max_messages_per_s: int = FIX_MAX_MESSAGES_PER_S  # application messages from the peer (``throttle.py``)
    burst_messages: int = FIX_BURST_MESSAGES


class Application(Protocol):
    """What runs behind a session (QuickFIX's ``Application``)."""

    def on_logon(self, session: Session) -> None: ...

    def on_disconnect(self, session: Session) -> None: ...

    def on_message(self, session: Session, message: Message, parts: Validated) -> None: ...

    def refuse(self, session: Session, message: Message, text: str) -> None:
        """Answer an application message over the session's rate limit (``text`` names it), and nothing else."""


Authenticator = Callable[[Message, SessionConfig], str | None]


class Backlog(Protocol):
    """A long answer sent a slice at a time (``Session.add_backlog``)."""

    def step(self, session: Session) -> bool:
        """Send the next slice, stopping when ``session.slice_full(sent)`` says so; True when the answer is complete."""
        ...


class Session:
    """A FIX session's state: sequence numbers (in the store) and the live connection's timers."""

    def __init__(
        self, config: SessionConfig, application: Application, *, store: MemoryStore | None = None,
        wall_us: Callable[[], int], monotonic: Callable[[], float],
    ) -> None:
        self.config = config
        self.application = application
        self.store = store if store is not None else MemoryStore()
        self.wall_us = wall_us
        self.monotonic = monotonic
        self.times = Timestamps()
        self.shapes = ShapeCache()
        self._last_sending_text = ""
        self._last_sending_us: int | None = None
        # the SendingTime last found within MAX_LATENCY_US of the clock, and the read (its time) that found it
        self._accurate_text = ""
        self._accurate_at = float("nan")
        self.name = f"{config.sender_comp_id}->{config.target_comp_id}"
        # the standard header around MsgSeqNum and SendingTime, as ``send_encoded`` writes it (the config is frozen)
        self._our_id = f"\x0149={config.sender_comp_id}\x0152="
        self._their_id = f"\x0156={config.target_comp_id}\x01"
        self.connection: Connection | None = None
        self.throttle = Throttle(config.max_messages_per_s, config.burst_messages)  # outlives connections too
        self._reset_connection_state()

    def _reset_connection_state(self) -> None:
        self.logged_on = False
        self.heartbeat_s = 30.0
        self.last_sent = 0.0
        self.last_received = 0.0
        self.test_requests = 0
        self.logout_deadline: float | None = None
        self.resend_range: tuple[int, int] | None = None
        self.queue: dict[int, Message | None] = {}
        self.queued_bytes = 0
        self.backlog: deque[Backlog] = deque()
        # the SendingTime of the burst of reports being queued (``queue_report``); "" between bursts
        self._burst_stamp = ""

    # --- connection binding ------------------------------------------------------------

    def attach(self, connection: Connection, now: float) -> None:
        self.connection = connection
        self._reset_connection_state()
        self.last_sent = self.last_received = now

    def detach(self) -> None:
        was_logged_on = self.logged_on
        self.connection = None
        self._reset_connection_state()
        self.store.flush()
        if was_logged_on:
            self.application.on_disconnect(self)

    def _close(self, reason: str) -> None:
        if self.connection is not None:
            self.connection.close(reason)

    # --- logon ---------------------------------------------------------------------------

    def on_logon(self, message: Message, now: float) -> None:
        heartbeat = int(message.get(108) or "0")
        config = self.config
        if not config.heartbeat_min_s <= heartbeat <= config.heartbeat_max_s:
            assert self.connection is not None
            self.connection.emit(self.unsequenced_logout(
                f"HeartBtInt must be between {config.heartbeat_min_s} and {config.heartbeat_max_s} seconds"))
            self._close("HeartBtInt out of bounds")
            return
        reset_requested = message.get(141) == "Y"
        if config.reset_on_logon or reset_requested:
            self.store.reset()
            self._drop_backlog()
        seq = message.seq_num()
        if seq < self.store.next_target:
            self._too_low_logout(seq)
            return
        self.logged_on = True
        self.heartbeat_s = float(heartbeat)
        body: list[Field] = [(98, "0"), (108, str(heartbeat))]
        if reset_requested:
            body.append((141, "Y"))
        self.send("A", body)
        if seq > self.store.next_target and not reset_requested:
            self.queue[seq] = None
            self._request_resend(seq)
        else:
            self.store.next_target = seq + 1
        self.application.on_logon(self)

    def unsequenced_logout(self, text: str) -> bytes:
        """A Logout sent before the session is established: it does not touch the store."""
        header = [(34, str(self.store.next_sender)), (49, self.config.sender_comp_id),
                  (52, self.times.millis(self.wall_us())), (56, self.config.target_comp_id)]
        return frame_message("5", header, encode_body([(58, text)]))

    # --- inbound -----------------------------------------------------------------------------

    def on_frame(self, frame: bytes, now: float, *, unshaped: bool = False) -> None:
        """A frame cut from the read: decoded by a compiled shape if one matches it, else field by field;
        ``unshaped``: the compiled shapes are known not to match it (``Connection`` tried them)."""
        if not self.throttle.admit(now):
            self._flood()
            return
        known = None if unshaped else self.shapes.decode(frame)
        if known is not None:  # a familiar shape: decoded and validated by one match (shapes.py)
            self._process(known[0], now, known[1])
        else:
            try:
                message = decode(frame)
            except Garbled:
                return  # ignored; consumes no sequence number (the gap is found by the next message)
            self._process(message, now)
        if self.queue:
            self._drain_queue(now)

    def on_matched(self, message: Message, parts: Validated, now: float) -> None:
        """``on_frame`` for a frame a compiled shape matched where it starts in the read (``Connection``)."""
        if not self.throttle.admit(now):
            self._flood()
            return
        self._process(message, now, parts)
        if self.queue:
            self._drain_queue(now)

    def _drain_queue(self, now: float) -> None:
        while self.queue and self.connection is not None and not self.connection.closing:
            expected = self.store.next_target
            for stale in [seq for seq in self.queue if seq < expected]:
                self._unqueue(stale)
            if expected not in self.queue:
                return
            queued = self._unqueue(expected)
            if queued is None or queued.msg_type in ("A", "2"):
                self.store.next_target = expected + 1
            else:
                self._process(queued, now)

    def _unqueue(self, seq: int) -> Message | None:
        queued = self.queue.pop(seq)
        if queued is not None:
            self.queued_bytes -= len(queued.raw)
        return queued

    def _clear_queue(self) -> None:
        self.queue.clear()
        self.queued_bytes = 0

    def _process(self, message: Message, now: float, parts: Validated | None = None) -> None:
        """``parts``: the message is already validated (a compiled shape matched it)."""
        msg_type = message.msg_type
        if parts is None:
            if message.get(8) != BEGIN_STRING:
                if msg_type == "5":
                    self._on_logout(message, now)
                    return
                self.logout("Incorrect BeginString", now)
                self.store.next_target += 1
                return
            try:
                parts = validate(message)
            except SessionReject as exc:
                self.reject(message, exc.reason, exc.tag, exc.text)
                return
            self.shapes.learn(message, parts)
        handler = _ADMIN_HANDLERS.get(msg_type)
        if handler is not None:
            handler(self, message, now)
            return
        if self._verify(message, now, True, True):
            self.store.next_target += 1
            try:
                if self.throttle.take():
                    self.application.on_message(self, message, parts)
                else:
                    self.application.refuse(self, message, self.throttle.refusal_text)
            except Exception:  # a bug in the application must not take the acceptor down
                log.exception("FIX application failed on %s from %s", msg_type, self.name)
                self.business_reject(message, 0, "Internal error processing the message")

    def _sending_time(self, text: str) -> int | None:
        """``parse_utc_timestamp``, remembered for the next message (a burst shares its millisecond)."""
        sent = parse_utc_timestamp(text)
        self._last_sending_text, self._last_sending_us = text, sent
        return sent

    def _verify(self, message: Message, now: float, check_high: bool, check_low: bool) -> bool:
        """QuickFIX's ``Session::verify``: time, CompIDs, then the sequence number."""
        get = message.get
        text = get(52, "")
        if text != self._accurate_text or now != self._accurate_at:  # the messages of a read share a verdict
            sent = self._last_sending_us if text == self._last_sending_text else self._sending_time(text)
            if sent is None or abs(self.wall_us() - sent) > MAX_LATENCY_US:
                self.reject(message, 10, None, "SendingTime accuracy problem")
                self.logout(None, now)
                return False
            self._accurate_text, self._accurate_at = text, now
        config = self.config
        if get(49) != config.target_comp_id or get(56) != config.sender_comp_id:
            self.reject(message, 9, None, "CompID problem")
            self.logout(None, now)
            return False
        value = get(34, "")  # ``message.seq_num()``, inlined: once per message
        seq = int(value) if value.isdigit() and value.isascii() else 0
        expected = self.store.next_target
        if check_high and seq > expected:
            self._too_high(message, seq, expected)
            return False
        if check_low and seq < expected:
            self._too_low(message, seq, now)
            return False
        if (check_high or check_low) and self.resend_range is not None and seq >= self.resend_range[1]:
            self.resend_range = None
        self.last_received = now
        self.test_requests = 0
        return True

    def _too_high(self, message: Message, seq: int, expected: int) -> None:
        """Queue ``message`` for after the gap (within the bounds) and ask for the gap once."""
        requested = self.resend_range
        edge = expected if requested is None else max(expected, requested[1])
        if seq - edge > MAX_SEQ_AHEAD:
            text = (f"MsgSeqNum too high, expecting {expected} but received {seq}: "
                    f"more than {MAX_SEQ_AHEAD} past what a resend can fill")
            self.send("5", [(58, text)])
            self._close(text)
            return
        size = len(message.raw)
        if len(self.queue) < MAX_QUEUED and self.queued_bytes + size <= MAX_QUEUED_BYTES and seq not in self.queue:
            self.queue[seq] = message
            self.queued_bytes += size
        if requested is None or seq < requested[0]:
            self._request_resend(seq)

    def _too_low(self, message: Message, seq: int, now: float) -> None:
        if message.get(43) != "Y":
            self._too_low_logout(seq)
            return
        if message.msg_type == "4":
            return
        original = message.get(122)
        if original is None:
            self.reject(message, 1, 122, "Required tag missing")
            return
        original_us = parse_utc_timestamp(original)
        sent_us = parse_utc_timestamp(message.get(52) or "")
        if original_us is None or sent_us is None or original_us > sent_us:
            self.reject(message, 10, None, "SendingTime accuracy problem")
            self.logout(None, now)

    def _flood(self) -> None:
        """The peer emptied the rate limit's ceiling: Logout naming the limit, and disconnect (``throttle.py``)."""
        text = self.throttle.flood_text
        log.warning("FIX session %s: %s", self.name, text)
        self.send("5", [(58, text)])
        self._close(text)

    def _too_low_logout(self, seq: int) -> None:
        text = f"MsgSeqNum too low, expecting {self.store.next_target} but received {seq}"
        self.send("5", [(58, text)])
        self._close(text)

    def _request_resend(self, seq: int) -> None:
        begin = self.store.next_target
        self.resend_range = (begin, seq - 1)
        self.send("2", [(7, str(begin)), (16, "0")])

    def _advance(self, message: Message) -> None:
        if message.seq_num() == self.store.next_target:
            self.store.next_target += 1

    # --- admin messages -------------------------------------------------------------------------

    def _on_heartbeat(self, message: Message, now: float) -> None:
        if self._verify(message, now, True, True):
            self._advance(message)

    def _on_test_request(self, message: Message, now: float) -> None:
        if self._verify(message, now, True, True):
            self.send("0", [(112, message.get(112) or "")])
            self._advance(message)

    def _on_resend_request(self, message: Message, now: float) -> None:
        if not self._verify(message, now, False, False):
            return
        begin = int(message.get(7) or "0")
        end = int(message.get(16) or "0")
        self._resend(message, max(begin, 1), end)
        self._advance(message)

    def _on_reject(self, message: Message, now: float) -> None:
        if self._verify(message, now, True, True):
            self._advance(message)

    def _on_sequence_reset(self, message: Message, now: float) -> None:
        gap_fill = message.get(123) == "Y"
        if not self._verify(message, now, gap_fill, gap_fill):
            return
        new_seq = int(message.get(36) or "0")
        if new_seq > self.store.next_target:
            self.store.next_target = new_seq
        elif new_seq < self.store.next_target:
            self.reject(message, 5, None, "Value is incorrect (out of range) for this tag")

    def _on_logout(self, message: Message, now: float) -> None:
        if not self._verify(message, now, False, False):
            return
        if self.logout_deadline is None:
            self.send("5", [])
        self._advance(message)
        self._close("Logout")

    def _on_logon(self, message: Message, now: float) -> None:
        if message.get(141) != "Y":
            self._close("Logon on an established session")
            return
        self.store.reset()
        self._clear_queue()
        self._drop_backlog()
        self.resend_range = None
        self.send("A", [(98, "0"), (108, message.get(108) or "30"), (141, "Y")])
        self.store.next_target = message.seq_num() + 1
        self.last_received = now

    # --- outbound ------------------------------------------------------------------------------

    def send(self, msg_type: str, body: list[Field], extra_header: list[tuple[int, str]] | None = None) -> int:
        """Sequence, stamp, store and emit one message; returns its MsgSeqNum."""
        return self.send_encoded(msg_type, encode_body(body), extra_header)

    def send_encoded(self, msg_type: str, body: bytes, extra_header: list[tuple[int, str]] | None = None) -> int:
        """``send`` of a body already encoded."""
        store = self.store
        seq = store.next_sender
        stamp = self.times.millis(self.wall_us())
        if self._burst_stamp:  # within a burst of reports: the rest of it is not stamped earlier than this
            self._burst_stamp = stamp
        if extra_header:
            header = [(34, str(seq)), (49, self.config.sender_comp_id), (52, stamp), (56, self.config.target_comp_id),
                      *extra_header]
            raw = frame_message(msg_type, header, body)
        else:  # the common case: the standard header is already in tag order
            raw = frame_text(f"35={msg_type}\x0134={seq}{self._our_id}{stamp}{self._their_id}", body)
        store.record_sent(seq, None if msg_type in _ADMIN_TYPES else raw)
        connection = self.connection
        if connection is not None:
            connection.emit(raw)
            self.last_sent = self.monotonic()
        return seq

    def queue_report(self, body: bytes) -> int:
        """Sequence, store and queue an ExecutionReport (35=8) of a burst the caller ends with ``flush_output``.

        The burst leaves in one write, so its reports are queued without a wake-up each and share one clock
        read: the SendingTime of its first report (a message sent in between renews it, so SendingTime never
        goes back along MsgSeqNum). A burst is the reports of one durable batch and ends with the batch's
        delivery or, at the latest, with the publisher's batch: the shared stamp is older than each report's
        own by at most the burst's duration. Not connected, each report is stamped on its own: it waits in
        the store for a ResendRequest, which gives that stamp as OrigSendingTime. Nothing is deferred: each
        report takes its MsgSeqNum and its place in the output at once, as with ``send_encoded``.
        """
        store = self.store
        seq = store.next_sender
        connection = self.connection
        if connection is None:
            stamp = self.times.millis(self.wall_us())
        else:
            stamp = self._burst_stamp
            if not stamp:
                stamp = self._burst_stamp = self.times.millis(self.wall_us())
        raw = frame_text(f"35=8\x0134={seq}{self._our_id}{stamp}{self._their_id}", body)
        store.record_sent(seq, raw)
        if connection is not None:
            connection.emit(raw, wake=False)
        return seq

    def reject(self, message: Message, reason: int, tag: int | None, text: str) -> None:
        """Session-level Reject (35=3) for ``message``."""
        body: list[Field] = []
        ref_seq = message.get(34)
        if ref_seq:
            body.append((45, ref_seq))
        msg_type = message.msg_type
        if msg_type:
            body.append((372, msg_type))
        body.append((373, str(reason)))
        if tag is not None:
            body.append((371, str(tag)))
        body.append((58, text))
        if msg_type not in ("A", "4") and message.seq_num() == self.store.next_target:
            self.store.next_target += 1
        self.send("3", body, reverse_route(message))

    def business_reject(self, message: Message, reason: int, text: str, ref_id: str | None = None) -> None:
        """BusinessMessageReject (35=j) for an application message."""
        body: list[Field] = [(45, message.get(34) or "0"), (372, message.msg_type), (380, str(reason)), (58, text)]
        if ref_id:
            body.append((379, ref_id))
        self.send("j", body, reverse_route(message))

    def logout(self, text: str | None, now: float) -> None:
        """Start a Logout we initiate: wait up to 2 s for the peer's Logout, then disconnect."""
        if self.logout_deadline is not None:
            return
        self.send("5", [(58, text)] if text else [])
        self.logout_deadline = now + LOGOUT_TIMEOUT_S

    def _resend(self, message: Message, begin: int, end: int) -> None:
        if not self.add_backlog(Resend(begin, end)):
            self.reject(message, 99, None, f"ResendRequest refused: {MAX_BACKLOG} long answers are still being sent")

    # --- long answers ------------------------------------------------------------------------------

    def add_backlog(self, job: Backlog) -> bool:
        """Start ``job`` (its first slice now, if nothing is ahead of it); False when ``MAX_BACKLOG`` are waiting."""
        backlog = self.backlog
        if len(backlog) >= MAX_BACKLOG:
            return False
        backlog.append(job)
        if len(backlog) == 1:
            self.produce()
        connection = self.connection
        if backlog and connection is not None and not connection.holding:
            connection.wakeup()  # the writer produces the rest
        return True

    def produce(self) -> None:
        """The next slice of the oldest long answer (the I/O layer calls this once the last slice is written)."""
        backlog = self.backlog
        connection = self.connection
        if connection is None or connection.closing:
            self._drop_backlog()
            return
        if backlog and backlog[0].step(self):
            backlog.popleft()

    def slice_full(self, sent: int) -> bool:
        """Whether a slice that has sent ``sent`` messages must stop (the rest waits for the socket to take it)."""
        connection = self.connection
        return (connection is None or connection.closing or sent >= SLICE_MESSAGES
                or connection.outbox_bytes >= SLICE_BYTES)

    def _drop_backlog(self) -> None:
        self.backlog.clear()
        if self.connection is not None:
            self.connection.release()

    def flush_output(self) -> None:
        """See ``Connection.flush_output``; not connected, the burst's messages (kept for a resend) reach the
        store's file now, as no write to a socket will flush it."""
        if self.connection is not None:
            if self._burst_stamp:  # the burst ends: ``last_sent`` is set once for it, the next burst reads the clock
                self._burst_stamp = ""
                self.last_sent = self.monotonic()
            self.connection.flush_output()
        else:
            self.store.flush()

    # --- timers -----------------------------------------------------------------------------------

    def poll(self, now: float) -> None:
        if not self.logged_on:
            return
        if self.logout_deadline is not None and now >= self.logout_deadline:
            self._close("no Logout reply")
            return
        heartbeat = self.heartbeat_s
        # the same sums as next_deadline(), so a wake-up at exactly that instant acts (floats)
        if now >= self.last_received + 2.4 * heartbeat:
            self._close("timed out waiting for heartbeat")
        elif now >= self.last_received + 1.2 * (self.test_requests + 1) * heartbeat:
            self.send("1", [(112, "TEST")])
            self.test_requests += 1
        elif self.test_requests == 0 and now >= self.last_sent + heartbeat:
            self.send("0", [])

    def next_deadline(self) -> float:
        if not self.logged_on:
            return float("inf")
        heartbeat = self.heartbeat_s
        deadlines = [self.last_received + 2.4 * heartbeat,
                     self.last_received + 1.2 * (self.test_requests + 1) * heartbeat]
        if self.test_requests == 0:
            deadlines.append(self.last_sent + heartbeat)
        if self.logout_deadline is not None:
            deadlines.append(self.logout_deadline)
        return min(deadlines)


def reverse_route(message: Message) -> list[tuple[int, str]]:
    """OnBehalfOf* <-> DeliverTo* for a reply, skipping empty values (QuickFIX ``reverseRoute``)."""
    out = []
    for source, target in REVERSE_ROUTE:
        value = message.get(source)
        if value:
            out.append((target, value))
    return out


_ADMIN_TYPES: Final = frozenset({"0", "1", "2", "3", "4", "5", "A"})
_ADMIN_HANDLERS: Final[dict[str, Callable[[Session, Message, float], None]]] = {
    "0": Session._on_heartbeat,
    "1": Session._on_test_request,
    "2": Session._on_resend_request,
    "3": Session._on_reject,
    "4": Session._on_sequence_reset,
    "5": Session._on_logout,
    "A": Session._on_logon,
}
