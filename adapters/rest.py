"""Backpack-compatible REST API: a route table served by a lean trio HTTP/1.1 server.

The app only translates HTTP to the route table in ``adapters.backpack.api``:
find the route (404 unknown path, 405 wrong method), parse JSON (malformed ->
400 with the parser's reason), pass the signing headers on, and write
``{"code","message"}`` for any ``ApiError``. GET parameters come from the query
string; other methods read a JSON body (and any query parameters). The server
(``adapters.httpserver``: httptools' llhttp parser, keep-alive, pipelining,
bounded heads and bodies, timeouts) refuses bodies over ``MAX_BODY_BYTES``
before reading them. It replaced hypercorn's trio worker, which cost ~900 µs of
CPU per request before the app ran (see ``bench.rest_bench``). With a TLS
context (``adapters.rest.tls_cert``/``tls_key``) the same server speaks https.

New orders (``POST /api/v1/order``) take a faster path (``RestApp.begin``): a
connection's pipelined orders are checked together, their Ed25519 signatures
verified together on the signature workers (``adapters.backpack.sigthread``:
~75-130 µs each, off the event loop, one worker per core), submitted in request
order without waiting for each other, and answered from the engine's reply sink.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
import trio

from adapters.backpack.api import INTERNAL_ERROR, ORDER_PATH, BackpackApi
from adapters.backpack.auth import Signed
from adapters.backpack.errors import ApiError, bad_request
from adapters.backpack.sigthread import SignatureThread
from adapters.httpserver import HttpServer, Later, Limits, Request, Response
from engine.config import address_text, split_listen
from engine.results import Result

log = logging.getLogger("satchel.rest")

MAX_BODY_BYTES: Final = 64 * 1024
KEEP_ALIVE_S: Final = 75
JSON_TYPE: Final = b"application/json; charset=utf-8"
TEXT_TYPE: Final = b"text/plain; charset=utf-8"
# The request headers the API reads, keyed by their lowercased bytes so the server decodes no others.
SIGNING_HEADERS: Final = {
    b"x-api-key": "x-api-key", b"x-signature": "x-signature", b"x-timestamp": "x-timestamp",
    b"x-window": "x-window", b"content-length": "content-length",
}


class RestApp:
    """Request in, ``(status, body, content type)`` out; never raises for a bad request."""

    def __init__(self, api: BackpackApi, signatures: SignatureThread | None = None) -> None:
        self.api = api
        self.signatures = signatures or SignatureThread()  # verifies on the caller's thread until it runs
        self.paths = {path for _, path in api.routes}

    async def __call__(self, request: Request) -> Response:
        try:
            status, payload, text = await self._handle(request)
        except ApiError as exc:
            status, payload, text = exc.status, exc.body(), False
        if text:
            return status, str(payload).encode(), TEXT_TYPE
        return status, orjson.dumps(payload), JSON_TYPE

    async def _handle(self, request: Request) -> tuple[int, Any, bool]:
        method, path = request.method, request.path
        route = self.api.routes.get((method, path))
        if route is None:
            if path in self.paths:
                raise ApiError("INVALID_CLIENT_REQUEST", f"Method {method} is not allowed on {path}", 405)
            raise ApiError("RESOURCE_NOT_FOUND", f"Unknown path {path}")
        headers = request.headers
        payload = await self.api.dispatch(
            route, _params(request), headers.get("x-api-key"), headers.get("x-signature"),
            headers.get("x-timestamp"), headers.get("x-window"),
        )
        return 200, payload, route.text

    async def begin(self, requests: list[Request]) -> list[Response | Later]:
        """New orders at the start of ``requests`` are submitted at once and answered later; the rest are left.

        The server offers each connection's pipelined requests in order, so one
        connection's orders reach the engine in the order sent without each waiting
        for the previous one's journal commit; it answers them in order. Their
        signatures are verified together, on a signature worker while they run
        (the event loop goes on meanwhile). Anything refused before the engine is
        answered at once.
        """
        run = []
        for request in requests:
            if request.path != ORDER_PATH or request.method != "POST" or request.query:
                break
            run.append(request)
        if not run:
            return []
        api = self.api
        checked: list[Signed | Response] = []
        for request in run:
            headers = request.headers
            try:
                checked.append(api.check_order(_params(request), headers.get("x-api-key"), headers.get("x-signature"),
                                               headers.get("x-timestamp"), headers.get("x-window")))
            except ApiError as exc:
                checked.append(_error(exc))
            except Exception:  # a bug: this request fails, the others go on
                log.exception("order check failed")
                checked.append(error_response(500, INTERNAL_ERROR))
        signed = [c for c in checked if type(c) is Signed]
        valid = iter(await self.signatures.verify([(s.key, s.signature, s.message) for s in signed]) if signed else ())
        return [c if isinstance(c, tuple) else self._place(c, next(valid)) for c in checked]

    def _place(self, signed: Signed, valid: bool) -> Response | Later:
        """Never raises: once one order of a run is placed, ``begin`` must answer for every one of them."""
        api = self.api
        try:
            account_id, cmd = api.accept_order(signed, valid)
            answer = _OrderAnswer(api, cmd.symbol)
            api.place(account_id, cmd, answer)
        except ApiError as exc:
            return _error(exc)
        except Exception:
            log.exception("order submission failed")
            return error_response(500, INTERNAL_ERROR)
        return answer


def _error(exc: ApiError) -> Response:
    return exc.status, orjson.dumps(exc.body()), JSON_TYPE


class _OrderAnswer(Later):
    """The engine's reply sink for one order, filled with the HTTP answer the moment the order is durable."""

    __slots__ = ("api", "symbol")

    def __init__(self, api: BackpackApi, symbol: str) -> None:
        super().__init__()
        self.api = api
        self.symbol = symbol

    def set(self, result: Result) -> None:
        """Called by the engine (in its task): formats the answer here and never raises into it."""
        try:
            response = 200, orjson.dumps(self.api.order_payload(result, self.symbol)), JSON_TYPE
        except ApiError as exc:
            response = _error(exc)
        except Exception:
            log.exception("order answer failed")
            response = error_response(500, INTERNAL_ERROR)
        self.fill(response)


