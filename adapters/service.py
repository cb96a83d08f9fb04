"""The Backpack-format adapters as one daemon service: publisher, REST and WebSocket.

``engine/daemon.py`` finds this through the ``satchel.services`` entry point (so
``engine`` never imports ``adapters``) and starts it after the engine and the
shared publisher (``engine.publisher_service.serve_publisher``, rebuilt from the
journal); run on its own, the service starts a private publisher.

REST serves https and the WebSocket wss when their sections set ``tls_cert`` and
``tls_key``; the files are read before anything starts, so a bad one stops
start-up with a StartupError naming its config key.
"""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any

import trio

from adapters.backpack.api import BackpackApi
from adapters.rest import serve_rest
from adapters.tls import server_context
from adapters.websocket import serve_websocket
from engine.config import ListenConfig
from engine.publisher_service import acquire
from engine.runtime import Engine, listening


async def serve_backpack(
    engine: Engine, *, rest_listen: str | None = None, ws_listen: str | None = None,
    rate_per_minute: int | None = None, ws_options: dict[str, Any] | None = None, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled; report ``{"rest": host:port, "websocket": host:port}``."""
    adapters = engine.config.adapters
    kwargs = {} if rate_per_minute is None else {"rate_per_minute": rate_per_minute or None}
    rest_tls = _tls("rest", adapters.rest)
    ws_tls = _tls("websocket", adapters.websocket)
    async with trio.open_nursery() as nursery:
        publisher = await acquire(engine, nursery)
        api = BackpackApi(engine, publisher, **kwargs)  # type: ignore[arg-type]
        rest_address = rest_listen or adapters.rest.listen
        with listening("adapters.rest.listen", rest_address):
            rest = await nursery.start(partial(serve_rest, api, rest_address, tls=rest_tls))
        ws_address = ws_listen or adapters.websocket.listen
        with listening("adapters.websocket.listen", ws_address):
            ws = await nursery.start(partial(serve_websocket, api, ws_address, tls=ws_tls, **(ws_options or {})))
        task_status.started({"rest": rest, "websocket": ws, "publisher": publisher, "api": api})


def _tls(key: str, section: ListenConfig) -> ssl.SSLContext | None:
    """``adapters.<key>``'s TLS context (None: plaintext); a file it cannot use stops start-up naming the key."""
    return server_context(key, section.tls_cert, section.tls_key)
