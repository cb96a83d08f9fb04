"""`satchel run` as a real process, driven by the `satchel` CLI and the admin socket."""

from __future__ import annotations

import base64
import json
import random
import shutil
import signal
import socket
import struct
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
from engine.audit import journal_events
from engine.journal import read_records
from engine.messages import OrderPlaced

pytestmark = pytest.mark.slow
SATCHEL = [sys.executable, "-m", "engine.cli"]


def cli(config: Path, *args: str) -> tuple[int, Any]:
    proc = subprocess.run([*SATCHEL, "--config", str(config), *args], capture_output=True, text=True, timeout=30)
    out = json.loads(proc.stdout) if proc.stdout.strip() else proc.stderr
    return proc.returncode, out


class Daemon:
    def __init__(self, config: Path, preexec_fn: Any = None) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [*SATCHEL, "run", "--config", str(config)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            preexec_fn=preexec_fn,
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
        for request in (b"", b'{"token": "x", "command": "status"}\n'):  # clients that leave before the answer
            for _ in range(20):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.connect(str(sock))
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                    client.sendall(request)
        assert daemon.call("status")["ready"] is True
    finally:
        assert daemon.stop() == 0


def load(daemon: Daemon, accounts: list[int], acknowledged: set[int], stop: threading.Event, seed: float) -> list[threading.Thread]:
    """One thread per account placing crossing limit orders until ``stop`` or the daemon goes away."""

    def trade(account: int, seed: float) -> None:
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

    threads = [threading.Thread(target=trade, args=(a, seed + i)) for i, a in enumerate(accounts)]
    for t in threads:
        t.start()
    return threads


def kill_under_load(config: Path, rng: random.Random, acknowledged: set[int], traders: int, seconds: tuple[float, float]) -> None:
    """Start the daemon, fund ``traders`` new accounts that trade from threads, SIGKILL it mid-load.

    Every order the daemon acknowledged before the kill is added to ``acknowledged``.
    """
    daemon = Daemon(config)
    accounts = [daemon.call("account.create")["account_id"] for _ in range(traders)]
    for account in accounts:
        daemon.call("deposit", account_id=account, asset="USDC", amount="100000")
        daemon.call("deposit", account_id=account, asset="SOL", amount="1000")
    stop = threading.Event()
    threads = load(daemon, accounts, acknowledged, stop, rng.random())
    time.sleep(rng.uniform(*seconds))
    daemon.proc.kill()
    daemon.proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert daemon.proc.stderr is not None
    daemon.proc.stderr.close()


def test_sigkill_under_load_loses_no_acknowledged_order(config: Path) -> None:
    # frequent checkpoints and snapshots, so kills land during them and recovery starts from snapshots
    text = config.read_text().replace("checkpoint_every_records = 1000", "checkpoint_every_records = 15")
    config.write_text(text.replace("snapshot_every_events = 1000000", "snapshot_every_events = 150"))
    rng = random.Random(7)
    acknowledged: set[int] = set()
    for _ in range(6):  # each round long enough for the replica process to start and checkpoint
        kill_under_load(config, rng, acknowledged, 4, (0.6, 1.8))
    assert len(acknowledged) > 100
    survivor = Daemon(config)  # recovery (snapshot + tail) checks invariants before it reports ready
    try:
        live = survivor.call("status", state_hash=True)["stateHash"]
    finally:
        assert survivor.stop() == 0
    directory = config.parent / "var"
    assert list((directory / "snapshots").glob("*.snap")), "the run should have taken snapshots"
    journaled = {e.order_id for _, e in journal_events(directory) if isinstance(e, OrderPlaced)}
    assert acknowledged <= journaled
    code, summary = cli(config, "verify", str(directory))
    assert code == 0 and summary["ok"] and summary["state_hash"] == live  # live state = offline replay
    assert summary["claims_checked"] > 6


def test_audit_commands_end_to_end(config: Path, tmp_path: Path) -> None:
    assert cli(config, "pubkey")[0] == 1  # no key before the first start
    daemon = Daemon(config)
    try:
        buyer, seller = (daemon.call("account.create")["account_id"] for _ in range(2))
        daemon.call("deposit", account_id=buyer, asset="USDC", amount="500")
        daemon.call("deposit", account_id=seller, asset="SOL", amount="7")
        code, snap = cli(config, "snapshot")
        assert code == 0 and Path(snap["snapshot"]).exists()
        code, published = cli(config, "por", "publish")
        assert code == 0 and published["por"]["totals"] == ["0", "0", "7000000000", "500000000"]
        root = published["por"]["root"]
        code, key = cli(config, "pubkey")
        assert code == 0 and key["venue_key"] == daemon.call("status")["venueKey"]
    finally:
        assert daemon.stop() == 0
    code, proof = cli(config, "por", "proof", str(buyer))
    assert code == 0 and proof["balances"] == ["0", "0", "0", "500000000"]
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof))
    code, checked = cli(config, "por", "verify", str(proof_file), "--root", root)
    assert code == 0 and checked["ok"] and checked["account_id"] == buyer
    signed = ("--publication", published["por"]["published"], "--pubkey", key["venue_key"])
    code, checked = cli(config, "por", "verify", str(proof_file), *signed)  # the user's offline check
    assert code == 0 and checked["ok"] and checked["totals"] == published["por"]["totals"]
    part = proof["parts"][0]
    part["balances"][3] = str(int(part["balances"][3]) + 1)
    proof_file.write_text(json.dumps(proof))
    code, checked = cli(config, "por", "verify", str(proof_file), *signed)
    assert code == 1 and not checked["ok"] and "not the published" in checked["error"]
    directory = config.parent / "var"
    code, summary = cli(config, "verify", str(directory), "--pubkey", key["venue_key"])
    assert code == 0 and summary["liabilities"] == {"BTC": "0", "ETH": "0", "SOL": "7", "USDC": "500"}
    proc = subprocess.run([*SATCHEL, "journal", "dump", str(directory), "--from", "2", "--to", "3"],
                          capture_output=True, text=True, timeout=30)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0 and [r["type"] for r in rows] == ["AccountCreated", "AccountCreated"]
    victim = list(read_records(directory, repair=False))[3]
    data = bytearray(victim.segment.read_bytes())
    data[victim.offset + 48 + len(victim.payload) // 2] ^= 0x40
    victim.segment.write_bytes(bytes(data))
    code, failure = cli(config, "verify", str(directory))
    assert code == 1 and not failure["ok"] and "CRC mismatch" in failure["error"]
    assert (failure["segment"], failure["offset"], failure["seq"]) == (victim.segment.name, victim.offset, victim.seq)
    proc = subprocess.run([*SATCHEL, "run", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and f"offset {victim.offset} (seq {victim.seq})" in proc.stderr


def test_a_snapshot_that_cannot_be_written_exits_non_zero(config: Path) -> None:
    # Regression: `satchel snapshot` printed the checkpoint with a snapshot_error and exited 0
    daemon = Daemon(config)
    try:
        snapshots = daemon.directory / "snapshots"
        shutil.rmtree(snapshots, ignore_errors=True)
        snapshots.write_text("a file where the snapshot directory should be\n")  # root ignores permissions
        code, out = cli(config, "snapshot")
        assert code == 1 and out["code"] == "SERVER_ERROR", out
        assert out["message"].startswith("snapshot not written: ") and "signed checkpoint at seq" in out["message"]
        code, checkpoint = cli(config, "checkpoint")  # a checkpoint itself still works
        assert code == 0 and checkpoint["seq"] > 0
        snapshots.unlink()
        code, snap = cli(config, "snapshot")
        assert code == 0 and Path(snap["snapshot"]).exists()
    finally:
        assert daemon.stop() == 0


def test_full_disk_stops_intake_and_loses_nothing_acknowledged(config: Path) -> None:
    import resource

    def small_disk() -> None:  # the journal's files may not grow past 256 KiB: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))

    daemon = Daemon(config, preexec_fn=small_disk)
    accounts = [daemon.call("account.create")["account_id"] for _ in range(4)]
    for account in accounts:
        daemon.call("deposit", account_id=account, asset="USDC", amount="100000")
        daemon.call("deposit", account_id=account, asset="SOL", amount="1000")
    acknowledged: set[int] = set()
    stop = threading.Event()
    threads = load(daemon, accounts, acknowledged, stop, 3.0)
    code = daemon.proc.wait(timeout=120)  # the load runs until the disk is full
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert daemon.proc.stderr is not None
    err = daemon.proc.stderr.read()
    daemon.proc.stderr.close()
    assert code == 1 and "disk full" in err and "intake stopped" in err
    assert acknowledged
    survivor = Daemon(config)
    assert survivor.stop() == 0
    journaled = {e.order_id for _, e in journal_events(config.parent / "var") if isinstance(e, OrderPlaced)}
    assert acknowledged <= journaled
    assert cli(config, "verify", str(config.parent / "var"))[0] == 0
