"""Histories survive a restart: the publisher is rebuilt from the journal, seen through unmodified ccxt."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import ccxt
import pytest
import trio

from engine.config import DEFAULT, parse_config
from engine.messages import ASK, BID
from engine.publisher import Publisher
from engine.publisher_service import serve_publisher, shared
from engine.runtime import Engine
from tests.adapters.live import LiveVenue, Trader

pytestmark = pytest.mark.slow
SYMBOL = "SOL/USDC"
SINCE_MS = (time.time_ns() // 1_000_000_000 - 3600) * 1000  # a fixed window, so "now" does not cut a candle off
UNTIL_MS = SINCE_MS + 86_400_000


def client(venue: LiveVenue, trader: Trader) -> ccxt.backpack:
    exchange = ccxt.backpack({
        "apiKey": trader.key, "secret": trader.secret,
        "urls": {"api": {"public": venue.http_url, "private": venue.http_url}},
    })
    exchange.load_markets()
    return exchange


def seen(venue: LiveVenue, maker: Trader, taker: Trader) -> dict[str, Any]:
    """Everything a client can read back about the past, minus fields that are about *now*."""
    mk, tk = client(venue, maker), client(venue, taker)
    try:
        ticker = tk.fetch_ticker(SYMBOL)
        return {
            "maker_fills": mk.fetch_my_trades(SYMBOL),
            "taker_fills": tk.fetch_my_trades(SYMBOL),
            "maker_orders": [_order(o) for o in mk.fetch_orders(SYMBOL)],
            "taker_orders": [_order(o) for o in tk.fetch_orders(SYMBOL)],
            "trades": tk.fetch_trades(SYMBOL),
            "candles_1m": tk.fetch_ohlcv(SYMBOL, "1m", SINCE_MS, params={"until": UNTIL_MS}),
            "candles_1s": tk.fetch_ohlcv(SYMBOL, "1s", SINCE_MS, params={"until": UNTIL_MS}),
            "ticker": {k: ticker[k] for k in ("last", "high", "low", "open", "baseVolume", "quoteVolume")},
            "book": {k: v for k, v in tk.fetch_order_book(SYMBOL).items() if k in ("bids", "asks", "nonce")},
        }
    finally:
        mk.session.close()
        tk.session.close()


def _order(order: dict[str, Any]) -> tuple[Any, ...]:
    return (order["id"], order["status"], order["side"], order["price"], order["amount"], order["filled"])


def test_fills_orders_trades_and_klines_are_the_same_after_a_restart(tmp_path: Path) -> None:
    with LiveVenue(tmp_path) as venue:
        maker = venue.trader(SOL="50", USDC="5000")
        taker = venue.trader(USDC="5000", SOL="10")
        mk, tk = client(venue, maker), client(venue, taker)
        try:
            mk.create_order(SYMBOL, "limit", "sell", 2, 101)
            mk.create_order(SYMBOL, "limit", "sell", 3, 102)
            resting = mk.create_order(SYMBOL, "limit", "buy", 1, 90)
            tk.create_order(SYMBOL, "market", "buy", 4)  # fills 101 fully, 102 partly
            mk.cancel_order(resting["id"], SYMBOL)
            tk.create_order(SYMBOL, "limit", "sell", 1, 95)
            mk.create_order(SYMBOL, "limit", "buy", 1, 96)  # takes the 95
        finally:
            mk.session.close()
            tk.session.close()
        venue.settle()
        before = seen(venue, maker, taker)
    assert len(before["trades"]) == 3 and len(before["maker_fills"]) == 3 and len(before["taker_fills"]) == 3
    assert {o[1] for o in before["maker_orders"]} == {"closed", "canceled", "open"}
    assert before["candles_1m"][-1][1:] == [101.0, 102.0, 95.0, 95.0, 5.0]

    with LiveVenue(tmp_path) as venue:
        after = seen(venue, maker, taker)
        assert after == before
        # the live stream continues right after the rebuilt history: no gap, no duplicate
        tk = client(venue, taker)
        try:
            tk.create_order(SYMBOL, "market", "buy", 1)  # the rest of the 102 ask
        finally:
            tk.session.close()
        venue.settle()
        later = seen(venue, maker, taker)
    assert later["trades"][:3] == before["trades"] and len(later["trades"]) == 4
    assert later["taker_fills"][:3] == before["taker_fills"] and len(later["taker_fills"]) == 4
    assert later["book"]["nonce"] == before["book"]["nonce"] + 1


async def test_rebuild_equals_the_publisher_that_watched_it_live(tmp_path: Path) -> None:
    """Same trades, klines, histories, update ids and tops whether applied live or replayed at start."""
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(parse_config(copy.deepcopy(DEFAULT)), tmp_path).run)
        live: Publisher = await nursery.start(serve_publisher, engine)
        assert shared(engine) is live
        ids = []
        for _ in range(2):
            created = await engine.create_account()
            ids.append(created.value)
            await engine.deposit(created.value, "SOL", "100")
            await engine.deposit(created.value, "USDC", "100000")
        a, b = ids
        for i in range(30):
            await engine.place_order(a, "SOL_USDC", ASK, "Limit", price=str(100 + i % 7), quantity="1.5")
            await engine.place_order(b, "SOL_USDC", BID, "Limit", price=str(99 + i % 5), quantity="1", client_id=i)
            if i % 4 == 0:
                await engine.cancel_order(b, "SOL_USDC", client_id=i)
        await engine.withdraw(a, "USDC", "10")
        await engine.wait_idle()
        await trio.sleep(0.01)
        rebuilt = await Publisher.rebuild(engine)
        assert rebuilt.venue.state_hash() == live.venue.state_hash() == engine.venue.state_hash()
        for account in ids:
            assert rebuilt.fills(account) == live.fills(account) and live.fills(account)
            assert rebuilt.closed_orders(account) == live.closed_orders(account)
            assert rebuilt.funds(account, "deposit") == live.funds(account, "deposit")
            assert rebuilt.funds(account, "withdrawal") == live.funds(account, "withdrawal")
        assert rebuilt.trades("SOL_USDC", 1000) == live.trades("SOL_USDC", 1000)
        for interval in ("1s", "1m", "1w", "1month"):
            assert rebuilt.klines("SOL_USDC", interval, 0, 1 << 40) == live.klines("SOL_USDC", interval, 0, 1 << 40)
        assert rebuilt.book_top("SOL_USDC") == live.book_top("SOL_USDC")
        assert rebuilt.update_id("SOL_USDC") == live.update_id("SOL_USDC") > 30
        engine.stop()
        nursery.cancel_scope.cancel()
    assert shared(engine) is None
