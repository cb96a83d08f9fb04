"""REST adapter over real sockets: public market data, signed trading, and every refusal."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.backpack.auth import RateLimiter
from engine.updates import INTERVALS
from tests.adapters.live import Http, LiveVenue, Trader

SOL = "SOL_USDC"
ETH = "ETH_USDC"


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVenue]:
    with LiveVenue(Path(tmp_path_factory.mktemp("rest"))) as live:
        yield live


def test_public_endpoints(venue: LiveVenue, http: Http) -> None:
    assert http.request("GET", "/api/v1/ping") == (200, "pong")
    status, now = http.request("GET", "/api/v1/time")
    assert status == 200 and now.isdigit()
    assert http.request("GET", "/api/v1/status") == (200, {"status": "Ok", "message": None})
    status, assets = http.request("GET", "/api/v1/assets")
    assert {a["symbol"] for a in assets} == {"USDC", "SOL", "BTC", "ETH"}
    status, markets = http.request("GET", "/api/v1/markets")
    sol = next(m for m in markets if m["symbol"] == SOL)
    assert sol["filters"]["price"]["tickSize"] == "0.01" and sol["filters"]["quantity"]["stepSize"] == "0.01"
    assert sol["marketType"] == "SPOT" and sol["orderBookState"] == "Open"
    assert http.request("GET", f"/api/v1/market?symbol={SOL}") == (200, sol)
    assert http.request("GET", "/api/v1/securities") == (200, [])
    status, depth = http.request("GET", f"/api/v1/depth?symbol={SOL}")
    assert status == 200 and set(depth) == {"asks", "bids", "lastUpdateId", "timestamp"}
    status, ticker = http.request("GET", f"/api/v1/ticker?symbol={SOL}")
    assert status == 200 and ticker["symbol"] == SOL
    status, tickers = http.request("GET", "/api/v1/tickers")
    assert len(tickers) == 3


def test_public_refusals(http: Http) -> None:
    assert http.request("GET", "/api/v1/nope")[0] == 404
    status, body = http.request("POST", "/api/v1/depth")
    assert status == 405
    status, body = http.request("GET", "/api/v1/depth?symbol=DOGE_USDC")
    assert (status, body["code"]) == (400, "INVALID_CLIENT_REQUEST") and "DOGE_USDC" in body["message"]
    status, body = http.request("GET", f"/api/v1/depth?symbol={SOL}&limit=7")
    assert status == 400 and "limit" in body["message"]
    status, body = http.request("GET", f"/api/v1/depth?symbol={SOL}&colour=red")
    assert status == 400 and "Unknown field" in body["message"] and "colour" in body["message"]
    status, body = http.request("GET", "/api/v1/klines?symbol=SOL_USDC")
    assert status == 400 and "interval" in body["message"]
    # Regression (style review 3): a repeated interval arrived as a list and the membership test raised (500)
    status, body = http.request("GET", "/api/v1/klines?symbol=SOL_USDC&interval=1m&interval=1h&startTime=0")
    assert (status, body["message"]) == (400, "Invalid interval ['1m', '1h']: expected one of " + ", ".join(INTERVALS))


def test_ticker_of_an_untraded_market_is_all_strings(http: Http) -> None:
    # Regression: firstPrice, lastPrice, high and low were null before a market's first trade,
    # where Backpack's Ticker requires a string for every field
    zero = {"firstPrice": "0", "lastPrice": "0", "priceChange": "0", "priceChangePercent": "0", "high": "0",
            "low": "0", "volume": "0", "quoteVolume": "0", "trades": "0"}
    status, ticker = http.request("GET", "/api/v1/ticker?symbol=BTC_USDC")  # nothing trades BTC in this module
    assert (status, ticker) == (200, {"symbol": "BTC_USDC", **zero})
    status, tickers = http.request("GET", "/api/v1/tickers?interval=1w")
    assert status == 200 and {"symbol": "BTC_USDC", **zero} in tickers
    assert all(isinstance(value, str) for t in tickers for value in t.values())


def test_trading_cycle(venue: LiveVenue, http: Http) -> None:
    maker = venue.trader(SOL="10")
    taker = venue.trader(USDC="1000")
    status, capital = http.signed(maker, "GET", "/api/v1/capital", "balanceQuery")
    assert (status, capital["SOL"]) == (200, {"available": "10", "locked": "0", "staked": "0"})
    order = {"symbol": SOL, "side": "Ask", "orderType": "Limit", "price": "100", "quantity": "2", "clientId": 9}
    status, placed = http.signed(maker, "POST", "/api/v1/order", "orderExecute", order)
    assert status == 200 and placed["status"] == "New" and placed["clientId"] == 9 and placed["price"] == "100"
    venue.settle()
    _, depth_before = http.request("GET", f"/api/v1/depth?symbol={SOL}")
    assert depth_before["asks"] == [["100", "2"]]
    status, got = http.signed(maker, "GET", "/api/v1/order", "orderQuery", {"symbol": SOL, "clientId": 9})
    assert status == 200 and got["id"] == placed["id"]
    buy = {"symbol": SOL, "side": "Bid", "orderType": "Market", "quoteQuantity": "150"}
    status, filled = http.signed(taker, "POST", "/api/v1/order", "orderExecute", buy)
    assert status == 200 and filled["status"] == "Filled" and filled["executedQuantity"] == "1.5"
    venue.settle()
    _, depth = http.request("GET", f"/api/v1/depth?symbol={SOL}&limit=5")
    assert depth["asks"] == [["100", "0.5"]] and int(depth["lastUpdateId"]) > int(depth_before["lastUpdateId"])
    _, trades = http.request("GET", f"/api/v1/trades?symbol={SOL}")
    assert trades[-1]["price"] == "100" and trades[-1]["quantity"] == "1.5" and trades[-1]["isBuyerMaker"] is False
    _, ticker = http.request("GET", f"/api/v1/ticker?symbol={SOL}")
    assert ticker["lastPrice"] == "100" and ticker["volume"] == "1.5" and ticker["trades"] == "1"
    _, klines = http.request("GET", f"/api/v1/klines?symbol={SOL}&interval=1m&startTime=0")
    assert klines[-1]["close"] == "100" and klines[-1]["volume"] == "1.5"
    start_s = int(datetime.strptime(klines[-1]["start"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
    # endTime is the candle's own opening second (ccxt sends "now" rounded down to the second): included
    _, at_open = http.request("GET", f"/api/v1/klines?symbol={SOL}&interval=1m&startTime={start_s}&endTime={start_s}")
    assert at_open == [klines[-1]]
    _, before = http.request("GET", f"/api/v1/klines?symbol={SOL}&interval=1m&startTime=0&endTime={start_s - 1}")
    assert klines[-1] not in before
    status, fills = http.signed(taker, "GET", "/wapi/v1/history/fills", "fillHistoryQueryAll", {"symbol": SOL})
    assert status == 200 and fills[0]["quantity"] == "1.5" and fills[0]["isMaker"] is False
    status, history = http.signed(taker, "GET", "/wapi/v1/history/orders", "orderHistoryQueryAll")
    assert history[0]["status"] == "Filled"
    status, open_orders = http.signed(maker, "GET", "/api/v1/orders", "orderQueryAll", {"symbol": SOL})
    assert [o["id"] for o in open_orders] == [placed["id"]]
    status, cancelled = http.signed(maker, "DELETE", "/api/v1/order", "orderCancel", {"symbol": SOL, "orderId": placed["id"]})
    assert status == 200 and cancelled["status"] == "Cancelled"
    status, deposits = http.signed(maker, "GET", "/wapi/v1/capital/deposits", "depositQueryAll")
    assert status == 200 and deposits[0]["quantity"] == "10" and deposits[0]["symbol"] == "SOL"


def test_history_filters_by_market_type_and_strategy(venue: LiveVenue, http: Http) -> None:
    # Regression: marketType was ignored by the history endpoints (PERP listed spot orders and fills)
    # and strategyId was refused as an unknown field
    maker, taker = venue.trader(SOL="5"), venue.trader(USDC="1000")
    http.signed(maker, "POST", "/api/v1/order", "orderExecute",
                {"symbol": SOL, "side": "Ask", "orderType": "Limit", "price": "100", "quantity": "1"})
    http.signed(maker, "POST", "/api/v1/order", "orderExecute",
                {"symbol": SOL, "side": "Ask", "orderType": "Limit", "price": "101", "quantity": "1"})
    status, _ = http.signed(taker, "POST", "/api/v1/order", "orderExecute",
                            {"symbol": SOL, "side": "Bid", "orderType": "Market", "quantity": "1"})
    assert status == 200
    venue.settle()
    for path, instruction in (("/wapi/v1/history/orders", "orderHistoryQueryAll"),
                              ("/wapi/v1/history/fills", "fillHistoryQueryAll")):
        status, spot = http.signed(maker, "GET", path, instruction, {"marketType": "SPOT"})
        assert status == 200 and len(spot) == (2 if "orders" in path else 1), spot
        assert http.signed(maker, "GET", path, instruction) == (200, spot)
        for other in ("PERP", "IPERP", "DATED", "PREDICTION", "RFQ"):
            assert http.signed(maker, "GET", path, instruction, {"marketType": other}) == (200, []), other
        assert http.signed(maker, "GET", path, instruction, {"strategyId": "1"}) == (200, [])
        assert http.signed(maker, "GET", path, instruction, {"strategyId": "1", "marketType": "SPOT"}) == (200, [])
        status, body = http.signed(maker, "GET", path, instruction, {"marketType": "FUTURES"})
        assert status == 400 and "Invalid marketType 'FUTURES'" in body["message"]
    # an array (repeated key) that names SPOT among others lets spot through, here as on /api/v1/orders
    for path, instruction in (("/api/v1/orders", "orderQueryAll"), ("/wapi/v1/history/orders", "orderHistoryQueryAll")):
        headers = maker.headers(instruction, {"marketType": ["SPOT", "PERP"]})
        status, orders = http.request("GET", f"{path}?marketType=SPOT&marketType=PERP", headers=headers)
        assert status == 200 and "101" in [o["price"] for o in orders], (path, orders)


def test_batch_and_cancel_all(venue: LiveVenue, http: Http) -> None:
    trader = venue.trader(USDC="1000")
    batch = [
        {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "80", "quantity": "1"},
        {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "51", "quantity": "1000"},
        {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "82", "quantity": "1", "postOnly": True},
    ]
    status, results = http.signed(trader, "POST", "/api/v1/orders", "orderExecute", batch)
    assert status == 200 and [r["operation"] for r in results] == ["Ok", "Err", "Ok"]
    assert results[1]["code"] == "INSUFFICIENT_FUNDS"
    status, cancelled = http.signed(trader, "DELETE", "/api/v1/orders", "orderCancelAll", {"symbol": SOL})
    assert status == 200 and sorted(o["price"] for o in cancelled) == ["80", "82"]


def test_auth_refusals_change_nothing(venue: LiveVenue, http: Http) -> None:
    trader = venue.trader(USDC="1000")
    order = {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "10", "quantity": "1"}
    headers = trader.headers("orderExecute", order)
    status, body = http.request("POST", "/api/v1/order", {**order, "price": "11"}, headers)
    assert (status, body["code"]) == (401, "INVALID_SIGNATURE")
    status, body = http.signed(trader, "POST", "/api/v1/order", "orderExecute", order, timestamp=1_600_000_000_000)
    assert status == 400 and "expired" in body["message"]
    status, body = http.signed(trader, "POST", "/api/v1/order", "orderExecute", order, window=60_001)
    assert status == 400 and "X-Window" in body["message"]
    stranger = venue.trader()
    stranger.key = "A" * 43 + "="
    status, body = http.signed(stranger, "POST", "/api/v1/order", "orderExecute", order)
    assert (status, body["code"]) == (401, "UNAUTHORIZED") and "Unknown API key" in body["message"]
    status, body = http.request("POST", "/api/v1/order", raw=b'{"symbol": ', headers=headers)
    assert status == 400 and "Malformed JSON" in body["message"]
    status, body = http.signed(trader, "POST", "/api/v1/order", "orderExecute", {**order, "leverage": "5"})
    assert status == 400 and "Unknown field for orderExecute: leverage" in body["message"]
    status, body = http.request("POST", "/api/v1/order", order)
    assert status == 401 and "Missing" in body["message"]
    status, body = http.signed(trader, "GET", "/api/v1/orders", "orderQueryAll")
    assert (status, body) == (200, [])
    _, capital = http.signed(trader, "GET", "/api/v1/capital", "balanceQuery")
    assert capital["USDC"] == {"available": "1000", "locked": "0", "staked": "0"}


def test_rate_limit_per_key(venue: LiveVenue, http: Http) -> None:
    a, b = venue.trader(), venue.trader()
    api = venue.info["api"]
    saved, api.limiter = api.limiter, RateLimiter(3)
    try:
        codes = [http.signed(a, "GET", "/api/v1/capital", "balanceQuery")[0] for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert http.signed(b, "GET", "/api/v1/capital", "balanceQuery")[0] == 200
    finally:
        api.limiter = saved



def read_response(sock: socket.socket, buffer: bytes) -> tuple[bytes, bytes, bytes]:
    """One HTTP response off ``sock`` (after what ``buffer`` already holds): (head, body, bytes left over)."""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += sock.recv(65536)
    return head, rest[:length], rest[length:]

def _raw_exchange(venue: LiveVenue, *pieces: bytes) -> tuple[bytes, bytes]:
    """Send ``pieces`` as separate TCP writes on a fresh connection; return the answer's head and body."""
    host, port = venue.rest.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.02)
        head, body, _ = read_response(sock, b"")
    return head, body


