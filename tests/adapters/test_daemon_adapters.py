"""`satchel run` with the adapters on free ports: the ready line names them and ccxt trades."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import ccxt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.adapters.live import running_daemon

pytestmark = pytest.mark.slow
SATCHEL = [sys.executable, "-m", "engine.cli"]


def cli(config: Path, *args: str) -> dict[str, object]:
    proc = subprocess.run([*SATCHEL, "--config", str(config), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@contextlib.contextmanager
def running(config: Path, listen: str) -> Iterator[str]:
    """``satchel run`` on a fresh config whose REST and WebSocket listen on ``listen``; yields its ready line."""
    cli(config, "init", str(config))
    config.write_text(config.read_text().replace('"127.0.0.1:8400"', f'"{listen}"').replace('"127.0.0.1:8401"', f'"{listen}"'))
    with running_daemon(config) as ready:
        yield ready


def test_daemon_serves_rest_and_websocket_on_free_ports(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    with running(config, "127.0.0.1:0") as ready:
        rest = re.search(r"rest (127\.0\.0\.1:\d+)", ready)
        ws = re.search(r"websocket (127\.0\.0\.1:\d+)", ready)
        assert rest and ws, ready
        private = Ed25519PrivateKey.generate()
        key = base64.b64encode(private.public_key().public_bytes_raw()).decode()
        account = cli(config, "account", "create")["account_id"]
        cli(config, "key", "add", str(account), key)
        cli(config, "deposit", str(account), "USDC", "500")
        url = f"http://{rest.group(1)}"
        exchange = ccxt.backpack({
            "apiKey": key, "secret": base64.b64encode(private.private_bytes_raw()).decode(),
            "urls": {"api": {"public": url, "private": url}},
        })
        try:
            order = exchange.create_order("SOL/USDC", "limit", "buy", 1, 100)
            assert order["status"] == "open"
            assert exchange.fetch_balance()["USDC"]["used"] == 100.0
        finally:
            exchange.session.close()


def test_ipv6_listen_addresses_are_served_and_named_in_brackets(tmp_path: Path) -> None:
    # Regression (style review 5): "[::1]:0" started REST but the WebSocket server refused the bracketed host
    with running(tmp_path / "config.toml", "[::1]:0") as ready:
        rest = re.search(r"rest (\[::1\]:\d+)", ready)
        ws = re.search(r"websocket \[::1\]:(\d+)", ready)
        assert rest and ws, ready
        with urllib.request.urlopen(f"http://{rest.group(1)}/api/v1/markets", timeout=10) as answer:
            assert b"SOL_USDC" in answer.read()
        with socket.create_connection(("::1", int(ws.group(1))), timeout=10) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 101")