def _params(request: Request) -> Any:
    """Query parameters merged with the JSON body (an object), or the body (an array, for batches)."""
    params: Any = _query(request.query)
    body = request.body
    if body and not body.isspace():
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"Malformed JSON body: {exc}") from None
        if isinstance(data, dict):
            params = {**params, **data} if params else data
        elif params:
            raise bad_request("A JSON array body cannot be combined with query parameters")
        else:
            params = data
    return params


def error_response(status: int, message: str) -> Response:
    """What the server itself refuses (too large, malformed HTTP, timeouts), in Backpack's error shape."""
    code = "SERVER_ERROR" if status >= 500 else "INVALID_CLIENT_REQUEST"
    return status, orjson.dumps({"code": code, "message": message}), JSON_TYPE


def _query(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise bad_request("Malformed query string") from None
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:  # repeated key: an array parameter (marketType=SPOT&marketType=PERP)
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def http_server(api: BackpackApi, signatures: SignatureThread | None = None,
                tls: ssl.SSLContext | None = None) -> HttpServer:
    app = RestApp(api, signatures)
    return HttpServer(app, error_response, SIGNING_HEADERS,
                      Limits(max_body_bytes=MAX_BODY_BYTES, keep_alive_s=KEEP_ALIVE_S), begin=app.begin, tls=tls)


async def serve_rest(
    api: BackpackApi, listen: str, *, tls: ssl.SSLContext | None = None, shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or ``shutdown`` is set), https when ``tls`` is given; reports the bound ``host:port``."""
    signatures = SignatureThread()
    with signatures.running():
        await serve_http(http_server(api, signatures, tls), listen, shutdown=shutdown, task_status=task_status)


async def serve_http(
    server: HttpServer, listen: str, *, shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    host, port = split_listen(listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, listeners)
        task_status.started(address_text(bound[0], bound[1]))
        if shutdown is not None:
            await shutdown.wait()
            nursery.cancel_scope.cancel()
