"""One spot market's decisions (engine/market.py): TIF, post-only, STP, market orders, bands,
states, fees, trade ids, amend and cancel — driven through the account/market flow on the
default SOL_USDC market (tick 0.01, step 0.01, maker 2 bps, taker 5 bps).

Prices and quantities below are what a user types; balances are what they would read back.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.messages import (
    ASK,
    BID,
    FOK,
    IOC,
    REJECT_BOTH,
    REJECT_MAKER,
    REJECT_TAKER,
    AmendOrder,
    Fill,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    PlaceOrder,
    Rejection,
    SetMarketState,
)
from tests.engine.helpers import (
    NOW_US,
    SOL_USDC,
    amend,
    atoms,
    cancel,
    fund,
    limit,
    make_venue,
    market,
    open_account,
    place,
    set_state,
    steps,
    ticks,
)

SOL = 10**9  # atoms
USDC = 10**6


@pytest.fixture
def v() -> SimpleNamespace:
    """A venue with makers ``m`` and ``n`` and taker ``t``, each holding 1000 SOL and 100000 USDC."""
    venue = make_venue()
    ids = {}
    for name in ("m", "n", "t"):
        ids[name] = open_account(venue)
        fund(venue, ids[name], "SOL", "1000")
        fund(venue, ids[name], "USDC", "100000")
    return SimpleNamespace(venue=venue, **ids)


def capital(venue, account_id: int) -> dict[str, tuple[str, str]]:
    """asset -> (available, locked), as GET /api/v1/capital shows them."""
    return {a: (c["available"], c["locked"]) for a, c in venue.balances(account_id).items()}


def placed(venue, cmd) -> OrderPlaced:
    event = place(venue, cmd)
    assert isinstance(event, OrderPlaced), event
    return event


def fills(event: OrderPlaced, venue) -> list[tuple[str, str, int]]:
    """(price, qty, maker account) per fill, in match order."""
    spec = venue.specs[SOL_USDC]
    return [(spec.format_price(f.price_ticks), spec.format_qty(f.qty_steps), f.maker_account_id) for f in event.fills]


def resting(venue) -> dict[str, list[tuple[str, list[tuple[int, str]]]]]:
    """Both sides of the book, best first: price -> [(order id, remaining qty)]."""
    spec = venue.specs[SOL_USDC]
    book = venue.markets[SOL_USDC].book
    return {
        side: [(spec.format_price(p), [(o.order_id, spec.format_qty(o.remaining_steps)) for o in lvl.values()])
               for p, lvl in book.levels(side)]
        for side in (BID, ASK)
    }


# --- time in force ---------------------------------------------------------------


def test_gtc_bid_sweeps_two_levels_and_rests_the_rest(v) -> None:
    a1 = placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    a2 = placed(v.venue, limit(v.venue, v.n, ASK, "101", "2"))
    assert (a1.status, a2.status) == ("New", "New")
    e = placed(v.venue, limit(v.venue, v.t, BID, "101", "4"))
    assert (e.status, e.expiry_reason) == ("PartiallyFilled", "")
    assert fills(e, v.venue) == [("100", "1", v.m), ("101", "2", v.n)]
    assert resting(v.venue) == {BID: [("101", [(e.order_id, "1")])], ASK: []}
    # paid 100 + 202 USDC, 101 still locked for the resting 1 SOL; received 3 SOL less 5 bps
    assert capital(v.venue, v.t) == {"SOL": ("1002.9985", "0"), "USDC": ("99597", "101")}
    assert capital(v.venue, v.m) == {"SOL": ("999", "0"), "USDC": ("100099.98", "0")}
    assert capital(v.venue, v.n) == {"SOL": ("998", "0"), "USDC": ("100201.9596", "0")}
    view = v.venue.markets[SOL_USDC].view_placed(e)
    assert (view.executed_steps, view.executed_quote) == (steps(v.venue, "3"), 302 * USDC)


def test_gtc_that_does_not_cross_rests_as_new(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "99.99", "1"))
    assert (e.status, e.fills) == ("New", [])
    assert v.venue.markets[SOL_USDC].book.best_bid() == ticks(v.venue, "99.99")
    assert capital(v.venue, v.t)["USDC"] == ("99900.01", "99.99")


def test_ioc_fills_what_it_can_and_expires_the_rest(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "100", "3", tif=IOC))
    assert (e.status, e.expiry_reason) == ("Expired", "ImmediateOrCancel")
    assert fills(e, v.venue) == [("100", "1", v.m)]
    assert resting(v.venue) == {BID: [], ASK: []}
    assert capital(v.venue, v.t) == {"SOL": ("1000.9995", "0"), "USDC": ("99900", "0")}


def test_ioc_with_nothing_to_match_expires_without_trading(v) -> None:
    e = placed(v.venue, limit(v.venue, v.t, BID, "100", "1", tif=IOC))
    assert (e.status, e.expiry_reason, e.fills) == ("Expired", "ImmediateOrCancel", [])
    assert capital(v.venue, v.t)["USDC"] == ("100000", "0")


def test_ioc_fully_filled_is_filled(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "2"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "100", "2", tif=IOC))
    assert (e.status, e.expiry_reason) == ("Filled", "")


def test_fok_with_enough_liquidity_fills_completely(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    placed(v.venue, limit(v.venue, v.n, ASK, "100.5", "1"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "100.5", "2", tif=FOK))
    assert e.status == "Filled"
    assert fills(e, v.venue) == [("100", "1", v.m), ("100.5", "1", v.n)]


def test_fok_without_enough_liquidity_expires_and_changes_nothing(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    placed(v.venue, limit(v.venue, v.n, ASK, "102", "5"))  # beyond the limit price
    before = v.venue.state_hash()
    e = placed(v.venue, limit(v.venue, v.t, BID, "101", "2", tif=FOK))
    assert (e.status, e.expiry_reason, e.fills, e.stp_cancelled) == ("Expired", "FillOrKill", [], [])
    assert v.venue.state_hash() == before
    assert v.venue.markets[SOL_USDC].next_trade_id == 1


def test_fok_with_reject_maker_cancels_own_order_and_fills(v) -> None:
    own = placed(v.venue, limit(v.venue, v.t, ASK, "100", "1")).order_id
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "100", "1", tif=FOK, stp=REJECT_MAKER))
    assert (e.status, e.stp_cancelled) == ("Filled", [own])
    assert fills(e, v.venue) == [("100", "1", v.m)]


def test_fok_stopped_by_own_order_expires_fill_or_kill(v) -> None:
    own = placed(v.venue, limit(v.venue, v.t, ASK, "100", "1")).order_id
    placed(v.venue, limit(v.venue, v.n, ASK, "100", "1"))
    for stp in (REJECT_TAKER, REJECT_BOTH):
        before = v.venue.state_hash()
        e = placed(v.venue, limit(v.venue, v.t, BID, "100", "1", tif=FOK, stp=stp))
        assert (e.status, e.expiry_reason, e.fills, e.stp_cancelled) == ("Expired", "FillOrKill", [], [])
        assert v.venue.state_hash() == before
        assert own in v.venue.markets[SOL_USDC].book.orders


# --- post-only ------------------------------------------------------------------------


def test_post_only_that_would_cross_expires_post_only_taker(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    before = v.venue.state_hash()
    e = placed(v.venue, limit(v.venue, v.t, BID, "100", "1", post_only=True))
    assert (e.status, e.expiry_reason, e.fills) == ("Expired", "PostOnlyTaker", [])
    assert v.venue.state_hash() == before


def test_post_only_that_does_not_cross_rests(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "99.99", "1", post_only=True))
    assert e.status == "New"
    assert v.venue.markets[SOL_USDC].book.orders[e.order_id].post_only is True


# --- self-trade prevention ------------------------------------------------------------------


@pytest.fixture
def stp_book(v) -> SimpleNamespace:
    """Asks: m 1@100, then t's own 1@100, then m 1@101."""
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    v.own = placed(v.venue, limit(v.venue, v.t, ASK, "100", "1")).order_id
    placed(v.venue, limit(v.venue, v.m, ASK, "101", "1"))
    return v


