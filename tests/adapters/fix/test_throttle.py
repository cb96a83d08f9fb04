"""Per-session inbound rate limits (adapters/fix/throttle.py): the buckets alone, then over real TCP."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from adapters.fix.codec import Message
from adapters.fix.throttle import FLOOD_FACTOR, Throttle
from tests.adapters.fix.client import RawClient
from tests.adapters.fix.venue import NOW, SOL, FixVenue, fields, order, start_venue

RATE = 2  # messages a second: low, so the time a test takes cannot refill the bucket by a whole message
BURST = 10
REFUSED = "Rate limit: at most 2 messages per second on this session (bursts of 10)"
FLOOD = "Rate limit: more than 8 messages per second on this session, 4 times the limit of 2"
SESSIONS = [{"sender_comp_id": "SATCHEL", "target_comp_id": "SLOW", "account": 1, "heartbeat_min_s": 1,
             "cancel_on_disconnect": True, "max_messages_per_s": RATE, "burst_messages": BURST}]


def test_the_rate_bucket_gives_the_burst_then_the_rate_exactly() -> None:
    throttle = Throttle(3, 5)
    assert [throttle.admit(10.0) and throttle.take() for _ in range(6)] == [True] * 5 + [False]
    assert throttle.admit(10.25) and not throttle.take()  # 0.75 of a message
    assert throttle.admit(10.5) and throttle.take() and not throttle.take()  # 1.5: one, and half of the next
    assert throttle.admit(12.5)
    assert sum(throttle.take() for _ in range(10)) == 5  # 6.5 messages' worth, but at most the burst


def test_the_ceiling_counts_every_message_at_four_times_the_rate_and_burst() -> None:
    throttle = Throttle(3, 5)
    admitted = [throttle.admit(1.0) for _ in range(FLOOD_FACTOR * 5 + 1)]  # session-level messages: no take()
    assert admitted == [True] * (FLOOD_FACTOR * 5) + [False]
    assert throttle.take()  # the rate bucket was not touched by them
    assert not throttle.admit(1.0 + 0.9 / (FLOOD_FACTOR * 3))  # 0.9 of a message back
    assert throttle.admit(1.0 + 1 / (FLOOD_FACTOR * 3) + 1e-6)


async def _venue(nursery: trio.Nursery, tmp_path: Path) -> tuple[FixVenue, int, RawClient]:
    venue = await start_venue(nursery, tmp_path, SESSIONS)
    account = await venue.account(USDC="1000", SOL="10")
    return venue, account, await venue.logon("SLOW", account)


def _exhaust(client: RawClient) -> bytes:
    """``BURST`` resting bids (o0..o9, 10 USDC each) and one NewOrderSingle more ("over"), in one write."""
    return b"".join(client.build("D", order(name, "1", "1", "10")) for name in [*(f"o{n}" for n in range(BURST)), "over"])


async def _acks_and_refusal(client: RawClient) -> dict[str, Message]:
    """The answers to ``_exhaust``, by ClOrdID: the burst acknowledged, "over" refused naming the limit."""
    reports = {m.get(11) or "": m for m in [await client.expect("8") for _ in range(BURST + 1)]}
    assert {name: r.get(150) for name, r in reports.items() if name != "over"} == {f"o{n}": "0" for n in range(BURST)}
    assert fields(reports["over"], 150, 39, 103, 58) == ("8", "8", "99", REFUSED)
    return reports


@pytest.mark.usefixtures("_close_clients")
async def test_a_burst_over_the_limit_gets_each_types_rejection_and_reaches_nothing(
    nursery: trio.Nursery, tmp_path: Path,
) -> None:
    """Every request type past the burst is answered with its own rejection naming the limit, its sequence number
    consumed; the engine sees none of them (no order, cancel, replace, mass cancel or subscription)."""
    with trio.fail_after(20):
        venue, account, client = await _venue(nursery, tmp_path)
        first = client.seq
        burst = _exhaust(client) + b"".join([
            client.build("F", [(41, "o0"), (11, "c0"), (55, SOL), (54, "1"), (60, NOW), (38, "1")]),
            client.build("G", [(41, "o0"), (11, "r0"), (55, SOL), (54, "1"), (60, NOW), (38, "2"), (40, "2"),
                               (44, "11")]),
            client.build("V", [(262, "md"), (263, "1"), (264, "0"), (267, [[(269, "0")]]), (146, [[(55, SOL)]])]),
            client.build("H", [(11, "o1"), (55, SOL), (54, "1")]),
            client.build("x", [(320, "sl"), (559, "4")]),
            client.build("AF", [(584, "ms"), (585, "7")]),
            client.build("q", [(11, "mc"), (530, "7"), (60, NOW)]),
            client.build("E", [(66, "list")]),
        ])
        await client.send_raw(burst)
        reports = await _acks_and_refusal(client)
        # the requests that read order state wait for the orders before them, as they do under the limit
        cancel, replace, market_data, status, securities, mass_status, mass_cancel, other = [
            await client.expect(msg_type) for msg_type in ("9", "9", "Y", "j", "j", "j", "r", "j")]
        order_id = reports["o0"].get(37)
        assert fields(cancel, 11, 41, 37, 39, 434, 102, 58) == ("c0", "o0", order_id, "0", "1", "99", REFUSED)
        assert fields(replace, 11, 41, 37, 39, 434, 102, 58) == ("r0", "o0", order_id, "0", "2", "99", REFUSED)
        assert fields(market_data, 262, 281, 58) == ("md", "2", REFUSED)
        assert fields(mass_cancel, 11, 530, 531, 532, 533, 58) == ("mc", "7", "0", "99", "0", REFUSED)
        rejects = [fields(m, 45, 372, 380, 58) for m in (status, securities, mass_status, other)]
        assert rejects == [(str(first + BURST + n), msg_type, "0", REFUSED)
                           for n, msg_type in ((4, "H"), (5, "x"), (6, "AF"), (8, "E"))]
        await client.send("1", [(112, "after")])
        assert (await client.expect("0")).get(112) == "after"  # every MsgSeqNum was consumed, nothing else came
        await venue.engine.wait_idle()
        resting = venue.engine.open_orders(account)
        # none cancelled or replaced, no other placed: 10 x 1 SOL at 10 USDC (ticks of 0.01, steps of 0.01)
        assert sorted((v.price_ticks, v.qty_steps) for v in resting) == [(1000, 100)] * BURST
        assert venue.engine.venue.balances(account)["USDC"] == {"available": "900", "locked": "100", "staked": "0"}
        exchange = venue.info["application"]
        assert exchange.ids.order_id(account, "over") is None  # the refused order never reached the application
        assert not exchange.market_data.subscribed()


@pytest.mark.usefixtures("_close_clients")
async def test_the_bucket_refills_at_the_rate(nursery: trio.Nursery, tmp_path: Path) -> None:
    """After the burst, RATE more messages a second are accepted, and no more."""
    with trio.fail_after(20):
        _, _, client = await _venue(nursery, tmp_path)
        sent_at = trio.current_time()
        await client.send_raw(_exhaust(client))
        await _acks_and_refusal(client)
        # 1.25 s after the burst was read, give or take how long it took to arrive: RATE x 1.25 = 2.5 messages' worth
        await trio.sleep_until(sent_at + 1.25)
        await client.send_raw(b"".join(client.build("D", order(f"late{n}", "1", "1", "10")) for n in range(RATE + 1)))
        late = {m.get(11): m.get(150) for m in [await client.expect("8") for _ in range(RATE + 1)]}
        assert late == {**{f"late{n}": "0" for n in range(RATE)}, f"late{RATE}": "8"}


@pytest.mark.usefixtures("_close_clients")
async def test_session_messages_are_never_refused(nursery: trio.Nursery, tmp_path: Path) -> None:
    """With the rate bucket empty: TestRequest, Heartbeat, Reject, ResendRequest, SequenceReset and Logout
    all do what they do, and their sequence numbers line up."""
    with trio.fail_after(20):
        venue, _, client = await _venue(nursery, tmp_path)
        await client.send_raw(_exhaust(client))
        await _acks_and_refusal(client)
        skip_to = client.seq + 7
        await client.send_raw(b"".join([
            client.build("1", [(112, "still")]),
            client.build("0"),
            client.build("3", [(45, "2"), (373, "99"), (58, "a reject from the peer")]),
            client.build("2", [(7, "2"), (16, "3")]),  # our acks 2 and 3, resent
            client.build("4", [(123, "Y"), (36, str(skip_to))]),
        ]))
        assert (await client.expect("0")).get(112) == "still"
        resent = [await client.expect("8"), await client.expect("8")]
        assert [(m.get(34), m.get(43)) for m in resent] == [("2", "Y"), ("3", "Y")]
        client.seq = skip_to  # the gap fill moved the acceptor's expected number here
        await client.send("1", [(112, "skipped")])
        assert (await client.expect("0")).get(112) == "skipped"
        session = venue.info["server"].acceptor.find("SLOW", "SATCHEL")
        assert session.store.next_target == client.seq
        await client.send("5")
        assert (await client.expect("5")).get(58) is None  # the peer's Logout is answered, not refused
        assert await client.read() is None


@pytest.mark.usefixtures("_close_clients")
@pytest.mark.parametrize("msg_type", ["0", "D"])
async def test_a_sustained_flood_is_logged_out_naming_the_limit(
    nursery: trio.Nursery, tmp_path: Path, msg_type: str,
) -> None:
    """Session-level messages are not free: a flood of Heartbeats ends like a flood of orders, with a Logout
    once the ceiling (``FLOOD_FACTOR`` x the burst, refilled at ``FLOOD_FACTOR`` x the rate) is empty;
    the account's orders are then cancelled (cancel-on-disconnect)."""
    with trio.fail_after(20):
        venue, account, client = await _venue(nursery, tmp_path)
        await client.send("D", order("rest", "1", "1", "10"))
        await client.expect("8")
        flood = FLOOD_FACTOR * BURST * 3
        bodies = [order(f"f{n}", "1", "1", "10") if msg_type == "D" else [] for n in range(flood)]
        await client.send_raw(b"".join(client.build(msg_type, body) for body in bodies))
        received = []
        while (message := await client.read()) is not None:
            received.append(message)
        assert fields(received[-1], 35, 58) == ("5", FLOOD)
        if msg_type == "D":  # before the Logout: some acknowledged, then refused
            assert {m.get(58) for m in received[:-1] if m.get(150) == "8"} == {REFUSED}
        session = venue.info["server"].acceptor.find("SLOW", "SATCHEL")
        assert session.connection is None
        assert session.store.next_target < client.seq - FLOOD_FACTOR * BURST  # the rest of the flood was dropped
        await trio.sleep(0.2)
        await venue.engine.wait_idle()
        assert venue.engine.open_orders(account) == []
