"""TLS for the adapters: the server-side context an adapter wraps its connections in.

An adapter serves TLS when its section names both ``tls_cert`` (a PEM certificate
chain, leaf first) and ``tls_key`` (its PEM private key, unencrypted: the daemon
starts unattended). The context accepts TLS 1.2 and 1.3 only, with OpenSSL's
default cipher list for a server (``ssl.create_default_context``); clients are not
asked for certificates (they authenticate with their API keys, as on Backpack).
A file that is missing, unreadable, not PEM, or whose key does not match the
certificate stops start-up with a message naming the config key.
"""

from __future__ import annotations

import ssl

from engine.config import ConfigError


def server_context(key: str, cert_file: str, key_file: str) -> ssl.SSLContext | None:
    """The TLS context for ``adapters.<key>``; None when neither file is set (plaintext)."""
    if not cert_file and not key_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for name, path in (("tls_cert", cert_file), ("tls_key", key_file)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"adapters.{key}.{name}: cannot read {path!r}: {exc.strerror}") from None
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ConfigError(f"adapters.{key}: tls_cert {cert_file!r} and tls_key {key_file!r} are not a PEM "
                          f"certificate chain and its matching unencrypted private key ({reason})") from None
    return context


def _no_password() -> bytes:
    """An encrypted key is refused (an SSLError above), never a prompt on the daemon's terminal."""
    return b""