def test_stp_reject_taker_expires_the_taker_at_its_own_order(stp_book) -> None:
    v = stp_book
    e = placed(v.venue, limit(v.venue, v.t, BID, "101", "3", stp=REJECT_TAKER))
    assert (e.status, e.expiry_reason) == ("Expired", "SelfTradePrevention")
    assert fills(e, v.venue) == [("100", "1", v.m)]
    assert e.stp_cancelled == []
    assert resting(v.venue)[ASK] == [("100", [(v.own, "1")]), ("101", [(v.own + 1, "1")])]
    assert capital(v.venue, v.t) == {"SOL": ("999.9995", "1"), "USDC": ("99900", "0")}


def test_stp_reject_both_expires_the_taker_and_cancels_the_own_maker(stp_book) -> None:
    v = stp_book
    e = placed(v.venue, limit(v.venue, v.t, BID, "101", "3", stp=REJECT_BOTH))
    assert (e.status, e.expiry_reason) == ("Expired", "SelfTradePrevention")
    assert fills(e, v.venue) == [("100", "1", v.m)]
    assert e.stp_cancelled == [v.own]
    assert resting(v.venue)[ASK] == [("101", [(v.own + 1, "1")])]
    assert v.own not in v.venue.accounts[v.t].orders
    assert capital(v.venue, v.t) == {"SOL": ("1000.9995", "0"), "USDC": ("99900", "0")}


def test_stp_reject_maker_cancels_own_makers_and_keeps_matching(stp_book) -> None:
    v = stp_book
    e = placed(v.venue, limit(v.venue, v.t, BID, "101", "3", stp=REJECT_MAKER))
    assert (e.status, e.expiry_reason) == ("PartiallyFilled", "")
    assert fills(e, v.venue) == [("100", "1", v.m), ("101", "1", v.m)]
    assert e.stp_cancelled == [v.own]
    assert resting(v.venue) == {BID: [("101", [(e.order_id, "1")])], ASK: []}
    # own ask's 1 SOL unlocked; 2 SOL bought less 5 bps; 201 paid, 101 locked
    assert capital(v.venue, v.t) == {"SOL": ("1001.999", "0"), "USDC": ("99698", "101")}


