"""A read is cut, decoded and answered frame by frame, whether compiled shapes match its frames or not.

``Connection`` matches a session's compiled shapes right where each frame starts in the read; every answer must be
the one the frame-by-frame path gives (``Framer.frames``, then the field-by-field decode and validation), which
``frame_by_frame`` below replays with no shapes at all.
"""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.fix.codec import Field, Framer, Message, Overflow, Timestamps, decode, encode_body, frame_message
from adapters.fix.connection import Acceptor, Connection
from adapters.fix.dictionary import Validated
from adapters.fix.echo import EchoApplication
from adapters.fix.session import MAX_LATENCY_US, Session, SessionConfig
from adapters.fix.shapes import ShapeCache

WALL_US = 1_700_000_000_000_000
STAMP = Timestamps().millis(WALL_US)
LOGON = frame_message("A", [(34, "1"), (49, "TW44"), (52, STAMP), (56, "ISLD")], encode_body([(98, "0"), (108, "30")]))


class NoShapes(ShapeCache):
    """Never compiles a shape: every frame takes the field-by-field path."""

    def learn(self, message: Message, parts: Validated) -> None:
        return None


def message(msg_type: str, seq: int, body: list[Field], header: list[tuple[int, str]] | None = None) -> bytes:
    return frame_message(msg_type, [(34, str(seq)), (49, "TW44"), (52, STAMP), (56, "ISLD"), *(header or [])],
                         encode_body(body))


def order(seq: int, **changed: str) -> bytes:
    """A NewOrderSingle; ``changed`` sets fields by name (``price="x"``) or adds ``account``/``poss_dup``."""
    values = {"cl_ord_id": f"c{seq}", "qty": "1", "ord_type": "2", "price": "10", "side": "1", **changed}
    body: list[Field] = [(11, values["cl_ord_id"]), (21, "1"), (38, values["qty"]), (40, values["ord_type"]),
                         (44, values["price"]), (54, values["side"]), (55, "X"), (60, STAMP[:17])]
    if "account" in values:
        body.append((1, values["account"]))
    header = [(43, "Y"), (122, STAMP)] if "poss_dup" in values else None
    return message("D", seq, body, header)


def with_checksum(frame: bytes, checksum: int) -> bytes:
    return frame[:-4] + b"%03d\x01" % checksum


def with_body_length(frame: bytes, change: int) -> bytes:
    """``frame`` with its BodyLength off by ``change`` and a CheckSum that is right for the new bytes."""
    length_end = frame.index(b"\x01", 12)
    changed = frame[:12] + b"%d" % (int(frame[12:length_end]) + change) + frame[length_end:-7]
    return changed + b"10=%03d\x01" % (sum(changed) % 256)


def connect(shapes: bool) -> tuple[Connection, Session]:
    session = Session(SessionConfig("ISLD", "TW44"), EchoApplication(), wall_us=lambda: WALL_US,
                      monotonic=lambda: 0.0)
    if not shapes:
        session.shapes = NoShapes()
    return Connection(Acceptor([session]), 0.0, lambda: WALL_US), session


def frame_by_frame(connection: Connection, data: bytes, now: float) -> None:
    """``Connection.receive`` as it was before shapes were matched in the read: cut every frame, then take each."""
    connection.framer.feed(data)
    try:
        for frame in connection.framer.frames():
            if connection.closing:
                return
            if connection.session is None:
                connection._pre_logon(frame, now)
            else:
                connection.session.on_frame(frame, now)
    except Overflow as exc:
        connection.close(str(exc))


def summary(data: bytes) -> list[tuple[str, str | None]]:
    """(MsgType, the ClOrdID or what the message refers to) of each message in ``data``."""
    framer = Framer()
    framer.feed(data)
    found = [decode(frame) for frame in framer.frames()]
    return [(m.msg_type, m.get(11) or m.get(45) or m.get(7) or m.get(58)) for m in found]


