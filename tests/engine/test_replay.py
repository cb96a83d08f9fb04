"""Replay's own apply path (``codec.decode_rows`` + ``Venue.replay_rows``) against ``apply``.

Replay applies journal rows without building events; it must leave exactly the
state ``apply_batch(decode_events(payload))`` leaves: every field of every account,
open order, resting order, level and counter, not only the state hash (which skips
zero balances and the level totals), and refuse exactly what ``decode_events`` refuses,
with the same message: ``decode_rows`` decodes with msgspec first and falls back to the
orjson check, so the fallback's edges (ints past int64, unknown enumerated strings, bad
UTF-8) are tested as much as the fast path.
"""

from __future__ import annotations

import random
import sys
from typing import Any

import orjson
import pytest

from engine.codec import CancelledRow, CodecError, PlacedRow, decode_events, decode_rows, encode_events, row_event
from engine.config import DEFAULT, Config, parse_config
from engine.messages import (
    ASK,
    BID,
    FEE_ACCOUNT_ID,
    REJECT_BOTH,
    REJECT_MAKER,
    Deposited,
    Event,
    Fill,
    OrderPlaced,
    PlaceOrder,
    Rejection,
)
from engine.venue import Venue
from tests.engine.helpers import NOW_US, SOL_USDC, cancel, fund, limit, make_venue, market, open_account, place
from tests.engine.test_venue import PLACED, recording, session


def full_state(venue: Venue) -> dict[str, Any]:
    """Every field replay may touch, zero entries, insertion orders and level totals included."""
    accounts = {
        account_id: (
            a.account_id, a.parent_id, a.country, a.category, a.created_us, a.api_keys,
            list(a.balances.items()), list(a.locked.items()), list(a.held.items()), list(a.holds.items()),
            [(i, o.symbol, o.side, o.price_ticks, o.lock, o.client_id, o.asset) for i, o in a.orders.items()],
            list(a.client_ids.items()), sorted(a.pending_client_ids), list(a.net_deposits.items()),
            list(a.reserved.items()),
            [(i, *(getattr(r, s) for s in type(r).__slots__)) for i, r in a.withdrawals.items()],
        )
        for account_id, a in venue.accounts.items()
    }
    markets = {}
    for symbol, m in venue.markets.items():
        book = m.book
        orders = [(o.order_id, o.account_id, o.side, o.price_ticks, o.qty_steps, o.remaining_steps,
                   o.executed_quote, o.client_id, o.post_only, o.stp, o.created_us) for o in book.orders.values()]
        levels = [(side, price, level.steps, list(level))
                  for side, levels_ in ((BID, book.bids), (ASK, book.asks)) for price, level in levels_.items()]
        markets[symbol] = (m.state, m.last_price, m.next_trade_id, orders, levels, list(book.bid_keys),
                           list(book.ask_prices))
    return {
        "accounts": accounts, "markets": markets, "api_keys": list(venue.api_keys.items()),
        "counters": (venue.next_account_id, venue.next_order_id, venue.next_withdrawal_id),
        "withdrawal_owner": list(venue.withdrawal_owner.items()),
    }


def both_ways(log: list[Event], seed: int = 1, config: Config | None = None) -> tuple[Venue, Venue]:
    """The log as journal records of random sizes, replayed through ``apply_batch`` and through rows."""
    rnd = random.Random(seed)
    config = config if config is not None else parse_config(DEFAULT)
    by_events, by_rows = Venue(config), Venue(config)
    i = 0
    while i < len(log):
        payload = encode_events(log[i:i + (size := rnd.randint(1, 9))])
        by_events.apply_batch(decode_events(payload))
        by_rows.replay_rows(decode_rows(payload))
        i += size
    return by_events, by_rows


def test_replay_rows_rebuilds_the_session_field_for_field() -> None:
    venue, log, _ = session()
    for seed in range(5):
        by_events, by_rows = both_ways(log, seed)
        assert full_state(by_rows) == full_state(by_events)
        assert by_rows.state_hash() == venue.state_hash()
        by_rows.check_invariants()