def test_stp_only_applies_to_the_same_account(v) -> None:
    sub = open_account(v.venue, parent_id=v.t)
    fund(v.venue, sub, "USDC", "1000")
    placed(v.venue, limit(v.venue, v.t, ASK, "100", "1"))
    e = placed(v.venue, limit(v.venue, sub, BID, "100", "1"))
    assert e.status == "Filled" and fills(e, v.venue) == [("100", "1", v.t)]


# --- market orders ------------------------------------------------------------------------------


@pytest.fixture
def asks(v) -> SimpleNamespace:
    """Asks: m 1@100, n 1@101."""
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    placed(v.venue, limit(v.venue, v.n, ASK, "101", "1"))
    return v


def test_market_bid_by_quantity_fills_across_levels(asks) -> None:
    v = asks
    e = placed(v.venue, market(v.venue, v.t, BID, qty="1.5"))
    assert (e.status, e.expiry_reason) == ("Filled", "")
    assert fills(e, v.venue) == [("100", "1", v.m), ("101", "0.5", v.n)]
    assert e.lock == 100_000 * USDC  # all available quote was held, then released
    assert capital(v.venue, v.t) == {"SOL": ("1001.49925", "0"), "USDC": ("99849.5", "0")}


def test_market_bid_by_quantity_runs_out_of_book(asks) -> None:
    v = asks
    e = placed(v.venue, market(v.venue, v.t, BID, qty="3"))
    assert (e.status, e.expiry_reason) == ("Expired", "InsufficientLiquidity")
    assert fills(e, v.venue) == [("100", "1", v.m), ("101", "1", v.n)]
    assert resting(v.venue) == {BID: [], ASK: []}


def test_market_bid_by_quantity_limited_by_funds_expires_insufficient_funds(asks) -> None:
    v = asks
    poor = open_account(v.venue)
    fund(v.venue, poor, "USDC", "120")
    e = placed(v.venue, market(v.venue, poor, BID, qty="2"))
    assert (e.status, e.expiry_reason) == ("Expired", "InsufficientFunds")
    # 100 buys the first SOL; the last 20 buy 0.19 SOL at 101 (19.19), 0.81 cannot buy 0.01 more
    assert fills(e, v.venue) == [("100", "1", v.m), ("101", "0.19", v.n)]
    assert capital(v.venue, poor) == {"SOL": ("1.189405", "0"), "USDC": ("0.81", "0")}


def test_market_bid_by_quote_buys_as_close_as_possible(asks) -> None:
    v = asks
    e = placed(v.venue, market(v.venue, v.t, BID, quote="150"))
    assert (e.status, e.expiry_reason) == ("Filled", "")
    assert e.lock == 150 * USDC
    assert fills(e, v.venue) == [("100", "1", v.m), ("101", "0.49", v.n)]
    view = v.venue.markets[SOL_USDC].view_placed(e)
    assert view.executed_quote == 149_490_000  # 0.51 short of 150: one more step costs 1.01
    assert capital(v.venue, v.t) == {"SOL": ("1001.489255", "0"), "USDC": ("99850.51", "0")}


def test_market_bid_by_quote_exact_amount_is_filled(asks) -> None:
    v = asks
    e = placed(v.venue, market(v.venue, v.t, BID, quote="100"))
    assert (e.status, fills(e, v.venue)) == ("Filled", [("100", "1", v.m)])


def test_market_bid_by_quote_runs_out_of_book(asks) -> None:
    v = asks
    e = placed(v.venue, market(v.venue, v.t, BID, quote="500"))
    assert (e.status, e.expiry_reason) == ("Expired", "InsufficientLiquidity")
    assert fills(e, v.venue) == [("100", "1", v.m), ("101", "1", v.n)]
    assert capital(v.venue, v.t)["USDC"] == ("99799", "0")


def test_fok_market_bid_by_quote_that_the_book_cannot_fill_changes_nothing(asks) -> None:
    # Regression: a FOK sized in quote was tested against qty_steps (0), so it always passed and traded part
    v = asks
    before = v.venue.state_hash()
    e = placed(v.venue, market(v.venue, v.t, BID, quote="500", tif=FOK))  # the book holds 201 USDC of asks
    assert (e.status, e.expiry_reason, e.fills) == ("Expired", "FillOrKill", [])
    assert v.venue.state_hash() == before


def test_fok_market_bid_by_quote_that_the_book_can_fill_fills(asks) -> None:
    v = asks
    e = placed(v.venue, market(v.venue, v.t, BID, quote="150", tif=FOK))
    assert (e.status, fills(e, v.venue)) == ("Filled", [("100", "1", v.m), ("101", "0.49", v.n)])


def test_fok_market_ask_by_quote_that_cannot_fill_cancels_no_own_order(asks) -> None:
    # Regression: with RejectMaker the expiring FOK still cancelled the taker's own resting bid
    v = asks
    own_bid = placed(v.venue, limit(v.venue, v.t, BID, "99", "1"))
    before = v.venue.state_hash()
    other = open_account(v.venue)
    fund(v.venue, other, "USDC", "10")
    placed(v.venue, limit(v.venue, other, BID, "98", "0.01"))
    before = v.venue.state_hash()
    e = placed(v.venue, market(v.venue, v.t, ASK, quote="1000", tif=FOK, stp=REJECT_MAKER))
    assert (e.status, e.expiry_reason, e.fills, e.stp_cancelled) == ("Expired", "FillOrKill", [], [])
    assert own_bid.order_id in v.venue.markets[SOL_USDC].book.orders
    assert v.venue.state_hash() == before


