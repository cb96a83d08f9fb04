"""WebSocket adapter over real sockets with trio-websocket and a raw RFC 6455 client."""

from __future__ import annotations

import base64
import copy
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from adapters.websocket import StreamServer
from engine.messages import ASK, BID
from engine.publisher import Publisher
from tests.adapters.live import Http, LiveVenue, Trader
from tests.adapters.tls_certs import make_pki
from tests.engine.helpers import NOW_US, fund, limit, make_venue, market, open_account, place

SOL = "SOL_USDC"


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVenue]:
    options = {"ping_interval_s": 0.2, "pong_timeout_s": 0.5, "outbox_max": 64}
    with LiveVenue(Path(tmp_path_factory.mktemp("ws")), ws_kwargs=options) as live:
        yield live


async def trader(venue: LiveVenue, **deposits: str) -> Trader:
    return await trio.to_thread.run_sync(lambda: venue.trader(**deposits))


async def rest(venue: LiveVenue, *args: Any, **kwargs: Any) -> tuple[int, Any]:
    def call() -> tuple[int, Any]:
        http = Http(venue)
        try:
            if len(args) == 2:
                return http.request(*args, **kwargs)
            return http.signed(*args, **kwargs)
        finally:
            http.conn.close()
    return await trio.to_thread.run_sync(call)


async def receive(ws: WebSocketConnection, stream: str | None = None) -> dict[str, Any]:
    while True:
        message = orjson.loads(await ws.get_message())
        if stream is None or message.get("stream") == stream:
            return dict(message)


