"""Binance-style Logon authentication with the account's Ed25519 API key.

Username (553) carries the API key: the base64 Ed25519 public key registered for
the session's account (``Engine.add_api_key``). RawData (96), with RawDataLength
(95) giving its length, carries the base64 Ed25519 signature over the values of
MsgType, SenderCompID, TargetCompID, MsgSeqNum and SendingTime joined by SOH,
exactly as sent (reference/fix.md §5.2). Any failure returns the reason the
Logout will carry; nothing else happens on a failed Logon.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from adapters.fix.codec import Message
from adapters.fix.session import SessionConfig


def signed_payload(message: Message) -> bytes:
    values = [message.get(35), message.get(49), message.get(56), message.get(34), message.get(52)]
    return b"\x01".join((value or "").encode("latin-1") for value in values)


def sign_logon(private_key: Ed25519PrivateKey, sender: str, target: str, seq: int, sending_time: str) -> str:
    """The RawData (96) value a client puts on its Logon."""
    payload = b"\x01".join(part.encode() for part in ("A", sender, target, str(seq), sending_time))
    return base64.b64encode(private_key.sign(payload)).decode()


def make_authenticator(key_owner: Callable[[str], int | None]) -> Callable[[Message, SessionConfig], str | None]:
    """An Acceptor authenticator; ``key_owner`` maps a base64 public key to its account id."""

    def authenticate(message: Message, config: SessionConfig) -> str | None:
        api_key = message.get(553)
        if not api_key:
            return "Logon needs Username (553) = the account's Ed25519 API key"
        owner = key_owner(api_key)
        if owner is None:
            return "Unknown API key in Username (553)"
        if owner != config.account_id:
            return f"API key does not belong to the account of session {config.sender_comp_id}->{config.target_comp_id}"
        signature_text = message.get(96)
        if not signature_text:
            return "Logon needs RawData (96) = base64 Ed25519 signature of MsgType, SenderCompID, TargetCompID, MsgSeqNum, SendingTime"
        if message.get(95) != str(len(signature_text)):
            return "RawDataLength (95) does not match RawData (96)"
        try:
            signature = base64.b64decode(signature_text, validate=True)
            Ed25519PublicKey.from_public_bytes(base64.b64decode(api_key)).verify(signature, signed_payload(message))
        except (binascii.Error, ValueError, InvalidSignature):
            return "Invalid signature in RawData (96)"
        return None

    return authenticate