def _signed_request(venue: LiveVenue, trader: Trader, order: dict[str, Any], *, header_case: str = "title") -> tuple[bytes, bytes]:
    body = orjson.dumps(order)
    headers = trader.headers("orderExecute", order)
    if header_case == "upper":
        headers = {k.upper(): v for k, v in headers.items()}
    elif header_case == "lower":
        headers = {k.lower(): v for k, v in headers.items()}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (f"POST /api/v1/order HTTP/1.1\r\nHost: {venue.rest}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n").encode(), body


@pytest.mark.parametrize("header_case", ["title", "upper", "lower"])
def test_signing_headers_in_any_case(venue: LiveVenue, header_case: str) -> None:
    trader = venue.trader(USDC="100")
    order = {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "10", "quantity": "1"}
    head, body = _raw_exchange(venue, b"".join(_signed_request(venue, trader, order, header_case=header_case)))
    assert head.startswith(b"HTTP/1.1 200"), body
    assert orjson.loads(body)["side"] == "Bid"  # an order answer: the signature was found and checked


def test_body_in_pieces_and_response_headers(venue: LiveVenue) -> None:
    """A body split over TCP writes is read whole; answers carry length, type and date, no server banner."""
    trader = venue.trader(USDC="100")
    order = {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "10", "quantity": "1", "clientId": 77}
    head, body = _signed_request(venue, trader, order)
    answer_head, answer = _raw_exchange(venue, head, body[:10], body[10:])
    assert answer_head.startswith(b"HTTP/1.1 200"), answer
    assert orjson.loads(answer)["clientId"] == 77
    fields = dict(line.split(b": ", 1) for line in answer_head.lower().split(b"\r\n")[1:])
    assert fields[b"content-length"] == str(len(answer)).encode()
    assert fields[b"content-type"] == b"application/json; charset=utf-8"
    assert b"date" in fields and b"server" not in fields