async def drain_forever(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


def signature(t: Trader, instruction: str = "subscribe", params: Any = None) -> list[str]:
    h = t.headers(instruction, params or {})
    return [h["X-API-Key"], h["X-Signature"], h["X-Timestamp"], h["X-Window"]]


async def test_depth_stream_continues_rest_update_ids(venue: LiveVenue) -> None:
    maker = await trader(venue, SOL="20")
    with trio.fail_after(10):
        async with open_websocket_url(venue.ws_url) as ws:
            await ws.send_message(orjson.dumps({"method": "SUBSCRIBE", "params": [f"depth.{SOL}", f"bookTicker.{SOL}"]}).decode())
            await trio.sleep(0.1)
            _, snapshot = await rest(venue, "GET", f"/api/v1/depth?symbol={SOL}")
            last = int(snapshot["lastUpdateId"])
            for price in ("120", "119"):
                order = {"symbol": SOL, "side": "Ask", "orderType": "Limit", "price": price, "quantity": "1"}
                assert (await rest(venue, maker, "POST", "/api/v1/order", "orderExecute", order))[0] == 200
            seen = []
            while len(seen) < 2:
                seen.append((await receive(ws, f"depth.{SOL}"))["data"])
            assert seen[0]["U"] == last + 1 and seen[1]["U"] == seen[0]["u"] + 1
            assert seen[0]["a"] == [["120", "1"]] and seen[0]["e"] == "depth" and seen[0]["T"] > 10**15
            top = (await receive(ws, f"bookTicker.{SOL}"))["data"]
            assert top["a"] == "119" and top["A"] == "1"  # the 120 one went by while reading depth


async def test_errors_and_private_streams(venue: LiveVenue) -> None:
    owner = await trader(venue, USDC="500")
    with trio.fail_after(10):
        async with open_websocket_url(venue.ws_url) as ws:
            await ws.send_message('{"method": "SUBSCRIBE", "params": ["depth.NOPE_USDC"]}')
            assert (await receive(ws))["error"]["code"] == 4006
            await ws.send_message('{"method": "SUBSCRIBE", "params": ["account.orderUpdate"]}')
            error = (await receive(ws))["error"]
            assert error["code"] == 4001 and "signature" in error["message"]
            await ws.send_message("{nope")
            assert "Malformed JSON" in (await receive(ws))["error"]["message"]
            bad = signature(owner)
            bad[1] = base64.b64encode(b"\0" * 64).decode()
            await ws.send_message(orjson.dumps({"method": "SUBSCRIBE", "params": ["account.orderUpdate"], "signature": bad}).decode())
            assert "INVALID_SIGNATURE" in (await receive(ws))["error"]["message"]
            subscribe = {"method": "SUBSCRIBE", "params": [f"account.orderUpdate.{SOL}", "account.balanceUpdate"],
                         "signature": signature(owner)}
            await ws.send_message(orjson.dumps(subscribe).decode())
            await trio.sleep(0.1)
            order = {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "90", "quantity": "1", "clientId": 3}
            await rest(venue, owner, "POST", "/api/v1/order", "orderExecute", order)
            update = (await receive(ws, f"account.orderUpdate.{SOL}"))["data"]
            assert update["e"] == "orderAccepted" and update["c"] == 3 and update["p"] == "90" and update["o"] == "LIMIT"
            balance = (await receive(ws, "account.balanceUpdate"))["data"]
            assert balance == {**balance, "a": "USDC", "A": "410", "L": "90"}


async def test_order_entry_over_websocket(venue: LiveVenue) -> None:
    owner = await trader(venue, USDC="500")
    order = {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "95", "quantity": "2"}
    with trio.fail_after(10):
        async with open_websocket_url(venue.ws_url) as ws:
            request = {"id": 7, "method": "orderExecute", "params": order, "signature": signature(owner, "orderExecute", order)}
            await ws.send_message(orjson.dumps(request).decode())
            reply = await receive(ws)
            assert reply["id"] == 7 and reply["result"]["status"] == "New" and reply["result"]["price"] == "95"
            query = {"symbol": SOL}
            await ws.send_message(orjson.dumps({"id": "q", "method": "orderQueryAll", "params": query,
                                                "signature": signature(owner, "orderQueryAll", query)}).decode())
            reply = await receive(ws)
            assert reply["id"] == "q" and [o["id"] for o in reply["result"]] == [str(reply["result"][0]["id"])]
            stale = {"id": 8, "method": "orderExecute", "params": order, "signature": signature(owner, "orderExecute", {})}
            await ws.send_message(orjson.dumps(stale).decode())
            reply = await receive(ws)
            assert reply["id"] == 8 and reply["error"]["code"] == "INVALID_SIGNATURE"


async def test_slow_consumer_is_closed_with_a_reason(venue: LiveVenue) -> None:
    makers = [await trader(venue, SOL="1") for _ in range(3)]
    taker = await trader(venue, USDC="100000")
    with trio.fail_after(10):
        async with open_websocket_url(venue.ws_url) as ws:
            await ws.send_message(orjson.dumps({"method": "SUBSCRIBE", "params": [f"trade.{SOL}"]}).decode())
            await trio.sleep(0.1)
            # one market order that fills 90 makers is one durable batch: 90 trades at once > outbox of 64
            batch = [{"symbol": SOL, "side": "Ask", "orderType": "Limit", "price": "100", "quantity": "0.01"}] * 20
            for maker in makers:
                for _ in range(2):
                    await rest(venue, maker, "POST", "/api/v1/orders", "orderExecute", batch)
            buy = {"symbol": SOL, "side": "Bid", "orderType": "Market", "quantity": "1.2"}
            assert (await rest(venue, taker, "POST", "/api/v1/order", "orderExecute", buy))[0] == 200
            with pytest.raises(ConnectionClosed) as closed:
                await drain_forever(ws)
            assert closed.value.reason is not None and closed.value.reason.code == 1008
            assert "slow consumer" in (closed.value.reason.reason or "")
            await ws._stream.aclose()  # trio-websocket 0.12.2's client keeps its socket after a peer's 1008 close


async def test_no_pong_closes_the_connection(venue: LiveVenue) -> None:
    host, port = venue.info["websocket"].rsplit(":", 1)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            key = base64.b64encode(b"0123456789abcdef").decode()
            await stream.send_all(
                f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            data = b""
            while True:  # never answer the pings
                chunk = await stream.receive_some()
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 101")
            assert b"\x89" in data and b"no pong" in data  # pings were sent, then a close with the reason


def test_one_address_cannot_hold_every_websocket_connection(tmp_path: Path) -> None:
    """Every TCP connection counts from accept, handshake or not, and gives its slot back however it ends."""
    options = {"per_peer": 3, "handshake_timeout_s": 0.5}
    with LiveVenue(tmp_path, ws_kwargs=options) as live:
        host, port = live.info["websocket"].rsplit(":", 1)

        async def refused() -> bool:
            """A connection over the share is closed before its handshake is read."""
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(handshake(host))
                with trio.fail_after(5):
                    return await stream.receive_some() == b""

        async def scenario() -> None:
            async with open_websocket_url(live.ws_url) as first, open_websocket_url(live.ws_url):
                silent = await trio.open_tcp_stream(host, int(port))  # never handshakes: counts until it is cut off
                assert await refused()
                await first.send_message('{"method": "SUBSCRIBE", "params": ["trade.SOL_USDC"]}')  # the three work
                with trio.fail_after(5):
                    assert await silent.receive_some() == b""  # cut off after the handshake timeout: a slot again
                await silent.aclose()
                async with open_websocket_url(live.ws_url):
                    assert await refused()
            for _ in range(3):  # closed, reset or cut off, every slot came back
                with trio.fail_after(5):
                    while True:
                        try:
                            async with open_websocket_url(live.ws_url), open_websocket_url(live.ws_url), \
                                    open_websocket_url(live.ws_url):
                                break
                        except Exception:  # a slot of the last scenario may still be on its way back
                            await trio.sleep(0.05)

        live.run(scenario)


def handshake(host: str) -> bytes:
    key = base64.b64encode(b"0123456789abcdef").decode()
    return (f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


async def test_signed_request_with_non_object_params_is_refused_and_the_server_stays_up(venue: LiveVenue) -> None:
    # Regression: params that are not objects reached the signing string builder and the TypeError
    # escaped the request task, which took the whole daemon down (a registered key was all it needed)
    owner = await trader(venue, USDC="50")
    with trio.fail_after(10):
        async with open_websocket_url(venue.ws_url) as ws:
            for i, params in enumerate(([1], "x", 1, [None], [{"symbol": SOL}, 2])):
                sig = signature(owner)
                sig[1] = base64.b64encode(b"\1" * 64).decode()
                request = {"id": i, "method": "orderExecute", "params": params, "signature": sig}
                await ws.send_message(orjson.dumps(request).decode())
                reply = await receive(ws)
                assert reply["id"] == i and reply["error"]["code"] == "INVALID_CLIENT_REQUEST", reply
                assert "JSON object" in reply["error"]["message"] or "JSON array" in reply["error"]["message"]
            query = {"symbol": SOL}
            await ws.send_message(orjson.dumps({"id": "alive", "method": "orderQueryAll", "params": query,
                                                "signature": signature(owner, "orderQueryAll", query)}).decode())
            assert (await receive(ws)) == {"id": "alive", "result": [], "status": 200}


async def test_ccxt_watch_orders_streams_are_accepted(venue: LiveVenue) -> None:
    # ccxt's watchOrders subscribes to account.rfqUpdate beside account.orderUpdate; refusing it failed the frame
    owner = await trader(venue, USDC="50")
    with trio.fail_after(10):
        async with open_websocket_url(venue.ws_url) as ws:
            subscribe = {"method": "SUBSCRIBE", "params": ["account.orderUpdate", "account.rfqUpdate",
                                                           f"account.rfqUpdate.{SOL}"], "signature": signature(owner)}
            await ws.send_message(orjson.dumps(subscribe).decode())
            order = {"symbol": SOL, "side": "Bid", "orderType": "Limit", "price": "9", "quantity": "1"}
            await rest(venue, owner, "POST", "/api/v1/order", "orderExecute", order)
            update = (await receive(ws, "account.orderUpdate"))["data"]
            assert update["e"] == "orderAccepted" and update["p"] == "9"


async def test_a_read_sent_on_an_order_answer_sees_the_order(venue: LiveVenue) -> None:
    # The order's answer leaves when it is durable; the publisher that reads come from applies it a task
    # switch later. A read sent on receiving the answer waits for that (Publisher.reached).
    owner = await trader(venue, USDC="1000")
    bid = {"symbol": "BTC_USDC", "side": "Bid", "orderType": "Limit", "price": "100", "quantity": "0.1"}
    query = {"symbol": "BTC_USDC"}
    with trio.fail_after(20):
        async with open_websocket_url(venue.ws_url) as ws:
            for i in range(1, 41):
                order = {**bid, "clientId": i}
                await ws.send_message(orjson.dumps({"id": i, "method": "orderExecute", "params": order,
                                                    "signature": signature(owner, "orderExecute", order)}).decode())
                placed = (await receive(ws))["result"]
                await ws.send_message(orjson.dumps({"id": -i, "method": "orderQueryAll", "params": query,
                                                    "signature": signature(owner, "orderQueryAll", query)}).decode())
                listed = await receive(ws)
                assert listed["id"] == -i and placed["id"] in [o["id"] for o in listed["result"]], i


class _Frames:
    """A subscriber that keeps what the server pushes to it (``Connection.push``), decoded."""

    def __init__(self) -> None:
        self.data: list[dict[str, Any]] = []

    def push(self, frame: bytes) -> None:
        payload = frame[2:] if frame[1] < 126 else frame[4:]  # an unmasked text frame's header
        self.data.append(orjson.loads(payload)["data"])


def test_kline_stream_closes_every_candle_that_changed_between_two_ticks() -> None:
    # Regression (kline_close.py): once a second the stream looked at the current candle only, so a
    # candle that opened and closed between two ticks was never sent, and the one before it never closed
    venue = make_venue()
    maker, taker = open_account(venue), open_account(venue)
    fund(venue, maker, "SOL", "10")
    fund(venue, taker, "USDC", "1000")
    publisher = Publisher(copy.deepcopy(venue))
    api: Any = type("Api", (), {"publisher": publisher, "engine": type("Engine", (), {"venue": publisher.venue})})
    server = StreamServer(api)
    stream, frames = "kline.1s.SOL_USDC", _Frames()
    server.subs[stream] = {frames}  # type: ignore[arg-type]
    second = 1_000_000

    def trade(at_us: int, price: str) -> None:
        publisher.apply_batch([place(venue, limit(venue, maker, ASK, price, "1"), at_us)])
        publisher.apply_batch([place(venue, market(venue, taker, BID, qty="1"), at_us)])

    def candle(s: int) -> str:  # the ISO start of the 1s candle ``s`` seconds after NOW_US
        return datetime.fromtimestamp(NOW_US // second + s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    trade(NOW_US + 100_000, "100")  # the candle of second 0
    server._periodic(NOW_US + 500_000)
    assert [(k["t"], k["c"], k["X"]) for k in frames.data] == [(candle(0), "100", False)]
    frames.data.clear()
    for s, price in ((1, "101"), (2, "102"), (3, "103"), (4, "104")):  # a candle each second, no tick between
        trade(NOW_US + s * second + 200_000, price)
    server._periodic(NOW_US + 4 * second + 500_000)
    assert [(k["t"], k["c"], k["n"], k["X"]) for k in frames.data] == [
        (candle(0), "100", 1, True), (candle(1), "101", 1, True), (candle(2), "102", 1, True),
        (candle(3), "103", 1, True), (candle(4), "104", 1, False),  # still open at this tick
    ]
    frames.data.clear()
    server._periodic(NOW_US + 5 * second + 500_000)
    assert [(k["t"], k["X"]) for k in frames.data] == [(candle(4), True)]  # its closing update, once
    frames.data.clear()
    server._periodic(NOW_US + 6 * second + 500_000)
    assert frames.data == []


def socket_fds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The fd each WebSocket connection will write answers to directly (-1: through its stream), as they open."""
    import adapters.websocket as websocket

    fds: list[int] = []
    init = websocket.Connection.__init__

    def recording(self: websocket.Connection, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        fds.append(self.fd)

    monkeypatch.setattr(websocket.Connection, "__init__", recording)
    return fds


async def test_answers_are_written_straight_to_an_admitted_connections_socket(
    venue: LiveVenue, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Regression (style review 6): every served stream is wrapped for admission, and the direct write of an
    # answer (Connection.reply) only knew a bare SocketStream, so it never ran
    fds = socket_fds(monkeypatch)
    with trio.fail_after(10):
        async with open_websocket_url(venue.ws_url) as ws:
            await ws.send_message(orjson.dumps({"id": 7, "method": "orderQuery", "params": {}}).decode())
            answer = orjson.loads(await ws.get_message())
    assert answer["id"] == 7
    assert len(fds) == 1 and fds[0] >= 0


# --- wss -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wss_venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVenue]:
    """A venue serving wss (and https): at most two connections per address on the WebSocket port, 3 s to handshake."""
    pki = make_pki(Path(tmp_path_factory.mktemp("pki")))
    options = {"per_peer": 2, "handshake_timeout_s": 3.0}
    with LiveVenue(Path(tmp_path_factory.mktemp("wss")), ws_kwargs=options, tls=pki) as live:
        yield live


def trusting(venue: LiveVenue) -> ssl.SSLContext:
    assert venue.tls is not None
    return ssl.create_default_context(cafile=str(venue.tls.ca_file))


async def test_wss_streams_and_answers_go_out_encrypted(wss_venue: LiveVenue, monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers to order entry are written straight to a plaintext socket; over TLS they must go through the stream."""
    fds = socket_fds(monkeypatch)
    maker = await trader(wss_venue, SOL="5")
    taker = await trader(wss_venue, USDC="1000")
    assert wss_venue.ws_url.startswith("wss://127.0.0.1:")
    with trio.fail_after(10):
        async with open_websocket_url(wss_venue.ws_url, ssl_context=trusting(wss_venue)) as ws:
            await ws.send_message(orjson.dumps({"method": "SUBSCRIBE", "params": [f"trade.{SOL}"]}).decode())
            await trio.sleep(0.1)
            for i, (who, side) in enumerate([(maker, "Ask"), (taker, "Bid")]):
                order = {"symbol": SOL, "side": side, "orderType": "Limit", "price": "101", "quantity": "2"}
                await ws.send_message(orjson.dumps({"id": i, "method": "orderExecute", "params": order,
                                                    "signature": signature(who, "orderExecute", order)}).decode())
                reply = await receive(ws)
                while "stream" in reply:
                    reply = await receive(ws)
                assert reply["id"] == i and reply["result"]["status"] in ("New", "Filled")
            trade = (await receive(ws, f"trade.{SOL}"))["data"]
            assert trade["p"] == "101" and trade["q"] == "2"
    assert fds == [-1]


async def test_wss_admission_and_clients_that_do_not_complete_tls(wss_venue: LiveVenue) -> None:
    """A plaintext client on the wss port is closed at once (not at the handshake timeout), a stalled TLS handshake
    at the handshake timeout, and both give their slots back; the per-address share counts TLS connections by
    their real address, before any TLS work."""
    host, port = wss_venue.info["websocket"].rsplit(":", 1)
    context = trusting(wss_venue)
    with trio.fail_after(15):
        plain = await trio.open_tcp_stream(host, int(port))
        async with plain:
            await plain.send_all(handshake(host))
            with trio.fail_after(1):  # the handshake timeout is 3 s
                assert await plain.receive_some() == b""
        stalled = await trio.open_tcp_stream(host, int(port))
        async with stalled:
            await stalled.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start, no more
            async with open_websocket_url(wss_venue.ws_url, ssl_context=context) as first:
                third = await trio.open_tcp_stream(host, int(port))
                async with third:
                    with trio.fail_after(1):
                        assert await third.receive_some() == b""  # over the share: closed before its handshake
                started = trio.current_time()
                assert await stalled.receive_some() == b""  # cut off at the handshake timeout
                assert trio.current_time() - started > 1
                async with open_websocket_url(wss_venue.ws_url, ssl_context=context) as second:
                    for ws in (first, second):
                        await ws.send_message('{"method": "SUBSCRIBE", "params": ["depth.NOPE_USDC"]}')
                        assert (await receive(ws))["error"]["code"] == 4006
