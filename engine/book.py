"""Price-time priority limit order book, in ticks and steps.

Layout
    ``bids``/``asks`` map price_ticks -> level, a dict order_id -> Order kept in
    arrival order (dicts preserve insertion order), so the level is a FIFO with
    O(1) removal of any order. ``ask_prices`` is sorted ascending and
    ``bid_keys`` holds negated bid prices sorted ascending, so the best price of
    either side is the *first* element: ``keys[0]`` is a specialised list read,
    where ``keys[-1]`` goes through the generic subscript path (~80 ns more, on
    every order's crossing test). Removing an emptied best level shifts the
    short list by one. Each level (a ``Level``, a dict) carries its total steps
    for depth, and each resting order points at its level (``Order.level``), so
    fills, cancels and amends reach the level without a side test and a price
    lookup. The extra slot is free in memory: 11 slots took a 128-byte block
    too (RSS per resting order unchanged, 472 B).

Invariants (checked by ``check``)
    every resting order has remaining_steps > 0 and sits in exactly one level
    (the one its ``level`` names) and in ``orders``; level totals equal the sum of their orders; a price is in
    the sorted list iff its level is non-empty; at rest best bid < best ask.

Matching is split the engine's way: ``walk`` reads the book and returns what an
incoming order would trade (no mutation); ``take``/``place``/``rest``/``remove``
apply those decisions. Replay calls only the mutators. ``walk_limit`` is
``walk`` for limit orders (all but market orders): no quote bound, and it hands
the rare taker that meets its own order back to ``walk``. ``match_limit`` is the
live path's ``walk_limit`` and ``fill`` per maker in one pass, for the limit
takers whose outcome follows from their fills alone (GTC and IOC, see
``Market.place``); it mutates as it walks, so it stops in front of the taker's
own order and leaves self-trade prevention to ``walk``.

Speed (this is the engine's innermost loop; reference/performance.md §4): the
hot paths are written flat, one Python call per operation. ``place`` builds an
``Order`` and rests it in one call, ``Level`` and ``Walk`` have no Python
``__init__``, ``take`` unlinks inline, and the price lists are read in place by
``Market.decide_place`` (they are mutated, never rebound).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from typing import Final

from engine.messages import ASK, BID, REJECT_MAKER, REJECT_TAKER


class Order:
    """A resting limit order (market-owned)."""

    __slots__ = (
        "account_id",
        "client_id",
        "created_us",
        "executed_quote",
        "level",
        "order_id",
        "post_only",
        "price_ticks",
        "qty_steps",
        "remaining_steps",
        "side",
        "stp",
    )

    def __init__(
        self, order_id: int, account_id: int, side: str, price_ticks: int, qty_steps: int,
        remaining_steps: int, executed_quote: int, client_id: int, post_only: bool, stp: str,
        created_us: int,
    ) -> None:
        self.order_id = order_id
        self.account_id = account_id
        self.side = side
        self.price_ticks = price_ticks
        self.qty_steps = qty_steps  # original total quantity
        self.remaining_steps = remaining_steps
        self.executed_quote = executed_quote  # quote atoms traded so far
        self.client_id = client_id
        self.post_only = post_only
        self.stp = stp
        self.created_us = created_us

    level: Level  # the level it rests in, set by OrderBook.rest/place: fills and cancels reach it without a lookup


class _NewOrder(Order):
    """An ``Order`` that ``place`` builds without any Python frame.

    ``Order`` keeps its ``__init__`` for callers that have all fields at hand
    (snapshots, tests); this subclass swaps it for ``object.__init__``, so
    ``_NewOrder()`` is one C-level allocation, cheaper than ``object.__new__(Order)``
    (which goes through a wrapper that slices an argument tuple). ``place`` then
    sets every slot, so the instance is an ``Order`` in every way that is read.
    """

    __slots__ = ()
    __init__ = object.__init__


class Level(dict[int, Order]):
    """One price level: order_id -> Order in arrival order, plus its total remaining steps.

    Keeping the total on the level itself (not in a dict keyed by (side, price))
    saves a tuple and a hash lookup on every rest and every fill.
    """

    __slots__ = ("steps",)

    # No __init__: ``rest``/``place`` set ``steps`` right after ``Level()``, which then
    # stays a C-level dict construction (a Python __init__ cost ~0.3 us per new level).
    steps: int


class LevelSteps:
    """Read view ``(side, price) -> total steps`` over the levels (depth, publishers, tests)."""

    __slots__ = ("_book",)

    def __init__(self, book: OrderBook) -> None:
        self._book = book

    def _level(self, key: tuple[str, int]) -> Level | None:
        side, price = key
        return (self._book.bids if side == BID else self._book.asks).get(price)

    def get(self, key: tuple[str, int], default: int = 0) -> int:
        """Total at one level (the publisher asks for the top of book after every event)."""
        side, price = key
        level = (self._book.bids if side == BID else self._book.asks).get(price)
        return default if level is None else level.steps

    def __getitem__(self, key: tuple[str, int]) -> int:
        level = self._level(key)
        if level is None:
            raise KeyError(key)
        return level.steps

    def __setitem__(self, key: tuple[str, int], steps: int) -> None:
        level = self._level(key)
        if level is None:
            raise KeyError(key)
        level.steps = steps

    def __contains__(self, key: object) -> bool:
        return type(key) is tuple and len(key) == 2 and self._level(key) is not None

    def __len__(self) -> int:
        return len(self._book.bids) + len(self._book.asks)

    def keys(self) -> list[tuple[str, int]]:
        return [(BID, p) for p in self._book.bids] + [(ASK, p) for p in self._book.asks]

    def items(self) -> Iterator[tuple[tuple[str, int], int]]:
        for price, level in self._book.bids.items():
            yield (BID, price), level.steps
        for price, level in self._book.asks.items():
            yield (ASK, price), level.steps


class Walk:
    """What an incoming order would do against the book (the output of ``walk``).

    No ``__init__``: ``walk`` fills the slots in one go at its end, which skips a
    Python frame per crossing order.
    """

    __slots__ = ("filled_steps", "fills", "quote_bound", "spent_quote", "stp_cancelled", "stp_stopped")

    fills: list[tuple[Order, int]]  # (maker, steps) in match order
    filled_steps: int
    spent_quote: int  # sum of price*steps*quote_per_tick_step
    stp_cancelled: list[int]  # own resting orders cancelled by STP
    stp_stopped: bool  # the taker hit its own order and must stop
    quote_bound: bool  # stopped because one more step would exceed max_quote


UNLIMITED: Final = 1 << 62
Fills = list[tuple[Order, int]]  # (maker, steps) in match order
Matched = list[tuple[Order, int, int]]  # (maker, steps, quote atoms) in match order, as match_limit filled them


class OrderBook:
    __slots__ = ("ask_prices", "asks", "bid_keys", "bids", "level_steps", "orders")

    def __init__(self) -> None:
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        # changed in place only, never rebound: Market.decide_place (and the book bench) hold them
        self.bid_keys: list[int] = []  # negated bid prices ascending; best bid first
        self.ask_prices: list[int] = []  # ascending; best ask first
        self.level_steps = LevelSteps(self)
        self.orders: dict[int, Order] = {}

    # --- reads -------------------------------------------------------------

    def best_bid(self) -> int:
        """Best bid in ticks, 0 when there is none."""
        return -self.bid_keys[0] if self.bid_keys else 0

    def best_ask(self) -> int:
        """Best ask in ticks, 0 when there is none."""
        return self.ask_prices[0] if self.ask_prices else 0

    def crosses(self, side: str, price_ticks: int) -> bool:
        """Would a limit order at this price trade on arrival?"""
        if side is BID or side == BID:
            return bool(self.ask_prices) and self.ask_prices[0] <= price_ticks
        return bool(self.bid_keys) and -self.bid_keys[0] >= price_ticks

    def levels(self, side: str) -> Iterator[tuple[int, Level]]:
        """Levels of one side, best first."""
        if side == BID:
            book = self.bids
            for key in self.bid_keys:
                yield -key, book[-key]
        else:
            book = self.asks
            for price in self.ask_prices:
                yield price, book[price]

    def depth(self, side: str, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (price_ticks, total_steps) levels, best first."""
        out: list[tuple[int, int]] = []
        for price, _ in self.levels(side):
            if len(out) == limit:
                break
            out.append((price, _.steps))
        return out

    def walk(
        self, side: str, limit_ticks: int, max_steps: int, max_quote: int,
        quote_per_tick_step: int, account_id: int, stp: str,
    ) -> Walk:
        """Match an incoming order read-only.

        ``side`` is the taker's side; ``limit_ticks`` 0 means a market order;
        ``max_steps``/``max_quote`` bound the base quantity and the quote notional
        (either may be UNLIMITED). Self-trades follow the taker's ``stp`` mode.
        Written as one flat loop over the sorted keys: this is the hottest code in
        the engine. Both sides share it through the key sign: a key above
        ``bound`` is past the taker's limit (ask keys are prices, bid keys negated
        prices, so "worse" is "larger" on both).
        """
        fills: list[tuple[Order, int]] = []
        cancelled: list[int] = []
        stp_stopped = quote_bound = False
        steps_left = max_steps
        quote_left = max_quote
        if side == BID:
            keys, levels, sign = self.ask_prices, self.asks, 1
            bound = limit_ticks if limit_ticks else UNLIMITED
        else:
            keys, levels, sign = self.bid_keys, self.bids, -1
            bound = -limit_ticks if limit_ticks else UNLIMITED
        if max_steps <= 0:
            keys = []
        for key in keys:  # best first
            if key > bound:
                break
            price = sign * key
            unit = price * quote_per_tick_step
            for maker in levels[price].values():
                if maker.account_id == account_id:
                    if stp != REJECT_TAKER:
                        cancelled.append(maker.order_id)
                    if stp != REJECT_MAKER:
                        stp_stopped = True
                        break
                    continue
                take = maker.remaining_steps
                if take > steps_left:
                    take = steps_left
                if take * unit > quote_left:
                    take = quote_left // unit
                    if take == 0:
                        quote_bound = True
                        break
                fills.append((maker, take))
                steps_left -= take
                quote_left -= take * unit
                # quote first: an order that used up its quote is bound by it even
                # if its base ran out on the same fill (a sell for exactly quoteQuantity)
                if quote_left < unit:
                    quote_bound = True
                    break
                if steps_left == 0:
                    break
            else:
                continue  # this level is used up: on to the next price
            break  # stopped inside the level
        result = Walk()  # no __init__ anywhere: a C-level allocation
        result.fills = fills
        result.filled_steps = max_steps - steps_left
        result.spent_quote = max_quote - quote_left
        result.stp_cancelled = cancelled
        result.stp_stopped = stp_stopped
        result.quote_bound = quote_bound
        return result

    def walk_limit(self, side: str, limit_ticks: int, qty_steps: int, account_id: int) -> tuple[Fills, int] | None:
        """``walk`` for a limit order (base-bounded, no quote bound): (fills, filled steps).

        Returns None as soon as the taker meets one of its own resting orders: the
        caller then asks ``walk`` for the answer, which applies self-trade
        prevention (the walk is read-only, so starting over is exact). Without
        the quote bound every fill but the last takes its maker whole, and the
        loop drops the quote arithmetic (on 2**62-sized ints) that ``walk``
        needs for market orders: about a third of the walk's cost on limit flow.
        """
        fills: Fills = []
        left = qty_steps
        if side == BID:
            # one loop per side: ask keys are the asks dict's own int objects (a lookup
            # that hits on identity), where bids need a negation per level
            asks = self.asks
            for price in self.ask_prices:  # best first
                if price > limit_ticks:
                    break
                for maker in asks[price].values():
                    if maker.account_id == account_id:
                        return None
                    take = maker.remaining_steps
                    if take < left:
                        fills.append((maker, take))
                        left -= take
                    else:
                        fills.append((maker, left))
                        return fills, qty_steps
            return fills, qty_steps - left
        bids, bound = self.bids, -limit_ticks
        for key in self.bid_keys:  # best first
            if key > bound:
                break
            for maker in bids[-key].values():
                if maker.account_id == account_id:
                    return None
                take = maker.remaining_steps
                if take < left:
                    fills.append((maker, take))
                    left -= take
                else:
                    fills.append((maker, left))
                    return fills, qty_steps
        return fills, qty_steps - left

    # --- mutations (apply) ---------------------------------------------------

    def match_limit(
        self, side: str, limit_ticks: int, qty_steps: int, account_id: int, quote_per_tick_step: int,
    ) -> tuple[Matched, int, int, bool]:
        """Match a limit taker and apply it in the same pass: ``walk_limit`` and a ``fill`` per maker, fused.

        Returns ([(maker, steps, quote atoms)], filled steps, executed quote,
        met_own). Makers are filled best-first and unlinked as they are used up,
        whole levels dropped when emptied; a filled maker keeps its price, ids and
        final counts, so the caller builds its ``Fill`` events from the list
        afterwards, with the quote already computed here. The live path
        (``Market.place``) uses it for takers whose outcome follows from the fills
        alone (GTC and IOC limits): one call per crossing order instead of a walk
        plus a ``fill`` call per maker (callgrind, book bench: 8.6k -> 8.3k
        instructions per order). Nothing here is read-only, so orders that must be
        decided before the book changes (FOK) keep ``walk``/``walk_limit``.

        The match stops in front of the taker's own resting order (``met_own``):
        every maker before it was taken whole, exactly as ``walk`` takes them, so
        the caller finishes with ``walk`` on the rest of the quantity, which
        applies self-trade prevention from that order on (``Market._match_rest``).
        The taker's remainder is not rested here: that is the caller's decision.
        """
        fills: Matched = []
        left = qty_steps
        executed_quote = 0
        met_own = False
        orders = self.orders
        if side == BID:
            levels, keys, bound, asks = self.asks, self.ask_prices, limit_ticks, True
        else:  # bid keys are negated prices: "worse" is "larger" on both sides
            levels, keys, bound, asks = self.bids, self.bid_keys, -limit_ticks, False
        while keys:
            key = keys[0]  # best first; the head goes below when its level empties
            if key > bound:
                break
            price = key if asks else -key  # an ask key is the asks dict's own int: the lookup hits on identity
            level = levels[price]
            unit = price * quote_per_tick_step
            before = left
            # makers taken whole and passed over: unlinked after the loop (a dict cannot shrink while iterated)
            passed = 0
            for maker in level.values():
                if maker.account_id == account_id:
                    met_own = True
                    break
                take = maker.remaining_steps
                if take >= left:  # the taker is done at this maker
                    quote = left * unit
                    fills.append((maker, left, quote))
                    maker.executed_quote += quote
                    executed_quote += quote
                    if take > left:  # the maker keeps the rest, in its place
                        maker.remaining_steps = take - left
                    else:  # used up too: unlinked now (the loop ends here, the dict is not iterated again)
                        maker.remaining_steps = 0
                        del orders[maker.order_id]
                        del level[maker.order_id]
                    left = 0
                    break
                quote = take * unit
                fills.append((maker, take, quote))
                maker.executed_quote += quote
                executed_quote += quote
                maker.remaining_steps = 0
                del orders[maker.order_id]
                left -= take
                passed += 1
            else:  # every maker of the level was taken whole: the level goes, on to the next price
                level.clear()  # its makers point at it (Order.level): emptied, it holds no reference cycle
                del levels[price]
                del keys[0]
                continue
            # stopped inside this level
            if passed > 0:  # the makers passed over are the fills just before the one it stopped at, if any
                end = len(fills) if met_own else len(fills) - 1
                for maker, _, _ in fills[end - passed:end]:
                    del level[maker.order_id]
            if level:
                level.steps -= before - left
            else:
                del levels[price]
                del keys[0]
            break
        return fills, qty_steps - left, executed_quote, met_own

    def rest(self, order: Order) -> None:
        """Put an order at the back of its price level."""
        price = order.price_ticks
        if order.side == BID:
            level = self.bids.get(price)
            if level is None:
                level = self.bids[price] = Level()
                level.steps = 0
                insort(self.bid_keys, -price)
        else:
            level = self.asks.get(price)
            if level is None:
                level = self.asks[price] = Level()
                level.steps = 0
                insort(self.ask_prices, price)
        order.level = level
        level[order.order_id] = order
        level.steps += order.remaining_steps
        self.orders[order.order_id] = order

    def place(
        self, order_id: int, account_id: int, side: str, price_ticks: int, qty_steps: int,
        remaining_steps: int, executed_quote: int, client_id: int, post_only: bool, stp: str,
        created_us: int,
    ) -> Order:
        """``rest(Order(...))`` in one call: the way new orders reach the book.

        The order is built without running ``Order.__init__`` (same fields, same
        values, see ``_NewOrder``): on this path that Python frame costs more than
        the resting itself, and most orders rest untouched.
        """
        order: Order = _NewOrder()
        order.order_id = order_id
        order.account_id = account_id
        order.side = side
        order.price_ticks = price_ticks
        order.qty_steps = qty_steps
        order.remaining_steps = remaining_steps
        order.executed_quote = executed_quote
        order.client_id = client_id
        order.post_only = post_only
        order.stp = stp
        order.created_us = created_us
        if side == BID:
            level = self.bids.get(price_ticks)
            if level is None:
                level = self.bids[price_ticks] = Level()
                level.steps = remaining_steps
                keys = self.bid_keys
                if keys and keys[0] < -price_ticks:
                    insort(keys, -price_ticks)
                else:  # a new best price (most new levels): no search
                    keys.insert(0, -price_ticks)
            else:
                level.steps += remaining_steps
        else:
            level = self.asks.get(price_ticks)
            if level is None:
                level = self.asks[price_ticks] = Level()
                level.steps = remaining_steps
                keys = self.ask_prices
                if keys and keys[0] < price_ticks:
                    insort(keys, price_ticks)
                else:  # a new best price (most new levels): no search
                    keys.insert(0, price_ticks)
            else:
                level.steps += remaining_steps
        order.level = level
        level[order_id] = order
        self.orders[order_id] = order
        return order

    def take(self, order_id: int, steps: int, quote: int) -> Order:
        """A maker traded ``steps`` (worth ``quote`` atoms); drop it when done (``fill`` by order id)."""
        order = self.orders[order_id]
        self.fill(order, steps, quote)
        return order

    def fill(self, order: Order, steps: int, quote: int) -> None:
        """A resting ``order`` traded ``steps`` (worth ``quote`` atoms); drop it when done.

        Written per case (partial fill, full fill per side) with the unlink
        inlined: one call per fill. A maker that empties its level is at the
        best price, the sorted list's head, in all but replays of odd journals.
        ``Market`` passes the makers ``walk`` found after ``match_limit`` met the
        taker's own order; ``take`` (replay) looks one up.
        """
        remaining = order.remaining_steps - steps
        if remaining > 0:
            order.remaining_steps = remaining
            order.executed_quote += quote
            order.level.steps -= steps
            return
        if remaining < 0:
            raise AssertionError(f"order {order.order_id} overfilled")
        order.remaining_steps = 0
        order.executed_quote += quote
        order_id = order.order_id
        del self.orders[order_id]
        level = order.level
        level.steps -= steps
        del level[order_id]
        if not level:
            price = order.price_ticks
            if order.side == BID:
                del self.bids[price]
                keys, key = self.bid_keys, -price
            else:
                del self.asks[price]
                keys, key = self.ask_prices, price
            if keys[0] == key:
                del keys[0]
            else:
                _remove_sorted(keys, key)

    def remove(self, order_id: int) -> Order:
        """Take an order off the book (cancel, STP, amend)."""
        order = self.orders.pop(order_id)
        level = order.level
        level.steps -= order.remaining_steps
        del level[order_id]
        if not level:
            price = order.price_ticks
            if order.side == BID:
                del self.bids[price]
                _remove_sorted(self.bid_keys, -price)
            else:
                del self.asks[price]
                _remove_sorted(self.ask_prices, price)
        return order

    # --- invariants ----------------------------------------------------------

    def check(self) -> None:
        """Raise AssertionError if any structural invariant is broken."""
        seen = 0
        for side, book, prices in ((BID, self.bids, [-k for k in self.bid_keys]), (ASK, self.asks, self.ask_prices)):
            assert sorted(book) == sorted(prices), f"{side} price index out of sync"
            assert len(set(prices)) == len(prices), f"{side} duplicate price"
            stored = self.bid_keys if side == BID else self.ask_prices
            assert stored == sorted(stored), f"{side} price index not sorted"
            for price, level in book.items():
                assert level, f"empty {side} level {price}"
                total = 0
                for oid, order in level.items():
                    assert oid == order.order_id and order.side == side and order.price_ticks == price, (
                        f"order {oid} filed under the wrong id, side or price"
                    )
                    assert order.remaining_steps > 0, f"order {oid} rests with nothing left"
                    assert self.orders.get(oid) is order, f"order {oid} missing from index"
                    assert order.level is level, f"order {oid} points at another level"
                    total += order.remaining_steps
                    seen += 1
                assert level.steps == total, f"{side} level {price} total wrong"
        assert seen == len(self.orders), "index holds orders not in any level"
        if self.bid_keys and self.ask_prices:
            assert self.best_bid() < self.best_ask(), "book crossed at rest"


def _remove_sorted(prices: list[int], value: int) -> None:
    """Remove ``value`` from a sorted list; the best (first) element is the common case."""
    if prices[0] == value:
        del prices[0]
        return
    i = bisect_left(prices, value)
    assert prices[i] == value
    del prices[i]
