"""Backpack-compatible WebSocket streams (trio-websocket), plus order entry as an extension.

Protocol (reference/backpack-api.md §8)
    ``{"method":"SUBSCRIBE"|"UNSUBSCRIBE","params":[stream, ...]}``; private
    streams (``account.*``) need ``"signature":[key, sig, timestamp, window]``
    signed over ``instruction=subscribe&timestamp=..&window=..``. Data frames
    are ``{"stream","data"}`` with Backpack's short keys and µs timestamps.
    Errors: ``{"id":null,"error":{"code":4006,"message":...}}``.

Streams: ``depth.<s>``, ``depth.{200,600,1000}ms.<s>`` (merged over the
interval, ``U``/``u`` spanning it), ``trade.<s>``, ``bookTicker.<s>``,
``ticker.<s>`` (every second), ``kline.<interval>.<s>`` (each second the candle
changed, and once with ``X: true`` when it closes), ``account.orderUpdate[.<s>]``,
``account.balanceUpdate``. Depth ``U``/``u`` are the publisher's update ids, the
counter REST ``/api/v1/depth`` reports as ``lastUpdateId``.

Order entry (Satchel extension): ``{"id": <any>, "method": "<instruction>",
"params": {...} | [...], "signature": [key, sig, timestamp, window]}`` where the
instruction is one of the REST route table's (``orderExecute``, ``orderCancel``,
``orderCancelAll``, ``orderQuery``, ``orderQueryAll``, ``balanceQuery``, ...)
and the signature is exactly the REST one over ``params``. The answer is
``{"id", "result"}`` with the REST payload, or ``{"id", "error": {"code","message"}}``.

Flow control: every update is encoded once (JSON and WebSocket frame) however
many connections receive it; each connection has a bounded outbox drained by one
writer task that sends everything queued in one write. A connection whose outbox
is full is closed with code 1008 and a reason; the engine never waits for it.
The server pings every ``PING_INTERVAL_S`` and closes after ``PONG_TIMEOUT_S``
without a pong.

TLS (wss): with ``tls_cert``/``tls_key`` set, each admitted connection is
wrapped in trio's ``SSLStream`` before trio-websocket sees it. Admission still
counts TCP connections by the peer's address, before any TLS work; the opening
handshake deadline (``HANDSHAKE_TIMEOUT_S``) covers the TLS handshake too; a
connection whose TLS fails (a plaintext client on the wss port) is closed at
once. Frames to a TLS connection always go through the stream: the direct
socket write of answers (``Connection.reply``) is for plaintext sockets only.

Known limit: the batched writer sends pre-built frames through trio-websocket's
stream under its send lock (private attributes of the pinned 0.12.2; the server
never negotiates compression, so frames are plain RFC 6455 text frames).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import orjson
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, WebSocketServer

from adapters.admission import PER_PEER_DEFAULT, Admission, peer_of
from adapters.backpack import wire
from adapters.backpack.api import INTERNAL_ERROR, BackpackApi
from adapters.backpack.errors import ApiError
from engine.config import address_text, split_listen
from engine.results import Result
from engine.updates import INTERVALS, BalanceUpdate, BookTop, DepthUpdate, OrderUpdate, TradeRecord, Update

log = logging.getLogger("satchel.websocket")

OUTBOX_MAX: Final = 4096  # frames queued per connection before it counts as slow
WRITE_BATCH_MAX: Final = 512  # frames per socket write
MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_STREAMS: Final = 256  # subscriptions per connection
MAX_INFLIGHT: Final = 64  # order-entry requests per connection
PING_INTERVAL_S: Final = 60.0
PONG_TIMEOUT_S: Final = 120.0
AGGREGATES_MS: Final = (200, 600, 1000)
TICK_S: Final = 0.2
CLOSE_GRACE_S: Final = 1.0
MAX_CONNECTIONS: Final = 4096  # per port; and at most adapters.admission.PER_PEER_DEFAULT from one address
HANDSHAKE_TIMEOUT_S: Final = 10.0  # a connection that has not completed its opening handshake by then is closed

E_BAD_REQUEST: Final = 4000
E_UNAUTHORIZED: Final = 4001
E_INVALID_STREAM: Final = 4006


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final RFC 6455 text frame (server to client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def envelope(stream: str, data: dict[str, Any]) -> bytes:
    return text_frame(orjson.dumps({"stream": stream, "data": data}))


class Connection:
    """One client: its subscriptions, its bounded outbox and the task that drains it."""

    def __init__(self, ws: WebSocketConnection, clock: Callable[[], float], outbox_max: int = OUTBOX_MAX) -> None:
        self.ws = ws
        self.outbox_max = outbox_max
        self.streams: set[str] = set()
        self.account_id = 0
        self.outbox: deque[bytes] = deque()
        self.wake = trio.Event()
        self.scope = trio.CancelScope()
        self.close_reason = ""
        self.inflight = 0
        self.last_pong = clock()
        self.sending = False  # the writer holds frames taken from the outbox and not yet written
        stream = ws._stream
        # the socket itself only for a plaintext stream: a frame written there bypasses TLS
        self.fd = stream.socket.fileno() if isinstance(stream, (trio.SocketStream, _Admitted)) else -1

    def push(self, frame: bytes) -> None:
        if self.close_reason:
            return
        if len(self.outbox) >= self.outbox_max:
            self.kill(f"slow consumer: {self.outbox_max} messages queued")
            return
        self.outbox.append(frame)
        self.wake.set()

    def reply(self, frame: bytes) -> None:
        """An answer to a request: written at once when nothing is queued or on its way, else queued.

        Saves the writer task's wake-up on the round trip of one order (the socket is
        non-blocking; whatever the kernel does not take now goes through the outbox).
        Stream frames keep going through ``push`` so fan-out stays one write per batch.
        """
        ws = self.ws
        if (self.fd >= 0 and not self.outbox and not self.sending and not self.close_reason
                and ws.closed is None and not ws._stream_lock.locked()):
            try:
                written = os.write(self.fd, frame)
            except OSError:  # full (BlockingIOError) or broken: the writer takes it from here
                written = 0
            if written == len(frame):
                return
            frame = frame[written:]
        self.push(frame)

    def kill(self, reason: str) -> None:
        """Stop reading and queueing; the writer finishes the frame it is on, then we close."""
        self.close_reason = reason
        self.outbox.clear()
        self.wake.set()
        self.scope.cancel()

    async def writer(self) -> None:
        """Send whatever is queued in one write; return once the connection is closing."""
        ws = self.ws
        while not self.close_reason:
            await self.wake.wait()
            self.wake = trio.Event()
            outbox = self.outbox
            while outbox:
                self.sending = True
                n = min(len(outbox), WRITE_BATCH_MAX)
                data = b"".join([outbox.popleft() for _ in range(n)])
                async with ws._stream_lock:
                    await ws._stream.send_all(data)
            self.sending = False


class StreamServer:
    """Subscriptions across connections, fed by the publisher's listener."""

    def __init__(
        self, api: BackpackApi, *, ping_interval_s: float = PING_INTERVAL_S, pong_timeout_s: float = PONG_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic, outbox_max: int = OUTBOX_MAX,
    ) -> None:
        self.api = api
        self.outbox_max = outbox_max
        self.specs = api.engine.venue.specs
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.clock = clock
        self.subs: dict[str, set[Connection]] = {}
        self.private: dict[int, set[Connection]] = {}
        self.watched: set[str] = set()  # symbols with a market-data subscriber; updates for others are skipped at once
        self.connections: set[Connection] = set()
        self.admission = Admission(MAX_CONNECTIONS)  # TCP connections, counted from accept (handshakes included)
        self._aggregates: dict[tuple[int, str], list[Any]] = {}
        self._kline_sent: dict[str, tuple[int, int]] = {}
        api.publisher.listeners.append(self.on_updates)

    # --- streams -----------------------------------------------------------------------------

    def valid(self, stream: str) -> bool:
        parts = stream.split(".")
        kind, symbol = parts[0], parts[-1]
        if kind == "account":
            # rfqUpdate is accepted and stays silent (no RFQ markets here): ccxt's watchOrders
            # subscribes to it beside orderUpdate, and one refused stream fails the whole frame
            return stream in ("account.orderUpdate", "account.balanceUpdate", "account.rfqUpdate") or (
                len(parts) == 3 and parts[1] in ("orderUpdate", "rfqUpdate") and symbol in self.specs)
        if symbol not in self.specs:
            return False
        if len(parts) == 2:
            return kind in ("depth", "trade", "bookTicker", "ticker")
        if len(parts) == 3:
            if kind == "depth":
                return parts[1] in {f"{ms}ms" for ms in AGGREGATES_MS}
            return kind == "kline" and parts[1] in INTERVALS
        return False

    def _publish(self, stream: str, build: Callable[[], dict[str, Any]]) -> None:
        subs = self.subs.get(stream)
        if subs:
            frame = envelope(stream, build())
            for conn in subs:
                conn.push(frame)

    def on_updates(self, updates: list[Update]) -> None:
        """Publisher listener: encode each update once per stream name, push to subscribers."""
        watched, private = self.watched, self.private
        if not watched and not private:  # nobody listens: the common case while orders stream in over REST
            return
        now_us = time.time_ns() // 1000
        specs = self.specs
        for u in updates:
            t = type(u)
            if t is OrderUpdate or t is BalanceUpdate:
                conns = private.get(u.account_id)  # type: ignore[union-attr]
                if conns:
                    self._private(u, conns, now_us)  # type: ignore[arg-type]
            elif u.symbol not in watched:  # type: ignore[union-attr]
                continue
            elif t is DepthUpdate:
                spec = specs[u.symbol]  # type: ignore[union-attr]
                self._publish(f"depth.{u.symbol}", lambda: wire.ws_depth(spec, u, now_us))  # type: ignore[arg-type, union-attr]  # noqa: B023
                for ms in AGGREGATES_MS:
                    if self.subs.get(f"depth.{ms}ms.{u.symbol}"):  # type: ignore[union-attr]
                        self._aggregate(ms, u)  # type: ignore[arg-type]
            elif t is TradeRecord:
                spec = specs[u.symbol]  # type: ignore[union-attr]
                self._publish(f"trade.{u.symbol}", lambda: wire.ws_trade(spec, u, now_us))  # type: ignore[arg-type, union-attr]  # noqa: B023
            elif t is BookTop:
                spec = specs[u.symbol]  # type: ignore[union-attr]
                self._publish(f"bookTicker.{u.symbol}", lambda: wire.ws_book_ticker(spec, u, now_us))  # type: ignore[arg-type, union-attr]  # noqa: B023

    def _private(self, u: OrderUpdate | BalanceUpdate, conns: set[Connection], now_us: int) -> None:
        frames: dict[str, bytes] = {}
        if type(u) is BalanceUpdate:
            names = ["account.balanceUpdate"]
        else:
            names = ["account.orderUpdate", f"account.orderUpdate.{u.view.symbol}"]  # type: ignore[union-attr]
        for conn in conns:
            for name in names:
                if name in conn.streams:
                    frame = frames.get(name)
                    if frame is None:
                        frame = frames[name] = envelope(name, self._private_json(u, now_us))
                    conn.push(frame)

    def _private_json(self, u: OrderUpdate | BalanceUpdate, now_us: int) -> dict[str, Any]:
        decimals = self.api.decimals
        if type(u) is BalanceUpdate:
            return wire.ws_balance(u, decimals[u.asset], now_us)
        return wire.ws_order_update(self.specs[u.view.symbol], u, decimals, now_us)  # type: ignore[union-attr, arg-type]

    def _aggregate(self, ms: int, u: DepthUpdate) -> None:
        key = (ms, u.symbol)
        entry = self._aggregates.get(key)
        if entry is None:
            entry = self._aggregates[key] = [u.first_id, u.last_id, {}, {}, u.ts_us]
        entry[1], entry[4] = u.last_id, u.ts_us
        entry[2].update(u.bids)
        entry[3].update(u.asks)

    async def ticker_loop(self) -> None:
        """Aggregated depth every 200/600/1000 ms; tickers and klines every second."""
        ticks = 0
        while True:
            await trio.sleep(TICK_S)
            ticks += 1
            now_us = time.time_ns() // 1000
            elapsed_ms = round(ticks * TICK_S * 1000)
            for ms in AGGREGATES_MS:
                if elapsed_ms % ms == 0:
                    self._flush_aggregates(ms, now_us)
            if elapsed_ms % 1000 == 0:
                self._periodic(now_us)

    def _flush_aggregates(self, ms: int, now_us: int) -> None:
        for (interval, symbol), entry in list(self._aggregates.items()):
            if interval != ms:
                continue
            del self._aggregates[interval, symbol]
            first, last, bids, asks, ts_us = entry
            update = DepthUpdate(symbol, first, last, sorted(bids.items()), sorted(asks.items()), ts_us)
            spec = self.specs[symbol]
            self._publish(f"depth.{ms}ms.{symbol}", lambda: wire.ws_depth(spec, update, now_us))  # noqa: B023

    def _periodic(self, now_us: int) -> None:
        publisher = self.api.publisher
        for stream, subs in list(self.subs.items()):
            if not subs:
                continue
            parts = stream.split(".")
            symbol = parts[-1]
            spec = self.specs.get(symbol)
            if spec is None:
                continue
            if parts[0] == "ticker":
                stats = publisher.ticker(symbol, now_us)
                if stats.last:
                    self._publish(stream, lambda: wire.ws_ticker(spec, stats, now_us))  # noqa: B023
            elif parts[0] == "kline":
                self._kline(stream, parts[1], spec, now_us)

    def _kline(self, stream: str, interval: str, spec: Any, now_us: int) -> None:
        """Once a second: each candle that changed since the last tick, oldest first, with its final
        update (``X: true``) once it has closed, including the candles that opened and closed between
        two ticks (a 1s candle often does). A new subscriber starts from the newest candle."""
        publisher = self.api.publisher
        sent = self._kline_sent.get(stream)  # (start_s, trades * 2 + closed) of the last candle sent
        if sent is None:
            newest = publisher.current_candle(spec.symbol, interval)
            candles = [newest] if newest is not None else []
        else:
            candles = publisher.candles_since(spec.symbol, interval, sent[0])
        now_s = now_us // 1_000_000
        for candle in candles:
            closed = now_s >= candle.end_s
            mark = (candle.start_s, candle.trades * 2 + closed)
            if sent is not None and mark <= sent:  # sent already, as it is now (marks only grow)
                continue
            self._kline_sent[stream] = sent = mark
            self._publish(stream, partial(wire.ws_kline, spec, candle, closed, now_us))

    # --- connections ---------------------------------------------------------------------------

    async def handle(self, request: WebSocketRequest) -> None:
        ws = await request.accept()
        conn = Connection(ws, self.clock, self.outbox_max)
        self.connections.add(conn)
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(conn.writer)
                with conn.scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._keepalive, conn, nursery)
                        await self._reader(conn, nursery)
                        nursery.cancel_scope.cancel()
                # a slow consumer's writer may be stuck in a send: give it a moment, no more
                conn.close_reason = conn.close_reason or " "
                conn.wake.set()
                outer.cancel_scope.deadline = trio.current_time() + CLOSE_GRACE_S
        except ConnectionClosed:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # a bug closes this connection, never the server and the daemon with it
            log.exception("WebSocket connection failed")
            conn.close_reason = "Internal error"
        finally:
            self._forget(conn)
            with trio.move_on_after(CLOSE_GRACE_S):
                if conn.close_reason.strip():
                    await ws.aclose(1008, conn.close_reason[:120])
                else:
                    await ws.aclose()

    def _forget(self, conn: Connection) -> None:
        self.connections.discard(conn)
        for stream in conn.streams:
            subs = self.subs.get(stream)
            if subs is not None:
                subs.discard(conn)
        if conn.account_id:
            conns = self.private.get(conn.account_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self.private[conn.account_id]
        self._rewatch()

    def _rewatch(self) -> None:
        """Recompute the watched symbols (on subscription changes, which are rare next to updates)."""
        for stream in [stream for stream, subs in self.subs.items() if not subs]:
            del self.subs[stream]
        self.watched = {stream.rpartition(".")[2] for stream in self.subs if not stream.startswith("account.")}

    async def _keepalive(self, conn: Connection, nursery: trio.Nursery) -> None:
        async def ping() -> None:
            try:
                await conn.ws.ping()
            except ConnectionClosed:
                return
            conn.last_pong = self.clock()

        while True:
            await trio.sleep(self.ping_interval_s)
            if self.clock() - conn.last_pong > self.pong_timeout_s:
                conn.kill(f"no pong for {self.pong_timeout_s:g} s")
                return
            nursery.start_soon(ping)

    async def _reader(self, conn: Connection, nursery: trio.Nursery) -> None:
        while True:
            try:
                raw = await conn.ws.get_message()
            except ConnectionClosed:
                return
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                self._error(conn, None, E_BAD_REQUEST, f"Malformed JSON: {exc}")
                continue
            if not isinstance(message, dict):
                self._error(conn, None, E_BAD_REQUEST, "Expected a JSON object")
                continue
            method = message.get("method")
            if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
                self._subscription(conn, message)
            elif isinstance(method, str) and "id" in message:
                if conn.inflight >= MAX_INFLIGHT:
                    self._reply(conn, message["id"], error=ApiError("TOO_MANY_REQUESTS", f"More than {MAX_INFLIGHT} requests in flight on this connection"))
                    continue
                if method == "orderExecute" and isinstance(message.get("params"), dict):
                    self._execute(conn, message)
                    continue
                conn.inflight += 1
                nursery.start_soon(self._request, conn, message)
            else:
                self._error(conn, message.get("id"), E_BAD_REQUEST, f"Unknown method {method!r}: expected SUBSCRIBE, UNSUBSCRIBE or a signed request with an id")

    def _subscription(self, conn: Connection, message: dict[str, Any]) -> None:
        params = message.get("params")
        if not isinstance(params, list) or not params or not all(isinstance(p, str) for p in params):
            self._error(conn, message.get("id"), E_BAD_REQUEST, "params must be a non-empty list of stream names")
            return
        bad = [p for p in params if not self.valid(p)]
        if bad:
            self._error(conn, message.get("id"), E_INVALID_STREAM, f"Invalid stream: {', '.join(bad)}")
            return
        if message["method"] == "UNSUBSCRIBE":
            for stream in params:
                conn.streams.discard(stream)
                self.subs.get(stream, set()).discard(conn)
            self._rewatch()
            return
        if any(p.startswith("account.") for p in params) and not self._authorize(conn, message):
            return
        if len(conn.streams | set(params)) > MAX_STREAMS:
            self._error(conn, message.get("id"), E_BAD_REQUEST, f"At most {MAX_STREAMS} subscriptions per connection")
            return
        for stream in params:
            conn.streams.add(stream)
            self.subs.setdefault(stream, set()).add(conn)
            self._kline_sent.pop(stream, None)
        self._rewatch()

    def _authorize(self, conn: Connection, message: dict[str, Any]) -> bool:
        signature = message.get("signature")
        if not isinstance(signature, list) or len(signature) != 4 or not all(isinstance(s, str) for s in signature):
            self._error(conn, message.get("id"), E_UNAUTHORIZED, "Private streams need \"signature\": [apiKey, signature, timestamp, window]")
            return False
        key, sig, ts, window = signature
        try:
            account_id = self.api.verifier.verify("subscribe", {}, key, sig, ts, window)
        except ApiError as exc:
            self._error(conn, message.get("id"), E_UNAUTHORIZED, f"{exc.code}: {exc.message}")
            return False
        if conn.account_id and conn.account_id != account_id:
            self._error(conn, message.get("id"), E_UNAUTHORIZED, "This connection is already signed in as another account")
            return False
        conn.account_id = account_id
        self.private.setdefault(account_id, set()).add(conn)
        return True

    async def _request(self, conn: Connection, message: dict[str, Any]) -> None:
        """Order entry: the REST route for the instruction, the same checks and payloads."""
        request_id = message["id"]
        try:
            params = message.get("params", {})
            route = self.api.by_instruction.get((message["method"], isinstance(params, list)))
            if route is None:
                raise ApiError("INVALID_CLIENT_REQUEST", f"Unknown instruction {message['method']!r}")
            key, sig, ts, window = _signature(message)
            result = await self.api.dispatch(route, params, key, sig, ts, window)
            self._reply(conn, request_id, result=result)
        except ApiError as exc:
            self._reply(conn, request_id, error=exc)
        except Exception:  # a bug answers this request, never the daemon (as _execute does)
            log.exception("request %r failed", message.get("method"))
            self._reply(conn, request_id, error=ApiError("SERVER_ERROR", INTERNAL_ERROR))
        finally:
            conn.inflight -= 1

    def _execute(self, conn: Connection, message: dict[str, Any]) -> None:
        """A new order, submitted from the reader itself: no task per order, and the
        engine's reply sink queues the answer frame the moment the order is durable.
        Same checks and payloads as ``_request`` (``BackpackApi.prepare_order``)."""
        request_id = message["id"]
        api = self.api
        try:
            key, sig, ts, window = _signature(message)
            account_id, cmd = api.prepare_order(message["params"], key, sig, ts, window)
            conn.inflight += 1
            try:
                api.place(account_id, cmd, _OrderReply(self, conn, request_id, cmd.symbol))
            except ApiError:
                conn.inflight -= 1
                raise
        except ApiError as exc:
            self._reply(conn, request_id, error=exc)
        except Exception:
            log.exception("order entry failed")
            self._reply(conn, request_id, error=ApiError("SERVER_ERROR", INTERNAL_ERROR))

    def _reply(self, conn: Connection, request_id: Any, *, result: Any = None, error: ApiError | None = None) -> None:
        if error is not None:
            body = {"id": request_id, "error": error.body(), "status": error.status}
        else:
            body = {"id": request_id, "result": result, "status": 200}
        conn.reply(text_frame(orjson.dumps(body)))

    def _error(self, conn: Connection, request_id: Any, code: int, message: str) -> None:
        conn.push(text_frame(orjson.dumps({"id": request_id, "error": {"code": code, "message": message}})))


def _signature(message: dict[str, Any]) -> tuple[str, str, str, str]:
    signature = message.get("signature")
    if not isinstance(signature, list) or len(signature) != 4:
        raise ApiError("UNAUTHORIZED", "Signed requests need \"signature\": [apiKey, signature, timestamp, window]")
    key, sig, ts, window = signature
    return str(key), str(sig), str(ts), str(window)


class _OrderReply:
    """The engine's reply sink for one order sent over a WebSocket: queues the answer frame."""

    __slots__ = ("conn", "request_id", "server", "symbol")

    def __init__(self, server: StreamServer, conn: Connection, request_id: Any, symbol: str) -> None:
        self.server = server
        self.conn = conn
        self.request_id = request_id
        self.symbol = symbol

    def set(self, result: Result) -> None:
        """Called by the engine (in its task): never raises into it."""
        conn = self.conn
        conn.inflight -= 1
        try:
            payload = self.server.api.order_payload(result, self.symbol)
        except ApiError as exc:
            self.server._reply(conn, self.request_id, error=exc)
        except Exception:
            log.exception("order answer failed")
            self.server._reply(conn, self.request_id, error=ApiError("SERVER_ERROR", INTERNAL_ERROR))
        else:
            self.server._reply(conn, self.request_id, result=payload)


async def serve_websocket(
    api: BackpackApi, listen: str, *, ping_interval_s: float = PING_INTERVAL_S, pong_timeout_s: float = PONG_TIMEOUT_S,
    outbox_max: int = OUTBOX_MAX, max_connections: int = MAX_CONNECTIONS, per_peer: int = PER_PEER_DEFAULT,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S, tls: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled, wss when ``tls`` is given; reports the bound ``host:port``."""
    host, port = split_listen(listen)
    server = StreamServer(api, ping_interval_s=ping_interval_s, pong_timeout_s=pong_timeout_s, outbox_max=outbox_max)
    server.admission = Admission(max_connections, per_peer)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    admitted = [AdmittingListener(listener, server.admission, tls) for listener in listeners]
    ws = WebSocketServer(server.handle, admitted, max_message_size=MAX_MESSAGE_BYTES,  # type: ignore[arg-type]
                         connect_timeout=handshake_timeout_s)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.ticker_loop)
        await nursery.start(ws.run)
        task_status.started(address_text(bound[0], bound[1]))


class AdmittingListener(trio.abc.Listener[trio.abc.Stream]):
    """A TCP listener that hands on only the connections ``admission`` takes; the others are closed at once,
    before any handshake work (trio-websocket's server has no connection limit of its own). With ``tls``,
    each admitted connection is handed on wrapped in TLS (its handshake runs on the connection's first read)."""

    def __init__(self, inner: trio.SocketListener, admission: Admission, tls: ssl.SSLContext | None = None) -> None:
        self.inner = inner
        self.admission = admission
        self.tls = tls

    async def accept(self) -> trio.abc.Stream:
        while True:
            stream = await self.inner.accept()
            peer = peer_of(stream.socket)
            if self.admission.admit(peer) is None:
                admitted = _Admitted(stream, self.admission, peer)
                return admitted if self.tls is None else _TlsStream(admitted, self.tls)
            stream.socket.close()

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Admitted(trio.abc.HalfCloseableStream):
    """An admitted connection's stream: gives its slot back when it closes, once."""

    def __init__(self, stream: trio.SocketStream, admission: Admission, peer: str) -> None:
        self.stream = stream
        self.socket = stream.socket
        self.admission: Admission | None = admission
        self.peer = peer

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        admission, self.admission = self.admission, None
        if admission is not None:
            admission.release(self.peer)
        await self.stream.aclose()


class _TlsStream(trio.abc.Stream):
    """trio's ``SSLStream`` over an admitted connection, whose socket is closed as soon as the client's TLS fails.

    trio-websocket keeps a stream that broke before the opening handshake until
    its connect timeout; closing it at once gives the slot back and tells a
    plaintext client on the wss port. Neither a SocketStream nor ``_Admitted``,
    so ``Connection`` never writes frames to its socket directly.
    """

    def __init__(self, transport: _Admitted, context: ssl.SSLContext) -> None:
        self.transport = transport
        self.tls = trio.SSLStream(transport, context, server_side=True)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            return await self.tls.receive_some(max_bytes)
        except trio.BrokenResourceError:  # a failed handshake, a damaged record, an end without close_notify
            await trio.aclose_forcefully(self.transport)
            raise

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.tls.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.tls.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.tls.aclose()  # close_notify (not waiting for the client's), then the socket
