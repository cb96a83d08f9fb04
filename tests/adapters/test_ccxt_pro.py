"""Unmodified ccxt.pro (asyncio) watching Satchel's WebSocket streams; REST via ccxt too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt.pro
import pytest

from tests.adapters.live import LiveVenue, Trader
from tests.adapters.tls_certs import make_pki

pytestmark = pytest.mark.slow
SYMBOL = "SOL/USDC"


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVenue]:
    with LiveVenue(Path(tmp_path_factory.mktemp("ccxtpro"))) as live:
        yield live


def pro(venue: LiveVenue, trader: Trader) -> Any:
    config = {
        "apiKey": trader.key, "secret": trader.secret,
        "urls": {"api": {"public": venue.http_url, "private": venue.http_url,
                         "ws": {"public": venue.ws_url, "private": venue.ws_url}}},
    }
    if venue.tls is not None:  # ccxt's asyncio client builds its TLS context (REST and WebSocket) from ``cafile``
        config["cafile"] = str(venue.tls.ca_file)
    return ccxt.pro.backpack(config)


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


def test_https_and_wss(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with LiveVenue(tmp_path / "venue", tls=pki) as venue:
        maker = venue.trader(SOL="10")
        taker = venue.trader(USDC="1000")
        assert venue.ws_url.startswith("wss://") and venue.http_url.startswith("https://")

        async def scenario() -> None:
            mk, tk = pro(venue, maker), pro(venue, taker)
            try:
                await mk.load_markets()
                await tk.load_markets()
                trades_task = asyncio.create_task(tk.watch_trades(SYMBOL))
                balance_task = asyncio.create_task(tk.watch_balance())  # a signed subscription
                await asyncio.sleep(0.3)
                await tk.create_order(SYMBOL, "limit", "buy", 2, 100)  # rests: its USDC is locked
                balance = await balance_task
                assert balance["USDC"]["free"] == 800.0 and balance["USDC"]["used"] == 200.0
                await mk.create_order(SYMBOL, "limit", "sell", 2, 100)
                trades = await trades_task
                assert (trades[0]["price"], trades[0]["amount"], trades[0]["side"]) == (100.0, 2.0, "sell")
            finally:
                await mk.close()
                await tk.close()

        run(scenario())
