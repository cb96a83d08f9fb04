"""A real Satchel (engine + publisher + REST + WebSocket on 127.0.0.1 port 0) in a background thread.

With ``tls`` (a test PKI from ``tests.adapters.tls_certs``), REST serves https and
the WebSocket wss, as a venue configured with ``tls_cert``/``tls_key`` does.

Tests that drive it with blocking or asyncio clients (http.client, ccxt, ccxt.pro)
run in the main thread; ``LiveVenue.run`` calls into the trio thread for set-up
(accounts, keys, deposits) through the engine's public API.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import http.client
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.service import serve_backpack
from engine.config import DEFAULT, parse_config
from engine.runtime import Engine
from tests.adapters.tls_certs import TestPki


class Trader:
    """An account with a registered Ed25519 key; signs like Backpack's docs."""

    def __init__(self, account_id: int, private: Ed25519PrivateKey) -> None:
        self.account_id = account_id
        self.private = private
        self.secret = base64.b64encode(private.private_bytes_raw()).decode()
        self.key = base64.b64encode(private.public_key().public_bytes_raw()).decode()

    def headers(self, instruction: str, params: Any, *, timestamp: int | None = None, window: int = 5000) -> dict[str, str]:
        ts = str(timestamp if timestamp is not None else time.time_ns() // 1_000_000)
        def kv(p: dict[str, Any]) -> str:
            return "&".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(p.items()))
        if isinstance(params, list):
            text = "&".join([f"instruction={instruction}&{kv(p)}" for p in params] + [f"timestamp={ts}&window={window}"])
        else:
            body = kv(params)
            text = f"instruction={instruction}&{body + '&' if body else ''}timestamp={ts}&window={window}"
        signature = base64.b64encode(self.private.sign(text.encode())).decode()
        return {"X-API-Key": self.key, "X-Signature": signature, "X-Timestamp": ts, "X-Window": str(window)}


class LiveVenue:
    def __init__(self, directory: Path, *, rate_per_minute: int = 0, ws_kwargs: dict[str, Any] | None = None,
                 tls: TestPki | None = None) -> None:
        self.directory = directory
        self.tls = tls
        self.rate_per_minute = rate_per_minute
        self.ws_kwargs = ws_kwargs or {}
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.token: trio.lowlevel.TrioToken
        self.engine: Engine
        self.info: dict[str, Any]

    def __enter__(self) -> LiveVenue:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"venue did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self.token)
        self._thread.join(30)

    @property
    def rest(self) -> str:
        return str(self.info["rest"])

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.info['websocket']}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.rest}"

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        data = copy.deepcopy(DEFAULT)
        if self.tls is not None:
            files = {"tls_cert": str(self.tls.cert_file), "tls_key": str(self.tls.key_file)}
            for name in ("rest", "websocket"):
                data["adapters"][name] = {**data["adapters"][name], **files}
        config = parse_config(data)
        self.engine = Engine(config, self.directory)
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.engine.run)
            adapters = trio.CancelScope()

            async def adapters_task(*, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED) -> None:
                with adapters:
                    await serve_backpack(
                        self.engine, rest_listen="127.0.0.1:0", ws_listen="127.0.0.1:0",
                        rate_per_minute=self.rate_per_minute, ws_options=self.ws_kwargs, task_status=task_status,
                    )

            self.info = await nursery.start(adapters_task)
            self.token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()
            adapters.cancel()
            self.engine.stop()

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def trader(self, **deposits: str) -> Trader:
        async def make() -> Trader:
            created = await self.engine.create_account()
            assert created.ok, created
            private = Ed25519PrivateKey.generate()
            trader = Trader(created.value, private)
            added = await self.engine.add_api_key(trader.account_id, trader.key)
            assert added.ok, added
            for asset, amount in deposits.items():
                done = await self.engine.deposit(trader.account_id, asset, amount)
                assert done.ok, done
            await self.engine.wait_idle()
            return trader
        return self.run(make)

    def settle(self) -> None:
        """Wait until the engine is idle and the publisher has applied everything."""
        async def idle() -> None:
            await self.engine.wait_idle()
            await trio.sleep(0.01)
        self.run(idle)


class Http:
    """A keep-alive HTTP/1.1 client for raw REST checks."""

    def __init__(self, venue: LiveVenue) -> None:
        host, port = venue.rest.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        self.conn.request(method, path, body=data, headers=all_headers)
        response = self.conn.getresponse()
        payload = response.read()
        kind = response.getheader("content-type", "")
        return response.status, orjson.loads(payload) if kind.startswith("application/json") else payload.decode()

    def signed(self, trader: Trader, method: str, path: str, instruction: str, params: Any = None, **kw: Any) -> tuple[int, Any]:
        params = {} if params is None else params
        headers = trader.headers(instruction, params, **kw)
        if method == "GET":
            query = "&".join(f"{k}={v}" for k, v in params.items())
            return self.request(method, f"{path}?{query}" if query else path, headers=headers)
        return self.request(method, path, body=params, headers=headers)


def started(directory: Path, **kwargs: Any) -> LiveVenue:
    return LiveVenue(directory, **kwargs).__enter__()


__all__ = ["Http", "LiveVenue", "Trader", "partial", "started"]


@contextlib.contextmanager
def running_daemon(config: Path) -> Iterator[str]:
    """``satchel run --config CONFIG`` in a child process; yields its ready line, then stops it with SIGTERM
    and asserts a clean exit (0)."""
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "--config", str(config)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        said = []
        for line in proc.stderr:
            if "satchel ready" in line:
                break
            said.append(line)
        else:
            raise AssertionError(f"daemon exited with {proc.wait()}: {''.join(said[-5:])}")
        yield line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        if proc.stderr is not None:
            proc.stderr.close()