def both(reads: list[bytes], *, compiled: bool = True) -> list[list[tuple[str, str | None]]]:
    """The answers to each read, after checking that the frame-by-frame path sends the same bytes and ends in
    the same state; ``compiled``: check that the orders' shape was compiled (so the fast path was taken)."""
    shaped, session = connect(shapes=True)
    plain, reference = connect(shapes=False)
    out = []
    for data in reads:
        shaped.receive(data, 1.0)
        frame_by_frame(plain, data, 1.0)
        sent = shaped.take_output()
        assert sent == plain.take_output()
        assert (shaped.closing, shaped.close_reason) == (plain.closing, plain.close_reason)
        assert session.store.next_target == reference.store.next_target
        assert session.queue.keys() == reference.queue.keys()
        if not shaped.closing:  # a closing connection drops the rest of its read, partial frame included
            rest = shaped.framer.take()
            assert rest == plain.framer.take()
            shaped.framer.feed(rest)
            plain.framer.feed(rest)
        out.append(summary(sent))
    assert session.shapes.recent or not compiled
    return out


def test_a_read_of_orders_with_a_garbled_one_in_the_middle() -> None:
    """The garbled order is dropped without taking a sequence number, so the next one is ahead: a ResendRequest
    for it, and the orders after it wait (queued) for the gap to be filled."""
    garbled = order(6).replace(b"11=c6", b"11=c7")  # CheckSum no longer right
    reads = [LOGON + order(2) + order(3), order(4) + order(5) + garbled + order(7) + order(8)]
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")], [("D", "c4"), ("D", "c5"), ("2", "6")]]


def test_a_partial_frame_at_the_end_of_a_read_waits_for_the_next_read() -> None:
    fourth = order(4)
    reads = [LOGON + order(2) + order(3), fourth[:50], fourth[50:] + order(5)[:-1], b"\x01"]
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")], [], [("D", "c4")], [("D", "c5")]]


def test_a_matched_frame_then_frames_of_other_shapes_and_invalid_values() -> None:
    reads = [LOGON + order(2) + order(3),
             order(4) + order(5, account="A1") + order(6, side="Z") + message("0", 7, []) + order(8) + b"noise"
             + order(9, price="1" * 300)]
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")],
                           [("D", "c4"), ("D", "c5"), ("3", "6"), ("D", "c8"), ("D", "c9")]]


def test_a_frame_a_shape_matches_with_a_wrong_checksum_or_body_length_is_garbled() -> None:
    """A BodyLength one too long runs into the next frame, which is lost with it (QuickFIX's framing)."""
    four = order(4)
    reads = [LOGON + order(2) + order(3),
             with_checksum(four, (int(four[-4:-1]) + 1) % 256) + four,
             with_body_length(order(5), -1) + order(5) + with_body_length(order(6), 1) + order(7) + order(6)]
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")], [("D", "c4")], [("D", "c5"), ("D", "c6")]]


def test_a_frame_a_shape_matches_with_a_checksum_off_by_256_is_garbled() -> None:
    """The CheckSum is compared as a number below 256: 256 more than the byte sum is wrong, short frame or long."""
    four, five = order(4), order(5, cl_ord_id="c" * 300)
    reads = [LOGON + order(2) + order(3),
             with_checksum(four, int(four[-4:-1]) + 256) + with_checksum(five, int(five[-4:-1]) + 256)
             + with_checksum(five, (int(five[-4:-1]) + 1) % 256) + four]
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")], [("D", "c4")]]


def test_a_frame_longer_than_the_bound_is_dropped_though_a_shape_matches_it() -> None:
    """A BodyLength over MAX_MESSAGE_BYTES is unusable: the framer drops what it read and looks for the next 8=,
    which it finds in the 38=1 of the same frame, so the order after it is swallowed too."""
    reads = [LOGON + order(2) + order(3), order(4, cl_ord_id="c" * 70_000) + order(4) + order(4)]
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")], [("D", "c4")]]


def test_a_frame_that_closes_the_connection_drops_the_rest_of_the_read() -> None:
    reads = [LOGON + order(2) + order(3), order(4) + order(3) + order(5)]
    logout = "MsgSeqNum too low, expecting 5 but received 3"
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")], [("D", "c4"), ("5", logout)]]


