"""`satchel run` as a real process, driven by the `satchel` CLI and the admin socket."""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import resource
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
from engine.messages import Deposited, OrderPlaced, Withdrawn

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


FIX_SESSION = '\n[[adapters.fix.sessions]]\nsender_comp_id = "SATCHEL"\ntarget_comp_id = "ACME"\naccount = 1\n'


def rest_listen(text: str, address: str) -> str:
    return text.replace('[adapters.rest]\nlisten = "127.0.0.1:0"', f'[adapters.rest]\nlisten = "{address}"')


def ws_listen(text: str, address: str) -> str:
    return text.replace('[adapters.websocket]\nlisten = "127.0.0.1:0"', f'[adapters.websocket]\nlisten = "{address}"')


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(lambda t, d, p: t.replace('dir = "./var"', 'dir = "./config.toml"'),
            "journal.dir: {d}/config.toml is not a directory", id="journal.dir names a file"),
        pytest.param(lambda t, d, p: t.replace('dir = "./var"', 'dir = "./config.toml/var"'),
            "journal.dir: cannot use {d}/config.toml/var: Not a directory", id="journal.dir under a file"),
        pytest.param(lambda t, d, p: t.replace('signing_key = ""', f'signing_key = "{d}"'),
            "journal.signing_key: cannot read venue signing key {d}: Is a directory", id="journal.signing_key names a directory"),
        pytest.param(lambda t, d, p: t.replace('socket = ""', f'socket = "{d}/missing/admin.sock"'),
            "admin.socket: cannot listen on {d}/missing/admin.sock: No such file or directory", id="admin.socket in a missing directory"),
        pytest.param(lambda t, d, p: t.replace('socket = ""', f'socket = "{d}/{"a" * 120}"'),
            "admin.socket: cannot listen on {d}/" + "a" * 120 + ": AF_UNIX path too long", id="admin.socket path too long"),
        pytest.param(lambda t, d, p: t.replace('socket = ""', 'socket = "config.toml"'),
            "admin.socket: {d}/config.toml exists and is not a socket (left as it is)", id="admin.socket names a file"),
        pytest.param(lambda t, d, p: (d / "var" / "admin.token").mkdir(parents=True) or t,
            "journal.dir: cannot use the admin token {d}/var/admin.token: Is a directory", id="admin.token is a directory"),
        pytest.param(lambda t, d, p: rest_listen(t, "no.such.host.invalid:0"),
            "adapters.rest.listen: cannot listen on no.such.host.invalid:0: the host does not resolve (", id="a listen host that does not resolve"),
        pytest.param(lambda t, d, p: rest_listen(t, "192.0.2.1:0"),
            "adapters.rest.listen: cannot listen on 192.0.2.1:0: no interface of this host has that address", id="a listen address not on this host"),
        pytest.param(lambda t, d, p: ws_listen(t, f"127.0.0.1:{p}"),
            "adapters.websocket.listen: cannot listen on 127.0.0.1:{p}: Address already in use", id="a listen port in use"),
        pytest.param(lambda t, d, p: t.replace('"127.0.0.1:8402"', f'"127.0.0.1:{p}"') + FIX_SESSION,
            "adapters.fix.listen: cannot listen on 127.0.0.1:{p}: Address already in use", id="the FIX port in use"),
    ],
)
def test_start_up_mistakes_stop_it_with_the_key_and_the_problem(config: Path, edit: Any, message: str) -> None:
    # Regression (audit 9): each of these stopped start-up with 40-60 lines of tracebacks
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(edit(config.read_text(), config.parent, port))
        proc = subprocess.run([*SATCHEL, "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("satchel: cannot start: " + message.format(d=config.parent, p=port))
    assert config.exists()


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
        code, withdrawal = cli(config, "withdraw", "2", "USDC", "250")
        assert code == 0 and withdrawal["balances"] == {}  # all 250 USDC gone; an empty balance is not listed
    finally:
        assert daemon.stop() == 0
    withdrawn = [e for _, e in journal_events(config.parent / "var") if isinstance(e, Withdrawn)]
    assert [(e.withdrawal_id, e.account_id, e.amount) for e in withdrawn] == [(withdrawal["withdrawal_id"], 2, 250_000_000)]
    daemon = Daemon(config)  # state survives a clean restart
    try:
        assert cli(config, "balances", "1")[1]["USDC"]["available"] == "750"
        assert cli(config, "status")[1]["markets"]["SOL_USDC"]["state"] == "CancelOnly"
    finally:
        assert daemon.stop(signal.SIGINT) == 0


def test_the_fee_account_can_be_read_not_moved_and_a_wrong_symbol_is_refused(config: Path) -> None:
    daemon = Daemon(config)
    try:
        for _ in range(2):
            cli(config, "account", "create")
        cli(config, "deposit", "1", "USDC", "1000")
        cli(config, "deposit", "2", "SOL", "10")
        cli(config, "order", "place", "2", "SOL_USDC", "Ask", "Limit", "--price", "20", "--quantity", "5")
        cli(config, "order", "place", "1", "SOL_USDC", "Bid", "Limit", "--price", "21", "--quantity", "2")
        code, fees = cli(config, "balances", "0")  # the README's "fee account (account 0)": 5 bps taker, 2 bps maker
        assert code == 0 and fees == {"SOL": {"available": "0.001", "locked": "0", "staked": "0"},
                                      "USDC": {"available": "0.008", "locked": "0", "staked": "0"}}
        for moved in (["deposit", "0", "USDC", "1"], ["withdraw", "0", "USDC", "0.001"], ["orders", "0"]):
            assert cli(config, *moved) == (1, {"code": "RESOURCE_NOT_FOUND", "message": "Account 0 not found"})
        for symbol in ("sol_usdc", "FOO"):  # not "you have no orders": the same refusal as every other command
            assert cli(config, "orders", "2", "--symbol", symbol) == (
                1, {"code": "INVALID_CLIENT_REQUEST", "message": f"Invalid market symbol: {symbol!r}"})
        assert [o["symbol"] for o in cli(config, "orders", "2", "--symbol", "SOL_USDC")[1]] == ["SOL_USDC"]
    finally:
        assert daemon.stop() == 0


def test_ctrl_c_at_a_terminal_right_after_ready_stops_it_without_a_traceback(config: Path) -> None:
    """A terminal sends Ctrl-C's SIGINT to the whole foreground process group, children included."""
    daemon = Daemon(config, preexec_fn=os.setpgrp)  # the daemon leads its group, as a shell's foreground job does
    os.killpg(daemon.proc.pid, signal.SIGINT)  # at once: the checkpoint replica is still starting
    assert daemon.proc.wait(timeout=30) == 0
    assert daemon.proc.stderr is not None
    rest = daemon.proc.stderr.read()
    daemon.proc.stderr.close()
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert "satchel stopped cleanly" in rest


def test_the_daemon_lifts_its_open_file_limit_and_warns_when_the_hard_one_is_low() -> None:
    """Connection caps mean nothing if the process runs out of descriptors first (a shell's default soft limit
    is often 1,024)."""
    probe = ("import logging, resource; logging.basicConfig(format='%(message)s'); "
             "from engine.daemon import raise_descriptor_limit as lift; "
             "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, {hard})); print(lift())")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard >= 12_000:
        run = subprocess.run([sys.executable, "-c", probe.format(hard=hard)], capture_output=True, text=True, check=True)
        assert run.stdout.strip() == str(hard) and "open-file limit" not in run.stderr
    run = subprocess.run([sys.executable, "-c", probe.format(hard=2048)], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "2048" and "the open-file limit is 2048, below the 12000" in run.stderr


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
        # Regression (style review 1): a parent of true (== 1) was journaled as a bool, and the journal then
        # refused to replay; a country of 5 raised past the handler and took the daemon down
        daemon.call("account.create")
        for args, message in (
            ({"parent": True}, "parent must be an account id, got True"),
            ({"parent": 1.0}, "parent must be an account id, got 1.0"),
            ({"country": 5}, "country and category must be strings"),
            ({"category": ["retail"]}, "country and category must be strings"),
        ):
            answer = admin.request(sock, daemon.token, "account.create", args)
            assert answer["error"] == {"code": "INVALID_CLIENT_REQUEST", "message": message}, args
        assert daemon.call("status")["ready"] is True
    finally:
        assert daemon.stop() == 0
    restarted = Daemon(config)  # the journal replays: nothing malformed was written
    try:
        assert restarted.call("account.create", parent=1)["account_id"] == 2
    finally:
        assert restarted.stop() == 0


def load(daemon: Daemon, accounts: list[int], acknowledged: set[int], stop: threading.Event, seed: float,
         answers: list[tuple[int, Any]] | None = None) -> list[threading.Thread]:
    """One thread per account placing crossing limit orders until ``stop`` or the daemon goes away.

    ``answers`` collects (clientId, answer) for every request the daemon took, the answer being
    the exception's text when the connection ended without one (admin.NoAnswer).
    """

    def trade(account: int, seed: float) -> None:
        r = random.Random(seed)
        for n in itertools.count():
            if stop.is_set():
                return
            client_id = account * 1_000_000 + n
            args = {"account_id": account, "symbol": "SOL_USDC", "side": r.choice(["Bid", "Ask"]), "client_id": client_id,
                    "order_type": "Limit", "price": str(r.randint(95, 105)), "quantity": "0.5"}
            try:
                answer = admin.request(daemon.directory / "admin.sock", daemon.token, "order.place", args, 5)
            except admin.NoAnswer as exc:
                if answers is not None:
                    answers.append((client_id, str(exc)))
                return
            except OSError:  # not reachable: the daemon is gone or takes no new connections
                return
            if answers is not None:
                answers.append((client_id, answer))
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
    accounts = funded_accounts(daemon, traders)
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


def placed_client_ids(directory: Path, accounts: list[int]) -> set[int]:
    return {e.client_id for _, e in journal_events(directory) if isinstance(e, OrderPlaced) and e.account_id in accounts}


def funded_accounts(daemon: Daemon, count: int) -> list[int]:
    accounts = [daemon.call("account.create")["account_id"] for _ in range(count)]
    for account in accounts:
        daemon.call("deposit", account_id=account, asset="USDC", amount="100000")
        daemon.call("deposit", account_id=account, asset="SOL", amount="1000")
    return accounts


def test_sigterm_answers_every_admin_request_it_accepted(config: Path) -> None:
    # Regression (audit 7): the connections of commands in flight were closed without their answers
    daemon = Daemon(config)
    accounts = funded_accounts(daemon, 4)
    sock = daemon.directory / "admin.sock"
    late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    late.settimeout(30)
    late.connect(str(sock))
    deposit = {"token": daemon.token, "command": "deposit", "args": {"account_id": accounts[0], "asset": "USDC", "amount": "7"}}
    request = json.dumps(deposit).encode() + b"\n"
    late.sendall(request[:20])  # accepted; the rest of its request arrives after the signal
    acknowledged: set[int] = set()
    answers: list[tuple[int, Any]] = []
    stop = threading.Event()
    threads = load(daemon, accounts, acknowledged, stop, 5.0, answers)
    time.sleep(1.0)
    daemon.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while sock.exists():  # the daemon takes no new connection once it is stopping
        assert time.monotonic() < deadline, "the admin socket stayed"
        time.sleep(0.01)
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        admin.request(sock, daemon.token, "status", {})
    with late:
        late.sendall(request[20:])
        reply = b""
        while not reply.endswith(b"\n") and (chunk := late.recv(65536)):
            reply += chunk
    assert json.loads(reply)["ok"] is True  # the engine still ran: done and answered
    stop.set()
    for t in threads:
        t.join(timeout=30)
    code = daemon.proc.wait(timeout=30)
    assert daemon.proc.stderr is not None
    err = daemon.proc.stderr.read()
    daemon.proc.stderr.close()
    assert code == 0 and "satchel stopped cleanly" in err
    assert answers and [a for _, a in answers if not isinstance(a, dict)] == []  # nobody left without an answer
    journaled = placed_client_ids(daemon.directory, accounts)
    assert journaled <= {client_id for client_id, _ in answers}
    assert {c for c, a in answers if a["ok"]} <= journaled
    assert any(isinstance(e, Deposited) and e.account_id == accounts[0] and e.amount == 7_000_000
               for _, e in journal_events(daemon.directory))


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
    accounts = funded_accounts(daemon, 4)
    acknowledged: set[int] = set()
    answers: list[tuple[int, Any]] = []
    stop = threading.Event()
    threads = load(daemon, accounts, acknowledged, stop, 3.0, answers)
    code = daemon.proc.wait(timeout=120)  # the load runs until the disk is full
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert daemon.proc.stderr is not None
    err = daemon.proc.stderr.read()
    daemon.proc.stderr.close()
    assert code == 1 and "disk full" in err and "intake stopped" in err
    assert acknowledged
    # Regression (audit 7): the clients waiting when the disk filled got a closed connection
    assert [a for _, a in answers if not isinstance(a, dict)] == []
    refused = {c: a["error"]["message"] for c, a in answers if not a["ok"] and a["error"]["code"] == "SERVER_ERROR"}
    assert refused and all("not recorded" in message for message in refused.values())
    directory = config.parent / "var"
    assert not placed_client_ids(directory, accounts) & set(refused)  # and indeed they were not

    # Regression (audit 14): restarted on the still-full disk, SIGTERM gave a DiskFull traceback
    segment = max(directory.glob("*.seg"))
    full = segment.stat().st_size

    def still_full() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (full, resource.RLIM_INFINITY))

    restarted = Daemon(config, preexec_fn=still_full)
    restarted.proc.send_signal(signal.SIGTERM)
    code = restarted.proc.wait(timeout=30)
    assert restarted.proc.stderr is not None
    err = restarted.proc.stderr.read()
    restarted.proc.stderr.close()
    assert code == 1 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith("satchel: stopped: the shutdown checkpoint was not written (")
    assert err.splitlines()[-1].endswith("every acknowledged command is on disk. Free space before the next start.")

    survivor = Daemon(config)
    assert survivor.stop() == 0
    journaled = {e.order_id for _, e in journal_events(directory) if isinstance(e, OrderPlaced)}
    assert acknowledged <= journaled
    assert cli(config, "verify", str(directory))[0] == 0
