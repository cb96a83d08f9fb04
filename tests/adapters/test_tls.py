"""adapters.tls: the context an adapter serves TLS with, and the start-up errors for bad files."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.tls import TlsError, TlsSession, server_context
from engine.config import DEFAULT as DEFAULT_CONFIG
from engine.config import ConfigError, load_config, parse_config, render_default
from tests.adapters.tls_certs import make_pki


def test_no_files_is_plaintext() -> None:
    assert server_context("rest", "", "") is None


def test_a_client_trusting_the_ca_completes_a_tls_12_or_13_handshake(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    context = server_context("rest", str(pki.cert_file), str(pki.key_file))
    assert context is not None
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(100).upper())

        thread = threading.Thread(target=serve)
        thread.start()
        client = ssl.create_default_context(cafile=str(pki.ca_file))
        with socket.create_connection(("127.0.0.1", port)) as raw, client.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"ping")
            assert tls.recv(100) == b"PING"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        thread.join()


def test_tls_below_1_2_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    context = server_context("fix", str(pki.cert_file), str(pki.key_file))
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("problem", ["missing", "mismatched", "encrypted", "not pem"])
def test_bad_files_stop_start_up_naming_the_key(tmp_path: Path, problem: str) -> None:
    pki = make_pki(tmp_path)
    key_file = pki.key_file
    if problem == "missing":
        key_file = tmp_path / "nope.key"
    elif problem == "mismatched":
        other = ec.generate_private_key(ec.SECP256R1())
        key_file.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    elif problem == "encrypted":
        other = ec.generate_private_key(ec.SECP256R1())
        key_file.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.BestAvailableEncryption(b"secret")))
    else:
        key_file.write_bytes(b"this is not a key\n")
    with pytest.raises(ConfigError, match=r"^adapters\.websocket") as info:
        server_context("websocket", str(pki.cert_file), str(key_file))
    if problem == "missing":
        assert str(info.value) == f"adapters.websocket.tls_key: cannot read {str(key_file)!r}: No such file or directory"
    else:
        assert "are not a PEM certificate chain and its matching unencrypted private key" in str(info.value)


def test_the_config_wants_both_files_or_neither() -> None:
    data = {**DEFAULT_CONFIG, "adapters": {**DEFAULT_CONFIG["adapters"], "rest": {"listen": "127.0.0.1:0", "tls_cert": "a.pem"}}}
    with pytest.raises(ConfigError, match=r"adapters\.rest: tls_cert and tls_key go together"):
        parse_config(data)


def _pair(tmp_path: Path) -> tuple[TlsSession, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """A server TlsSession and a client SSLObject over memory (the bytes between them passed by hand)."""
    pki = make_pki(tmp_path)
    context = server_context("fix", str(pki.cert_file), str(pki.key_file))
    assert context is not None
    client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ssl.create_default_context(cafile=str(pki.ca_file)).wrap_bio(client_in, client_out, server_hostname="localhost")
    return TlsSession(context), client, client_in, client_out


def _handshake(server: TlsSession, client: ssl.SSLObject, client_in: ssl.MemoryBIO, client_out: ssl.MemoryBIO) -> None:
    for _ in range(10):
        with contextlib.suppress(ssl.SSLWantReadError):
            client.do_handshake()
        assert server.receive(client_out.read()) == b""
        client_in.write(server.outgoing())
        if server.handshaken:
            client.do_handshake()
            return
    raise AssertionError("no handshake")


def test_tls_session_carries_plaintext_both_ways_in_pieces(tmp_path: Path) -> None:
    server, client, client_in, client_out = _pair(tmp_path)
    _handshake(server, client, client_in, client_out)
    client.write(b"8=FIX.4.4\x019=5\x0135=0\x0110=163\x01" * 3)
    wire = client_out.read()
    got = b"".join(server.receive(wire[i:i + 7]) for i in range(0, len(wire), 7))  # a record split over reads
    assert got == b"8=FIX.4.4\x019=5\x0135=0\x0110=163\x01" * 3
    server.send(b"reply")
    server.send(b" and more")
    client_in.write(server.outgoing())
    assert server.outgoing() == b""
    assert client.read(100) + client.read(100) in (b"reply and more", b"reply")


def test_tls_session_garbage_is_a_tls_error(tmp_path: Path) -> None:
    server, _client, _in, _out = _pair(tmp_path)
    with pytest.raises(TlsError, match="TLS failed"):
        server.receive(b"8=FIX.4.4\x019=5\x0135=A\x01" * 20)  # plaintext FIX to a TLS port


def test_tls_session_close_notify_both_ways(tmp_path: Path) -> None:
    server, client, client_in, client_out = _pair(tmp_path)
    _handshake(server, client, client_in, client_out)
    with contextlib.suppress(ssl.SSLWantReadError):
        client.unwrap()
    assert server.receive(client_out.read()) == b""
    assert server.closed
    server.close()  # answered with ours
    client_in.write(server.outgoing())
    client.unwrap()  # the client's shutdown completes: our close_notify arrived
    server.close()
    assert server.outgoing() == b""  # once
    (tmp_path / "second").mkdir()
    server2, client2, in2, out2 = _pair(tmp_path / "second")
    _handshake(server2, client2, in2, out2)
    with pytest.raises(ssl.SSLWantReadError):
        client2.read(10)  # nothing yet
    server2.close()
    in2.write(server2.outgoing())
    assert client2.read(10) == b""  # the clean end: our close_notify arrived


def test_relative_tls_paths_start_from_the_config_files_directory(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    text = render_default().replace(
        '[adapters.rest]\nlisten = "127.0.0.1:8400"\ntls_cert = ""\ntls_key = ""',
        '[adapters.rest]\nlisten = "127.0.0.1:8400"\ntls_cert = "certs/rest.pem"\ntls_key = "/abs/rest.key"',
    )
    assert 'tls_cert = "certs/rest.pem"' in text
    (tmp_path / "etc" / "config.toml").write_text(text)
    config = load_config(tmp_path / "etc" / "config.toml")
    assert config.adapters.rest.tls_cert == str(tmp_path / "etc" / "certs" / "rest.pem")
    assert config.adapters.rest.tls_key == "/abs/rest.key"
    assert config.adapters.fix.tls_cert == config.adapters.websocket.tls_key == ""  # plaintext stays plaintext
