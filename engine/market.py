"""One spot market: its book, state, last price and trade ids (sans-IO).

``decide_*`` read the state and return an event or a ``Rejection``; ``apply``
mutates. Replay calls only ``apply``, so every number a decision produced
(fills, fees, trade ids, final status) is in the event. The live path places
new orders with ``place``: the same decision and the same mutation in one step
for the common limit order, ``decide_place`` + ``apply_placed`` for the rest
(tests/engine/test_live_path.py holds both to the same events and state).

Rules enforced here, in this order, for a new order:
    market state (Closed / CancelOnly reject; LimitOnly rejects market orders;
    PostOnly rejects market orders and expires crossing limits with
    PostOnlyMode) -> limit-price band around the active price (expire
    PriceOutOfBounds) -> post-only taker (expire PostOnlyTaker) -> match with
    self-trade prevention -> FOK all-or-nothing -> rest (GTC) or expire the rest.

Fees are charged on the asset each side receives, rounded up to a whole atom, so
the venue never credits more than was traded.
"""

from __future__ import annotations

from typing import Final

from engine.book import UNLIMITED, Fills, Matched, Order, OrderBook, Walk
from engine.builders import builder
from engine.messages import (
    BID,
    CANCEL_ONLY,
    CLOSED,
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    LIMIT,
    LIMIT_ONLY,
    MARKET,
    NEW,
    OPEN,
    PARTIALLY_FILLED,
    POST_ONLY,
    R_FILL_OR_KILL,
    R_IMMEDIATE_OR_CANCEL,
    R_INSUFFICIENT_FUNDS,
    R_INSUFFICIENT_LIQUIDITY,
    R_INVALID_QUANTITY,
    R_POST_ONLY_MODE,
    R_POST_ONLY_TAKER,
    R_PRICE_OUT_OF_BOUNDS,
    R_SELF_TRADE,
    AmendOrder,
    CancelOrder,
    Fill,
    MarketStateChanged,
    OrderAmended,
    OrderCancelled,
    OrderPlaced,
    OrderView,
    PlaceOrder,
    Rejection,
    SetMarketState,
)
from engine.spec import MarketSpec

RESTING = (NEW, PARTIALLY_FILLED)
# (cmd, ts_us, status, expiry_reason, fills, stp_cancelled): the order fields come from the PlaceOrder
_placed_from: Final = builder(OrderPlaced, PlaceOrder)
_fill: Final = builder(Fill)


def _median3(a: int, b: int, c: int) -> int:
    """The middle one of three (comparisons only: cheaper than max+min calls on the hot path)."""
    if a > b:
        a, b = b, a
    if c <= a:
        return a
    return b if c >= b else c


