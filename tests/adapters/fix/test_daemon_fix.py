"""`satchel run` with a FIX session on a free port: signed Logon, an order, and sequence numbers across a restart;
FIX over TLS, and a TLS file the daemon cannot read."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.fix.auth import sign_logon
from adapters.fix.codec import Framer, Message, Timestamps, decode, encode_body, frame_message
from tests.adapters.tls_certs import make_pki

pytestmark = pytest.mark.slow
SATCHEL = [sys.executable, "-m", "engine.cli"]
SESSION = '''
[[adapters.fix.sessions]]
sender_comp_id = "SATCHEL"
target_comp_id = "ACME"
account = 1
'''


def cli(config: Path, *args: str) -> dict[str, object]:
    proc = subprocess.run([*SATCHEL, "--config", str(config), *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


class Daemon:
    def __init__(self, config: Path, cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen([*SATCHEL, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True,
                                     cwd=cwd)
        assert self.proc.stderr is not None
        ready = ""
        for line in self.proc.stderr:
            if "satchel ready" in line:
                ready = line
                break
        found = re.search(r"fix (127\.0\.0\.1):(\d+)", ready)
        assert found, ready
        self.address = (found.group(1), int(found.group(2)))
        self.signalled = False

    def signal(self) -> None:
        """SIGTERM once: a second one after the daemon has left its signal handling would kill it."""
        if not self.signalled:
            self.signalled = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.signal()
        code = self.proc.wait(timeout=30)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        assert code == 0


class Client:
    def __init__(self, address: tuple[str, int], key: Ed25519PrivateKey, seq: int,
                 tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.key = key
        self.seq = seq
        self.framer = Framer()
        self.pending: list[bytes] = []

    def send(self, msg_type: str, body: list[tuple[int, str]], extra: list[tuple[int, str]] | None = None) -> None:
        now = Timestamps().millis(time.time_ns() // 1000)
        header = [(34, str(self.seq)), (49, "ACME"), (52, now), (56, "SATCHEL")]
        if msg_type == "A":
            signature = sign_logon(self.key, "ACME", "SATCHEL", self.seq, now)
            public = base64.b64encode(self.key.public_key().public_bytes_raw()).decode()
            body = [*body, (95, str(len(signature))), (96, signature), (553, public)]
        self.sock.sendall(frame_message(msg_type, header, encode_body(body)))
        self.seq += 1

    def read(self) -> Message:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "disconnected"
            self.framer.feed(data)
            self.pending.extend(self.framer.frames())
        return decode(self.pending.pop(0))


def fix_daemon_config(tmp_path: Path, tls_cert: str = "", tls_key: str = "") -> Path:
    """``satchel init``'s config on free ports, with the ACME session (and ``[adapters.fix]`` TLS files)."""
    config = tmp_path / "config.toml"
    cli(config, "init", str(config))
    # every port free (fixed REST/WebSocket ports collide with other test runs on the box)
    text = config.read_text()
    for port in (":8400", ":8401", ":8402"):
        text = text.replace(port, ":0")
    before, fix = text.split("[adapters.fix]\n")
    fix = fix.replace('tls_cert = ""', f"tls_cert = {tls_cert!r}", 1).replace('tls_key = ""', f"tls_key = {tls_key!r}", 1)
    config.write_text(f"{before}[adapters.fix]\n{fix}{SESSION}")
    return config


def test_daemon_fix_session_survives_a_restart(tmp_path: Path) -> None:
    config = fix_daemon_config(tmp_path)
    daemon = Daemon(config)
    try:
        private = Ed25519PrivateKey.generate()
        account = cli(config, "account", "create")["account_id"]
        assert account == 1
        cli(config, "key", "add", "1", base64.b64encode(private.public_key().public_bytes_raw()).decode())
        cli(config, "deposit", "1", "USDC", "500")
        client = Client(daemon.address, private, 1)
        client.send("A", [(98, "0"), (108, "30")])
        assert client.read().msg_type == "A"
        client.send("D", [(11, "d1"), (55, "SOL_USDC"), (54, "1"), (60, "20240101-00:00:00"), (38, "1"), (40, "2"), (44, "100")])
        report = client.read()
        assert (report.msg_type, report.get(150), report.get(34)) == ("8", "0", "2")
        client.send("5", [])
        assert client.read().msg_type == "5"
        client.sock.close()
    finally:
        daemon.stop()
    daemon = Daemon(config)
    try:
        client = Client(daemon.address, private, 4)
        client.send("A", [(98, "0"), (108, "30")])
        logon = client.read()
        assert (logon.msg_type, logon.get(34)) == ("A", "4")  # 1 Logon, 2 ExecutionReport, 3 Logout before the restart
        client.send("2", [(7, "2"), (16, "2")])
        resent = client.read()
        assert (resent.msg_type, resent.get(43), resent.get(11), resent.get(150)) == ("8", "Y", "d1", "0")
        client.sock.close()
    finally:
        daemon.stop()


