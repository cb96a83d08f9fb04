"""engine/publisher.py driven by real events from the sans-IO venue (no trio)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from engine.messages import ASK, BID, ApiKeyAdded, Deposited
from engine.publisher import Publisher
from engine.updates import BalanceUpdate, BookTop, DepthUpdate, OrderUpdate, TradeRecord, bucket
from tests.engine.helpers import (
    NOW_US,
    atoms,
    cancel,
    fund,
    limit,
    make_venue,
    market,
    open_account,
    place,
    steps,
    ticks,
)


def setup() -> tuple[object, Publisher, int, int]:
    venue = make_venue()
    maker, taker = open_account(venue), open_account(venue)
    fund(venue, maker, "SOL", "100")
    fund(venue, taker, "USDC", "10000")
    return venue, Publisher(copy.deepcopy(venue)), maker, taker


def test_shadow_state_matches_the_venue_and_depth_ids_are_gapless() -> None:
    venue, pub, maker, taker = setup()
    seen: list[DepthUpdate] = []
    pub.listeners.append(lambda ups: seen.extend(u for u in ups if isinstance(u, DepthUpdate)))
    snapshot_bids, snapshot_asks, snapshot_id = pub.depth("SOL_USDC", 100)
    assert (snapshot_bids, snapshot_asks, snapshot_id) == ([], [], 0)
    e1 = place(venue, limit(venue, maker, ASK, "101", "2"))
    e2 = place(venue, limit(venue, maker, ASK, "102", "3"))
    pub.apply_batch([e1, e2])  # two events, one update covering ids 1..2
    e3 = place(venue, market(venue, taker, BID, qty="2.5"))
    pub.apply_batch([e3])
    assert pub.venue.state_hash() == venue.state_hash()
    assert [(d.first_id, d.last_id) for d in seen] == [(1, 2), (3, 3)]
    assert seen[0].asks == [(ticks(venue, "101"), steps(venue, "2")), (ticks(venue, "102"), steps(venue, "3"))]
    # absolute sizes: 101 emptied, 102 has 2.5 left
    assert seen[1].asks == [(ticks(venue, "101"), 0), (ticks(venue, "102"), steps(venue, "2.5"))]
    bids, asks, update_id = pub.depth("SOL_USDC", 10)
    assert update_id == 3 and asks == [(ticks(venue, "102"), steps(venue, "2.5"))] and bids == []


def test_trades_klines_and_ticker() -> None:
    venue, pub, maker, taker = setup()
    pub.apply_batch([place(venue, limit(venue, maker, ASK, "100", "1"))])
    pub.apply_batch([place(venue, limit(venue, maker, ASK, "110", "1"))])
    ups = pub.apply_batch([place(venue, market(venue, taker, BID, qty="2"))])
    trades = [u for u in ups if isinstance(u, TradeRecord)]
    assert [(t.trade_id, t.price_ticks, t.is_buyer_maker) for t in trades] == [(1, ticks(venue, "100"), False), (2, ticks(venue, "110"), False)]
    assert [t.trade_id for t in pub.trades("SOL_USDC", 10)] == [2, 1]
    assert [t.trade_id for t in pub.trades("SOL_USDC", 10, offset=1)] == [1]
    candle = pub.current_candle("SOL_USDC", "1m")
    assert candle is not None and (candle.open, candle.high, candle.low, candle.close) == (10000, 11000, 10000, 11000)
    assert candle.volume_steps == steps(venue, "2") and candle.trades == 2
    assert candle.quote == atoms(venue, "USDC", "210")
    stats = pub.ticker("SOL_USDC", NOW_US + 60_000_000)
    assert (stats.first, stats.last, stats.high, stats.low, stats.trades) == (10000, 11000, 11000, 10000, 2)
    later = pub.ticker("SOL_USDC", NOW_US + 2 * 86_400_000_000)
    assert later.trades == 0 and later.first == later.last == 11000
    tops = [u for u in ups if isinstance(u, BookTop)]
    assert tops and tops[-1].ask_ticks == 0


def test_order_and_balance_updates_for_taker_and_maker() -> None:
    venue, pub, maker, taker = setup()
    pub.apply_batch([place(venue, limit(venue, maker, ASK, "100", "1", client_id=7))])
    ups = pub.apply_batch([place(venue, limit(venue, taker, BID, "100", "3"))])
    orders = [(u.account_id, u.kind, u.view.status) for u in ups if isinstance(u, OrderUpdate)]
    assert orders == [
        (taker, "orderAccepted", "New"),
        (taker, "orderFill", "PartiallyFilled"),
        (maker, "orderFill", "Filled"),
    ]
    fill = next(u for u in ups if isinstance(u, OrderUpdate) and u.account_id == maker and u.fill)
    assert fill.fill is not None and fill.fill.is_maker and fill.fill.fee_asset == "USDC" and fill.view.client_id == 7
    balances = {(u.account_id, u.asset): (u.available, u.locked) for u in ups if isinstance(u, BalanceUpdate)}
    assert balances[taker, "USDC"] == (atoms(venue, "USDC", "9700"), atoms(venue, "USDC", "200"))
    assert pub.balances(taker)["USDC"] == balances[taker, "USDC"]
    assert [f.fill.trade_id for f in pub.fills(taker)] == [1]
    assert [v.status for v in pub.closed_orders(maker)] == ["Filled"]
    resting = pub.open_orders(taker, "SOL_USDC")
    assert len(resting) == 1 and resting[0].executed_steps == steps(venue, "1")
    ups = pub.apply_batch([cancel(venue, taker, resting[0].order_id)])
    assert [(u.kind, u.view.status) for u in ups if isinstance(u, OrderUpdate)] == [("orderCancelled", "Cancelled")]
    assert pub.open_orders(taker) == [] and pub.balances(taker)["USDC"][1] == 0


def test_expired_orders_and_deposits() -> None:
    venue, pub, maker, taker = setup()
    ups = pub.apply_batch([place(venue, market(venue, taker, BID, qty="1"))])  # empty book
    assert [u.kind for u in ups if isinstance(u, OrderUpdate)] == ["orderAccepted", "orderExpired"]
    assert not any(isinstance(u, DepthUpdate) for u in ups)
    assert pub.closed_orders(taker)[0].expiry_reason == "InsufficientLiquidity"
    deposit = Deposited(maker, "USDC", atoms(venue, "USDC", "5"), NOW_US)
    venue.apply(deposit)
    ups = pub.apply_batch([deposit])
    assert ups == [BalanceUpdate(maker, "USDC", atoms(venue, "USDC", "5"), 0, NOW_US)]
    assert [(r.kind, r.amount) for r in pub.funds(maker, "deposit")] == [("deposit", 5_000_000)]


def test_buckets() -> None:
    monday = int(datetime(2026, 11, 16, tzinfo=UTC).timestamp())
    assert bucket(monday + 3 * 86400 + 5, "1w") == (monday, monday + 7 * 86400)
    nov = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    dec = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    assert bucket(nov + 12345, "1month") == (nov, dec)
    assert bucket(dec + 5, "1month")[1] == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    assert bucket(125, "1m") == (120, 180)


def test_account_for_key_reads_durable_keys() -> None:
    _venue, pub, maker, _ = setup()
    assert pub.account_for_key("a2V5") is None
    pub.apply_batch([ApiKeyAdded(maker, "a2V5", NOW_US)])
    assert pub.account_for_key("a2V5") == maker


def test_acceptances_a_sole_listener_reported_are_not_built() -> None:
    """``accepted_reported``: asked per placement while its owner is the only listener; with
    another listener nothing is skipped (that one still needs every ``orderAccepted``)."""
    venue, pub, maker, _ = setup()
    heard: list[list[object]] = []
    asked: list[int] = []

    def reported(e: object) -> bool:
        asked.append(e.order_id)  # type: ignore[attr-defined]
        return e.order_id % 2 == 1  # type: ignore[attr-defined]

    pub.listeners.append(heard.append)
    pub.accepted_reported = reported
    first, second = place(venue, limit(venue, maker, ASK, "101", "1")), place(venue, limit(venue, maker, ASK, "102", "1"))
    pub.apply_batch([first, second])
    accepted = [u.view.order_id for u in heard[-1] if isinstance(u, OrderUpdate) and u.kind == "orderAccepted"]
    assert asked == [first.order_id, second.order_id]  # type: ignore[union-attr]
    assert accepted == [o.order_id for o in (first, second) if o.order_id % 2 == 0]  # type: ignore[union-attr]
    other: list[list[object]] = []
    pub.listeners.append(other.append)
    third = place(venue, limit(venue, maker, ASK, "103", "1"))
    pub.apply_batch([third])
    assert len(asked) == 2  # not asked while another listener needs the update
    assert [u.view.order_id for u in other[-1] if isinstance(u, OrderUpdate)] == [third.order_id]  # type: ignore[union-attr]
    assert pub.venue.state_hash() == venue.state_hash()


def test_a_narrowed_listener_gets_no_depth_or_balances_until_it_wants_depth() -> None:
    """Only what some listener needs is derived; update ids advance regardless, so depth resumes without a gap."""
    venue, pub, maker, taker = setup()
    got: list[object] = []
    wants_depth = False

    def listener(ups: list[object]) -> None:
        got.extend(ups)

    pub.listeners.append(listener)
    pub.narrow(listener, depth=lambda: wants_depth)
    pub.apply_batch([place(venue, limit(venue, maker, ASK, "101", "2"))])
    pub.apply_batch([place(venue, limit(venue, taker, BID, "101", "1"))])  # trades: both balances change
    assert {type(u) for u in got} == {OrderUpdate, TradeRecord}
    assert pub.depth("SOL_USDC", 10)[2] == 2  # ids advanced with each book change
    wants_depth = True
    pub.apply_batch([place(venue, limit(venue, maker, ASK, "102", "1"))])
    depth = [u for u in got if isinstance(u, DepthUpdate)]
    assert [(d.first_id, d.last_id) for d in depth] == [(3, 3)]
    tops = [u for u in got if isinstance(u, BookTop)]
    assert [(t.ask_ticks, t.ask_steps) for t in tops] == [(ticks(venue, "101"), steps(venue, "1"))]  # the current top
    assert not any(isinstance(u, BalanceUpdate) for u in got)
    everything: list[object] = []
    pub.listeners.append(everything.extend)  # a listener that did not narrow: every kind is built again
    pub.apply_batch([place(venue, limit(venue, taker, BID, "101", "1"))])
    assert {BalanceUpdate, DepthUpdate, OrderUpdate, TradeRecord} <= {type(u) for u in everything}
    assert pub.venue.state_hash() == venue.state_hash()


def test_a_narrowed_listener_sees_what_a_full_one_sees_of_orders_and_trades() -> None:
    """The narrowed batch's shortcut for orders that rest untouched leaves the same state, ids and order updates."""
    venue, _, maker, taker = setup()
    fund(venue, maker, "USDC", "10000")
    fund(venue, taker, "SOL", "100")
    full, narrow = Publisher(copy.deepcopy(venue)), Publisher(copy.deepcopy(venue))
    got: list[object] = []
    everything: list[object] = []
    full.listeners.append(everything.extend)
    narrow.listeners.append(got.extend)
    narrow.narrow(got.extend, depth=lambda: False)
    asked: list[int] = []
    narrow.accepted_reported = lambda e: asked.append(e.order_id) is None and e.order_id % 2 == 0
    batch = [
        place(venue, limit(venue, maker, ASK, "101", "2", client_id=7)),
        place(venue, limit(venue, maker, BID, "99", "1")),
        place(venue, limit(venue, taker, BID, "98", "1", tif="IOC")),  # expires untouched
        place(venue, limit(venue, taker, BID, "101", "0.5")),  # trades
        place(venue, limit(venue, taker, ASK, "103", "1", client_id=9)),
    ]
    cancelled = cancel(venue, maker, batch[1].order_id)  # type: ignore[union-attr]
    for pub in (full, narrow):
        pub.apply_batch(batch)
        pub.apply_batch([cancelled])
    assert narrow.venue.state_hash() == full.venue.state_hash() == venue.state_hash()
    assert narrow.depth("SOL_USDC", 10) == full.depth("SOL_USDC", 10)
    assert asked == [e.order_id for e in batch]  # type: ignore[union-attr]
    reported = {i for i in asked if i % 2 == 0}

    def orders(ups: list[object], skip: set[int]) -> list[object]:
        return [u for u in ups if isinstance(u, TradeRecord) or (isinstance(u, OrderUpdate) and not (
            u.kind == "orderAccepted" and u.view.order_id in skip))]

    assert orders(got, set()) == orders(everything, reported)
    for account_id in (maker, taker):
        assert narrow.fills(account_id) == full.fills(account_id)
        assert narrow.closed_orders(account_id) == full.closed_orders(account_id)
        assert narrow.open_orders(account_id) == full.open_orders(account_id)
