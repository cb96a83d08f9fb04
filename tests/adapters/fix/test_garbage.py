"""Hostile input against the sans-IO session layer: nothing raises, nothing is left half-done."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.fix.codec import Framer, Message, Timestamps, decode, encode_body, frame_message
from adapters.fix.connection import Acceptor, Connection
from adapters.fix.echo import EchoApplication
from adapters.fix.session import Session, SessionConfig

WALL_US = 1_700_000_000_000_000
STAMP = Timestamps().millis(WALL_US)


def message(msg_type: str, seq: int, body: list[tuple[int, str]]) -> bytes:
    header = [(34, str(seq)), (49, "TW44"), (52, STAMP), (56, "ISLD")]
    return frame_message(msg_type, header, encode_body(body))


def logged_on() -> tuple[Connection, Session]:
    session = Session(SessionConfig("ISLD", "TW44", reset_on_logon=True), EchoApplication(),
                      wall_us=lambda: WALL_US, monotonic=lambda: 0.0)
    connection = Connection(Acceptor([session]), 0.0, lambda: WALL_US)
    connection.receive(message("A", 1, [(98, "0"), (108, "30")]), 0.0)
    assert connection.session is session and session.logged_on
    connection.take_output()
    return connection, session


VALID = [
    message("1", 2, [(112, "x")]),
    message("D", 2, [(11, "a"), (21, "1"), (38, "1"), (40, "1"), (54, "1"), (55, "X"), (60, STAMP[:17])]),
    message("4", 2, [(36, "5"), (123, "Y")]),
    message("2", 2, [(7, "1"), (16, "0")]),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), st.sampled_from(VALID).flatmap(
    lambda raw: st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)).map(
        lambda cut: raw[:cut[0]] + bytes([cut[1]]) + raw[cut[0] + 1:]))), max_size=8))
def test_garbage_after_logon_never_raises(chunks: list[bytes]) -> None:
    connection, session = logged_on()
    for chunk in chunks:
        connection.receive(chunk, 1.0)
        connection.poll(2.0)
    connection.take_output()
    assert session.store.next_target >= 2 or connection.closing


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_garbage_before_logon_never_raises(data: bytes) -> None:
    session = Session(SessionConfig("ISLD", "TW44"), EchoApplication(), wall_us=lambda: WALL_US, monotonic=lambda: 0.0)
    connection = Connection(Acceptor([session]), 0.0, lambda: WALL_US)
    connection.receive(data, 0.0)
    connection.poll(100.0)
    assert connection.closing or connection.session is None or session.logged_on


def test_a_flood_without_a_message_is_cut_off() -> None:
    connection, _ = logged_on()
    for _ in range(100):
        connection.receive(b"x" * 1000, 1.0)
    assert not connection.closing  # no "8=" at all: nothing is buffered
    connection.receive(b"8=FIX.4.4\x019=" + b"9" * 10, 1.0)
    for _ in range(70):
        connection.receive(b"y" * 1000, 1.0)
    assert connection.closing and "65536" in connection.close_reason


def test_a_slow_consumer_is_disconnected_not_buffered_forever() -> None:
    connection, session = logged_on()
    body = [(58, "x" * 1000)]
    for _ in range(20_000):
        session.send("B", body)
        if connection.closing:
            break
    assert connection.closing and connection.close_reason == "slow consumer: outbox full"
    assert connection.outbox_bytes <= 16 * 1024 * 1024 + 2000


def replies(connection: Connection) -> list[Message]:
    framer = Framer()
    framer.feed(connection.take_output())
    return [decode(frame) for frame in framer.frames()]


def test_a_price_of_60_000_digits_is_rejected_at_once() -> None:
    """Regression: the float format's two digit runs tried every split of a run that fails at its end
    (quadratic), so one such price held the acceptor for seconds, before and after its shape was compiled."""
    connection, session = logged_on()
    order = [(11, "a"), (21, "1"), (38, "1"), (40, "2"), (44, "1"), (54, "1"), (55, "X"), (60, STAMP[:17])]
    long_price = [*order[:4], (44, "1" * 60_000 + "x"), *order[5:]]
    started = time.perf_counter()
    connection.receive(message("D", 2, long_price), 1.0)  # the field-by-field path
    connection.receive(message("D", 3, order) + message("D", 4, order), 1.0)
    assert session.shapes.recent
    connection.receive(message("D", 5, long_price), 1.0)  # a compiled shape tries it first
    assert time.perf_counter() - started < 1.0
    answers = [(m.msg_type, m.get(45), m.get(373), m.get(371)) for m in replies(connection)]
    assert answers == [("3", "2", "6", "44"), ("D", None, None, None), ("D", None, None, None), ("3", "5", "6", "44")]
