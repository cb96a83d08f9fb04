"""`satchel run` with the adapters on free ports: the ready line names them and ccxt trades."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import ccxt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.adapters.live import running_daemon
from tests.adapters.tls_certs import make_pki

pytestmark = pytest.mark.slow
SATCHEL = [sys.executable, "-m", "engine.cli"]


def cli(config: Path, *args: str) -> dict[str, object]:
    proc = subprocess.run([*SATCHEL, "--config", str(config), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


@contextlib.contextmanager
def running(config: Path, listen: str, tls: dict[str, tuple[str, str]] | None = None) -> Iterator[str]:
    """``satchel run`` on a fresh config whose REST and WebSocket listen on ``listen``; yields its ready line."""
    configure(config, listen, tls or {})
    with running_daemon(config) as ready:
        yield ready


def configure(config: Path, listen: str, tls: dict[str, tuple[str, str]]) -> None:
    """A fresh config: REST and WebSocket on ``listen``; ``tls`` maps "rest"/"websocket" to (tls_cert, tls_key)."""
    cli(config, "init", str(config))
    text = config.read_text().replace('"127.0.0.1:8400"', f'"{listen}"').replace('"127.0.0.1:8401"', f'"{listen}"')
    for section, (cert, key) in tls.items():
        head = f'[adapters.{section}]\nlisten = "{listen}"\n'
        assert head + 'tls_cert = ""\ntls_key = ""\n' in text
        text = text.replace(head + 'tls_cert = ""\ntls_key = ""\n', head + f"tls_cert = {json.dumps(cert)}\ntls_key = {json.dumps(key)}\n")
    config.write_text(text)


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


def test_daemon_serves_https_and_wss_from_files_named_relative_to_its_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "etc").mkdir()
    pki = make_pki(tmp_path / "etc")
    monkeypatch.chdir(tmp_path)  # not where the files are: relative paths start from the config file's directory
    files = ("server.pem", "server.key")
    with running(tmp_path / "etc" / "config.toml", "127.0.0.1:0", {"rest": files, "websocket": files}) as ready:
        rest = re.search(r"rest (127\.0\.0\.1:\d+)", ready)
        ws = re.search(r"websocket 127\.0\.0\.1:(\d+)", ready)
        assert rest and ws, ready
        trusting = ssl.create_default_context(cafile=str(pki.ca_file))
        with urllib.request.urlopen(f"https://{rest.group(1)}/api/v1/markets", timeout=10, context=trusting) as answer:
            assert b"SOL_USDC" in answer.read()
        with socket.create_connection(("127.0.0.1", int(ws.group(1))), timeout=10) as raw, \
                trusting.wrap_socket(raw, server_hostname="localhost") as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 101")


@pytest.mark.parametrize(("section", "problem", "said"), [
    ("rest", "missing", "adapters.rest.tls_key: cannot read '{dir}/nope.key': No such file or directory"),
    ("websocket", "mismatched", "adapters.websocket: tls_cert '{dir}/server.pem' and tls_key '{dir}/ca.pem' are not a "
                                "PEM certificate chain and its matching unencrypted private key"),
])
def test_a_tls_file_the_daemon_cannot_use_stops_start_up_naming_the_key(
    tmp_path: Path, section: str, problem: str, said: str,
) -> None:
    make_pki(tmp_path)
    config = tmp_path / "config.toml"
    configure(config, "127.0.0.1:0", {section: ("server.pem", "nope.key" if problem == "missing" else "ca.pem")})
    proc = subprocess.run([*SATCHEL, "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"satchel: cannot start: {said.format(dir=tmp_path.resolve())}" in proc.stderr
    assert "Traceback" not in proc.stderr