def test_body_too_large_is_refused_before_reading(venue: LiveVenue) -> None:
    head, body = _raw_exchange(venue, b"POST /api/v1/order HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      b"Content-Length: 70000\r\n\r\n{")
    assert head.startswith(b"HTTP/1.1 413")
    assert orjson.loads(body) == {"code": "INVALID_CLIENT_REQUEST", "message": "Body too large: limit is 65536 bytes"}


def test_pipelined_orders_run_in_order_and_answer_in_order(venue: LiveVenue, http: Http) -> None:
    """Orders pipelined on one connection are submitted before the previous are durable, yet in request order."""
    maker, taker = venue.trader(ETH="10"), venue.trader(USDC="1000")  # ETH: no other test trades it here
    ask = {"symbol": ETH, "side": "Ask", "orderType": "Limit", "price": "50", "quantity": "1", "clientId": 1}
    forged = {"symbol": ETH, "side": "Ask", "orderType": "Limit", "price": "51", "quantity": "1", "clientId": 2}
    bid = {"symbol": ETH, "side": "Bid", "orderType": "Limit", "price": "50", "quantity": "1", "clientId": 3}
    head, body = _signed_request(venue, maker, forged)
    forged_request = head + body.replace(b"51", b"52")  # the body no longer matches its signature
    pieces = [b"".join(_signed_request(venue, maker, ask)), forged_request, b"".join(_signed_request(venue, taker, bid)),
              f"GET /api/v1/depth?symbol={ETH} HTTP/1.1\r\nHost: x\r\n\r\n".encode()]
    answers = _raw_answers(venue, b"".join(pieces), 4)
    assert [status for status, _ in answers] == [200, 401, 200, 200], answers
    assert answers[0][1]["clientId"] == 1 and answers[0][1]["status"] == "New"
    assert answers[1][1]["code"] == "INVALID_SIGNATURE"
    assert answers[2][1]["clientId"] == 3 and answers[2][1]["status"] == "Filled"  # the ask was in the book first
    venue.settle()
    status, open_orders = http.signed(maker, "GET", "/api/v1/orders", "orderQueryAll", {"symbol": ETH})
    assert status == 200 and open_orders == []  # the forged ask changed nothing


def _raw_answers(venue: LiveVenue, data: bytes, count: int) -> list[tuple[int, Any]]:
    """Send ``data`` in one write; read ``count`` answers as (status, JSON body)."""
    host, port = venue.rest.rsplit(":", 1)
    answers: list[tuple[int, Any]] = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        buffer = b""
        while len(answers) < count:
            head, body, buffer = read_response(sock, buffer)
            answers.append((int(head.split(b" ")[1]), orjson.loads(body)))
    return answers


def test_malformed_values_are_refused_with_400_and_change_nothing(venue: LiveVenue, http: Http) -> None:
    # Regressions: each of these answered 500 (or, full-width digits, was read as a number)
    trader = venue.trader(USDC="100")
    headers = trader.headers("orderExecute", {})
    for path, body in (("/api/v1/order", "x"), ("/api/v1/order", [1]), ("/api/v1/orders", [1, 2]),
                       ("/api/v1/orders", [None]), ("/api/v1/orders", {"symbol": SOL})):
        status, answer = http.request("POST", path, body, headers)
        assert (status, answer["code"]) == (400, "INVALID_CLIENT_REQUEST"), (path, body, answer)
        assert "JSON" in answer["message"]
    for query in (f"/api/v1/trades?symbol={SOL}&limit=%C2%B2", f"/api/v1/trades?symbol={SOL}&limit=%EF%BC%91",
                  f"/api/v1/trades?symbol={SOL}&limit=--5", f"/api/v1/trades?symbol={SOL}&limit={'9' * 5000}"):
        status, answer = http.request("GET", query)
        assert status == 400 and "limit must be an integer" in answer["message"], (query, answer)
    order = {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "10", "quantity": "1"}
    for bad in ({"clientId": "\u00b2"}, {"clientId": "\uff10\uff11"}, {"postOnly": 1}):
        status, answer = http.signed(trader, "POST", "/api/v1/order", "orderExecute", {**order, **bad})
        assert (status, answer["code"]) == (400, "INVALID_CLIENT_REQUEST"), (bad, answer)
    status, body = http.signed(trader, "GET", "/api/v1/orders", "orderQueryAll")
    assert (status, body) == (200, [])


def test_loose_order_input_is_refused_naming_the_field(venue: LiveVenue, http: Http) -> None:
    # Regressions: decimals with whitespace around them placed orders (the text was stripped), brokerId
    # was not checked, and the attached take-profit / stop-loss / trigger-by / slippage-type fields
    # were accepted and silently dropped
    trader = venue.trader(USDC="100")
    order = {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "10", "quantity": "1"}
    for name, value, code in (("price", " 15", "INVALID_PRICE"), ("price", "16 ", "INVALID_PRICE"),
                              ("price", "\t16", "INVALID_PRICE"), ("price", "16\n", "INVALID_PRICE"),
                              ("quantity", " 1", "INVALID_QUANTITY")):
        status, answer = http.signed(trader, "POST", "/api/v1/order", "orderExecute", {**order, name: value})
        assert (status, answer) == (400, {"code": code, "message": f"{name} must not have whitespace around it: {value!r}"})
    market = {"symbol": SOL, "side": "Bid", "orderType": "Market", "quoteQuantity": "15 "}
    status, answer = http.signed(trader, "POST", "/api/v1/order", "orderExecute", market)
    assert status == 400 and answer["message"] == "quoteQuantity must not have whitespace around it: '15 '"
    for value, problem in (("x", "must be an integer, got 'x'"), (65536, "must be between 0 and 65535, got 65536"),
                           (-1, "must be between 0 and 65535, got -1"), (True, "must be an integer, got True")):
        status, answer = http.signed(trader, "POST", "/api/v1/order", "orderExecute", {**order, "brokerId": value})
        assert (status, answer["message"]) == (400, f"brokerId {problem}"), value
    for name, value in (("takeProfitLimitPrice", "12"), ("stopLossLimitPrice", "8"), ("triggerBy", "LastPrice"),
                        ("takeProfitTriggerBy", "MarkPrice"), ("stopLossTriggerBy", "IndexPrice"),
                        ("slippageToleranceType", "Percent"), ("triggerBy", False)):
        status, answer = http.signed(trader, "POST", "/api/v1/order", "orderExecute", {**order, name: value})
        assert (status, answer["code"]) == (501, "NOT_IMPLEMENTED"), (name, answer)
        assert answer["message"].startswith(f"{name}: ") and "not available on this venue yet" in answer["message"]
    status, withdrawal = http.signed(trader, "POST", "/wapi/v1/capital/withdrawals", "withdraw",
                                     {"address": "addr1", "blockchain": "Solana", "quantity": " 5", "symbol": "USDC"})
    assert (status, withdrawal) == (400, {"code": "INVALID_QUANTITY", "message": "amount must not have whitespace around it: ' 5'"})
    assert http.signed(trader, "GET", "/api/v1/orders", "orderQueryAll") == (200, [])  # nothing changed
    _, capital = http.signed(trader, "GET", "/api/v1/capital", "balanceQuery")
    assert capital["USDC"] == {"available": "100", "locked": "0", "staked": "0"}
    status, placed = http.signed(trader, "POST", "/api/v1/order", "orderExecute", {**order, "price": "99", "brokerId": 65535})
    assert status == 200 and placed["status"] == "New"  # a uint16 brokerId is fine


def test_a_batch_answers_every_item_even_when_one_is_malformed(venue: LiveVenue, http: Http) -> None:
    # Regression: a malformed clientId in item 2 answered the whole batch 500 after item 1 was placed
    trader = venue.trader(USDC="100")
    batch = [
        {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "10", "quantity": "1"},
        {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "10", "quantity": "1", "clientId": "\u00b2"},
    ]
    status, results = http.signed(trader, "POST", "/api/v1/orders", "orderExecute", batch)
    assert status == 200 and [r["operation"] for r in results] == ["Ok", "Err"], results
    assert results[1]["code"] == "INVALID_CLIENT_REQUEST" and "clientId" in results[1]["message"]
    assert results[0]["id"] and results[0]["status"] in ("New", "Expired", "Filled", "PartiallyFilled")


def test_wallets_and_deposit_address(venue: LiveVenue, http: Http) -> None:
    assert http.request("GET", "/api/v1/wallets") == (200, [])
    trader = venue.trader()
    status, body = http.signed(trader, "GET", "/wapi/v1/capital/deposit/address", "depositAddressQuery",
                               {"blockchain": "Solana"})
    assert (status, body["code"]) == (501, "NOT_IMPLEMENTED") and "operator" in body["message"]


def test_reads_right_after_an_answer_see_what_it_answered(venue: LiveVenue, http: Http) -> None:
    # Regression: the answer to an order left as soon as it was durable, but the publisher that reads
    # are served from applied it a task switch later, so a read sent on receiving the answer could miss it
    trader = venue.trader(USDC="1000")
    bid = {"symbol": "BTC_USDC", "side": "Bid", "orderType": "Limit", "price": "100", "quantity": "0.1"}
    for i in range(1, 31):
        status, placed = http.signed(trader, "POST", "/api/v1/order", "orderExecute", {**bid, "clientId": i})
        assert (status, placed["status"]) == (200, "New"), placed
        status, listed = http.signed(trader, "GET", "/api/v1/orders", "orderQueryAll", {"symbol": "BTC_USDC"})
        assert placed["id"] in [o["id"] for o in listed], i
        status, got = http.signed(trader, "GET", "/api/v1/order", "orderQuery", {"symbol": "BTC_USDC", "clientId": i})
        assert (status, got["id"]) == (200, placed["id"]), i
        _, capital = http.signed(trader, "GET", "/api/v1/capital", "balanceQuery")
        assert capital["USDC"]["locked"] == str(10 * i), i
    assert http.signed(trader, "DELETE", "/api/v1/order", "orderCancel", {"symbol": "BTC_USDC", "clientId": 1})[0] == 200
    assert http.signed(trader, "GET", "/api/v1/order", "orderQuery", {"symbol": "BTC_USDC", "clientId": 1})[0] == 404
    # the read pipelined behind the order in one write is answered after the order, and sees it
    for i in range(31, 61):
        head, body = _signed_request(venue, trader, {**bid, "clientId": i})
        signing = trader.headers("orderQueryAll", {"symbol": "BTC_USDC"})
        read = ("GET /api/v1/orders?symbol=BTC_USDC HTTP/1.1\r\nHost: x\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in signing.items()) + "\r\n")
        (_, placed), (status, listed) = _raw_answers(venue, head + body + read.encode(), 2)
        assert status == 200 and placed["id"] in [o["id"] for o in listed], i