class Market:
    __slots__ = ("_band", "_band_at", "_band_hi", "_band_lo", "book", "last_price", "next_trade_id", "spec", "state")

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.state = spec.initial_state
        self.book = OrderBook()
        self.last_price = 0  # ticks of the last trade, 0 before the first
        self.next_trade_id = 1
        # (lo_num, lo_den, hi_num, hi_den) of the frozen spec's band, unpacked once for ``_in_band``
        self._band = (*spec.band_min, *spec.band_max)
        # the band in whole ticks for one active price (``_band_for``): the active price moves
        # only when the top of book or the last trade does, so most orders reuse it
        self._band_at = self._band_lo = self._band_hi = 0

    # --- new orders ----------------------------------------------------------

    def decide_place(self, cmd: PlaceOrder, now_us: int) -> OrderPlaced | Rejection:
        """Decide a new order.

        Limit orders (nearly all flow) take an inlined path: the band check
        (``_in_band``), ``OrderBook.crosses``, ``_bounds`` and ``_outcome`` are
        written out here, since on an order that rests untouched those calls
        cost as much as the rest of the decision. Market orders take the
        general path below.
        """
        state = self.state
        if state != OPEN:
            refusal = self._state_refusal(cmd, state)
            if refusal is not None:
                return refusal
        if cmd.order_type != LIMIT:
            return self._decide_market(cmd, now_us)
        limit = cmd.price_ticks
        book = self.book
        bids, asks = book.bid_keys, book.ask_prices
        if not self._limit_in_band(limit, bids, asks):
            return self._expired(cmd, now_us, R_PRICE_OUT_OF_BOUNDS)
        side = cmd.side
        tif = cmd.tif
        if not ((asks and asks[0] <= limit) if side == BID else (bids and -bids[0] >= limit)):
            # does not cross, so it rests untouched (GTC) or expires unfilled: the common case, no walk
            return _placed_from(
                cmd, now_us, NEW if tif == GTC else EXPIRED,
                "" if tif == GTC else (R_FILL_OR_KILL if tif == FOK else R_IMMEDIATE_OR_CANCEL), [], [],
            )
        if cmd.post_only or state == POST_ONLY:
            return self._expired(cmd, now_us, R_POST_ONLY_TAKER if cmd.post_only else R_POST_ONLY_MODE)
        qty = cmd.qty_steps
        walked = book.walk_limit(side, limit, qty, cmd.account_id)
        if walked is None:  # the taker met its own resting order: the general walk applies STP
            walk = book.walk(side, limit, qty, UNLIMITED, self.spec.quote_per_tick_step, cmd.account_id, cmd.stp)
            made, filled, stopped, stp_cancelled = walk.fills, walk.filled_steps, walk.stp_stopped, walk.stp_cancelled
        else:
            made, filled = walked
            stopped, stp_cancelled = False, []
        # _outcome for a limit order, with the FOK all-or-nothing check folded in
        if stopped or filled < qty:
            if tif == FOK:
                return self._expired(cmd, now_us, R_FILL_OR_KILL)
            if stopped:
                status, reason = EXPIRED, R_SELF_TRADE
            elif tif == IOC:
                status, reason = EXPIRED, R_IMMEDIATE_OR_CANCEL
            else:
                status, reason = (PARTIALLY_FILLED if filled else NEW), ""
        else:
            status, reason = FILLED, ""
        return _placed_from(cmd, now_us, status, reason, self._fills(side, made), stp_cancelled)

    def place(self, cmd: PlaceOrder, now_us: int) -> OrderPlaced | Rejection:
        """Decide a new order and apply it in one step: exactly ``decide_place`` then ``apply_placed``.

        The live path (the market actor). For the common case, a GTC or IOC limit
        order in an Open market, the book is changed while the event is built: a
        resting order goes into the book from its command's fields, and a crossing
        one is matched by ``OrderBook.match_limit``, which fills and unlinks the
        makers as it walks (one book call, no second pass over the fills); the
        ``Fill`` events are then built from what it filled. A GTC or IOC outcome
        follows from the fills alone, so nothing had to be decided before the book
        changed. A taker that reaches its own resting order is finished by
        ``_match_rest`` (self-trade prevention). Anything else (another market
        state, market orders, post-only takers, FOK, which is all or nothing and
        must be decided read-only first) takes the general path. Tests hold both
        paths to the same book, ledger, events and state hash
        (tests/engine/test_live_path.py).
        """
        if self.state != OPEN or cmd.order_type != LIMIT:
            return self._place_general(cmd, now_us)
        limit = cmd.price_ticks
        book = self.book
        bids, asks = book.bid_keys, book.ask_prices
        if not self._limit_in_band(limit, bids, asks):
            return self._expired(cmd, now_us, R_PRICE_OUT_OF_BOUNDS)
        side = cmd.side
        tif = cmd.tif
        qty = cmd.qty_steps
        if not ((asks and asks[0] <= limit) if side == BID else (bids and -bids[0] >= limit)):
            if tif == GTC:  # rests untouched: the most common order of all
                book.place(
                    cmd.order_id, cmd.account_id, side, limit, qty, qty, 0, cmd.client_id, cmd.post_only, cmd.stp,
                    now_us,
                )
                return _placed_from(cmd, now_us, NEW, "", [], [])
            return _placed_from(cmd, now_us, EXPIRED, R_FILL_OR_KILL if tif == FOK else R_IMMEDIATE_OR_CANCEL, [], [])
        if cmd.post_only:
            return self._expired(cmd, now_us, R_POST_ONLY_TAKER)
        if tif == FOK:  # all or nothing: decided read-only before the book changes
            return self._place_general(cmd, now_us)
        spec = self.spec
        qpts = spec.quote_per_tick_step
        made, filled, executed_quote, met_own = book.match_limit(side, limit, qty, cmd.account_id, qpts)
        if met_own:  # the taker reached its own resting order: self-trade prevention from there on
            return self._match_rest(cmd, now_us, made, filled, executed_quote)
        if filled < qty:
            if tif == IOC:
                status, reason = EXPIRED, R_IMMEDIATE_OR_CANCEL
            else:
                status, reason = (PARTIALLY_FILLED if filled else NEW), ""
        else:
            status, reason = FILLED, ""
        # _fills for the makers match_limit filled, with the quote it computed (the same int _fills computes)
        bps = spec.base_per_step
        taker_is_bid = side == BID
        if taker_is_bid:
            base_bps, quote_bps = spec.taker_fee_bps, spec.maker_fee_bps
        else:
            base_bps, quote_bps = spec.maker_fee_bps, spec.taker_fee_bps
        trade_id = self.next_trade_id
        fill = _fill
        fills = []
        price = 0
        for maker, steps, quote in made:
            price = maker.price_ticks
            base_fee = -(-steps * bps * base_bps // 10_000)
            quote_fee = -(-quote * quote_bps // 10_000)
            if taker_is_bid:
                fills.append(fill(trade_id, maker.order_id, maker.account_id, price, steps, quote_fee, base_fee))
            else:
                fills.append(fill(trade_id, maker.order_id, maker.account_id, price, steps, base_fee, quote_fee))
            trade_id += 1
        if fills:
            self.last_price = price
            self.next_trade_id = trade_id
        if filled < qty and tif == GTC:
            book.place(
                cmd.order_id, cmd.account_id, side, limit, qty, qty - filled, executed_quote, cmd.client_id,
                cmd.post_only, cmd.stp, now_us,
            )
        return _placed_from(cmd, now_us, status, reason, fills, [])

    def _match_rest(
        self, cmd: PlaceOrder, now_us: int, matched: Matched, filled: int, executed_quote: int,
    ) -> OrderPlaced:
        """Finish a GTC/IOC limit taker that ``match_limit`` stopped at one of its own resting orders.

        The makers ahead of that order are filled already, each taken whole as
        ``walk`` would have taken it, so ``walk`` on the rest of the quantity from
        here finds exactly the fills, STP cancels and stop that ``decide_place``
        finds on the book as it was; they are applied as ``apply_placed`` would.
        The event is the one ``decide_place`` + ``apply_placed`` make (the twin
        test in tests/engine/test_live_path.py holds them to it).
        """
        book = self.book
        qty = cmd.qty_steps
        qpts = self.spec.quote_per_tick_step
        walk = book.walk(cmd.side, cmd.price_ticks, qty - filled, UNLIMITED, qpts, cmd.account_id, cmd.stp)
        for maker, steps in walk.fills:
            quote = maker.price_ticks * steps * qpts
            book.fill(maker, steps, quote)
            executed_quote += quote
        for order_id in walk.stp_cancelled:
            book.remove(order_id)
        made = [(maker, steps) for maker, steps, _ in matched] + walk.fills
        filled += walk.filled_steps
        if walk.stp_stopped:
            status, reason = EXPIRED, R_SELF_TRADE
        elif filled == qty:
            status, reason = FILLED, ""
        elif cmd.tif == IOC:
            status, reason = EXPIRED, R_IMMEDIATE_OR_CANCEL
        else:
            status, reason = (PARTIALLY_FILLED if filled else NEW), ""
        fills = self._fills(cmd.side, made)
        if fills:
            self.last_price = fills[-1].price_ticks
            self.next_trade_id = fills[-1].trade_id + 1
        if status in RESTING:
            book.place(
                cmd.order_id, cmd.account_id, cmd.side, cmd.price_ticks, qty, qty - filled, executed_quote,
                cmd.client_id, cmd.post_only, cmd.stp, now_us,
            )
        return _placed_from(cmd, now_us, status, reason, fills, walk.stp_cancelled)

    def _place_general(self, cmd: PlaceOrder, now_us: int) -> OrderPlaced | Rejection:
        """``place`` for everything unusual: decide, then apply what was decided."""
        placed = self.decide_place(cmd, now_us)
        if type(placed) is OrderPlaced:
            self.apply_placed(placed)
        return placed

    def _decide_market(self, cmd: PlaceOrder, now_us: int) -> OrderPlaced:
        """A market order: walk with its base/quote bounds, no price limit, no band."""
        max_steps, max_quote = self._bounds(cmd)
        walk = self.book.walk(
            cmd.side, cmd.price_ticks, max_steps, max_quote, self.spec.quote_per_tick_step, cmd.account_id, cmd.stp
        )
        # complete: its whole quantity, or for an order sized in quote, until the quote ran out
        # (``quote_bound``; qty_steps is 0 there, so the quantity test alone would always pass)
        unfilled = walk.filled_steps < cmd.qty_steps if cmd.qty_steps else not walk.quote_bound
        if cmd.tif == FOK and (walk.stp_stopped or unfilled):
            return self._expired(cmd, now_us, R_FILL_OR_KILL)
        status, reason = self._outcome(cmd, walk, max_steps)
        return _placed_from(cmd, now_us, status, reason, self._fills(cmd.side, walk.fills), walk.stp_cancelled)

    def _limit_in_band(self, limit: int, bids: list[int], asks: list[int]) -> bool:
        """``_in_band`` for a new limit order; the usual case (best bid and ask known) from the cached band.

        ``bids`` and ``asks`` are the book's ``bid_keys`` and ``ask_prices`` (best
        first), which the caller has already read. The active price is the median of best bid, best ask and last,
        or the mean of bid and ask before the first trade: twice it is a whole number of ticks either way, and the
        band in whole ticks is cached per that number (``_band_for``).
        """
        if not (bids and asks):
            return self._in_band(limit)
        lo, hi = -bids[0], asks[0]
        last = self.last_price
        if last:
            if lo > hi:
                lo, hi = hi, lo
            twice = 2 * (lo if last <= lo else (hi if last >= hi else last))
        else:
            twice = lo + hi
        if twice != self._band_at:
            self._band_for(twice)
        return self._band_lo <= limit <= self._band_hi

    def _band_for(self, twice: int) -> None:
        """Cache the band around the active price ``twice / 2`` (in ticks) as whole ticks.

        ``lo_num/lo_den * twice/2 <= limit`` is ``limit >= ceil(lo_num * twice / (2 * lo_den))``
        and ``limit <= hi_num/hi_den * twice/2`` is ``limit <= floor(hi_num * twice / (2 * hi_den))``
        (positive denominators), so the cached bounds accept exactly the prices ``_in_band`` does.
        """
        lo_num, lo_den, hi_num, hi_den = self._band
        self._band_lo = -(-lo_num * twice // (2 * lo_den))
        self._band_hi = hi_num * twice // (2 * hi_den)
        self._band_at = twice

    def _state_refusal(self, cmd: PlaceOrder, state: str) -> Rejection | None:
        sym = self.spec.symbol
        if state == CLOSED:
            return Rejection("TRADING_PAUSED", f"Market {sym} is closed")
        if state == CANCEL_ONLY:
            return Rejection("TRADING_PAUSED", f"Market {sym} is in cancel-only mode")
        if cmd.order_type == MARKET and state in (LIMIT_ONLY, POST_ONLY):
            mode = "limit-only" if state == LIMIT_ONLY else "post-only"
            return Rejection("INVALID_ORDER", f"Market {sym} is in {mode} mode: market orders are not accepted")
        return None

    def _bounds(self, cmd: PlaceOrder) -> tuple[int, int]:
        """(max base steps, max quote atoms) the order may trade."""
        if cmd.order_type == LIMIT:
            return cmd.qty_steps, UNLIMITED
        if cmd.side == BID:  # the lock is quote: either quoteQuantity or all held quote
            return (cmd.qty_steps or UNLIMITED), cmd.lock
        if cmd.qty_steps:
            return cmd.qty_steps, UNLIMITED
        return cmd.lock // self.spec.base_per_step, cmd.quote_qty  # sell for quote, held base caps it

    def _outcome(self, cmd: PlaceOrder, walk: Walk, max_steps: int) -> tuple[str, str]:
        if walk.stp_stopped:
            return EXPIRED, R_SELF_TRADE
        if cmd.order_type == LIMIT:
            if walk.filled_steps == cmd.qty_steps:
                return FILLED, ""
            if cmd.tif == IOC:
                return EXPIRED, R_IMMEDIATE_OR_CANCEL
            return (PARTIALLY_FILLED if walk.filled_steps else NEW), ""
        if cmd.qty_steps:  # market order sized in base
            if walk.filled_steps == cmd.qty_steps:
                return FILLED, ""
            if walk.quote_bound:  # the held quote ran out before the quantity
                return EXPIRED, R_INSUFFICIENT_FUNDS
            return EXPIRED, R_INSUFFICIENT_LIQUIDITY
        # market order sized in quote: done once the rest cannot buy a step at the next price
        if walk.quote_bound:
            return (FILLED, "") if walk.filled_steps else (EXPIRED, R_INVALID_QUANTITY)
        if cmd.side != BID and walk.filled_steps == max_steps:
            return EXPIRED, R_INSUFFICIENT_FUNDS
        return EXPIRED, R_INSUFFICIENT_LIQUIDITY

    def _fills(self, side: str, made: Fills) -> list[Fill]:
        """A walk's (maker, steps) fills as events, with trade ids and fees.

        A fee is ``ceil(atoms * bps / 10_000)`` on what that side receives, written
        as ``-(-atoms * bps // 10_000)`` in the loop (a helper call per fee cost
        more than the arithmetic).
        """
        spec = self.spec
        bps, qpts = spec.base_per_step, spec.quote_per_tick_step
        if side == BID:  # taker receives base, maker receives quote
            base_bps, quote_bps = spec.taker_fee_bps, spec.maker_fee_bps
        else:  # taker receives quote, maker receives base
            base_bps, quote_bps = spec.maker_fee_bps, spec.taker_fee_bps
        taker_is_bid = side == BID
        trade_id = self.next_trade_id
        fill = _fill
        fills = []
        for maker, steps in made:
            price = maker.price_ticks
            base_fee = -(-steps * bps * base_bps // 10_000)
            quote_fee = -(-price * steps * qpts * quote_bps // 10_000)
            if taker_is_bid:
                fills.append(fill(trade_id, maker.order_id, maker.account_id, price, steps, quote_fee, base_fee))
            else:
                fills.append(fill(trade_id, maker.order_id, maker.account_id, price, steps, base_fee, quote_fee))
            trade_id += 1
        return fills

    def _expired(self, cmd: PlaceOrder, now_us: int, reason: str) -> OrderPlaced:
        return _placed_from(cmd, now_us, EXPIRED, reason, [], [])

    def active_price(self) -> tuple[int, int] | None:
        """Median of best bid, best ask and last trade (those that exist) as (numerator, denominator)."""
        book = self.book
        bid = -book.bid_keys[0] if book.bid_keys else 0
        ask = book.ask_prices[0] if book.ask_prices else 0
        last = self.last_price
        if bid and ask and last:
            return _median3(bid, ask, last), 1
        present = (bid > 0) + (ask > 0) + (last > 0)  # the absent ones are 0: the sum is of those present
        if not present:
            return None
        return bid + ask + last, present  # one value, or the mean of two

    def _in_band(self, price_ticks: int) -> bool:
        book = self.book
        last = self.last_price
        if last and book.bid_keys and book.ask_prices:  # the usual case, without building a tuple
            a_num, a_den = _median3(-book.bid_keys[0], book.ask_prices[0], last), 1
        else:
            active = self.active_price()
            if active is None:
                return True
            a_num, a_den = active
        lo_num, lo_den, hi_num, hi_den = self._band
        # lo * active <= price <= hi * active, in integers
        return (
            lo_num * a_num <= price_ticks * a_den * lo_den
            and price_ticks * a_den * hi_den <= hi_num * a_num
        )

    # --- cancels, amends, state ------------------------------------------------

    def decide_cancel(self, cmd: CancelOrder, now_us: int) -> OrderCancelled | Rejection:
        if self.state == CLOSED:
            return Rejection("TRADING_PAUSED", f"Market {self.spec.symbol} is closed")
        order = self.book.orders.get(cmd.order_id)
        if order is None or order.account_id != cmd.account_id:
            return Rejection("RESOURCE_NOT_FOUND", "Order not found")
        return OrderCancelled(order.order_id, order.account_id, self.spec.symbol, now_us)

    def decide_cancel_all(self, account_id: int, now_us: int) -> list[OrderCancelled] | Rejection:
        if self.state == CLOSED:  # refused as a single cancel is, not answered "none cancelled"
            return Rejection("TRADING_PAUSED", f"Market {self.spec.symbol} is closed")
        sym = self.spec.symbol
        return [
            OrderCancelled(o.order_id, account_id, sym, now_us)
            for o in self.book.orders.values() if o.account_id == account_id
        ]

    def decide_amend(self, cmd: AmendOrder, now_us: int) -> OrderAmended | Rejection:
        sym = self.spec.symbol
        if self.state in (CLOSED, CANCEL_ONLY):
            return Rejection("TRADING_PAUSED", f"Market {sym} does not accept amendments now ({self.state})")
        order = self.book.orders.get(cmd.order_id)
        if order is None or order.account_id != cmd.account_id:
            return Rejection("RESOURCE_NOT_FOUND", "Order not found")
        price = cmd.price_ticks or order.price_ticks
        total = cmd.qty_steps or order.qty_steps
        executed = order.qty_steps - order.remaining_steps
        if total <= executed:
            return Rejection("INVALID_QUANTITY", f"New quantity must exceed the executed quantity {self.spec.format_qty(executed)}")
        if price != order.price_ticks:
            if not self._in_band(price):
                return Rejection("INVALID_PRICE", "Amended price is outside the price band")
            if self.book.crosses(order.side, price):
                return Rejection("INVALID_PRICE", "Amended price would cross the book; cancel and place a new order")
        small = below_min_notional(self.spec, price * total * self.spec.quote_per_tick_step)
        if small is not None:  # the filter a new order meets (Engine.build_order)
            return small
        remaining = total - executed
        lock = self.lock_for(order.side, price, remaining)
        old = self.lock_for(order.side, order.price_ticks, order.remaining_steps)
        if lock - old > cmd.hold:
            return Rejection("INSUFFICIENT_FUNDS", "Insufficient funds for the amended order")
        return OrderAmended(order.order_id, order.account_id, sym, price, total, lock, cmd.hold, now_us)

    def decide_state(self, cmd: SetMarketState, now_us: int) -> MarketStateChanged | Rejection:
        if cmd.state == self.state:
            return Rejection("PRECONDITION_FAILED", f"Market {self.spec.symbol} is already {self.state}")
        return MarketStateChanged(self.spec.symbol, cmd.state, now_us)

    def lock_for(self, side: str, price_ticks: int, steps: int) -> int:
        """Atoms a resting order of ``steps`` at ``price_ticks`` must have locked."""
        if side == BID:
            return price_ticks * steps * self.spec.quote_per_tick_step
        return steps * self.spec.base_per_step

    # --- apply ------------------------------------------------------------------

    def apply_placed(self, e: OrderPlaced) -> None:
        book = self.book
        executed = executed_quote = 0
        fills = e.fills
        if fills:
            qpts = self.spec.quote_per_tick_step
            take = book.take
            for f in fills:
                steps = f.qty_steps
                quote = f.price_ticks * steps * qpts
                take(f.maker_order_id, steps, quote)
                executed += steps
                executed_quote += quote
            last = fills[-1]
            self.last_price = last.price_ticks
            self.next_trade_id = last.trade_id + 1
        if e.stp_cancelled:
            for order_id in e.stp_cancelled:
                book.remove(order_id)
        if e.status in RESTING:
            # reuse the event's int when nothing executed: one object less per resting order
            remaining = e.qty_steps - executed if executed else e.qty_steps
            book.place(
                e.order_id, e.account_id, e.side, e.price_ticks, e.qty_steps, remaining,
                executed_quote, e.client_id, e.post_only, e.stp, e.ts_us,
            )

    def apply_cancelled(self, e: OrderCancelled) -> None:
        self.book.remove(e.order_id)

    def apply_amended(self, e: OrderAmended) -> None:
        order = self.book.orders[e.order_id]
        executed = order.qty_steps - order.remaining_steps
        remaining = e.qty_steps - executed
        keeps_priority = e.price_ticks == order.price_ticks and remaining <= order.remaining_steps
        if keeps_priority:
            order.level.steps -= order.remaining_steps - remaining
            order.remaining_steps = remaining
            order.qty_steps = e.qty_steps
            return
        self.book.remove(e.order_id)
        order.price_ticks = e.price_ticks
        order.qty_steps = e.qty_steps
        order.remaining_steps = remaining
        self.book.rest(order)

    def apply_state(self, e: MarketStateChanged) -> None:
        self.state = e.state

    # --- views ---------------------------------------------------------------------

    def view(self, order: Order) -> OrderView:
        return OrderView(
            order.order_id, order.account_id, self.spec.symbol, order.side, LIMIT, GTC,
            order.price_ticks, order.qty_steps, 0, order.qty_steps - order.remaining_steps,
            order.executed_quote, NEW if order.remaining_steps == order.qty_steps else PARTIALLY_FILLED,
            "", order.post_only, order.stp, order.client_id, order.created_us,
        )

    def view_placed(self, e: OrderPlaced) -> OrderView:
        """The order as its placement left it (one per order: results and the publisher).

        One plain loop, and none for an order without fills: two generator
        ``sum``s cost more than the view itself on an order that just rests.
        """
        steps = quote = 0
        if e.fills:
            qpts = self.spec.quote_per_tick_step
            for f in e.fills:
                steps += f.qty_steps
                quote += f.price_ticks * f.qty_steps * qpts
        return OrderView(
            e.order_id, e.account_id, e.symbol, e.side, e.order_type, e.tif, e.price_ticks,
            e.qty_steps, e.quote_qty, steps, quote, e.status, e.expiry_reason, e.post_only,
            e.stp, e.client_id, e.ts_us,
        )


def below_min_notional(spec: MarketSpec, notional: int) -> Rejection | None:
    """The refusal of an order worth ``notional`` quote atoms under the market's minimum, if it is."""
    if notional >= spec.min_notional_quote:
        return None
    return Rejection(
        "INVALID_ORDER",
        f"Order value {spec.format_quote(notional)} {spec.quote} is below the minimum notional "
        f"{spec.format_quote(spec.min_notional_quote)} {spec.quote}",
    )
