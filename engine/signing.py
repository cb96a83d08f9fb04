"""The venue's Ed25519 signing key: checkpoints and proof-of-reserves roots are signed with it.

The key is generated on first start into ``<journal dir>/venue.key`` (mode 0600,
created with O_EXCL so two starts cannot race to different keys) or read from
the path the config names. The file holds the 32-byte raw private seed in base64
and nothing else. The public key is pinned in the journal's genesis record, so a
key swapped behind the journal's back refuses start-up instead of signing a
history it did not write.

Every signature covers a domain-separated message (``satchel/<purpose>/v1`` + the
canonical bytes), so a checkpoint signature can never be replayed as a PoR root's.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine import durable

KEY_FILE: Final = "venue.key"


class KeyError_(ValueError):
    """The signing key file or a public key is unusable; the message says why."""


def domain(purpose: str) -> bytes:
    return f"satchel/{purpose}/v1\n".encode()


class VenueKey:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.public_b64 = public_b64(self.public)

    def sign(self, purpose: str, message: bytes) -> str:
        return base64.b64encode(self._private.sign(domain(purpose) + message)).decode()

    def secret(self, label: bytes) -> bytes:
        """A 32-byte secret derived from the private key (e.g. the PoR leaf salt key)."""
        import hashlib

        seed = self._private.private_bytes_raw()
        return hashlib.blake2b(label, key=seed, digest_size=32).digest()


def public_b64(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _key_bytes(text: str, what: str) -> bytes:
    """32 bytes from base64, or a KeyError_ naming ``what`` is wrong."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyError_(f"{what} is not base64") from None
    if len(raw) != 32:
        raise KeyError_(f"{what} must hold 32 bytes, got {len(raw)}")
    return raw


def load_public(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_key_bytes(text, f"public key {text!r}"))


def verify(public: Ed25519PublicKey, purpose: str, message: bytes, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), domain(purpose) + message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def key_path(directory: Path, configured: str) -> Path:
    if not configured:
        return directory / KEY_FILE
    path = Path(configured)
    return path if path.is_absolute() else directory / path


def load_or_create(path: Path, *, create: bool = True) -> VenueKey:
    """Read the key at ``path``; create it (0600, exclusive) if absent and ``create``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        if not create:
            raise KeyError_(f"no venue signing key at {path}") from None
        return _create(path)
    except (OSError, UnicodeDecodeError) as exc:  # a directory, no permission, not text
        raise KeyError_(f"cannot read venue signing key {path}: {getattr(exc, 'strerror', None) or exc}") from None
    seed = _key_bytes(text, f"venue signing key {path} (an Ed25519 seed)")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyError_(f"venue signing key {path} is readable by others (mode {mode:o}); chmod 600 it")
    return VenueKey(Ed25519PrivateKey.from_private_bytes(seed))


def _create(path: Path) -> VenueKey:
    try:
        return _write_new(path)
    except OSError as exc:  # its directory cannot be made or written
        raise KeyError_(f"cannot create venue signing key {path}: {exc.strerror or exc}") from None


def _write_new(path: Path) -> VenueKey:
    private = Ed25519PrivateKey.generate()
    text = base64.b64encode(private.private_bytes_raw()).decode() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    durable.fsync_dir(path.parent)
    return VenueKey(private)