@pytest.fixture
def bids(v) -> SimpleNamespace:
    """Bids: m 1@100, n 1@99."""
    placed(v.venue, limit(v.venue, v.m, BID, "100", "1"))
    placed(v.venue, limit(v.venue, v.n, BID, "99", "1"))
    return v


def test_market_ask_by_quantity(bids) -> None:
    v = bids
    e = placed(v.venue, market(v.venue, v.t, ASK, qty="1.5"))
    assert (e.status, fills(e, v.venue)) == ("Filled", [("100", "1", v.m), ("99", "0.5", v.n)])
    assert e.lock == 1_500_000_000  # exactly the SOL it sells
    # received 149.5 USDC less 5 bps (0.07475)
    assert capital(v.venue, v.t) == {"SOL": ("998.5", "0"), "USDC": ("100149.42525", "0")}


def test_market_ask_by_quantity_runs_out_of_book(bids) -> None:
    v = bids
    e = placed(v.venue, market(v.venue, v.t, ASK, qty="5"))
    assert (e.status, e.expiry_reason) == ("Expired", "InsufficientLiquidity")
    assert capital(v.venue, v.t)["SOL"] == ("998", "0")


def test_market_ask_by_quote_receives_as_close_as_possible(bids) -> None:
    v = bids
    e = placed(v.venue, market(v.venue, v.t, ASK, quote="150"))
    assert (e.status, e.expiry_reason) == ("Filled", "")
    assert fills(e, v.venue) == [("100", "1", v.m), ("99", "0.5", v.n)]  # 100 + 49.5 = 149.5


def test_market_ask_by_quote_limited_by_base_expires_insufficient_funds(bids) -> None:
    v = bids
    seller = open_account(v.venue)
    fund(v.venue, seller, "SOL", "1.5")
    e = placed(v.venue, market(v.venue, seller, ASK, quote="180"))
    assert (e.status, e.expiry_reason) == ("Expired", "InsufficientFunds")
    assert fills(e, v.venue) == [("100", "1", v.m), ("99", "0.5", v.n)]
    assert capital(v.venue, seller) == {"USDC": ("149.42525", "0")}  # emptied assets are not listed


def test_market_ask_by_quote_reaching_the_quote_with_the_last_base_is_filled(bids) -> None:
    # Regression: selling exactly all held SOL for exactly quoteQuantity was Expired InsufficientFunds.
    v = bids
    seller = open_account(v.venue)
    fund(v.venue, seller, "SOL", "1")
    e = placed(v.venue, market(v.venue, seller, ASK, quote="100"))
    assert (e.status, e.expiry_reason) == ("Filled", "")
    assert fills(e, v.venue) == [("100", "1", v.m)]


def test_market_ask_by_quote_with_less_than_one_step_of_base_trades_nothing(bids) -> None:
    # Regression: a dust balance (0.000001 SOL, under one 0.01 step) produced a zero-quantity trade.
    v = bids
    dust = open_account(v.venue)
    fund(v.venue, dust, "SOL", "0.000001")
    before = v.venue.state_hash()
    e = placed(v.venue, market(v.venue, dust, ASK, quote="10"))
    assert (e.status, e.expiry_reason, e.fills) == ("Expired", "InsufficientFunds", [])
    assert v.venue.state_hash() == before
    assert v.venue.markets[SOL_USDC].next_trade_id == 1


# --- price band ------------------------------------------------------------------------------------


@pytest.fixture
def banded(v) -> SimpleNamespace:
    """Last trade 100, best bid 90, best ask 118: active price = median = 100, band [75, 125]."""
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    placed(v.venue, limit(v.venue, v.n, BID, "100", "1"))
    placed(v.venue, limit(v.venue, v.m, BID, "90", "1"))
    placed(v.venue, limit(v.venue, v.m, ASK, "118", "1"))
    assert v.venue.markets[SOL_USDC].active_price() == (ticks(v.venue, "100"), 1)
    return v


@pytest.mark.parametrize(
    ("side", "price", "status", "reason"),
    [
        (BID, "75", "New", ""),
        (BID, "74.99", "Expired", "PriceOutOfBounds"),  # the mean (102.67) would put 75 out of band
        (ASK, "125", "New", ""),
        (ASK, "125.01", "Expired", "PriceOutOfBounds"),
        (ASK, "128", "Expired", "PriceOutOfBounds"),  # inside a band around the mean (128.33)
        (BID, "130", "Expired", "PriceOutOfBounds"),  # marketable, but outside the band
    ],
)
def test_limit_price_band_is_around_the_median(banded, side: str, price: str, status: str, reason: str) -> None:
    v = banded
    before = v.venue.state_hash()
    e = placed(v.venue, limit(v.venue, v.t, side, price, "0.1"))
    assert (e.status, e.expiry_reason) == (status, reason)
    if status == "Expired":
        assert e.fills == [] and v.venue.state_hash() == before


