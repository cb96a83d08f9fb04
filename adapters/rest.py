"""Backpack-compatible REST API: a small ASGI app served by hypercorn's trio worker.

The app only translates HTTP to the route table in ``adapters.backpack.api``:
find the route (404 unknown path, 405 wrong method), read a bounded body, parse
JSON (malformed -> 400 with the parser's reason), pass the signing headers on,
and write ``{"code","message"}`` for any ``ApiError``. GET parameters come from
the query string; other methods read a JSON body (and any query parameters).
Bodies over ``MAX_BODY_BYTES`` are refused before they are read in full.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from adapters.backpack.api import BackpackApi
from adapters.backpack.errors import ApiError, bad_request

log = logging.getLogger("satchel.rest")

MAX_BODY_BYTES: Final = 64 * 1024
KEEP_ALIVE_S: Final = 75
JSON_TYPE: Final = (b"content-type", b"application/json; charset=utf-8")
TEXT_TYPE: Final = (b"content-type", b"text/plain; charset=utf-8")
# The request headers the API reads (ASGI servers give names lowercased), keyed by their bytes
# so the app never decodes the others.
SIGNING_HEADERS: Final = {
    b"x-api-key": "x-api-key", b"x-signature": "x-signature", b"x-timestamp": "x-timestamp",
    b"x-window": "x-window", b"content-length": "content-length",
}
BODY_TOO_LARGE: Final = f"Body too large: limit is {MAX_BODY_BYTES} bytes"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class RestApp:
    """The ASGI application (HTTP and lifespan scopes)."""

    def __init__(self, api: BackpackApi) -> None:
        self.api = api
        self.paths = {path for _, path in api.routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, payload, text = await self._handle(scope, receive)
        except ApiError as exc:
            status, payload, text = exc.status, exc.body(), False
        if text:
            body, kind = str(payload).encode(), TEXT_TYPE
        else:
            body, kind = orjson.dumps(payload), JSON_TYPE
        await send({"type": "http.response.start", "status": status, "headers": [kind, (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, Any, bool]:
        method, path = scope["method"], scope["path"]
        route = self.api.routes.get((method, path))
        if route is None:
            if path in self.paths:
                raise ApiError("INVALID_CLIENT_REQUEST", f"Method {method} is not allowed on {path}", 405)
            raise ApiError("RESOURCE_NOT_FOUND", f"Unknown path {path}")
        headers = _signing_headers(scope["headers"])
        params: Any = _query(scope["query_string"])
        body = await _read_body(receive, headers.get("content-length"))
        if body.strip():
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
        payload = await self.api.dispatch(
            route, params, headers.get("x-api-key"), headers.get("x-signature"),
            headers.get("x-timestamp"), headers.get("x-window"),
        )
        return 200, payload, route.text


def _signing_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The few headers the API reads, decoded; the first of a repeated header wins."""
    out: dict[str, str] = {}
    for name, value in raw:
        key = SIGNING_HEADERS.get(name)
        if key is not None and key not in out:
            out[key] = value.decode("latin-1")
    return out


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


async def _read_body(receive: Receive, declared: str | None) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError("INVALID_CLIENT_REQUEST", BODY_TOO_LARGE, 413)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError("INVALID_CLIENT_REQUEST", BODY_TOO_LARGE, 413)
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def hypercorn_config(listen: str) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [listen]
    config.accesslog = None
    config.errorlog = logging.getLogger("satchel.rest.hypercorn")
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.include_server_header = False  # the Date header stays: HTTP requires it from a server with a clock
    config.h11_max_incomplete_size = MAX_BODY_BYTES
    config.graceful_timeout = 5
    return config


async def serve_rest(
    api: BackpackApi, listen: str, *, shutdown: trio.Event | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or ``shutdown`` is set); reports the bound ``host:port``."""
    stop = shutdown or trio.Event()

    async def serve_and_report(*, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
        await serve(RestApp(api), hypercorn_config(listen), shutdown_trigger=stop.wait, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve_and_report)
        task_status.started(binds[0].removeprefix("http://"))
