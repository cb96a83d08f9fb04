"""Price-time priority order book (engine/book.py), driven directly with ticks and steps."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book import UNLIMITED, Order, OrderBook
from engine.messages import ASK, BID, REJECT_BOTH, REJECT_MAKER, REJECT_TAKER

QPTS = 100  # quote atoms per tick*step, as on SOL_USDC


def order(order_id: int, side: str, price: int, qty: int, account_id: int = 1, remaining: int | None = None) -> Order:
    return Order(order_id, account_id, side, price, qty, qty if remaining is None else remaining, 0, -1, False, REJECT_TAKER, 0)


def book_with(*orders: Order) -> OrderBook:
    book = OrderBook()
    for o in orders:
        book.rest(o)
    book.check()
    return book


def snapshot(book: OrderBook) -> tuple[object, ...]:
    """Everything observable about a book, by value."""
    return (
        [(s, [(p, [(o.order_id, o.remaining_steps, o.executed_quote) for o in lvl.values()]) for p, lvl in book.levels(s)])
         for s in (BID, ASK)],
        list(book.bid_keys), list(book.ask_prices), dict(book.level_steps), sorted(book.orders),
    )


def walk(book: OrderBook, side: str, limit: int, qty: int = UNLIMITED, quote: int = UNLIMITED,
         account_id: int = 99, stp: str = REJECT_TAKER):
    return book.walk(side, limit, qty, quote, QPTS, account_id, stp)


def test_empty_book() -> None:
    book = OrderBook()
    assert (book.best_bid(), book.best_ask()) == (0, 0)
    assert book.depth(BID, 10) == [] and book.depth(ASK, 10) == []
    assert not book.crosses(BID, 1_000_000) and not book.crosses(ASK, 1)
    result = walk(book, BID, 0, qty=5)
    assert result.fills == [] and result.filled_steps == 0 and result.spent_quote == 0
    book.check()


def test_best_prices_and_depth_are_best_first_with_level_totals() -> None:
    book = book_with(
        order(1, BID, 99, 5), order(2, BID, 101, 3), order(3, BID, 100, 4), order(4, BID, 101, 2),
        order(5, ASK, 105, 1), order(6, ASK, 103, 7), order(7, ASK, 104, 2), order(8, ASK, 103, 1),
    )
    assert book.best_bid() == 101 and book.best_ask() == 103
    assert book.depth(BID, 10) == [(101, 5), (100, 4), (99, 5)]
    assert book.depth(ASK, 10) == [(103, 8), (104, 2), (105, 1)]
    assert book.depth(ASK, 2) == [(103, 8), (104, 2)]
    assert book.depth(BID, 0) == []
    assert book.crosses(BID, 103) and not book.crosses(BID, 102)
    assert book.crosses(ASK, 101) and not book.crosses(ASK, 102)


def test_fifo_within_a_level_and_price_priority_across_levels() -> None:
    book = book_with(order(1, ASK, 101, 2), order(2, ASK, 100, 3), order(3, ASK, 100, 4), order(4, ASK, 102, 1))
    result = walk(book, BID, 101, qty=8)
    assert [(m.order_id, steps) for m, steps in result.fills] == [(2, 3), (3, 4), (1, 1)]
    assert result.filled_steps == 8
    assert result.spent_quote == (100 * 3 + 100 * 4 + 101 * 1) * QPTS


def test_walk_stops_at_the_limit_price() -> None:
    book = book_with(order(1, BID, 100, 2), order(2, BID, 99, 2), order(3, BID, 98, 2))
    result = walk(book, ASK, 99, qty=10)
    assert [(m.order_id, s) for m, s in result.fills] == [(1, 2), (2, 2)]
    assert result.filled_steps == 4


def test_market_walk_has_no_price_limit() -> None:
    book = book_with(order(1, ASK, 100, 2), order(2, ASK, 5000, 2))
    result = walk(book, BID, 0, qty=3)
    assert [(m.order_id, s) for m, s in result.fills] == [(1, 2), (2, 1)]


def test_walk_by_quote_buys_whole_steps_only() -> None:
    book = book_with(order(1, ASK, 100, 2), order(2, ASK, 150, 10))
    # 2 steps at 100 cost 20_000, then 3 steps at 150 cost 45_000; 10_000 left buys none at 15_000
    result = walk(book, BID, 0, quote=75_000)
    assert [(m.order_id, s) for m, s in result.fills] == [(1, 2), (2, 3)]
    assert result.spent_quote == 65_000 and result.quote_bound
    exact = walk(book, BID, 0, quote=20_000)
    assert [(m.order_id, s) for m, s in exact.fills] == [(1, 2)] and exact.quote_bound
    too_little = walk(book, BID, 0, quote=9_999)
    assert too_little.fills == [] and too_little.quote_bound


def test_walk_with_no_steps_to_trade_makes_no_fills() -> None:
    book = book_with(order(1, BID, 100, 5))
    result = walk(book, ASK, 0, qty=0, quote=1_000_000)
    assert (result.fills, result.filled_steps, result.spent_quote) == ([], 0, 0)


def test_walk_is_read_only() -> None:
    book = book_with(order(1, ASK, 100, 2), order(2, ASK, 100, 3, account_id=99), order(3, ASK, 101, 4),
                     order(4, BID, 98, 1))
    before = snapshot(book)
    for stp in (REJECT_TAKER, REJECT_MAKER, REJECT_BOTH):
        walk(book, BID, 0, qty=8, stp=stp)
        walk(book, BID, 101, qty=UNLIMITED, quote=70_000, stp=stp)
    walk(book, ASK, 0, qty=1)
    assert snapshot(book) == before
    book.check()


@pytest.mark.parametrize(
    ("stp", "fills", "cancelled", "stopped"),
    [
        (REJECT_TAKER, [(1, 2)], [], True),
        (REJECT_BOTH, [(1, 2)], [2], True),
        (REJECT_MAKER, [(1, 2), (3, 4)], [2], False),
    ],
)
def test_self_trade_prevention_modes(stp: str, fills: list[tuple[int, int]], cancelled: list[int], stopped: bool) -> None:
    book = book_with(order(1, ASK, 100, 2), order(2, ASK, 100, 3, account_id=99), order(3, ASK, 101, 4))
    result = walk(book, BID, 101, qty=10, stp=stp)
    assert [(m.order_id, s) for m, s in result.fills] == fills
    assert result.stp_cancelled == cancelled
    assert result.stp_stopped is stopped


# (side, price, qty, account) of resting orders, then one taker; accounts 1..2 so takers meet their own orders
_resting = st.lists(st.tuples(st.sampled_from([BID, ASK]), st.integers(95, 105), st.integers(1, 5), st.integers(1, 2)),
                    max_size=25)
_taker = st.tuples(st.sampled_from([BID, ASK]), st.integers(94, 106), st.integers(1, 30), st.integers(1, 3))


@settings(max_examples=300, deadline=None)
@given(_resting, _taker)
def test_walk_limit_agrees_with_walk(resting: list[tuple[str, int, int, int]], taker: tuple[str, int, int, int]) -> None:
    """The limit-order fast path answers exactly what walk() answers, or None where walk() meets an own order."""
    book = OrderBook()
    for oid, (side, price, qty, account) in enumerate(resting, 1):
        if not book.crosses(side, price):
            book.rest(order(oid, side, price, qty, account_id=account))
    side, limit, qty, account = taker
    before = snapshot(book)
    fast = book.walk_limit(side, limit, qty, account)
    general = walk(book, side, limit, qty=qty, account_id=account)
    if fast is None:
        assert general.stp_stopped
    else:
        assert not general.stp_stopped
        assert fast == (general.fills, general.filled_steps)
    assert snapshot(book) == before


def test_walk_limit_gives_way_to_walk_at_an_own_order() -> None:
    book = book_with(order(1, ASK, 100, 2), order(2, ASK, 100, 3, account_id=99), order(3, ASK, 101, 4))
    assert book.walk_limit(BID, 101, 10, 99) is None
    made = book.walk_limit(BID, 100, 1, 99)  # done before it reaches its own order
    assert made is not None and [(m.order_id, s) for m, s in made[0]] == [(1, 1)] and made[1] == 1
    assert book.walk_limit(BID, 101, 10, 7) == ([(book.orders[1], 2), (book.orders[2], 3), (book.orders[3], 4)], 9)


def test_take_partial_then_full_fill_drops_order_and_empty_level() -> None:
    book = book_with(order(1, ASK, 100, 5), order(2, ASK, 100, 1), order(3, ASK, 102, 1))
    taken = book.take(1, 2, 2 * 100 * QPTS)
    assert taken.remaining_steps == 3 and taken.executed_quote == 20_000
    assert book.depth(ASK, 5) == [(100, 4), (102, 1)]
    book.check()
    book.take(1, 3, 3 * 100 * QPTS)
    assert 1 not in book.orders
    assert book.depth(ASK, 5) == [(100, 1), (102, 1)]
    book.take(2, 1, 100 * QPTS)
    assert book.best_ask() == 102 and book.depth(ASK, 5) == [(102, 1)]
    assert (ASK, 100) not in book.level_steps
    book.check()


def test_take_more_than_remaining_is_an_error() -> None:
    book = book_with(order(1, BID, 100, 2))
    with pytest.raises(AssertionError, match="order 1 overfilled"):
        book.take(1, 3, 0)


def test_partially_filled_order_keeps_its_place_in_the_queue() -> None:
    book = book_with(order(1, BID, 100, 5), order(2, BID, 100, 5))
    book.take(1, 4, 0)
    result = walk(book, ASK, 100, qty=3)
    assert [(m.order_id, s) for m, s in result.fills] == [(1, 1), (2, 2)]


def test_remove_from_the_middle_of_a_level_and_non_best_levels() -> None:
    book = book_with(order(1, BID, 100, 1), order(2, BID, 100, 2), order(3, BID, 100, 3),
                     order(4, BID, 90, 1), order(5, BID, 95, 1))
    removed = book.remove(2)
    assert removed.order_id == 2
    assert list(book.bids[100]) == [1, 3] and book.depth(BID, 1) == [(100, 4)]
    book.remove(5)  # a level that is neither best nor worst
    assert book.bid_keys == [-100, -90]
    book.remove(1)
    book.remove(3)
    assert book.best_bid() == 90 and book.depth(BID, 5) == [(90, 1)]
    book.check()
    with pytest.raises(KeyError):
        book.remove(2)


def test_rest_after_remove_goes_to_the_back() -> None:
    book = book_with(order(1, ASK, 100, 1), order(2, ASK, 100, 1))
    again = book.remove(1)
    book.rest(again)
    assert list(book.asks[100]) == [2, 1]
    book.check()


def test_place_builds_the_same_order_as_rest_of_order() -> None:
    """``place`` skips ``Order.__init__``: every slot must still get the value the constructor gives it."""
    args = [(7, 3, BID, 100, 9, 4, 1234, 55, True, REJECT_MAKER, 777), (8, 4, ASK, 101, 5, 5, 0, -1, False, REJECT_TAKER, 1),
            (9, 5, BID, 100, 2, 2, 0, -1, False, REJECT_BOTH, 2), (10, 6, ASK, 103, 3, 1, 6, 1, False, REJECT_TAKER, 3)]
    placed, rested = OrderBook(), OrderBook()
    for a in args:
        made = placed.place(*a)
        rested.rest(Order(*a))
        assert made is placed.orders[a[0]]
        fields = [k for k in Order.__slots__ if k != "level"]  # each book's own level, compared by the snapshots
        assert {k: getattr(made, k) for k in fields} == {k: getattr(rested.orders[a[0]], k) for k in fields}
        assert made.level is placed.bids.get(a[3], placed.asks.get(a[3]))
    placed.check()
    assert snapshot(placed) == snapshot(rested)


# (A total for a level that does not exist cannot be written: totals live on the levels.)
def _corrupt_level_total(b: OrderBook) -> None:
    b.level_steps[BID, 100] += 1


def _corrupt_zero_remaining(b: OrderBook) -> None:
    b.orders[1].remaining_steps = 0
    b.level_steps[BID, 100] -= 3


def _corrupt_index(b: OrderBook) -> None:
    del b.orders[3]


def _corrupt_price_list(b: OrderBook) -> None:
    b.bid_keys.append(-97)


def _corrupt_ask_order(b: OrderBook) -> None:
    b.ask_prices.reverse()  # best ask no longer first


def _corrupt_bid_order(b: OrderBook) -> None:
    b.bid_keys.reverse()


def _corrupt_crossed(b: OrderBook) -> None:
    b.rest(order(9, BID, 110, 1))


def _corrupt_wrong_side(b: OrderBook) -> None:
    b.asks[110][4].side = BID


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_corrupt_level_total, "Bid level 100 total wrong"),
        (_corrupt_zero_remaining, "order 1 rests with nothing left"),
        (_corrupt_index, "order 3 missing from index"),
        (_corrupt_price_list, "Bid price index out of sync"),
        (_corrupt_ask_order, "Ask price index not sorted"),
        (_corrupt_bid_order, "Bid price index not sorted"),
        (_corrupt_crossed, "book crossed at rest"),
        (_corrupt_wrong_side, "order 4 filed under the wrong id, side or price"),
    ],
)
def test_check_detects_corruption(corrupt: Callable[[OrderBook], None], message: str) -> None:
    book = book_with(order(1, BID, 100, 3), order(2, BID, 99, 1), order(3, ASK, 105, 2), order(4, ASK, 110, 2))
    pristine = copy.deepcopy(book)
    pristine.check()
    corrupt(book)
    with pytest.raises(AssertionError, match=message):
        book.check()



# --- match_limit: the live path's walk and fills in one pass --------------------------------------


def test_match_limit_fills_partially_and_keeps_the_maker_in_its_place() -> None:
    book = book_with(order(1, ASK, 100, 5), order(2, ASK, 100, 1))
    matched, filled, quote, met_own = book.match_limit(BID, 100, 3, 99, QPTS)
    assert [(m.order_id, s, q) for m, s, q in matched] == [(1, 3, 3 * 100 * QPTS)]
    assert (filled, quote, met_own) == (3, 3 * 100 * QPTS, False)
    maker = book.orders[1]
    assert (maker.remaining_steps, maker.executed_quote) == (2, 3 * 100 * QPTS)
    assert [o.order_id for o in book.orders[1].level.values()] == [1, 2]
    assert book.depth(ASK, 5) == [(100, 3)]
    book.check()


@pytest.mark.parametrize("side", [BID, ASK])
def test_match_limit_sweeps_levels_and_drops_the_emptied_ones(side: str) -> None:
    maker_side = ASK if side == BID else BID
    near, far, beyond = (100, 101, 102) if side == BID else (102, 101, 100)
    book = book_with(order(1, maker_side, near, 2), order(2, maker_side, near, 1), order(3, maker_side, far, 4),
                     order(4, maker_side, beyond, 1), order(5, side, 110 if side == ASK else 90, 1))
    matched, filled, quote, met_own = book.match_limit(side, far, 10, 99, QPTS)
    assert [(m.order_id, s) for m, s, _ in matched] == [(1, 2), (2, 1), (3, 4)]
    assert (filled, met_own) == (7, False)
    assert quote == (3 * near + 4 * far) * QPTS == sum(q for _, _, q in matched)
    assert all(m.remaining_steps == 0 and m.order_id not in book.orders for m, _, _ in matched)
    assert book.depth(maker_side, 5) == [(beyond, 1)]
    assert (maker_side, near) not in book.level_steps and (maker_side, far) not in book.level_steps
    book.check()


def test_match_limit_exact_fill_empties_the_level_and_stops() -> None:
    book = book_with(order(1, BID, 100, 2), order(2, BID, 100, 3), order(3, BID, 99, 1))
    matched, filled, quote, met_own = book.match_limit(ASK, 99, 5, 99, QPTS)
    assert [(m.order_id, s) for m, s, _ in matched] == [(1, 2), (2, 3)]
    assert (filled, quote, met_own) == (5, 5 * 100 * QPTS, False)
    assert book.depth(BID, 5) == [(99, 1)] and book.bid_keys == [-99]
    book.check()
    matched, filled, _, _ = book.match_limit(ASK, 99, 1, 99, QPTS)  # the last order of the last level
    assert [(m.order_id, s) for m, s, _ in matched] == [(3, 1)] and filled == 1
    assert book.bids == {} and book.bid_keys == [] and book.orders == {}
    book.check()


def test_match_limit_whole_makers_then_a_partial_one_in_the_same_level() -> None:
    book = book_with(order(1, ASK, 100, 1), order(2, ASK, 100, 2), order(3, ASK, 100, 4), order(4, ASK, 100, 1))
    matched, filled, _, _ = book.match_limit(BID, 100, 5, 99, QPTS)
    assert [(m.order_id, s) for m, s, _ in matched] == [(1, 1), (2, 2), (3, 2)]
    assert filled == 5
    assert [(o.order_id, o.remaining_steps) for o in book.orders[3].level.values()] == [(3, 2), (4, 1)]
    book.check()


def test_match_limit_leaves_the_rest_unfilled_at_the_limit() -> None:
    book = book_with(order(1, ASK, 100, 2), order(2, ASK, 102, 5))
    matched, filled, _, met_own = book.match_limit(BID, 101, 10, 99, QPTS)
    assert [(m.order_id, s) for m, s, _ in matched] == [(1, 2)] and (filled, met_own) == (2, False)
    assert book.depth(ASK, 5) == [(102, 5)]
    assert book.match_limit(BID, 101, 10, 99, QPTS) == ([], 0, 0, False)
    book.check()


def test_match_limit_stops_in_front_of_the_takers_own_order() -> None:
    """Makers before it stay filled; walk() on the rest of the quantity then applies STP from that order on."""
    book = book_with(order(1, ASK, 100, 2), order(2, ASK, 100, 3, account_id=99), order(3, ASK, 101, 4))
    matched, filled, quote, met_own = book.match_limit(BID, 101, 10, 99, QPTS)
    assert [(m.order_id, s) for m, s, _ in matched] == [(1, 2)] and (filled, quote, met_own) == (2, 200 * QPTS, True)
    assert [o.order_id for o in book.orders[2].level.values()] == [2]
    book.check()
    rest = walk(book, BID, 101, qty=8, stp=REJECT_MAKER)
    assert [(m.order_id, s) for m, s in rest.fills] == [(3, 4)] and rest.stp_cancelled == [2]


@settings(max_examples=300, deadline=None)
@given(_resting, _taker)
def test_match_limit_is_walk_then_fill(resting: list[tuple[str, int, int, int]], taker: tuple[str, int, int, int]) -> None:
    """Same fills, same book and makers as walk() then fill() per maker, up to the taker's own order if it meets one."""
    fused, twin = OrderBook(), OrderBook()
    for oid, (side, price, qty, account) in enumerate(resting, 1):
        if not fused.crosses(side, price):
            fused.rest(order(oid, side, price, qty, account_id=account))
            twin.rest(order(oid, side, price, qty, account_id=account))
    side, limit, qty, account = taker
    walked = walk(twin, side, limit, qty=qty, account_id=account)
    made = walked.fills
    if walked.stp_stopped:  # REJECT_TAKER: the walk stops at the own order too
        assert fused.walk_limit(side, limit, qty, account) is None
    makers = {oid: o for oid, o in fused.orders.items()}
    matched, filled, quote, met_own = fused.match_limit(side, limit, qty, account, QPTS)
    assert met_own is walked.stp_stopped
    assert [(m.order_id, s) for m, s, _ in matched] == [(m.order_id, s) for m, s in made]
    assert all(makers[m.order_id] is m for m, _, _ in matched)
    assert filled == walked.filled_steps
    assert quote == sum(q for _, _, q in matched) == sum(m.price_ticks * s * QPTS for m, s in made)
    for maker, steps in made:
        twin.fill(maker, steps, maker.price_ticks * steps * QPTS)
    assert snapshot(fused) == snapshot(twin)
    assert [(m.order_id, m.remaining_steps, m.executed_quote) for m, _, _ in matched] == [
        (m.order_id, m.remaining_steps, m.executed_quote) for m, _ in made
    ]
    fused.check()