@pytest.mark.parametrize(
    ("book", "low", "high"),
    [
        ((BID, "102", ASK, "110"), "76.50", "127.50"),  # last 100 below the bid: the bid is the median
        ((ASK, "98", BID, "90"), "73.50", "122.50"),  # last 100 above the ask: the ask is the median
    ],
)
def test_band_median_when_the_last_trade_is_outside_the_spread(v, book: tuple[str, ...], low: str, high: str) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    placed(v.venue, limit(v.venue, v.n, BID, "100", "1"))  # last 100, book empty
    placed(v.venue, limit(v.venue, v.m, book[0], book[1], "1"))
    placed(v.venue, limit(v.venue, v.m, book[2], book[3], "1"))
    spec = v.venue.specs[SOL_USDC]
    lo, hi = ticks(v.venue, low), ticks(v.venue, high)
    for side, price, ok in ((BID, lo, True), (BID, lo - 1, False), (ASK, hi, True), (ASK, hi + 1, False)):
        text = spec.format_price(price)
        e = placed(v.venue, limit(v.venue, v.t, side, text, "0.1"))
        assert (e.status == "New") is ok and e.expiry_reason == ("" if ok else "PriceOutOfBounds"), (side, text)


def test_two_reference_prices_average(v) -> None:
    placed(v.venue, limit(v.venue, v.m, BID, "100", "1"))
    placed(v.venue, limit(v.venue, v.m, ASK, "110", "1"))  # active 100 when placed: 110 <= 125
    mkt = v.venue.markets[SOL_USDC]
    assert mkt.active_price() == (ticks(v.venue, "100") + ticks(v.venue, "110"), 2)  # 105
    assert placed(v.venue, limit(v.venue, v.t, BID, "78.75", "1")).status == "New"  # 0.75 x 105
    e = placed(v.venue, limit(v.venue, v.t, BID, "78.74", "1"))
    assert e.expiry_reason == "PriceOutOfBounds"


def test_empty_market_accepts_any_price(v) -> None:
    assert v.venue.markets[SOL_USDC].active_price() is None
    assert placed(v.venue, limit(v.venue, v.t, BID, "0.01", "1")).status == "New"


def test_market_orders_are_not_banded(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    placed(v.venue, limit(v.venue, v.m, ASK, "124", "1"))
    e = placed(v.venue, market(v.venue, v.t, BID, qty="2"))
    assert e.status == "Filled" and e.fills[-1].price_ticks == ticks(v.venue, "124")


# --- market states ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "message"),
    [("Closed", "Market SOL_USDC is closed"), ("CancelOnly", "Market SOL_USDC is in cancel-only mode")],
)
def test_closed_and_cancel_only_reject_new_orders(v, state: str, message: str) -> None:
    set_state(v.venue, state)
    before = v.venue.state_hash()
    for cmd in (limit(v.venue, v.t, BID, "100", "1"), market(v.venue, v.t, BID, qty="1")):
        assert place(v.venue, cmd) == Rejection("TRADING_PAUSED", message)
    assert v.venue.state_hash() == before
    assert v.venue.accounts[v.t].held == {"USDC": 0}  # the hold was released


def test_closed_rejects_cancels_but_cancel_only_allows_them(v) -> None:
    order_id = placed(v.venue, limit(v.venue, v.t, BID, "100", "1")).order_id
    set_state(v.venue, "Closed")
    assert cancel(v.venue, v.t, order_id) == Rejection("TRADING_PAUSED", "Market SOL_USDC is closed")
    # cancel-all is refused the same way (it answered "none cancelled" and left the order resting)
    assert v.venue.markets[SOL_USDC].decide_cancel_all(v.t, NOW_US) == Rejection(
        "TRADING_PAUSED", "Market SOL_USDC is closed"
    )
    set_state(v.venue, "CancelOnly")
    assert amend(v.venue, v.t, order_id, qty="0.5") == Rejection(
        "TRADING_PAUSED", "Market SOL_USDC does not accept amendments now (CancelOnly)"
    )
    assert isinstance(cancel(v.venue, v.t, order_id), OrderCancelled)
    assert capital(v.venue, v.t)["USDC"] == ("100000", "0")


