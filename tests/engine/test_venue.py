"""The venue as one state object (engine/venue.py): event routing, invariants, state hash,
and the journal codec round trip (engine/codec.py) that replay depends on."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from engine.codec import CodecError, decode_events, encode_events, to_dict
from engine.config import DEFAULT, parse_config
from engine.messages import (
    ASK,
    BID,
    REJECT_MAKER,
    AccountCreated,
    ApiKeyAdded,
    Deposited,
    Event,
    Fill,
    MarketStateChanged,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    Transferred,
    Withdrawn,
)
from engine.venue import InvariantViolation, Venue, placed_parties
from tests.engine.helpers import (
    NOW_US,
    SOL_USDC,
    amend,
    cancel,
    fund,
    limit,
    make_venue,
    market,
    open_account,
    place,
    set_state,
)

SOL = 10**9
USDC = 10**6


def recording(venue: Venue) -> list[Event]:
    """Make ``venue.apply`` also append every event to the returned list (the journal's view)."""
    log: list[Event] = []
    apply = venue.apply

    def apply_and_record(event: Event) -> None:
        log.append(event)
        apply(event)

    venue.apply = apply_and_record  # type: ignore[method-assign]
    return log


def session() -> tuple[Venue, list[Event], dict[str, int]]:
    """A realistic little history: three traders, a sub-account, every event type."""
    venue = make_venue()
    log = recording(venue)
    a, b, c = open_account(venue, country="DE"), open_account(venue), open_account(venue, category="institutional")
    sub = open_account(venue, parent_id=a)
    venue.apply(ApiKeyAdded(a, "A" * 43 + "=", NOW_US))
    for account_id in (a, b, c):
        fund(venue, account_id, "SOL", "100")
        fund(venue, account_id, "USDC", "20000")
    fund(venue, c, "BTC", "1")
    venue.apply(Transferred(a, sub, "USDC", 500 * USDC, NOW_US))
    venue.apply(Withdrawn(1, b, "SOL", 5 * SOL, NOW_US))
    ask1 = place(venue, limit(venue, b, ASK, "100", "3", client_id=1))
    place(venue, limit(venue, c, ASK, "100.5", "2"))
    place(venue, limit(venue, sub, BID, "99", "2"))
    place(venue, limit(venue, a, BID, "100.5", "4"))  # sweeps b, 1 of c
    place(venue, market(venue, c, ASK, qty="1"))  # hits sub: 1 @ 99
    bid = place(venue, limit(venue, b, BID, "98", "5", client_id=2))
    amend(venue, b, bid.order_id, price="98.5", qty="6")
    own = place(venue, limit(venue, c, BID, "99.5", "1"))
    place(venue, limit(venue, c, ASK, "98.5", "2", stp=REJECT_MAKER))  # cancels own 99.5, fills sub and b
    place(venue, limit(venue, c, ASK, "30000", "0.001", symbol="BTC_USDC"))
    place(venue, market(venue, a, BID, quote="10", symbol="BTC_USDC"))
    cancel(venue, c, place(venue, limit(venue, c, ASK, "105", "1")).order_id)
    set_state(venue, "LimitOnly", "ETH_USDC")
    assert isinstance(ask1, OrderPlaced) and isinstance(own, OrderPlaced)
    venue.check_invariants()
    return venue, log, {"a": a, "b": b, "c": c, "sub": sub}


# --- routing --------------------------------------------------------------------------------------


def test_session_covers_every_event_type_and_keeps_invariants() -> None:
    venue, log, _ = session()
    assert {type(e).__name__ for e in log} == {
        "AccountCreated", "ApiKeyAdded", "Deposited", "Withdrawn", "Transferred", "OrderPlaced",
        "OrderCancelled", "OrderAmended", "MarketStateChanged",
    }
    assert any(e.stp_cancelled for e in log if isinstance(e, OrderPlaced))
    venue.check_invariants()


def test_order_placed_reaches_book_taker_every_maker_and_fee_account() -> None:
    venue = make_venue()
    m, n, t = open_account(venue), open_account(venue), open_account(venue)
    fund(venue, m, "SOL", "1")
    fund(venue, n, "SOL", "1")
    fund(venue, t, "USDC", "300")
    place(venue, limit(venue, m, ASK, "100", "1"))
    place(venue, limit(venue, n, ASK, "101", "1"))
    e = place(venue, limit(venue, t, BID, "101", "2"))
    assert isinstance(e, OrderPlaced)
    assert placed_parties(e) == [t, m, n, 0]
    assert venue.markets[SOL_USDC].book.orders == {}
    assert venue.accounts[t].balances == {"USDC": 99 * USDC, "SOL": 2 * SOL - 1_000_000}
    assert venue.accounts[m].balances == {"SOL": 0, "USDC": 100 * USDC - 20_000}
    assert venue.accounts[n].balances == {"SOL": 0, "USDC": 101 * USDC - 20_200}
    assert venue.accounts[0].balances == {"SOL": 1_000_000, "USDC": 40_200}
    assert venue.next_order_id == e.order_id + 1


def test_placed_parties_lists_each_maker_once_and_no_fee_account_without_fees() -> None:
    fills = [Fill(1, 10, 5, 100, 1, 0, 0), Fill(2, 11, 6, 100, 1, 0, 0), Fill(3, 12, 5, 101, 1, 0, 0)]
    e = OrderPlaced(20, 7, SOL_USDC, BID, "Limit", "GTC", 101, 3, 0, False, "RejectTaker", -1, 303, 0, "Filled", "", fills, [])
    assert placed_parties(e) == [7, 5, 6]
    e.fills[1].taker_fee = 1
    assert placed_parties(e) == [7, 5, 6, 0]


def test_account_events_route_to_their_accounts() -> None:
    venue = make_venue()
    venue.apply(AccountCreated(5, -1, "JP", "retail", NOW_US))
    assert venue.next_account_id == 6 and venue.accounts[5].country == "JP"
    venue.apply(AccountCreated(6, 5, "JP", "retail", NOW_US))
    venue.apply(ApiKeyAdded(5, "key5", NOW_US))
    assert venue.api_keys == {"key5": 5} and venue.accounts[5].api_keys == ["key5"]
    venue.apply(Deposited(5, "ETH", 7, NOW_US))
    venue.apply(Transferred(5, 6, "ETH", 3, NOW_US))
    venue.apply(Withdrawn(1, 6, "ETH", 1, NOW_US))
    assert (venue.accounts[5].balances, venue.accounts[6].balances) == ({"ETH": 4}, {"ETH": 2})
    assert (venue.accounts[5].net_deposits, venue.accounts[6].net_deposits) == ({"ETH": 7}, {"ETH": -1})
    venue.apply(MarketStateChanged("BTC_USDC", "PostOnly", NOW_US))
    assert venue.markets["BTC_USDC"].state == "PostOnly" and venue.markets[SOL_USDC].state == "Open"
    venue.check_invariants()


def test_apply_refuses_a_non_event() -> None:
    venue = make_venue()
    with pytest.raises(InvariantViolation, match="no owner for event"):
        venue.apply("OrderPlaced")  # type: ignore[arg-type]


def test_cancel_and_amend_route_to_market_and_account() -> None:
    venue = make_venue()
    a = open_account(venue)
    fund(venue, a, "USDC", "1000")
    order_id = place(venue, limit(venue, a, BID, "100", "2")).order_id
    venue.apply(OrderAmended(order_id, a, SOL_USDC, 9_000, 300, 270 * USDC, 0, NOW_US))  # 3 @ 90
    assert venue.markets[SOL_USDC].book.depth(BID, 5) == [(9_000, 300)]
    assert venue.accounts[a].locked == {"USDC": 270 * USDC}
    venue.check_invariants()
    venue.apply(OrderCancelled(order_id, a, SOL_USDC, NOW_US))
    assert venue.markets[SOL_USDC].book.orders == {} and venue.accounts[a].locked == {"USDC": 0}
    assert venue.balances(a)["USDC"] == {"available": "1000", "locked": "0", "staked": "0"}
    venue.check_invariants()


# --- invariants ---------------------------------------------------------------------------------------


def _resting(venue: Venue, account_id: int):
    book = venue.markets[SOL_USDC].book
    return next(o for o in book.orders.values() if o.account_id == account_id)


def bump_lock(v: Venue, ids: dict[str, int]) -> None:
    v.accounts[ids["b"]].locked["USDC"] += 1


def drop_balance(v: Venue, ids: dict[str, int]) -> None:
    del v.accounts[ids["a"]].balances["SOL"]


def lock_disagrees_with_book(v: Venue, ids: dict[str, int]) -> None:
    account = v.accounts[ids["b"]]
    order = account.orders[_resting(v, ids["b"]).order_id]
    order.lock += 1
    account.locked[order.asset] += 1


def book_quantity_disagrees_with_lock(v: Venue, ids: dict[str, int]) -> None:
    order = _resting(v, ids["b"])
    order.remaining_steps -= 1
    v.markets[SOL_USDC].book.level_steps[order.side, order.price_ticks] -= 1


def order_missing_from_book(v: Venue, ids: dict[str, int]) -> None:
    v.markets[SOL_USDC].book.remove(_resting(v, ids["b"]).order_id)


def order_missing_from_account(v: Venue, ids: dict[str, int]) -> None:
    account = v.accounts[ids["c"]]
    order = account.orders.pop(_resting(v, ids["c"]).order_id)
    account.locked[order.asset] -= order.lock


def client_id_outlives_its_order(v: Venue, ids: dict[str, int]) -> None:
    account = v.accounts[ids["b"]]
    order = account.orders.pop(_resting(v, ids["b"]).order_id)  # b's bid carries client id 2
    account.locked[order.asset] -= order.lock


def negative_balance(v: Venue, ids: dict[str, int]) -> None:
    v.accounts[ids["sub"]].balances["BTC"] = -5
    v.accounts[ids["c"]].balances["BTC"] += 5


def reserves_exceed_balance(v: Venue, ids: dict[str, int]) -> None:
    b, c = v.accounts[ids["b"]], v.accounts[ids["c"]]
    moved = b.balances["USDC"] - b.locked["USDC"] + 1
    b.balances["USDC"] -= moved
    c.balances["USDC"] += moved


def stale_client_id(v: Venue, ids: dict[str, int]) -> None:
    v.accounts[ids["b"]].client_ids[2] = 12345


def held_while_idle(v: Venue, ids: dict[str, int]) -> None:
    v.accounts[ids["a"]].hold(999, "USDC", 1, -1)


def crossed_book(v: Venue, ids: dict[str, int]) -> None:
    book = v.markets[SOL_USDC].book
    order = _resting(v, ids["b"])
    book.remove(order.order_id)
    order.price_ticks = book.best_ask() + 1
    book.rest(order)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (bump_lock, r"account 2 USDC locked \d+ != open orders' needs \d+"),
        (drop_balance, r"conservation broken for SOL: balances \d+ != net deposits \d+"),
        (lock_disagrees_with_book, r"order \d+ locks \d+, its remaining quantity needs \d+"),
        (book_quantity_disagrees_with_lock, r"order \d+ locks \d+, its remaining quantity needs \d+"),
        (order_missing_from_book, r"account 2 holds order \d+ not on any book"),
        (order_missing_from_account, r"order \d+ has no owner"),
        (client_id_outlives_its_order, r"account 2 client id map holds ids of closed orders"),
        (negative_balance, r"account 4 BTC balance negative: -5"),
        (reserves_exceed_balance, r"account 2 USDC reserves \d+\+0 exceed balance \d+"),
        (stale_client_id, r"account 2 client id map stale"),
        (held_while_idle, r"account 1 USDC still holds 1 with nothing in flight"),
        (crossed_book, r"book crossed at rest"),
    ],
)
def test_check_invariants_catches_corruption(corrupt: Callable[[Venue, dict[str, int]], None], message: str) -> None:
    venue, _, ids = session()
    assert (ids["a"], ids["b"], ids["sub"]) == (1, 2, 4)  # the messages above name these ids
    corrupt(venue, ids)
    with pytest.raises(InvariantViolation, match=message):
        venue.check_invariants()


