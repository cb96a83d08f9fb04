"""`satchel run` as a real process, driven by the `satchel` CLI and the admin socket."""

from __future__ import annotations

import base64
import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine import admin
from engine.codec import decode_events
from engine.journal import read_records
from engine.messages import OrderPlaced

pytestmark = pytest.mark.slow
SATCHEL = [sys.executable, "-m", "engine.cli"]


def cli(config: Path, *args: str) -> tuple[int, Any]:
    proc = subprocess.run([*SATCHEL, "--config", str(config), *args], capture_output=True, text=True, timeout=30)
    out = json.loads(proc.stdout) if proc.stdout.strip() else proc.stderr
    return proc.returncode, out


class Daemon:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [*SATCHEL, "run", "--config", str(config)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        deadline = time.monotonic() + 30
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "satchel ready" in line:
                break
            assert time.monotonic() < deadline, "daemon did not become ready"
        else:
            raise AssertionError(f"daemon exited with {self.proc.wait()}")
        self.directory = config.parent / "var"
        self.token = (self.directory / "admin.token").read_text().strip()

    def call(self, command: str, **args: Any) -> Any:
        answer = admin.request(self.directory / "admin.sock", self.token, command, args)
        assert answer["ok"], answer
        return answer["result"]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    code, out = cli(path, "init", str(path))
    assert code == 0 and out == {"written": str(path)}
    # free ports for the REST and WebSocket adapters, so parallel runs never collide
    text = path.read_text().replace('"127.0.0.1:8400"', '"127.0.0.1:0"').replace('"127.0.0.1:8401"', '"127.0.0.1:0"')
    path.write_text(text)
    return path


def test_init_refuses_to_overwrite(config: Path) -> None:
    code, out = cli(config, "init", str(config))
    assert code == 2 and "exists" in out


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    text = (Path(__file__).parents[2] / "config.toml").read_text()
    path.write_text(text.replace('tick_size = "0.01"', 'tick_size = "0.0000001"', 1))
    proc = subprocess.run([*SATCHEL, "run", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "markets.SOL_USDC" in proc.stderr and "finer than USDC's 6 decimals" in proc.stderr
    path.write_text(text.replace("[venue]", "[venue]\ncolour = 'blue'"))
    proc = subprocess.run([*SATCHEL, "run", "--config", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "colour" in proc.stderr


def test_operator_cli_end_to_end(config: Path) -> None:
    daemon = Daemon(config)
    try:
        code, status = cli(config, "status")
        assert code == 0 and status["ready"] is True and status["markets"]["SOL_USDC"]["state"] == "Open"
        assert cli(config, "account", "create", "--country", "DE", "--category", "professional") == (0, {"account_id": 1})
        assert cli(config, "account", "create", "--parent", "1") == (0, {"account_id": 2})
        code, out = cli(config, "account", "create", "--parent", "2")
        assert code == 1 and out["code"] == "INVALID_CLIENT_REQUEST"
        key = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
        assert cli(config, "key", "add", "1", key)[0] == 0
        code, out = cli(config, "key", "add", "1", "bm90IGEga2V5")
        assert code == 1 and out["code"] == "INVALID_CLIENT_REQUEST"
        assert cli(config, "deposit", "1", "USDC", "1000")[1]["USDC"]["available"] == "1000"
        assert cli(config, "transfer", "1", "2", "USDC", "250")[1]["to"]["USDC"]["available"] == "250"
        code, out = cli(config, "withdraw", "2", "USDC", "250.5")
        assert code == 1 and out["code"] == "INSUFFICIENT_FUNDS"
        code, order = cli(config, "order", "place", "2", "SOL_USDC", "Bid", "Limit", "--price", "20", "--quantity", "2", "--client-id", "5")
        assert code == 0 and order["status"] == "New" and order["clientId"] == 5
        assert cli(config, "balances", "2")[1]["USDC"] == {"available": "210", "locked": "40", "staked": "0"}
        code, orders = cli(config, "orders", "2")
        assert [o["id"] for o in orders] == [order["id"]]
        assert cli(config, "market", "halt", "SOL_USDC") == (0, {"symbol": "SOL_USDC", "state": "Closed"})
        code, out = cli(config, "order", "place", "2", "SOL_USDC", "Bid", "Limit", "--price", "20", "--quantity", "1")
        assert code == 1 and out["code"] == "TRADING_PAUSED"
        assert cli(config, "market", "cancel-only", "SOL_USDC")[0] == 0
        code, out = cli(config, "order", "cancel", "2", "SOL_USDC", "--client-id", "5")
        assert code == 0 and out["status"] == "Cancelled"
        assert cli(config, "withdraw", "2", "USDC", "250")[0] == 0
    finally:
        assert daemon.stop() == 0
    daemon = Daemon(config)  # state survives a clean restart
    try:
        assert cli(config, "balances", "1")[1]["USDC"]["available"] == "750"
        assert cli(config, "status")[1]["markets"]["SOL_USDC"]["state"] == "CancelOnly"
    finally:
        assert daemon.stop(signal.SIGINT) == 0


def test_admin_socket_rejects_bad_requests_and_survives(config: Path) -> None:
    daemon = Daemon(config)
    try:
        sock = daemon.directory / "admin.sock"
        assert sock.stat().st_mode & 0o777 == 0o600
        assert admin.request(sock, "wrong", "status", {})["error"]["code"] == "UNAUTHORIZED"
        assert admin.request(sock, daemon.token, "nope", {})["error"]["code"] == "INVALID_CLIENT_REQUEST"
        answer = admin.request(sock, daemon.token, "deposit", {"account_id": 99, "asset": "USDC", "amount": "1"})
        assert answer["error"] == {"code": "RESOURCE_NOT_FOUND", "message": "Account 99 not found"}
        assert daemon.call("status")["ready"] is True
    finally:
        assert daemon.stop() == 0


def test_sigkill_under_load_loses_no_acknowledged_order(config: Path) -> None:
    rng = random.Random(7)
    acknowledged: set[int] = set()
    for _ in range(3):
        daemon = Daemon(config)
        accounts = [daemon.call("account.create")["account_id"] for _ in range(4)]
        for account in accounts:
            daemon.call("deposit", account_id=account, asset="USDC", amount="100000")
            daemon.call("deposit", account_id=account, asset="SOL", amount="1000")
        stop = threading.Event()

        def trade(account: int, seed: int, daemon: Daemon = daemon, stop: threading.Event = stop) -> None:
            r = random.Random(seed)
            while not stop.is_set():
                args = {"account_id": account, "symbol": "SOL_USDC", "side": r.choice(["Bid", "Ask"]),
                        "order_type": "Limit", "price": str(r.randint(95, 105)), "quantity": "0.5"}
                try:
                    answer = admin.request(daemon.directory / "admin.sock", daemon.token, "order.place", args, 5)
                except (OSError, ValueError):
                    return
                if answer.get("ok"):
                    acknowledged.add(int(answer["result"]["id"]))

        threads = [threading.Thread(target=trade, args=(a, rng.random())) for a in accounts]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.2))
        daemon.proc.kill()
        daemon.proc.wait()
        stop.set()
        for t in threads:
            t.join(timeout=10)
        assert daemon.proc.stderr is not None
        daemon.proc.stderr.close()
    assert len(acknowledged) > 50
    survivor = Daemon(config)  # recovery replays and checks invariants before it reports ready
    assert survivor.stop() == 0
    journaled = set()
    for record in read_records(config.parent / "var", repair=False):
        if record.seq > 1:
            journaled |= {e.order_id for e in decode_events(record.payload) if isinstance(e, OrderPlaced)}
    assert acknowledged <= journaled