def test_replayed_resting_orders_share_the_values_state_keeps() -> None:
    """Replayed resting orders hold one object per distinct side, STP mode and price, as decoded events give."""
    venue = Venue(parse_config(DEFAULT))
    log = recording(venue)
    a = open_account(venue)
    fund(venue, a, "USDC", "1000")
    place(venue, limit(venue, a, BID, "10", "1"))
    place(venue, limit(venue, a, BID, "10", "2"))
    _, by_rows = both_ways(log)
    first, second = (by_rows.markets[SOL_USDC].book.orders[e.order_id] for e in log if isinstance(e, OrderPlaced))
    for name in ("side", "stp", "price_ticks"):
        assert getattr(first, name) is getattr(second, name), name
    opens = [by_rows.accounts[a].orders[e.order_id] for e in log if isinstance(e, OrderPlaced)]
    assert opens[0].price_ticks is first.price_ticks and opens[0].side is first.side


def test_replay_rows_follows_each_rows_market_when_markets_interleave() -> None:
    """Resting orders of two markets alternate inside records: each lands on its own book and lock."""
    venue = Venue(parse_config(DEFAULT))
    log = recording(venue)
    a, b = open_account(venue), open_account(venue)
    fund(venue, a, "USDC", "100000")
    fund(venue, b, "SOL", "100")
    fund(venue, b, "BTC", "1")
    for i in range(4):
        place(venue, limit(venue, a, BID, f"{90 + i}", "1"))
        place(venue, limit(venue, a, BID, f"{20000 + i}", "0.001", symbol="BTC_USDC"))
        place(venue, limit(venue, b, ASK, f"{30000 + i}", "0.001", symbol="BTC_USDC"))
        place(venue, limit(venue, b, ASK, f"{110 + i}", "1", client_id=i))
    for seed in range(3):
        by_events, by_rows = both_ways(log, seed)
        assert full_state(by_rows) == full_state(by_events)
        assert by_rows.state_hash() == venue.state_hash()
    assert len(by_rows.markets["BTC_USDC"].book.orders) >= 4 and len(by_rows.markets[SOL_USDC].book.orders) == 8


def unchecked(venue: Venue, cmd: PlaceOrder) -> None:
    """Decide and apply an order without the invariant check (these shapes break conservation)."""
    decided = venue.accounts[cmd.account_id].decide_place(cmd, venue.specs[cmd.symbol])
    assert not isinstance(decided, Rejection), decided
    cmd.lock = decided[1]
    event = venue.markets[cmd.symbol].decide_place(cmd, NOW_US)
    assert isinstance(event, OrderPlaced), event
    venue.apply(event)


def test_replay_rows_matches_apply_on_shapes_live_trading_never_makes() -> None:
    """A fill against the fee account's own order, the fee account as taker, fee-free fills:
    ``apply`` dispatches each account once; replay's inline path hands these to it."""
    venue = Venue(parse_config(DEFAULT))
    log = recording(venue)
    a, b = open_account(venue), open_account(venue)
    for account_id in (a, b, FEE_ACCOUNT_ID):
        venue.apply(Deposited(account_id, "SOL", 100 * 10**9, NOW_US))
        venue.apply(Deposited(account_id, "USDC", 100_000 * 10**6, NOW_US))
    unchecked(venue, limit(venue, FEE_ACCOUNT_ID, ASK, "100", "2"))
    unchecked(venue, limit(venue, b, ASK, "100", "2"))
    unchecked(venue, limit(venue, a, BID, "100", "3"))  # fills the fee account's ask, then b's
    unchecked(venue, limit(venue, a, ASK, "99", "1"))
    unchecked(venue, market(venue, FEE_ACCOUNT_ID, BID, qty="1"))  # the fee account takes
    own = next(o for o in venue.markets[SOL_USDC].book.orders.values() if o.account_id == b)
    venue.apply(OrderPlaced(venue.next_order_id, b, SOL_USDC, BID, "Limit", "GTC", own.price_ticks, 1, 0, False,
                            "RejectTaker", -1, 0, NOW_US, "Filled", "",
                            [Fill(99, own.order_id, b, own.price_ticks, 1, 0, 0)], []))  # b trades with itself
    assert any(isinstance(e, OrderPlaced) and e.account_id == FEE_ACCOUNT_ID for e in log)
    assert any(isinstance(e, OrderPlaced) and any(f.maker_account_id == FEE_ACCOUNT_ID for f in e.fills) for e in log)
    by_events, by_rows = both_ways(log)
    assert full_state(by_rows) == full_state(by_events)
    assert by_rows.state_hash() == venue.state_hash()


