"""Matching microbenchmarks on the shared workload: the bare book, the market layer, and a PyPI peer.

Each run uses a fresh book; only the order loop is timed. Per-library
conversion happens inside the loop where the library's API requires it
(reference/performance.md §8.7).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from bench.platform_bench import paced
from bench.workload import EXPECTED_FILLS, Order
from engine.book import OrderBook
from engine.interpreter import GC_THRESHOLD, tuned_interpreter
from engine.market import Market
from engine.messages import BID, NO_CLIENT_ID, REJECT_TAKER, PlaceOrder

ENGINE_GC: Final = (f"engine runtime settings: gc.freeze() after a collect and after every pass, "
                    f"gc.set_threshold{GC_THRESHOLD}")
DEFAULT_GC: Final = "interpreter default (gc thresholds 700, 10, 10; nothing frozen)"


def run_book(orders: list[Order]) -> tuple[float, int, int]:
    """Drive engine.book.OrderBook as engine/market.py (``Market.place``) does for a GTC limit: one
    that cannot cross rests at once (``place``); one that crosses is matched and applied in one
    ``match_limit`` call, then its remainder placed.

    Every order has its own account id, so the taker never meets its own order
    (where ``Market`` goes on with ``walk``, see ``_match_rest``); the test of
    ``met_own`` is still made, as ``Market.place`` makes it.
    Returns (seconds, fills, resting orders).
    """
    book = OrderBook()
    match_limit, place = book.match_limit, book.place
    bids, asks = book.bid_keys, book.ask_prices  # read in place, as Market.place does
    qpts = 1  # quote atoms per tick*step; any constant leaves matching unchanged
    stp = REJECT_TAKER
    fills = 0
    t0 = time.perf_counter()
    for oid, (side, price, qty) in enumerate(orders, 1):
        # Market.place's crossing test (OrderBook.crosses, inlined there too): no cross, rest untouched
        if not ((asks and asks[0] <= price) if side == BID else (bids and -bids[0] >= price)):
            place(oid, oid, side, price, qty, qty, 0, NO_CLIENT_ID, False, stp, 0)
            continue
        made, filled, executed_quote, met_own = match_limit(side, price, qty, oid, qpts)
        if met_own:
            raise AssertionError("a taker met its own order: the workload has one account per order")
        fills += len(made)
        if filled < qty:
            place(oid, oid, side, price, qty, qty - filled, executed_quote, NO_CLIENT_ID, False, stp, 0)
    elapsed = time.perf_counter() - t0
    return elapsed, fills, len(book.orders)


def run_market(orders: list[Order]) -> tuple[float, int, int]:
    """One level up: Market.place, decide and apply in one step as the market actor runs it (band check,
    fees, Fill and OrderPlaced objects).

    Commands are built outside the timed loop (that is the engine's intake, measured separately).
    """
    market, cmds = market_setup(orders)
    return market_loop(market, cmds)


def market_setup(orders: list[Order]) -> tuple[Market, list[PlaceOrder]]:
    """A fresh SOL_USDC market of the default config and one GTC limit command per order."""
    from engine.config import DEFAULT, parse_config
    from engine.venue import Venue

    venue = Venue(parse_config(DEFAULT))
    market: Market = venue.markets["SOL_USDC"]
    cmds = [
        PlaceOrder(oid, oid, "SOL_USDC", side, "Limit", "GTC", price, qty, 0, False, REJECT_TAKER, NO_CLIENT_ID,
                   price * qty * market.spec.quote_per_tick_step if side == BID else qty * market.spec.base_per_step)
        for oid, (side, price, qty) in enumerate(orders, 1)
    ]
    return market, cmds


def market_loop(market: Market, cmds: list[PlaceOrder]) -> tuple[float, int, int]:
    """The timed part of ``run_market``: place (decide + apply) every command, in order."""
    place = market.place
    fills = 0
    t0 = time.perf_counter()
    for cmd in cmds:
        placed = place(cmd, 0)
        fills += len(placed.fills)  # type: ignore[union-attr]
    elapsed = time.perf_counter() - t0
    return elapsed, fills, len(market.book.orders)


def run_lightmatchingengine(orders: list[Order]) -> tuple[float, int, int]:
    """lightmatchingengine 2019.1.4: add_order(instmt, price, qty, side) per order.

    Its comparisons (``price >= best_price``, ``price == 0.0``) work on ints, so the
    integer ticks are passed as they are (no float conversion). The engine's side
    string is mapped to its ``Side`` constant inside the loop. It reports one
    aggressive trade per price level plus one passive trade per maker; the fills
    counted here are the passive trades (one per maker matched), which is the
    same unit as the other books' fills.
    """
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine, Side

    lme = LightMatchingEngine()
    buy, sell = Side.BUY, Side.SELL
    add = lme.add_order
    fills = 0
    t0 = time.perf_counter()
    for side, price, qty in orders:
        order, trades = add("SOL_USDC", price, qty, buy if side is BID else sell)
        if trades:
            taker_id = order.order_id
            for trade in trades:
                if trade.order_id != taker_id:
                    fills += 1
    elapsed = time.perf_counter() - t0
    book = lme.order_books["SOL_USDC"]
    resting = sum(len(level) for level in book.bids.values()) + sum(len(level) for level in book.asks.values())
    return elapsed, fills, resting


@contextmanager
def engine_interpreter() -> Iterator[None]:
    """Run under the interpreter settings the engine applies at start, then restore the defaults.

    ``engine.interpreter.tune_interpreter`` (called by ``Engine`` before it serves) freezes
    what is alive and sets the collector's thresholds (``GC_THRESHOLD``): the book
    never runs under the default (700, 10, 10) in the product. Measuring it under the default
    would count collections the engine does not make (each gen-0 pass walks the
    young objects, and the default's frequent older passes walk every resting order).
    """
    with tuned_interpreter():
        yield


def repeat(
    fn: Callable[[list[Order]], tuple[float, int, int]], orders: list[Order], runs: int, *, engine_gc: bool = True,
    pace: bool = False,
) -> dict[str, Any]:
    """Run ``fn`` ``runs`` times after one warm-up; orders/s median and best, fills checked each run.

    ``engine_gc`` (the default) runs under the engine's interpreter settings
    (``engine_interpreter``); the platform probe turns it off to stay comparable to
    the reference VM's figures, which were taken with the interpreter's defaults.
    ``pace`` probes the box's speed before and after every run (``platform_bench.paced``)
    and returns the speeds as ``speeds``.
    """
    if engine_gc:
        with engine_interpreter():
            return {**_repeat(fn, orders, runs, pace), "gc": ENGINE_GC}
    return {**_repeat(fn, orders, runs, pace), "gc": DEFAULT_GC}


def _repeat(
    fn: Callable[[list[Order]], tuple[float, int, int]], orders: list[Order], runs: int, pace: bool,
) -> dict[str, Any]:
    fn(orders)  # warm-up
    rates, speeds = [], []
    fills = resting = 0

    def once() -> tuple[float, int, int]:
        gc.collect()
        return fn(orders)

    for _ in range(runs):
        if pace:
            (elapsed, fills, resting), speed = paced(once, orders)
            speeds.append(speed)
        else:
            elapsed, fills, resting = once()
        if fills != EXPECTED_FILLS:
            raise AssertionError(f"{fn.__name__}: {fills} fills, expected {EXPECTED_FILLS}")
        rates.append(len(orders) / elapsed)
    return {
        "median": statistics.median(rates),
        "best": max(rates),
        "runs": [round(r) for r in rates],
        "rates": rates,
        "speeds": speeds,
        "fills": fills,
        "resting": resting,
    }
