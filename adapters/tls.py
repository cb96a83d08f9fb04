"""TLS for the adapters: the server-side context an adapter wraps its connections in.

An adapter serves TLS when its section names both ``tls_cert`` (a PEM certificate
chain, leaf first) and ``tls_key`` (its PEM private key, unencrypted: the daemon
starts unattended). The context accepts TLS 1.2 and 1.3 only, with OpenSSL's
default cipher list for a server (``ssl.create_default_context``); clients are not
asked for certificates (they authenticate with their API keys, as on Backpack).
A file that is missing, unreadable, not PEM, or whose key does not match the
certificate stops start-up with a message naming the config key. Relative paths
start from the config file's directory (``engine.config.with_tls_paths``).
"""

from __future__ import annotations

import contextlib
import ssl

from engine.config import ConfigError
from engine.recovery import StartupError


class TlsFileError(ConfigError, StartupError):
    """A TLS file the adapter cannot use: a config problem, raised at start-up inside the daemon's nursery,
    where ``satchel run`` reports a StartupError as "cannot start: <the key>: ..." (no traceback)."""


def server_context(key: str, cert_file: str, key_file: str) -> ssl.SSLContext | None:
    """The TLS context for ``adapters.<key>``; None when neither file is set (plaintext)."""
    if not cert_file and not key_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION  # a TLS 1.2 client's renegotiations cost the server a handshake each
    for name, path in (("tls_cert", cert_file), ("tls_key", key_file)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise TlsFileError(f"adapters.{key}.{name}: cannot read {path!r}: {exc.strerror}") from None
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TlsFileError(f"adapters.{key}: tls_cert {cert_file!r} and tls_key {key_file!r} are not a PEM "
                          f"certificate chain and its matching unencrypted private key ({reason})") from None
    return context


def _no_password() -> bytes:
    """An encrypted key is refused (an SSLError above), never a prompt on the daemon's terminal."""
    return b""


class TlsError(Exception):
    """The peer's TLS failed (a handshake it cannot complete, a damaged record): close the connection."""


class TlsSession:
    """Server-side TLS for a connection whose socket the adapter reads and writes itself (sans-IO).

    The adapters run their sockets directly (non-blocking ``os.read``/``os.write``
    and trio's ``wait_readable``), so TLS sits between the socket and the protocol
    as an ``ssl.SSLObject`` over two memory BIOs: ``receive`` takes the bytes a
    read returned and gives the plaintext they complete; ``send`` takes plaintext;
    ``outgoing`` is the ciphertext to write (handshake records included), which
    the caller writes after every ``receive`` and ``send``. Ciphertext already
    produced must go out in order and whole: a partial socket write keeps its
    rest for the next write, and it is never encrypted again.
    """

    __slots__ = ("_incoming", "_outgoing", "_said_goodbye", "_tls", "closed", "handshaken")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.handshaken = False
        self.closed = False  # the peer sent close_notify (or the socket ended): no more plaintext comes
        self._said_goodbye = False  # our close_notify is queued

    def receive(self, data: bytes) -> bytes:
        """Ciphertext from the socket (``b""``: it reached end of file) -> the plaintext it completes."""
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        chunks: list[bytes] = []
        try:
            if not self.handshaken:
                self._tls.do_handshake()
                self.handshaken = True
            while True:
                chunk = self._tls.read(65_536)
                if not chunk:  # the peer's close_notify (read returns b"" at a clean end)
                    self.closed = True
                    break
                chunks.append(chunk)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            self.closed = True
        except ssl.SSLError as exc:
            raise TlsError(f"TLS failed: {exc.reason or exc}") from None
        return b"".join(chunks) if self.handshaken else b""

    def send(self, plaintext: bytes | memoryview) -> None:
        """Encrypt ``plaintext`` (after the handshake); its records wait in ``outgoing``."""
        try:
            self._tls.write(plaintext)
        except ssl.SSLError as exc:
            raise TlsError(f"TLS failed: {exc.reason or exc}") from None

    def outgoing(self) -> bytes:
        """The ciphertext to write now (handshake and data records), in order; b"" when there is none."""
        return self._outgoing.read() if self._outgoing.pending else b""

    def close(self) -> None:
        """Queue our close_notify, also in answer to the peer's (RFC 8446 §6.1); the caller writes
        ``outgoing`` before closing the socket."""
        if self.handshaken and not self._said_goodbye:
            self._said_goodbye = True
            with contextlib.suppress(ssl.SSLError):  # WantRead: our close_notify is out, the peer's is not in
                self._tls.unwrap()
        self.closed = True