# --- state hash and replay ---------------------------------------------------------------------------------


def test_replaying_the_same_events_gives_the_same_state_hash() -> None:
    venue, log, _ = session()
    again = Venue(parse_config(DEFAULT))
    for e in log:
        again.apply(e)
    again.check_invariants()
    assert again.state_hash() == venue.state_hash()
    assert again.balances(1) == venue.balances(1)


def test_state_hash_changes_with_any_fact() -> None:
    venue, log, _ = session()
    base = venue.state_hash()
    for extra in (
        Deposited(3, "ETH", 1, NOW_US),
        MarketStateChanged(SOL_USDC, "Closed", NOW_US),
        ApiKeyAdded(2, "another-key", NOW_US),
        AccountCreated(99, -1, "", "retail", NOW_US),
    ):
        other = Venue(parse_config(DEFAULT))
        for e in log:
            other.apply(e)
        other.apply(extra)
        assert other.state_hash() != base, extra


def test_state_hash_includes_time_priority() -> None:
    def two_bids(first: int) -> str:
        venue = make_venue()
        a, b = open_account(venue), open_account(venue)
        fund(venue, a, "USDC", "100")
        fund(venue, b, "USDC", "100")
        for account_id in (first, a + b - first):
            place(venue, limit(venue, account_id, BID, "10", "1"))
        return venue.state_hash()

    assert two_bids(1) == two_bids(1)
    assert two_bids(1) != two_bids(2)