def test_limit_only_rejects_market_orders_and_trades_limits(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    set_state(v.venue, "LimitOnly")
    assert place(v.venue, market(v.venue, v.t, BID, qty="1")) == Rejection(
        "INVALID_ORDER", "Market SOL_USDC is in limit-only mode: market orders are not accepted"
    )
    assert placed(v.venue, limit(v.venue, v.t, BID, "100", "1")).status == "Filled"


def test_post_only_state_expires_crossing_limits_and_rests_others(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    set_state(v.venue, "PostOnly")
    e = placed(v.venue, limit(v.venue, v.t, BID, "100", "1"))
    assert (e.status, e.expiry_reason, e.fills) == ("Expired", "PostOnlyMode", [])
    assert placed(v.venue, limit(v.venue, v.t, BID, "99", "1")).status == "New"
    rejected = place(v.venue, market(v.venue, v.t, BID, qty="1"))
    assert isinstance(rejected, Rejection) and rejected.code == "INVALID_ORDER"
    assert "post-only mode" in rejected.message


def test_set_state_to_the_current_state_is_refused(v) -> None:
    mkt = v.venue.markets[SOL_USDC]
    assert mkt.decide_state(SetMarketState(SOL_USDC, "Open"), NOW_US) == Rejection(
        "PRECONDITION_FAILED", "Market SOL_USDC is already Open"
    )


# --- fees and trade ids ------------------------------------------------------------------------------


def test_fees_on_one_sol_at_100(v) -> None:
    placed(v.venue, limit(v.venue, v.m, ASK, "100", "1"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "100", "1"))
    assert e.fills == [Fill(1, 1, v.m, ticks(v.venue, "100"), steps(v.venue, "1"), 20_000, 500_000)]
    assert capital(v.venue, 0) == {"SOL": ("0.0005", "0"), "USDC": ("0.02", "0")}


def test_fees_round_up_to_a_whole_atom(v) -> None:
    # 0.03 SOL at 1.23 = 0.0369 USDC = 36_900 atoms; maker 2 bps = 7.38 -> 8; taker 5 bps on 3e7 SOL atoms = 15_000
    placed(v.venue, limit(v.venue, v.m, ASK, "1.23", "0.03"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "1.23", "0.03"))
    assert [(f.maker_fee, f.taker_fee) for f in e.fills] == [(8, 15_000)]
    # the other way: taker receives 36_900 USDC atoms, 5 bps = 18.45 -> 19; maker 2 bps of 3e7 = 6_000
    placed(v.venue, limit(v.venue, v.m, BID, "1.23", "0.03"))
    e = placed(v.venue, limit(v.venue, v.t, ASK, "1.23", "0.03"))
    assert [(f.maker_fee, f.taker_fee) for f in e.fills] == [(6_000, 19)]
    fee_account = v.venue.accounts[0]
    assert fee_account.balances == {"SOL": 21_000, "USDC": 27}
    t = v.venue.accounts[v.t]
    assert t.balances["USDC"] == atoms(v.venue, "USDC", "100000") - 36_900 + 36_900 - 19
    assert t.balances["SOL"] == atoms(v.venue, "SOL", "1000") + 30_000_000 - 15_000 - 30_000_000


def test_fees_round_up_on_base_atoms(v) -> None:
    # BTC_USDC: one step is 0.00001 BTC = 1_000 atoms; 5 bps is 0.5 atom -> 1
    fund(v.venue, v.m, "BTC", "1")
    placed(v.venue, limit(v.venue, v.m, ASK, "30000", "0.00001", symbol="BTC_USDC"))
    e = placed(v.venue, limit(v.venue, v.t, BID, "30000", "0.00001", symbol="BTC_USDC"))
    assert [(f.maker_fee, f.taker_fee) for f in e.fills] == [(60, 1)]  # 0.3 USDC x 2 bps = 60 atoms
    assert v.venue.accounts[v.t].balances["BTC"] == 999


def test_zero_fee_market_credits_the_full_amount_and_skips_the_fee_account() -> None:
    venue = make_venue(maker_fee_bps=0, taker_fee_bps=0)
    m, t = open_account(venue), open_account(venue)
    fund(venue, m, "SOL", "1")
    fund(venue, t, "USDC", "100")
    placed(venue, limit(venue, m, ASK, "100", "1"))
    e = placed(venue, limit(venue, t, BID, "100", "1"))
    assert [(f.maker_fee, f.taker_fee) for f in e.fills] == [(0, 0)]
    assert venue.accounts[t].balances == {"USDC": 0, "SOL": SOL}
    assert venue.accounts[m].balances == {"SOL": 0, "USDC": 100 * USDC}
    assert venue.accounts[0].balances == {}


def test_trade_ids_are_sequential_across_orders(v) -> None:
    for price in ("100", "100.01", "100.02"):
        placed(v.venue, limit(v.venue, v.m, ASK, price, "1"))
    first = placed(v.venue, limit(v.venue, v.t, BID, "100.01", "2"))
    placed(v.venue, limit(v.venue, v.t, BID, "90", "1", tif=IOC))  # no trade, no id
    second = placed(v.venue, market(v.venue, v.t, BID, qty="1"))
    assert [f.trade_id for f in first.fills + second.fills] == [1, 2, 3]
    mkt = v.venue.markets[SOL_USDC]
    assert (mkt.next_trade_id, mkt.last_price) == (4, ticks(v.venue, "100.02"))


# --- amend --------------------------------------------------------------------------------------------


@pytest.fixture
def queue(v) -> SimpleNamespace:
    """Asks at 100: m's 2 SOL (order a), then n's 1 SOL (order b)."""
    v.a = placed(v.venue, limit(v.venue, v.m, ASK, "100", "2")).order_id
    v.b = placed(v.venue, limit(v.venue, v.n, ASK, "100", "1")).order_id
    return v


def first_maker(v) -> int:
    return placed(v.venue, limit(v.venue, v.t, BID, "100", "0.5")).fills[0].maker_order_id


def test_amend_quantity_down_keeps_priority(queue) -> None:
    v = queue
    e = amend(v.venue, v.m, v.a, qty="1")
    assert isinstance(e, OrderAmended) and e.lock == 1 * SOL
    assert resting(v.venue)[ASK] == [("100", [(v.a, "1"), (v.b, "1")])]
    assert capital(v.venue, v.m)["SOL"] == ("999", "1")
    assert first_maker(v) == v.a


def test_amend_quantity_up_loses_priority(queue) -> None:
    v = queue
    e = amend(v.venue, v.m, v.a, qty="3")
    assert isinstance(e, OrderAmended) and (e.lock, e.hold) == (3 * SOL, 1 * SOL)
    assert resting(v.venue)[ASK] == [("100", [(v.b, "1"), (v.a, "3")])]
    assert capital(v.venue, v.m)["SOL"] == ("997", "3")
    assert first_maker(v) == v.b


def test_amend_price_loses_priority_even_when_moved_back(queue) -> None:
    v = queue
    assert isinstance(amend(v.venue, v.m, v.a, price="100.5"), OrderAmended)
    assert resting(v.venue)[ASK] == [("100", [(v.b, "1")]), ("100.5", [(v.a, "2")])]
    assert isinstance(amend(v.venue, v.m, v.a, price="100"), OrderAmended)
    assert resting(v.venue)[ASK] == [("100", [(v.b, "1"), (v.a, "2")])]
    assert first_maker(v) == v.b


def test_amend_bid_price_moves_the_quote_lock(v) -> None:
    order_id = placed(v.venue, limit(v.venue, v.t, BID, "100", "2")).order_id
    e = amend(v.venue, v.t, order_id, price="99.5")
    assert isinstance(e, OrderAmended) and (e.lock, e.hold) == (199 * USDC, 0)
    assert capital(v.venue, v.t)["USDC"] == ("99801", "199")
    e = amend(v.venue, v.t, order_id, price="101", qty="3")
    assert isinstance(e, OrderAmended) and e.lock == 303 * USDC
    assert capital(v.venue, v.t)["USDC"] == ("99697", "303")


def test_amend_that_would_cross_is_rejected(queue) -> None:
    v = queue
    bid = placed(v.venue, limit(v.venue, v.t, BID, "99", "1")).order_id
    before = v.venue.state_hash()
    assert amend(v.venue, v.t, bid, price="100") == Rejection(
        "INVALID_PRICE", "Amended price would cross the book; cancel and place a new order"
    )
    assert v.venue.state_hash() == before


def test_amend_outside_the_band_is_rejected(queue) -> None:
    v = queue
    placed(v.venue, limit(v.venue, v.t, BID, "100", "0.5"))  # last price 100
    assert amend(v.venue, v.m, v.a, price="126") == Rejection("INVALID_PRICE", "Amended price is outside the price band")


def test_amend_to_or_below_the_executed_quantity_is_rejected(queue) -> None:
    v = queue
    placed(v.venue, limit(v.venue, v.t, BID, "100", "1.5"))  # a: 1.5 of 2 executed
    for qty in ("1.5", "1"):
        assert amend(v.venue, v.m, v.a, qty=qty) == Rejection(
            "INVALID_QUANTITY", "New quantity must exceed the executed quantity 1.5"
        )
    e = amend(v.venue, v.m, v.a, qty="1.6")
    assert isinstance(e, OrderAmended) and e.lock == SOL // 10
    assert resting(v.venue)[ASK] == [("100", [(v.a, "0.1"), (v.b, "1")])]
    assert capital(v.venue, v.m)["SOL"] == ("998.4", "0.1")


def test_amend_below_the_minimum_notional_is_rejected(v) -> None:
    # Regression: 0.01 SOL at 10 (0.1 USDC) is refused as a new order but was accepted as an amendment
    order_id = placed(v.venue, limit(v.venue, v.t, BID, "10", "1")).order_id
    before = v.venue.state_hash()
    assert amend(v.venue, v.t, order_id, qty="0.01") == Rejection(
        "INVALID_ORDER", "Order value 0.1 USDC is below the minimum notional 1 USDC"
    )
    assert v.venue.state_hash() == before
    assert isinstance(amend(v.venue, v.t, order_id, qty="0.1"), OrderAmended)  # 1 USDC: exactly the minimum


def test_amend_without_funds_is_rejected_by_the_account(queue) -> None:
    v = queue
    assert amend(v.venue, v.m, v.a, qty="1000.01") == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds to amend: needs up to 998.01 SOL more, available 998 SOL"
    )


def test_market_refuses_an_amend_whose_hold_is_too_small(queue) -> None:
    v = queue
    cmd = AmendOrder(v.m, SOL_USDC, v.a, -1, 0, steps(v.venue, "3"), hold=SOL - 1)
    assert v.venue.markets[SOL_USDC].decide_amend(cmd, NOW_US) == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds for the amended order"
    )


