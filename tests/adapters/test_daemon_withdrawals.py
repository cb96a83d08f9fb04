"""The withdrawal approval flow on a real daemon: ccxt asks, the operator decides with `satchel withdrawals`.

Proves the whole path: REST request -> journal -> admin socket listing and
decisions -> balances -> clean restart and `satchel verify` rebuild the same state.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import ccxt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.adapters.live import running_daemon

pytestmark = pytest.mark.slow
SATCHEL = [sys.executable, "-m", "engine.cli"]
ADDRESS = "0x0ad42b8e602c2d3d475ae52d678cf63d84ab2749"


def cli(config: Path, *args: str) -> tuple[int, Any]:
    proc = subprocess.run([*SATCHEL, "--config", str(config), *args], capture_output=True, text=True, timeout=30)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else proc.stderr


def ok(config: Path, *args: str) -> Any:
    code, out = cli(config, *args)
    assert code == 0, out
    return out


def rest_url(ready: str) -> str:
    """The REST address the ready line names."""
    rest = re.search(r"rest (127\.0\.0\.1:\d+)", ready)
    assert rest, ready
    return f"http://{rest.group(1)}"


def test_requests_decided_by_the_operator_survive_restart_and_verify(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    ok(config, "init", str(config))
    config.write_text(config.read_text().replace(":8400", ":0").replace(":8401", ":0"))
    with running_daemon(config) as ready:
        url = rest_url(ready)
        private = Ed25519PrivateKey.generate()
        key = base64.b64encode(private.public_key().public_bytes_raw()).decode()
        account = ok(config, "account", "create")["account_id"]
        ok(config, "key", "add", str(account), key)
        ok(config, "deposit", str(account), "USDC", "100")
        exchange = ccxt.backpack({
            "apiKey": key, "secret": base64.b64encode(private.private_bytes_raw()).decode(),
            "urls": {"api": {"public": url, "private": url}},
        })
        try:
            first = exchange.withdraw("USDC", 30, ADDRESS, {"network": "Ethereum"})
            second = exchange.withdraw("USDC", 20, ADDRESS, {"network": "Ethereum", "tag": "rent"})
        finally:
            exchange.session.close()
        assert first["status"] == second["status"] == "pending"
        assert ok(config, "balances", str(account))["USDC"] == {"available": "50", "locked": "50", "staked": "0"}

        pending = ok(config, "withdrawals", "list", "--status", "pending")
        assert [(w["id"], w["accountId"], w["quantity"], w["toAddress"], w["blockchain"]) for w in pending] == [
            (int(first["id"]), account, "30", ADDRESS, "Ethereum"), (int(second["id"]), account, "20", ADDRESS, "Ethereum"),
        ]
        approved = ok(config, "withdrawals", "approve", first["id"], "--tx-hash", "0xabc")
        assert (approved["status"], approved["transactionHash"], approved["decidedAt"] is not None) == ("confirmed", "0xabc", True)
        code, again = cli(config, "withdrawals", "approve", first["id"])
        assert code == 1 and again["code"] == "INVALID_CLIENT_REQUEST" and "already confirmed" in again["message"]
        declined = ok(config, "withdrawals", "reject", second["id"], "--reason", "address not verified")
        assert (declined["status"], declined["reason"], declined["clientId"]) == ("declined", "address not verified", "rent")
        code, missing = cli(config, "withdrawals", "reject", "99")
        assert code == 1 and missing["code"] == "RESOURCE_NOT_FOUND"
        code, bad = cli(config, "withdrawals", "list", "--account", "42")
        assert code == 1 and bad["code"] == "RESOURCE_NOT_FOUND"
        assert ok(config, "withdrawals", "list", "--status", "pending") == []
        assert ok(config, "balances", str(account))["USDC"] == {"available": "70", "locked": "0", "staked": "0"}
        listing = ok(config, "withdrawals", "list", "--account", str(account))
        state = ok(config, "status", "--state-hash")["stateHash"]
        assert state
    journal = tmp_path / "var"
    verified = ok(config, "verify", str(journal))
    assert verified["state_hash"] == state and verified["liabilities"]["USDC"] == "70"
    with running_daemon(config):
        assert ok(config, "status", "--state-hash")["stateHash"] == state
        assert ok(config, "withdrawals", "list", "--account", str(account)) == listing