def test_concurrent_funds_events_commute() -> None:
    def run(order: list[Event]) -> str:
        venue = make_venue()
        open_account(venue)
        open_account(venue)
        for e in order:
            venue.apply(e)
        return venue.state_hash()

    events: list[Event] = [Deposited(1, "SOL", 5, NOW_US), Deposited(2, "SOL", 7, NOW_US), Deposited(1, "USDC", 9, NOW_US)]
    assert run(events) == run(events[::-1])


# --- codec -----------------------------------------------------------------------------------------


def test_codec_round_trips_a_whole_session_and_replays_to_the_same_state() -> None:
    venue, log, _ = session()
    payload = encode_events(log)
    assert encode_events(decode_events(payload)) == payload  # canonical
    decoded = decode_events(payload)
    assert decoded == log
    replayed = Venue(parse_config(DEFAULT))
    for e in decoded:
        replayed.apply(e)
    assert replayed.state_hash() == venue.state_hash()
    batched = Venue(parse_config(DEFAULT))
    batched.apply_batch(decoded)  # replay's loop
    assert batched.state_hash() == venue.state_hash()


def test_codec_encodes_positionally_with_nested_fills() -> None:
    fill = Fill(3, 10, 5, 10_000, 100, 20_000, 500_000)
    e = OrderPlaced(11, 7, SOL_USDC, BID, "Limit", "IOC", 10_000, 150, 0, False, "RejectMaker", 42,
                    150 * USDC, NOW_US, "Expired", "ImmediateOrCancel", [fill], [9])
    row = orjson.loads(encode_events([e]))[0]
    assert row == ["OrderPlaced", 11, 7, SOL_USDC, BID, "Limit", "IOC", 10_000, 150, 0, False, "RejectMaker", 42,
                   150 * USDC, NOW_US, "Expired", "ImmediateOrCancel", [[3, 10, 5, 10_000, 100, 20_000, 500_000]], [9]]
    assert decode_events(encode_events([e])) == [e]
    assert to_dict(e)["type"] == "OrderPlaced" and to_dict(e)["fills"][0]["taker_fee"] == 500_000