def test_amend_of_another_accounts_order_is_not_found(queue) -> None:
    v = queue
    assert amend(v.venue, v.t, v.a, qty="1") == Rejection("RESOURCE_NOT_FOUND", "Order not found")
    cmd = AmendOrder(v.t, SOL_USDC, v.a, -1, 0, steps(v.venue, "1"))
    assert v.venue.markets[SOL_USDC].decide_amend(cmd, NOW_US) == Rejection("RESOURCE_NOT_FOUND", "Order not found")


# --- cancel -------------------------------------------------------------------------------------------


def test_cancel_releases_the_lock(queue) -> None:
    v = queue
    e = cancel(v.venue, v.m, v.a)
    assert e == OrderCancelled(v.a, v.m, SOL_USDC, NOW_US)
    assert resting(v.venue)[ASK] == [("100", [(v.b, "1")])]
    assert capital(v.venue, v.m)["SOL"] == ("1000", "0")


def test_cancel_of_another_accounts_order_is_not_found(queue) -> None:
    v = queue
    before = v.venue.state_hash()
    assert cancel(v.venue, v.t, v.a) == Rejection("RESOURCE_NOT_FOUND", "Order not found")
    assert cancel(v.venue, v.m, 999) == Rejection("RESOURCE_NOT_FOUND", "Order not found")
    assert v.venue.state_hash() == before


