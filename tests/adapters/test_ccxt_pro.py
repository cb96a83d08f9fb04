"""Unmodified ccxt.pro (asyncio) watching Satchel's WebSocket streams; REST via ccxt too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt.pro
import pytest

from tests.adapters.live import LiveVenue, Trader

pytestmark = pytest.mark.slow
SYMBOL = "SOL/USDC"


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVenue]:
    with LiveVenue(Path(tmp_path_factory.mktemp("ccxtpro"))) as live:
        yield live


def pro(venue: LiveVenue, trader: Trader) -> Any:
    return ccxt.pro.backpack({
        "apiKey": trader.key, "secret": trader.secret,
        "urls": {"api": {"public": venue.http_url, "private": venue.http_url,
                         "ws": {"public": venue.ws_url, "private": venue.ws_url}}},
    })


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_watch_trades_ticker_and_order_book(venue: LiveVenue) -> None:
    maker = venue.trader(SOL="100")
    taker = venue.trader(USDC="100000")

    async def scenario() -> None:
        mk, tk = pro(venue, maker), pro(venue, taker)
        try:
            await tk.load_markets()
            await mk.load_markets()
            book_task = asyncio.create_task(tk.watch_order_book(SYMBOL))
            trades_task = asyncio.create_task(tk.watch_trades(SYMBOL))
            await asyncio.sleep(0.3)  # subscriptions reach the server
            for i in range(12):  # ccxt buffers 10 deltas before it loads the REST snapshot
                await mk.create_order(SYMBOL, "limit", "sell", 1, 100 + i)
            await tk.create_order(SYMBOL, "market", "buy", 1.5)
            trades = await trades_task
            assert trades[0]["price"] == 100.0 and trades[0]["side"] == "buy" and trades[0]["amount"] == 1.0
            book = await book_task
            while book["asks"] and book["asks"][0][0] == 100.0:
                book = await tk.watch_order_book(SYMBOL)
            assert book["asks"][0] == [101.0, 0.5]
            assert len(book["asks"]) == 11
            ticker = await tk.watch_ticker(SYMBOL)
            assert ticker["last"] == 101.0 and ticker["baseVolume"] == 1.5
        finally:
            await mk.close()
            await tk.close()

    run(scenario())


def test_watch_orders_and_balance(venue: LiveVenue) -> None:
    trader = venue.trader(USDC="1000")

    async def scenario() -> None:
        ex = pro(venue, trader)
        try:
            await ex.load_markets()
            orders_task = asyncio.create_task(ex.watch_orders(SYMBOL))
            balance_task = asyncio.create_task(ex.watch_balance())
            await asyncio.sleep(0.3)
            placed = await ex.create_order(SYMBOL, "limit", "buy", 2, 80)
            orders = await orders_task
            assert orders[-1]["id"] == placed["id"] and orders[-1]["status"] == "open"
            balance = await balance_task
            assert balance["USDC"]["free"] == 840.0 and balance["USDC"]["used"] == 160.0
            next_update = asyncio.create_task(ex.watch_orders(SYMBOL))
            await asyncio.sleep(0.1)
            await ex.cancel_order(placed["id"], SYMBOL)
            orders = await next_update
            assert orders[-1]["status"] == "canceled"
        finally:
            await ex.close()

    run(scenario())