def test_sequence_checks_apply_to_matched_frames() -> None:
    """A duplicate marked PossDup is dropped; a gap asks for a resend once, and its fill lets the queue through."""
    reads = [LOGON + order(2) + order(3),
             order(3, poss_dup="Y") + order(4) + order(6) + order(7),
             order(5) + order(8)]
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")], [("D", "c4"), ("2", "5")],
                           [("D", "c5"), ("D", "c6"), ("D", "c7"), ("D", "c8")]]


def test_a_runaway_frame_after_matched_ones_overflows() -> None:
    start = b"8=FIX.4.4\x019=60000\x0135=D\x01"  # its trailer never comes
    reads = [LOGON + order(2) + order(3), order(4) + start, b"x" * 66_000]
    assert both(reads) == [[("A", None), ("D", "c2"), ("D", "c3")], [("D", "c4")], []]
    shaped, _ = connect(shapes=True)
    for data in reads:
        shaped.receive(data, 1.0)
    assert shaped.closing and shaped.close_reason == "no complete FIX message in 65536 bytes"


PIECES = {
    "order": lambda seq: (order(seq), 1),
    "other shape": lambda seq: (order(seq, account="A1"), 1),
    "bad value": lambda seq: (order(seq, ord_type="Q"), 1),
    "heartbeat": lambda seq: (message("0", seq, []), 1),
    "long": lambda seq: (order(seq, cl_ord_id="c" * 300), 1),
    "bad checksum": lambda seq: (with_checksum(order(seq), (int(order(seq)[-4:-1]) + 1) % 256), 0),
    "checksum + 256": lambda seq: (with_checksum(order(seq), int(order(seq)[-4:-1]) + 256), 0),
    "long, bad checksum": lambda seq: (with_checksum(order(seq, cl_ord_id="c" * 300), 0), 0),
    "short length": lambda seq: (with_body_length(order(seq), -1), 0),
    "long length": lambda seq: (with_body_length(order(seq), 1), 0),
    "gap": lambda seq: (order(seq + 1), 2),
    "duplicate": lambda seq: (order(seq - 1, poss_dup="Y"), 0),
    "too low": lambda seq: (order(seq - 1), 0),
    "logout": lambda seq: (message("5", seq, []), 1),
    "noise": lambda seq: (b"8=FIX.4.4\x019=5\x01", 0),
}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(PIECES)), max_size=25), st.lists(st.integers(0, 3000), max_size=6),
       st.integers(0, 255), st.integers(0, 3000))
def test_any_stream_gets_the_answers_of_the_frame_by_frame_path(
    kinds: list[str], cuts: list[int], flip: int, flip_at: int,
) -> None:
    """Orders of one shape (compiled on their second sighting) among frames it must not take, cut into reads at
    arbitrary points, one byte possibly flipped."""
    stream = [LOGON, order(2), order(3)]
    seq = 4
    for kind in kinds:
        frame, advance = PIECES[kind](seq)
        stream.append(frame)
        seq += advance
    data = bytearray(b"".join(stream))
    if flip and flip_at < len(data):
        data[flip_at] ^= flip
    points = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    both([bytes(data[start:end]) for start, end in pairwise(points)], compiled=False)


def test_a_sending_time_is_held_against_the_clock_once_per_read() -> None:
    """The messages of a read share the verdict on their SendingTime; the next read checks it against the clock again."""
    wall = [WALL_US]
    session = Session(SessionConfig("ISLD", "TW44"), EchoApplication(), wall_us=lambda: wall[0],
                      monotonic=lambda: 0.0)
    connection = Connection(Acceptor([session]), 0.0, lambda: wall[0])
    connection.receive(LOGON + order(2) + order(3), 1.0)
    assert summary(connection.take_output()) == [("A", None), ("D", "c2"), ("D", "c3")]
    connection.receive(order(4), 2.0)
    assert summary(connection.take_output()) == [("D", "c4")]
    assert session.shapes.recent  # the order's shape is compiled: these reads took the matched path
    wall[0] += MAX_LATENCY_US + 1_000_000
    connection.receive(order(5), 3.0)
    assert summary(connection.take_output()) == [("3", "5"), ("5", None)]
