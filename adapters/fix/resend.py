"""Answering a ResendRequest: the stored messages again, and SequenceReset-GapFill where nothing is stored.

A ``Resend`` is one of the session's long answers (``session.Backlog``),
produced a slice at a time. Its range ends at the last message sent when the
answer starts (EndSeqNo 0, or one past it, means that message). Admin messages
are not stored, so each run of sequence numbers with nothing stored becomes one
GapFill; a message dropped from the store while the answer runs joins the next
GapFill. A resent message keeps its body and the header fields the session does
not write itself, with PossDupFlag=Y and its first SendingTime as
OrigSendingTime. While the answer runs, messages sequenced after it wait
(``Connection.hold``): resent messages and gap fills go out ahead of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from adapters.fix.codec import encode_body, frame_message, split_fields
from adapters.fix.dictionary import HEADER_TAGS, SESSION_HEADER

if TYPE_CHECKING:
    from adapters.fix.session import Session

_HEADER_EXTRA: Final = HEADER_TAGS - SESSION_HEADER  # kept from the stored message's header


class Resend:
    """A ResendRequest being answered: the stored sequence numbers in its range, and how far it has got."""

    __slots__ = ("begin", "cursor", "end", "index", "seqs")

    def __init__(self, begin: int, end: int) -> None:
        self.begin = begin
        self.end = end  # 0: everything sent so far (fixed when the answer starts)
        self.seqs: list[int] | None = None  # the stored messages in the range, once started
        self.index = 0
        self.cursor = begin  # the first sequence number not answered yet

    def step(self, session: Session) -> bool:
        """One slice of the answer; True when it is complete."""
        connection = session.connection
        assert connection is not None  # ``produce`` runs jobs only while connected
        store = session.store
        if self.seqs is None:
            last = store.next_sender - 1
            if self.end == 0 or self.end > last:
                self.end = last
            if self.begin > self.end:
                return True
            self.seqs = store.stored_between(self.begin, self.end)
            connection.hold()  # messages sequenced from now on follow the resent ones
        seqs = self.seqs
        sent = 0
        while self.index < len(seqs):
            if session.slice_full(sent):
                return False
            seq = seqs[self.index]
            self.index += 1
            raw = store.get(seq)
            if raw is None:  # dropped from the store since the answer started: part of the next gap fill
                continue
            if seq > self.cursor:
                _gap_fill(session, self.cursor, seq)
                sent += 1
            _resend_one(session, seq, raw)
            sent += 1
            self.cursor = seq + 1
        if self.cursor <= self.end:
            _gap_fill(session, self.cursor, self.end + 1)
        connection.release()
        return True


def _gap_fill(session: Session, seq: int, new_seq: int) -> None:
    now_text = session.times.millis(session.wall_us())
    header = [(34, str(seq)), (43, "Y"), (49, session.config.sender_comp_id), (52, now_text),
              (56, session.config.target_comp_id), (122, now_text)]
    _emit(session, frame_message("4", header, encode_body([(36, str(new_seq)), (123, "Y")])))


def _resend_one(session: Session, seq: int, raw: bytes) -> None:
    fields = split_fields(raw)
    msg_type = fields[2][1]
    original_time = next((value for tag, value in fields if tag == 52), "")
    header = [(34, str(seq)), (43, "Y"), (49, session.config.sender_comp_id),
              (52, session.times.millis(session.wall_us())), (56, session.config.target_comp_id), (122, original_time)]
    pos = raw.find(b"\x01", raw.find(b"\x0135=") + 1) + 1
    for tag, value in fields[3:-1]:
        if tag not in HEADER_TAGS:
            break
        if tag in _HEADER_EXTRA:
            header.append((tag, value))
        pos = raw.find(b"\x01", raw.find(b"=", pos)) + 1
    body = raw[pos:raw.rfind(b"\x0110=") + 1]
    _emit(session, frame_message(msg_type, header, body))


def _emit(session: Session, raw: bytes) -> None:
    """A resent message or gap fill: it goes out ahead of what ``Connection.hold`` holds."""
    if session.connection is not None:
        session.connection.emit(raw, resent=True)
        session.last_sent = session.monotonic()
