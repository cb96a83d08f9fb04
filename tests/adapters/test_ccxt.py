"""Unmodified ccxt (PyPI 4.5.90) against Satchel: only ``urls`` point here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ccxt
import pytest

from tests.adapters.live import LiveVenue, Trader
from tests.adapters.tls_certs import make_pki

_clients: list[ccxt.backpack] = []


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVenue]:
    with LiveVenue(Path(tmp_path_factory.mktemp("ccxt"))) as live:
        yield live
        for exchange in _clients:
            exchange.session.close()


def client(venue: LiveVenue, trader: Trader) -> ccxt.backpack:
    exchange = ccxt.backpack({
        "apiKey": trader.key, "secret": trader.secret,
        "urls": {"api": {"public": venue.http_url, "private": venue.http_url}},
    })
    _clients.append(exchange)
    exchange.load_markets()
    return exchange


def test_market_data(venue: LiveVenue) -> None:
    maker = venue.trader(SOL="10")
    taker = venue.trader(USDC="1000")
    mk, tk = client(venue, maker), client(venue, taker)
    assert {"SOL/USDC", "BTC/USDC", "ETH/USDC"} <= set(mk.symbols)
    market = mk.market("SOL/USDC")
    assert market["precision"]["price"] == 0.01 and market["limits"]["amount"]["min"] == 0.01 and market["spot"]
    mk.create_order("SOL/USDC", "limit", "sell", 2, 101)
    mk.create_order("SOL/USDC", "limit", "sell", 1, 102)
    tk.create_order("SOL/USDC", "market", "buy", 1.5)
    venue.settle()
    book = tk.fetch_order_book("SOL/USDC", limit=5)
    assert book["asks"] == [[101.0, 0.5], [102.0, 1.0]] and book["bids"] == [] and book["nonce"] >= 3
    ticker = tk.fetch_ticker("SOL/USDC")
    assert ticker["last"] == 101.0 and ticker["baseVolume"] == 1.5
    tickers = tk.fetch_tickers()
    assert tickers["SOL/USDC"]["last"] == 101.0
    untraded = tk.fetch_ticker("BTC/USDC")  # Backpack's all-"0" ticker of a market with no trades: no prices
    assert (untraded["last"], untraded["high"], untraded["baseVolume"]) == (None, None, 0.0)
    assert tickers["BTC/USDC"]["last"] is None
    trades = tk.fetch_trades("SOL/USDC")
    assert [(t["price"], t["amount"], t["side"]) for t in trades][-1] == (101.0, 1.5, "buy")
    candles = tk.fetch_ohlcv("SOL/USDC", "1m")
    assert candles[-1][1:] == [101.0, 101.0, 101.0, 101.0, 1.5]
    assert tk.fetch_status()["status"] == "ok"


def test_trading(venue: LiveVenue) -> None:
    trader = venue.trader(USDC="1000", SOL="5")
    other = venue.trader(SOL="5", USDC="1000")
    ex, ox = client(venue, trader), client(venue, other)
    balance = ex.fetch_balance()
    assert balance["USDC"]["free"] == 1000.0 and balance["SOL"]["free"] == 5.0
    limit = ex.create_order("ETH/USDC", "limit", "buy", 0.1, 1000, {"clientOrderId": 42})
    assert limit["status"] == "open" and limit["clientOrderId"] == "42" and limit["price"] == 1000.0
    post = ex.create_order("ETH/USDC", "limit", "buy", 0.1, 999, {"postOnly": True})
    assert post["postOnly"] is True and post["status"] == "open"
    venue.settle()
    assert ex.fetch_balance()["USDC"]["used"] == pytest.approx(199.9)
    opened = ex.fetch_open_orders("ETH/USDC")
    assert sorted(o["id"] for o in opened) == sorted([limit["id"], post["id"]])
    cancelled = ex.cancel_order(limit["id"], "ETH/USDC")
    assert cancelled["status"] == "canceled"
    batch = ex.create_orders([
        {"symbol": "ETH/USDC", "type": "limit", "side": "buy", "amount": 0.1, "price": 990},
        {"symbol": "ETH/USDC", "type": "limit", "side": "buy", "amount": 0.1, "price": 980},
    ])
    assert [o["status"] for o in batch] == ["open", "open"]
    venue.settle()
    assert len(ex.cancel_all_orders("ETH/USDC")) == 3
    venue.settle()
    assert ex.fetch_open_orders("ETH/USDC") == []
    # market by quantity and by cost against resting liquidity
    ox.create_order("SOL/USDC", "limit", "sell", 2, 100)
    ox.create_order("SOL/USDC", "limit", "buy", 2, 90)
    bought = ex.create_order("SOL/USDC", "market", "buy", None, None, {"cost": 50})
    assert bought["status"] == "closed" and bought["filled"] == 0.5
    sold = ex.create_order("SOL/USDC", "market", "sell", 1)
    assert sold["status"] == "closed" and sold["filled"] == 1.0 and sold["average"] == 90.0
    venue.settle()
    mine = ex.fetch_my_trades("SOL/USDC")
    assert sorted((t["side"], t["price"], t["amount"]) for t in mine) == [("buy", 100.0, 0.5), ("sell", 90.0, 1.0)]
    assert all(t["fee"]["cost"] > 0 for t in mine)
    balance = ex.fetch_balance()
    assert balance["SOL"]["total"] == pytest.approx(5 + 0.5 * (1 - 0.0005) - 1)


def test_errors_map_to_ccxt_exceptions(venue: LiveVenue) -> None:
    trader = venue.trader(USDC="10")
    ex = client(venue, trader)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order("SOL/USDC", "limit", "buy", 1, 100)
    wrong = ccxt.backpack({"apiKey": trader.key, "secret": venue.trader().secret,
                           "urls": {"api": {"public": venue.http_url, "private": venue.http_url}}})
    _clients.append(wrong)
    with pytest.raises(ccxt.AuthenticationError):
        wrong.fetch_balance()


def test_signed_requests_over_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ccxt's synchronous client (requests) trusts the venue's CA through REQUESTS_CA_BUNDLE, which requests
    reads only when ccxt lets its session trust the environment (``requests_trust_env``)."""
    pki = make_pki(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_file))
    with LiveVenue(tmp_path / "venue", tls=pki) as venue:
        assert venue.http_url.startswith("https://127.0.0.1:")
        trader = venue.trader(USDC="1000")
        urls = {"api": {"public": venue.http_url, "private": venue.http_url}}
        ex = ccxt.backpack({"apiKey": trader.key, "secret": trader.secret, "urls": urls, "requests_trust_env": True})
        _clients.append(ex)
        ex.load_markets()
        order = ex.create_order("SOL/USDC", "limit", "buy", 2, 100)
        assert order["status"] == "open"
        venue.settle()
        balance = ex.fetch_balance()
        assert balance["USDC"]["free"] == 800.0 and balance["USDC"]["used"] == 200.0
        assert ex.fetch_order_book("SOL/USDC")["bids"] == [[100.0, 2.0]]
        untrusting = ccxt.backpack({"apiKey": trader.key, "secret": trader.secret, "urls": urls})  # certifi's CAs only
        _clients.append(untrusting)
        with pytest.raises(ccxt.NetworkError) as refused:
            untrusting.fetch_balance()
        assert "CERTIFICATE_VERIFY_FAILED" in repr(refused.value.__cause__ or refused.value.__context__)
        plain = {"api": {"public": f"http://{venue.rest}", "private": f"http://{venue.rest}"}}
        confused = ccxt.backpack({"apiKey": trader.key, "secret": trader.secret, "urls": plain})
        _clients.append(confused)
        with pytest.raises(ccxt.NetworkError):  # http:// to the https port: the connection is closed, no answer
            confused.fetch_balance()
        assert ex.fetch_balance()["USDC"]["used"] == 200.0  # and the venue serves on