def test_replay_rows_matches_apply_with_stp_cancels_client_ids_and_partial_fills() -> None:
    venue = Venue(parse_config(DEFAULT))
    log = recording(venue)
    a, b = open_account(venue), open_account(venue)
    for account_id in (a, b):
        fund(venue, account_id, "SOL", "100")
        fund(venue, account_id, "USDC", "100000")
    for i in range(6):
        place(venue, limit(venue, a, ASK, f"{100 + i}", "2", client_id=i))
        place(venue, limit(venue, b, BID, f"{90 - i}", "1", client_id=10 + i))
    place(venue, limit(venue, b, ASK, "95", "1", stp=REJECT_MAKER))  # cancels b's own best bid, then rests
    place(venue, limit(venue, a, BID, "103", "5", client_id=20, stp=REJECT_BOTH))  # b's ask, then a's own: stops
    place(venue, limit(venue, b, BID, "101", "3", client_id=21))  # partial: rests the rest
    place(venue, market(venue, b, BID, quote="150"))
    place(venue, market(venue, a, ASK, qty="2"))
    for e in list(log):
        if isinstance(e, OrderPlaced) and e.client_id >= 0 and e.order_id in venue.markets[SOL_USDC].book.orders:
            cancel(venue, e.account_id, e.order_id)  # an open order with a client id closes
            break
    by_events, by_rows = both_ways(log)
    assert any(isinstance(e, OrderPlaced) and e.stp_cancelled for e in log)
    assert full_state(by_rows) == full_state(by_events)
    assert by_rows.state_hash() == venue.state_hash()


@pytest.mark.parametrize(("maker_bps", "taker_bps"), [(0, 0), (0, 5), (2, 0), (2, 5)])
def test_replay_rows_matches_apply_whoever_pays_a_fee(maker_bps: int, taker_bps: int) -> None:
    """The fee account is a party only when some fill charged a fee (``placed_parties``)."""
    venue = make_venue(maker_fee_bps=maker_bps, taker_fee_bps=taker_bps)
    log = recording(venue)
    a, b = open_account(venue), open_account(venue)
    for account_id in (a, b):
        fund(venue, account_id, "SOL", "100")
        fund(venue, account_id, "USDC", "100000")
    place(venue, limit(venue, a, ASK, "100", "2"))
    place(venue, limit(venue, b, BID, "100", "1"))  # taker bid
    place(venue, limit(venue, b, BID, "99", "1"))
    place(venue, limit(venue, a, ASK, "99", "2"))  # taker ask, rests the rest
    by_events, by_rows = both_ways(log, config=venue.config)
    assert full_state(by_rows) == full_state(by_events)
    assert by_rows.state_hash() == venue.state_hash()


MALFORMED = [
    b"not json",
    b'{"a": 1}',
    b"[1]",
    b"[[]]",
    b"[[5, 1]]",
    b'"OrderPlaced"',
    orjson.dumps(["OrderPlaced"]),
    orjson.dumps([["Deposit", 1, "USDC", 5, NOW_US]]),
    orjson.dumps([PLACED, PLACED[:-1]]),
    orjson.dumps([[*PLACED, 1]]),
    orjson.dumps([[*PLACED[:1], "1", *PLACED[2:]]]),
    orjson.dumps([[*PLACED[:7], 1.0, *PLACED[8:]]]),
    orjson.dumps([[*PLACED[:1], True, *PLACED[2:]]]),
    orjson.dumps([[*PLACED[:3], None, *PLACED[4:]]]),
    orjson.dumps([[*PLACED[:10], 0, *PLACED[11:]]]),
    orjson.dumps([[*PLACED[:-2], {}, []]]),
    orjson.dumps([[*PLACED[:-2], [[1, 2, 3]], []]]),
    orjson.dumps([[*PLACED[:-2], [[1, 2, 3, 4, 5, 6, "7"]], []]]),
    orjson.dumps([[*PLACED[:-2], [[1, 2, 3, 4, 5, 6, True]], []]]),
    orjson.dumps([[*PLACED[:-2], [[1, 2, 3, 4, 5, 6, 7, 8]], []]]),
    orjson.dumps([[*PLACED[:-2], ["abcdefg"], []]]),
    orjson.dumps([[*PLACED[:-2], [5], []]]),
    orjson.dumps([[*PLACED[:-1], 3]]),
    orjson.dumps([[*PLACED[:-1], ["x"]]]),
    orjson.dumps([["OrderCancelled", 1, 2, SOL_USDC]]),
    orjson.dumps([["OrderCancelled", 1, 2, SOL_USDC, NOW_US, 0]]),
    orjson.dumps([["OrderCancelled", 1, 2, 3, NOW_US]]),
    orjson.dumps([["OrderCancelled", 1, False, SOL_USDC, NOW_US]]),
    orjson.dumps([PLACED, ["Deposited", 1, "USDC", "5", NOW_US]]),
    orjson.dumps([PLACED, ["OrderAmended", 1, 1, SOL_USDC, 1, 1, 1, 1]]),
]