def test_cancel_all_cancels_only_the_accounts_orders(queue) -> None:
    v = queue
    extra = placed(v.venue, limit(v.venue, v.m, BID, "90", "1")).order_id
    mkt = v.venue.markets[SOL_USDC]
    events = mkt.decide_cancel_all(v.m, NOW_US)
    assert sorted(e.order_id for e in events) == sorted([v.a, extra])
    for e in events:
        v.venue.apply(e)
    v.venue.check_invariants()
    assert resting(v.venue) == {BID: [], ASK: [("100", [(v.b, "1")])]}
    assert capital(v.venue, v.m) == {"SOL": ("1000", "0"), "USDC": ("100000", "0")}


def test_filled_order_cannot_be_cancelled(queue) -> None:
    v = queue
    placed(v.venue, limit(v.venue, v.t, BID, "100", "2"))
    assert cancel(v.venue, v.m, v.a) == Rejection("RESOURCE_NOT_FOUND", "Order not found")


def test_fast_event_builders_build_exactly_what_attrs_builds() -> None:
    """decide_* build OrderPlaced/Fill through generated constructors; they must equal the attrs-built ones."""
    import attrs

    from engine.market import _fill, _placed_from

    fill_args = (7, 3, 2, 10_000, 5, 1, 2)
    assert _fill(*fill_args) == Fill(*fill_args)
    placed_args = (9, 2, "SOL_USDC", BID, "Limit", "GTC", 10_000, 5, 0, False, REJECT_TAKER, -1, 50_000, 123,
                   "PartiallyFilled", "", [Fill(*fill_args)], [4])
    built = _placed_from(PlaceOrder(*placed_args[:13]), *placed_args[13:])  # the order's fields from its command
    assert type(built) is OrderPlaced and built == OrderPlaced(*placed_args)
    assert attrs.asdict(built) == attrs.asdict(OrderPlaced(*placed_args))


_ratio = st.tuples(st.integers(0, 20), st.integers(1, 20))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 2 * 10**9), st.integers(1, 2 * 10**9), _ratio, _ratio)
def test_cached_band_accepts_exactly_the_prices_of_the_band_rule(
    twice: int, limit: int, low: tuple[int, int], high: tuple[int, int],
) -> None:
    """decide_place's whole-tick band (cached per twice the active price, which may be a half tick) against
    the rule lo*active <= limit <= hi*active, with active = twice / 2."""
    sol = make_venue().markets[SOL_USDC]
    sol._band = (*low, *high)
    sol._band_for(twice)
    rule = low[0] * twice <= 2 * limit * low[1] and 2 * limit * high[1] <= high[0] * twice
    assert (sol._band_lo <= limit <= sol._band_hi) == rule



@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**6), st.integers(1, 10**6), st.integers(0, 3 * 10**6), st.integers(1, 3 * 10**6),
       _ratio, _ratio)
def test_cached_band_path_agrees_with_the_full_band_rule(
    bid: int, spread: int, last: int, limit: int, low: tuple[int, int], high: tuple[int, int],
) -> None:
    """A limit order's band check (``_limit_in_band``: cached, half ticks before the first trade) decides as
    ``_in_band`` (the median of bid, ask and last, or the mean of those present) on any two-sided book."""
    sol = make_venue().markets[SOL_USDC]
    sol._band = (*low, *high)
    sol.last_price = last  # 0: no trade yet
    sol.book.place(1, 7, BID, bid, 1, 1, 0, -1, False, REJECT_TAKER, 0)
    sol.book.place(2, 7, ASK, bid + spread, 1, 1, 0, -1, False, REJECT_TAKER, 0)
    assert sol._limit_in_band(limit, sol.book.bid_keys, sol.book.ask_prices) == sol._in_band(limit)

def test_place_order_builder_builds_what_attrs_builds() -> None:
    """The intake builds PlaceOrder through a generated constructor (defaults passed positionally)."""
    from engine.intake import new_place_order as _place_order

    args = (9, 2, "SOL_USDC", BID, "Limit", "GTC", 10_000, 5, 0, False, REJECT_TAKER, -1, 0)
    built = _place_order(*args)
    assert type(built) is PlaceOrder and built == PlaceOrder(*args[:12])