def test_replayed_orders_share_the_values_state_keeps() -> None:
    """Decoded events hand state one object per distinct symbol, side, STP mode and price.

    Without this, a million resting orders rebuilt by recovery held their own copies
    (~190 bytes per order more than the live engine's).
    """
    rows = [OrderPlaced(i, 1, SOL_USDC, BID, "Limit", "GTC", 10_000, 150, 0, False, "RejectTaker", -1,
                        150 * USDC, NOW_US, "New", "", [], []) for i in (1, 2)]
    first, second = decode_events(encode_events(rows[:1]) + b"")[0], decode_events(encode_events(rows[1:]))[0]
    assert first == rows[0] and second == rows[1]
    for name in ("symbol", "side", "stp", "price_ticks"):
        assert getattr(first, name) is getattr(second, name), name


def test_codec_empty_payload() -> None:
    assert encode_events([]) == b"[]"
    assert decode_events(b"[]") == []


GOOD = ["Deposited", 1, "USDC", 5, NOW_US]
PLACED = orjson.loads(encode_events([OrderPlaced(
    1, 1, SOL_USDC, BID, "Limit", "GTC", 1, 1, 0, False, "RejectTaker", -1, 1, 0, "New", "", [], [])]))[0]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "payload is not JSON"),
        (b'{"a": 1}', "payload is not an array of events"),
        (b"[1]", "event is not an array starting with its tag"),
        (b"[[]]", "event is not an array starting with its tag"),
        (b"[[5, 1]]", "event is not an array starting with its tag"),
        (orjson.dumps([["Deposit", 1, "USDC", 5, NOW_US]]), "unknown event tag 'Deposit'"),
        (orjson.dumps([GOOD, GOOD[:-1]]), "Deposited: expected 4 fields, got 3"),
        (orjson.dumps([[*GOOD, 1]]), "Deposited: expected 4 fields, got 5"),
        (orjson.dumps([["Deposited", "1", "USDC", 5, NOW_US]]), "Deposited.account_id: expected int"),
        (orjson.dumps([["Deposited", 1, "USDC", 5.0, NOW_US]]), "Deposited.amount: expected int"),
        (orjson.dumps([["Deposited", 1, None, 5, NOW_US]]), "Deposited.asset: expected str"),
        (orjson.dumps([["Deposited", True, "USDC", 5, NOW_US]]), "Deposited.account_id: expected int"),
        (orjson.dumps([[*PLACED[:10], 0, *PLACED[11:]]]), "OrderPlaced.post_only: expected bool"),
        (orjson.dumps([[*PLACED[:-2], {}, []]]), "OrderPlaced.fills: expected list"),
        (orjson.dumps([[*PLACED[:-2], [[1, 2, 3]], []]]), "Fill: expected an array of 7 integers"),
        (orjson.dumps([[*PLACED[:-2], [[1, 2, 3, 4, 5, 6, "7"]], []]]), "Fill: expected an array of 7 integers"),
        (orjson.dumps([[*PLACED[:-2], [5], []]]), "Fill: expected an array of 7 integers"),
        (orjson.dumps([[*PLACED[:-1], 3]]), "OrderPlaced.stp_cancelled: expected list"),
    ],
)
def test_decode_refuses_malformed_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_events(payload)


def test_decode_refuses_non_integer_stp_cancelled() -> None:
    with pytest.raises(CodecError, match="stp_cancelled"):
        decode_events(orjson.dumps([[*PLACED[:-1], ["x"]]]))