@pytest.mark.parametrize("payload", MALFORMED)
def test_decode_rows_refuses_what_decode_events_refuses_with_the_same_message(payload: bytes) -> None:
    with pytest.raises(CodecError) as by_events:
        decode_events(payload)
    with pytest.raises(CodecError) as by_rows:
        decode_rows(payload)
    assert str(by_rows.value) == str(by_events.value)


def events_of(payload: bytes) -> list[Event]:
    return [row_event(row) for row in decode_rows(payload)]


def test_decode_rows_accepts_what_decode_events_accepts() -> None:
    _, log, _ = session()
    payload = encode_events(log)
    assert events_of(payload) == decode_events(payload) == log
    assert {type(row) for row in decode_rows(payload)} >= {PlacedRow, CancelledRow}
    assert decode_rows(b"[]") == []


# what msgspec's stricter schema refuses but decode_events accepts: the fallback must take it
ODD_BUT_VALID = [
    orjson.dumps([[*PLACED[:7], 2**63, *PLACED[8:]]]),  # a price above int64 (orjson reads up to 2**64 - 1)
    orjson.dumps([[*PLACED[:1], -(2**63), *PLACED[2:]]]),
    orjson.dumps([[*PLACED[:4], "Sideways", *PLACED[5:]]]),  # sides are checked by the engine, not the codec
    orjson.dumps([[*PLACED[:15], "Pending", *PLACED[16:]]]),
    orjson.dumps([PLACED, ["Deposited", 1, "USDC", 2**64 - 1, NOW_US]]),
    orjson.dumps([[*PLACED[:-2], [[1, 2, 3, 4, 5, 6, 2**63 + 1]], []]]),
    orjson.dumps([[*PLACED[:-1], [2**64 - 1]]]),
]


@pytest.mark.parametrize("payload", ODD_BUT_VALID)
def test_decode_rows_falls_back_to_the_full_check_for_what_its_fast_schema_refuses(payload: bytes) -> None:
    assert events_of(payload) == decode_events(payload)
    side = decode_rows(payload)[0].side
    assert side is sys.intern(side)  # the fallback shares strings as the fast path does


def mutations(payload: bytes, rnd: random.Random) -> list[bytes]:
    """Byte- and value-level damage to a valid payload: cut, flipped, replaced, widened numbers."""
    out = []
    for _ in range(300):
        data = bytearray(payload)
        at = rnd.randrange(len(data))
        choice = rnd.randrange(6)
        if choice == 0:
            del data[at]
        elif choice == 1:
            data[at] = rnd.choice(b'0123456789-.eE"[],{}: tfn\\x')
        elif choice == 2:
            data[at:at] = rnd.choice([b"0", b"9999999999999999999", b".5", b",1", b'"x",', b"[]", b"e3", b"-"])
        elif choice == 3:
            data = data[:at]
        elif choice == 4:
            data[at] ^= 1 << rnd.randrange(8)
        else:
            text = data.decode()
            for old, new in rnd.sample([("true", "1"), ("false", "0"), ("-1", "true"), ("\"New\"", "\"Bid\""),
                                        ("[]", "[[]]"), ("1700", "-1700"), ("\"Bid\"", "7"), (",", ",,")], 2):
                text = text.replace(old, new, 1)
            data = bytearray(text.encode())
        out.append(bytes(data))
    return out


def test_decode_rows_agrees_with_decode_events_on_damaged_payloads() -> None:
    """Whatever the bytes, both accept the same events or refuse with the same message."""
    _, log, _ = session()
    rnd = random.Random(3)
    payloads = [encode_events(log[i:i + 4]) for i in range(0, len(log), 4)]
    for payload in payloads:
        for damaged in mutations(payload, rnd):
            try:
                expected: list[Event] | str = decode_events(damaged)
            except CodecError as exc:
                expected = str(exc)
            try:
                got: list[Event] | str = events_of(damaged)
            except CodecError as exc:
                got = str(exc)
            assert got == expected, damaged