def test_daemon_stop_logs_out_and_cancels_cancel_on_disconnect_orders(tmp_path: Path) -> None:
    """Regression: SIGTERM dropped the FIX sessions without a Logout, and the orders of a
    cancel_on_disconnect session stayed live after the restart (the engine had stopped taking the cancel)."""
    config = fix_daemon_config(tmp_path)
    config.write_text(config.read_text() + "cancel_on_disconnect = true\n")
    daemon = Daemon(config)
    try:
        private = Ed25519PrivateKey.generate()
        cli(config, "account", "create")
        cli(config, "key", "add", "1", base64.b64encode(private.public_key().public_bytes_raw()).decode())
        cli(config, "deposit", "1", "USDC", "500")
        client = Client(daemon.address, private, 1)
        client.send("A", [(98, "0"), (108, "30")])
        assert client.read().msg_type == "A"
        client.send("D", [(11, "c1"), (55, "SOL_USDC"), (54, "1"), (60, "20240101-00:00:00"), (38, "1"), (40, "2"), (44, "100")])
        assert client.read().get(150) == "0"
        daemon.signal()
        logout = client.read()
        assert (logout.msg_type, logout.get(58), logout.get(34)) == ("5", "Server shutting down", "3")
        client.send("5", [])
        client.sock.close()
    finally:
        daemon.stop()
    daemon = Daemon(config)
    try:
        client = Client(daemon.address, private, 4)
        client.send("A", [(98, "0"), (108, "30")])
        assert client.read().get(34) == "5"  # 4 is the cancel's report, written after the Logout
        client.send("2", [(7, "4"), (16, "4")])
        resent = client.read()
        assert (resent.msg_type, resent.get(43), resent.get(11), resent.get(150), resent.get(39)) == ("8", "Y", "c1", "4", "4")
        client.send("AF", [(584, "all"), (585, "7")])
        assert client.read().get(58) == "No open orders"
        client.sock.close()
    finally:
        daemon.stop()


def test_daemon_serves_fix_over_tls_with_files_relative_to_its_config(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    pki = make_pki(tmp_path / "etc")
    config = fix_daemon_config(tmp_path / "etc", "server.pem", "server.key")  # beside the config, not in the cwd
    daemon = Daemon(config, cwd=tmp_path)
    try:
        private = Ed25519PrivateKey.generate()
        cli(config, "account", "create")
        cli(config, "key", "add", "1", base64.b64encode(private.public_key().public_bytes_raw()).decode())
        cli(config, "deposit", "1", "USDC", "500")
        with pytest.raises(ssl.SSLError):  # a client that does not trust the test CA refuses the certificate
            Client(daemon.address, private, 1, ssl.create_default_context())
        client = Client(daemon.address, private, 1, ssl.create_default_context(cafile=str(pki.ca_file)))
        assert isinstance(client.sock, ssl.SSLSocket) and client.sock.version() in ("TLSv1.2", "TLSv1.3")
        client.send("A", [(98, "0"), (108, "30")])
        assert client.read().msg_type == "A"
        client.send("D", [(11, "d1"), (55, "SOL_USDC"), (54, "1"), (60, "20240101-00:00:00"), (38, "1"), (40, "2"), (44, "100")])
        report = client.read()
        assert (report.msg_type, report.get(150), report.get(11)) == ("8", "0", "d1")
        client.sock.close()
    finally:
        daemon.stop()


def test_daemon_does_not_start_with_a_tls_key_it_cannot_read(tmp_path: Path) -> None:
    make_pki(tmp_path)
    config = fix_daemon_config(tmp_path, "server.pem", "missing.key")
    proc = subprocess.run([*SATCHEL, "run", "--config", str(config)], capture_output=True, text=True, timeout=30,
                          cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"satchel: cannot start: adapters.fix.tls_key: cannot read {str(tmp_path / 'missing.key')!r}: No such file or directory")
