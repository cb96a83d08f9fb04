"""Session layer over real TCP: garbage, bad frames, wrong CompIDs, gaps, persisted sequence numbers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
import trio.testing

from adapters.fix.codec import Framer, Message, Timestamps, decode, encode_body, frame_message
from adapters.fix.connection import LOGON_TIMEOUT_S, Acceptor, Connection
from adapters.fix.echo import EchoApplication
from adapters.fix.server import FixServer, wall_clock_us
from adapters.fix.session import (
    MAX_BACKLOG,
    MAX_QUEUED_BYTES,
    MAX_SEQ_AHEAD,
    SLICE_MESSAGES,
    Session,
    SessionConfig,
)
from adapters.fix.store import FileStore
from tests.adapters.fix.client import RawClient

pytestmark = pytest.mark.usefixtures("_close_clients")


async def start(nursery: trio.Nursery, store_dir: Path | None = None, reset: bool = False) -> tuple[str, int]:
    app = EchoApplication()
    config = SessionConfig("ISLD", "TW44", reset_on_logon=reset)
    store = FileStore(store_dir / "ISLD-TW44.log") if store_dir is not None else None
    session = Session(config, app, store=store, wall_us=wall_clock_us, monotonic=trio.current_time)
    server = FixServer(Acceptor([session]), "127.0.0.1", 0)
    address: tuple[str, int] = await nursery.start(server.serve)
    return address


async def test_garbage_before_logon_closes_and_the_acceptor_keeps_serving(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        bad = await RawClient.connect(address)
        await bad.send_raw(b"\x00\xffGET / HTTP/1.1\r\n\r\n8=FIX.4.4\x019=abc\x01")
        await bad.send_raw(b"8=FIX.4.4\x019=5\x0135=A\x0110=000\x01")
        assert await bad.read() is None
        client = await RawClient.connect(address)
        reply = await client.logon()
        assert reply.get(34) == "1" and reply.get(108) == "30"


async def test_bad_checksum_and_bad_body_length_are_ignored_and_consume_no_sequence_number(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        client = await RawClient.connect(address)
        await client.logon()
        good = client.build("1", [(112, "A")])
        bad_checksum = good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)
        await client.send_raw(bad_checksum)
        length_at = good.index(b"\x019=") + 3
        bad_length = good[:length_at] + b"5" + good[good.index(b"\x01", length_at):]
        await client.send_raw(bad_length)
        await client.send("1", [(112, "B")], seq=2)
        heartbeat = await client.expect("0")
        assert heartbeat.get(112) == "B" and heartbeat.get(34) == "2"


async def test_wrong_comp_id_after_logon_is_rejected_then_logged_out(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        client = await RawClient.connect(address)
        await client.logon()
        client.sender = "EVIL"
        await client.send("0")
        rejected = await client.expect("3")
        assert (rejected.get(373), rejected.get(58)) == ("9", "CompID problem")
        await client.expect("5")
        assert await client.read() is None  # no Logout reply from us within 2 s: disconnected


async def test_unknown_comp_ids_at_logon_disconnect_without_reply(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        client = await RawClient.connect(address, sender="NOBODY")
        await client.send("A", [(98, "0"), (108, "30")])
        assert await client.read() is None


async def test_sequence_gap_is_resent_and_queued_messages_processed_in_order(nursery: trio.Nursery) -> None:
    address = await start(nursery, reset=True)
    with trio.fail_after(10):
        client = await RawClient.connect(address)
        await client.logon()
        await client.send("1", [(112, "later")], seq=4)
        resend = await client.expect("2")
        assert (resend.get(7), resend.get(16)) == ("2", "0")
        await client.send("1", [(112, "first")], seq=2, header=[])
        await client.send("0", seq=3)
        assert (await client.expect("0")).get(112) == "first"
        assert (await client.expect("0")).get(112) == "later"


async def test_sequence_numbers_persist_across_reconnects_and_restarts(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await start(nursery, tmp_path)
            client = await RawClient.connect(address)
            await client.logon()
            await client.send("1", [(112, "x")])
            await client.expect("0")
            await client.send("5")
            await client.expect("5")
            assert await client.read() is None
            client = await RawClient.connect(address)
            client.seq = 4
            reply = await client.logon()
            assert reply.get(34) == "4"  # logon(1), heartbeat(2), logout(3) went before
            await client.send("5")
            await client.expect("5")
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:  # a new acceptor on the same store: a daemon restart
            address = await start(nursery, tmp_path)
            client = await RawClient.connect(address)
            client.seq = 6
            reply = await client.logon()
            assert reply.get(34) == "6"
            await client.send("2", [(7, "1"), (16, "0")])
            gap = await client.expect("4")
            assert (gap.get(34), gap.get(36), gap.get(123), gap.get(43)) == ("1", "7", "Y", "Y")
            nursery.cancel_scope.cancel()


async def test_silent_peer_gets_heartbeat_test_request_then_disconnect(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    address = await start(nursery, reset=True)
    client = await RawClient.connect(address)
    await client.logon(heartbeat=5)
    start_time = trio.current_time()
    assert (await client.expect("0", wait_s=60)) is not None
    assert trio.current_time() - start_time == 5
    test_request = await client.expect("1", wait_s=60)
    assert test_request.get(112) == "TEST"
    assert await client.read(wait_s=60) is None
    assert trio.current_time() - start_time == 12


# --- limits: long answers, the out-of-sequence queue, connections before Logon -----------------------------------


def _frame(msg_type: str, seq: int, body: list[tuple[int, str]] | None = None) -> bytes:
    header = [(34, str(seq)), (49, "TW44"), (52, Timestamps().millis(wall_clock_us())), (56, "ISLD")]
    return frame_message(msg_type, header, encode_body(body or []))


def _messages(data: bytes) -> list[Message]:
    framer = Framer()
    framer.feed(data)
    return [decode(frame) for frame in framer.frames()]


def _logged_on() -> tuple[Session, Connection]:
    """A session driven without sockets (the session layer is sans-IO), logged on with HeartBtInt 30."""
    session = Session(SessionConfig("ISLD", "TW44"), EchoApplication(), wall_us=wall_clock_us, monotonic=lambda: 0.0)
    connection = Connection(Acceptor([session]), 0.0, wall_clock_us)
    connection.receive(_frame("A", 1, [(98, "0"), (108, "30")]), 0.0)
    assert [m.msg_type for m in _messages(connection.take_output())] == ["A"]
    return session, connection


async def test_a_resend_over_millions_of_sequence_numbers_is_sliced_and_fills_the_empty_stretch_at_once() -> None:
    """Regression: a ResendRequest was answered in one synchronous call that walked every sequence number of
    the range (and built every frame), stalling every connection for seconds; now one slice is built at once,
    the rest each time the previous slice is written, and what is sent meanwhile follows the resend."""
    session, connection = _logged_on()
    session.store.record_sent(5_000_000, None)  # millions of admin messages before: nothing stored for them
    for n in range(250):
        session.send("B", [(148, f"news {n}")])
    connection.take_output()
    started = time.perf_counter()
    connection.receive(_frame("2", 2, [(7, "1"), (16, "0")]) + _frame("1", 3, [(112, "during")]), 0.0)
    assert time.perf_counter() - started < 0.5
    first = _messages(connection.take_output())
    assert len(first) == SLICE_MESSAGES  # one gap fill and 99 news; nothing else yet
    assert (first[0].msg_type, first[0].get(34), first[0].get(36), first[0].get(123)) == ("4", "1", "5000001", "Y")
    answer = first
    while connection.producing():
        connection.produce()
        answer += _messages(connection.take_output())
    assert [m.get(34) for m in answer[1:251]] == [str(5_000_001 + n) for n in range(250)]
    assert all(m.get(43) == "Y" for m in answer[:251])
    heartbeat = answer[251]  # the reply to the TestRequest that came during the resend: after it, in order
    assert (heartbeat.msg_type, heartbeat.get(112), heartbeat.get(34)) == ("0", "during", "5000251")
    assert len(answer) == 252


async def test_a_resend_stops_when_the_connection_closes_and_more_than_four_waiting_are_refused() -> None:
    session, connection = _logged_on()
    for n in range(1000):
        session.send("B", [(148, f"news {n}")])
    connection.take_output()
    requests = b"".join(_frame("2", seq, [(7, "1"), (16, "0")]) for seq in range(2, 2 + MAX_BACKLOG + 1))
    connection.receive(requests, 0.0)
    assert len(session.backlog) == MAX_BACKLOG
    connection.close("peer gone")
    assert not connection.producing()
    out = _messages(connection.take_output())  # the first slice, then what waited behind the resend
    assert len(out) == SLICE_MESSAGES + 1
    refused = out[-1]
    assert (refused.msg_type, refused.get(45), refused.get(373)) == ("3", str(2 + MAX_BACKLOG), "99")
    assert refused.get(58) == f"ResendRequest refused: {MAX_BACKLOG} long answers are still being sent"
    connection.produce()
    assert connection.outbox == [] and not session.backlog  # nothing more is built for a closed connection


async def test_messages_ahead_of_a_gap_are_queued_within_a_byte_bound() -> None:
    """Regression: 10,000 messages of 64 KB each could wait ahead of a gap (1.2 GB); now at most
    MAX_QUEUED_BYTES of frames wait, and the rest is asked for again once the gap is filled."""
    session, connection = _logged_on()
    frames = [_frame("1", seq, [(112, f"{seq:06d}" + "x" * 60_000)]) for seq in range(3, 103)]
    connection.receive(b"".join(frames), 0.0)
    kept = MAX_QUEUED_BYTES // len(frames[0])
    assert len(session.queue) == kept and session.queued_bytes <= MAX_QUEUED_BYTES
    assert [(m.msg_type, m.get(7)) for m in _messages(connection.take_output())] == [("2", "2")]
    connection.receive(_frame("4", 2, [(123, "Y"), (36, "3")]), 0.0)
    echoed = [m.get(112)[:6] for m in _messages(connection.take_output()) if m.msg_type == "0"]  # type: ignore[index]
    assert echoed == [f"{seq:06d}" for seq in range(3, 3 + kept)]
    assert session.store.next_target == 3 + kept and not session.queue and session.queued_bytes == 0
    connection.receive(_frame("0", 103), 0.0)
    assert [(m.msg_type, m.get(7)) for m in _messages(connection.take_output())] == [("2", str(3 + kept))]


async def test_a_message_further_ahead_than_a_resend_can_fill_logs_out() -> None:
    session, connection = _logged_on()
    connection.receive(_frame("0", 2 + MAX_SEQ_AHEAD), 0.0)
    assert [(m.msg_type, m.get(7)) for m in _messages(connection.take_output())] == [("2", "2")]
    connection.receive(_frame("0", 3 + 2 * MAX_SEQ_AHEAD), 0.0)
    logout = _messages(connection.take_output())
    assert [m.msg_type for m in logout] == ["5"]
    assert logout[0].get(58) == (f"MsgSeqNum too high, expecting 2 but received {3 + 2 * MAX_SEQ_AHEAD}: "
                                 f"more than {MAX_SEQ_AHEAD} past what a resend can fill")
    assert connection.closing and session.store.next_target == 2


async def test_a_connection_that_sends_no_logon_is_closed_after_3_s(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    address = await start(nursery, reset=True)
    client = await RawClient.connect(address)
    opened = trio.current_time()
    assert await client.read(wait_s=60) is None
    assert trio.current_time() - opened == LOGON_TIMEOUT_S == 3.0


async def test_idle_connections_before_logon_cannot_keep_a_session_from_logging_on(nursery: trio.Nursery) -> None:
    """Regression: connections that never log on held every slot, so a configured session's Logon was closed
    unanswered; when the pre-logon slots are all taken the oldest idle connection now makes room."""
    session = Session(SessionConfig("ISLD", "TW44", reset_on_logon=True), EchoApplication(),
                      wall_us=wall_clock_us, monotonic=trio.current_time)
    server = FixServer(Acceptor([session]), "127.0.0.1", 0, max_pre_logon=4)
    address = await nursery.start(server.serve)
    with trio.fail_after(5):
        idle = [await RawClient.connect(address) for _ in range(4)]
        await trio.sleep(0.1)
        client = await RawClient.connect(address)
        assert (await client.logon()).get(34) == "1"
        assert await idle[0].read() is None  # the oldest idle one made room
        await client.send("1", [(112, "still here")])
        assert (await client.expect("0")).get(112) == "still here"


class _Clock:
    """A wall clock a test moves by hand (microseconds since the epoch)."""

    def __init__(self) -> None:
        self.us = wall_clock_us()

    def __call__(self) -> int:
        return self.us


def _logged_on_at(clock: _Clock) -> tuple[Session, Connection]:
    """``_logged_on`` with a wall clock the test moves."""
    session = Session(SessionConfig("ISLD", "TW44"), EchoApplication(), wall_us=clock, monotonic=lambda: 0.0)
    connection = Connection(Acceptor([session]), 0.0, clock)
    connection.receive(_frame("A", 1, [(98, "0"), (108, "30")]), 0.0)
    connection.take_output()
    return session, connection


def _report(name: str) -> bytes:
    return encode_body([(17, name), (150, "0")])


async def test_a_burst_of_reports_shares_one_sendingtime_and_keeps_its_place_among_other_messages() -> None:
    """``queue_report`` reads the clock once per burst; every message still takes its MsgSeqNum and its place
    on the wire when it is sent, and SendingTime never goes back along MsgSeqNum."""
    clock = _Clock()
    session, connection = _logged_on_at(clock)
    start = clock.us
    session.queue_report(_report("a"))
    clock.us += 5_000
    session.queue_report(_report("b"))  # same burst: the first report's stamp
    clock.us += 5_000
    session.send("0", [])  # sent in between (a reject or heartbeat would be): stamped now, and renews the burst's
    clock.us += 5_000
    session.queue_report(_report("c"))
    session.flush_output()  # the burst ends
    clock.us += 5_000
    session.queue_report(_report("d"))  # a new burst reads the clock
    session.flush_output()
    out = _messages(connection.take_output())
    assert [(m.msg_type, m.get(17), m.get(34)) for m in out] == [
        ("8", "a", "2"), ("8", "b", "3"), ("0", None, "4"), ("8", "c", "5"), ("8", "d", "6")]
    stamp = Timestamps()
    assert [m.get(52) for m in out] == [stamp.millis(start + dt) for dt in (0, 0, 10_000, 10_000, 20_000)]
    assert session.store.get(5) == out[3].raw  # stored as sent, for a resend


async def test_a_burst_stamp_does_not_outlive_its_connection() -> None:
    """A burst cut short by a disconnect (no ``flush_output``) leaves no stamp for the next connection's reports;
    a report queued while nobody is connected is stamped on its own (a resend gives it as OrigSendingTime)."""
    clock = _Clock()
    session, connection = _logged_on_at(clock)
    session.queue_report(_report("a"))
    connection.disconnected()
    clock.us += 1_000_000
    session.queue_report(_report("b"))
    clock.us += 1_000_000
    session.queue_report(_report("c"))
    stored = [decode(session.store.get(seq) or b"") for seq in (3, 4)]
    stamp = Timestamps()
    assert [m.get(52) for m in stored] == [stamp.millis(clock.us - 1_000_000), stamp.millis(clock.us)]
    clock.us += 1_000_000
    connection = Connection(Acceptor([session]), 0.0, clock)
    connection.receive(_frame("A", 2, [(98, "0"), (108, "30")]), 0.0)
    session.queue_report(_report("d"))
    session.flush_output()
    logon, report = _messages(connection.take_output())
    assert (logon.msg_type, report.get(17), report.get(34)) == ("A", "d", "6")
    assert report.get(52) == logon.get(52) == stamp.millis(clock.us)


async def test_reports_queued_while_a_resend_is_produced_follow_it_in_sequence_order() -> None:
    """A burst that starts while a ResendRequest is answered waits behind the resend (``Connection.hold``),
    interleaved with other messages exactly as they were sequenced."""
    clock = _Clock()
    session, connection = _logged_on_at(clock)
    for n in range(150):
        session.queue_report(_report(f"old{n}"))
    session.flush_output()
    connection.take_output()
    connection.receive(_frame("2", 2, [(7, "1"), (16, "0")]), 0.0)
    assert connection.producing()
    session.queue_report(_report("new1"))
    session.send("0", [])
    session.queue_report(_report("new2"))
    session.flush_output()
    out = _messages(connection.take_output())
    while connection.producing():
        connection.produce()
        out += _messages(connection.take_output())
    resent, after = out[:151], out[151:]
    assert all(m.get(43) == "Y" for m in resent) and [m.get(17) for m in resent[1:]] == [f"old{n}" for n in range(150)]
    assert [(m.msg_type, m.get(17), m.get(34), m.get(43)) for m in after] == [
        ("8", "new1", "152", None), ("0", None, "153", None), ("8", "new2", "154", None)]
