"""`satchel run` with the adapters on free ports: the ready line names them and ccxt trades."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import ccxt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

pytestmark = pytest.mark.slow
SATCHEL = [sys.executable, "-m", "engine.cli"]


def cli(config: Path, *args: str) -> dict[str, object]:
    proc = subprocess.run([*SATCHEL, "--config", str(config), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def test_daemon_serves_rest_and_websocket_on_free_ports(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    cli(config, "init", str(config))
    config.write_text(config.read_text().replace(":8400", ":0").replace(":8401", ":0"))
    proc = subprocess.Popen([*SATCHEL, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        ready = ""
        for line in proc.stderr:
            if "satchel ready" in line:
                ready = line
                break
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
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        if proc.stderr is not None:
            proc.stderr.close()
