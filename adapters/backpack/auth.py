"""Backpack's Ed25519 request signing, verified server-side, and per-key rate limits.

Signing string (reference/backpack-api.md §2.3-2.5): ``instruction=<name>``, then
the request's parameters sorted by key as ``&k=v``, then
``&timestamp=<X-Timestamp>&window=<X-Window>``. A batch (a JSON array) repeats
``instruction=..&<sorted kv>`` per item and appends timestamp and window once.
Booleans are ``true``/``false``. Clients disagree on percent-encoding (ccxt
encodes values, Backpack's Rust SDK does not), so both forms are accepted.

Every failure has its own error so a user can tell a clock problem from a key
problem: missing headers, unknown key, bad window, stale timestamp, bad signature.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import quote

import attrs
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from adapters.backpack.errors import ApiError
from engine.units import is_integer_text

DEFAULT_WINDOW_MS: Final = 5000
DEFAULT_WINDOW_TEXT: Final = str(DEFAULT_WINDOW_MS)
MAX_WINDOW_MS: Final = 60_000
RATE_PER_MINUTE: Final = 2000  # Backpack's documented limit per subaccount
KEY_CACHE_MAX: Final = 65_536
SIGNATURE_BYTES: Final = 64


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _append_pairs(parts: list[str], params: dict[str, Any], encode: bool) -> None:
    """``k=v`` for each parameter, sorted by key, appended to ``parts``."""
    if encode:
        parts += [f"{quote(k, safe='')}={quote(_scalar(v), safe='')}" for k, v in sorted(params.items())]
        return
    for k in sorted(params):  # sorting the keys alone, then one lookup each: ~30% faster than sorting the items
        v = params[k]
        # strings (nearly every value) go in as they are; _scalar only for the rest
        parts.append(f"{k}={v}" if type(v) is str else f"{k}={_scalar(v)}")


def signing_string(instruction: str, params: dict[str, Any] | list[dict[str, Any]], timestamp: str, window: str,
                   encode: bool = False) -> bytes:
    """One candidate signed message: raw values, or percent-encoded ones (ccxt).

    Built as one list of ``&``-joined parts: the signed order path builds one per request.
    """
    head = f"instruction={instruction}"
    parts: list[str] = []
    for item in params if isinstance(params, list) else (params,):  # a batch: the instruction before each item
        parts.append(head)
        _append_pairs(parts, item, encode)
    parts.append(f"timestamp={timestamp}&window={window}")
    return "&".join(parts).encode()


@attrs.define  # not frozen: a frozen attrs __init__ costs ~1 us more, per request
class Signed:
    """A request that passed every check but the signature itself: what ``valid_signature`` needs, and what follows."""

    account_id: int
    api_key: str
    key: bytes
    signature: bytes
    message: bytes  # the raw-values signing string
    instruction: str
    params: dict[str, Any] | list[dict[str, Any]]
    timestamp: str
    window: str


class Verifier:
    """Checks one signed request: key registered, timestamp fresh, signature valid.

    ``verify`` does it all at once. ``check`` and ``conclude`` split it around the
    Ed25519 verification itself, so a caller can verify many requests' signatures
    elsewhere (``adapters.backpack.sigthread``, off the event loop) in between.
    """

    def __init__(self, account_for_key: Callable[[str], int | None], clock_ms: Callable[[], int] = wall_ms) -> None:
        self.account_for_key = account_for_key
        self.clock_ms = clock_ms
        self._keys: dict[str, bytes] = {}

    def verify(
        self, instruction: str, params: dict[str, Any] | list[dict[str, Any]],
        api_key: str | None, signature: str | None, timestamp: str | None, window: str | None,
    ) -> int:
        """Return the signer's account id, or raise the ``ApiError`` that says what is wrong."""
        signed = self.check(instruction, params, api_key, signature, timestamp, window)
        return self.conclude(signed, valid_signature(signed.key, signed.signature, signed.message))

    def check(
        self, instruction: str, params: dict[str, Any] | list[dict[str, Any]],
        api_key: str | None, signature: str | None, timestamp: str | None, window: str | None,
    ) -> Signed:
        """Everything before the Ed25519 verification; raises the ``ApiError`` that says what is wrong."""
        if not (api_key and signature and timestamp):
            missing = [name for name, value in (("X-API-Key", api_key), ("X-Signature", signature), ("X-Timestamp", timestamp)) if not value]
            raise ApiError("UNAUTHORIZED", f"Missing {', '.join(missing)}: this endpoint needs a signed request")
        account_id = self.account_for_key(api_key)
        if account_id is None:
            raise ApiError("UNAUTHORIZED", "Unknown API key: register it with `satchel key add ACCOUNT_ID PUBLIC_KEY` first")
        window_text = window if window else DEFAULT_WINDOW_TEXT
        window_ms = int(window_text) if is_integer_text(window_text) else 0
        if not 0 < window_ms <= MAX_WINDOW_MS:
            raise ApiError("INVALID_CLIENT_REQUEST", f"Invalid X-Window {window_text!r}: expected milliseconds, 1 to {MAX_WINDOW_MS}")
        if not is_integer_text(timestamp) or timestamp[0] == "-":
            raise ApiError("INVALID_CLIENT_REQUEST", f"Invalid X-Timestamp {timestamp!r}: expected Unix milliseconds")
        skew = self.clock_ms() - int(timestamp)
        if abs(skew) > window_ms:
            raise ApiError(
                "INVALID_CLIENT_REQUEST",
                f"Request has expired: X-Timestamp is {abs(skew)} ms {'behind' if skew > 0 else 'ahead of'} the server clock, "
                f"outside the {window_text} ms window (check the client clock)",
            )
        try:
            raw_signature = binascii.a2b_base64(signature, strict_mode=True)  # b64decode(validate=True) runs a regex
        except (binascii.Error, ValueError):
            raise ApiError("INVALID_SIGNATURE", "X-Signature is not base64") from None
        if len(raw_signature) != SIGNATURE_BYTES:
            raise ApiError("INVALID_SIGNATURE", f"X-Signature must hold {SIGNATURE_BYTES} bytes, got {len(raw_signature)}")
        key = self._keys.get(api_key)
        if key is None:
            key = self._key(api_key)
        message = signing_string(instruction, params, timestamp, window_text)
        return Signed(account_id, api_key, key, raw_signature, message, instruction, params, timestamp, window_text)

    def conclude(self, signed: Signed, valid: bool) -> int:
        """The account id once ``valid`` says whether the raw-values signature verified; else try the encoded form."""
        if valid:
            return signed.account_id
        # The percent-encoded form is built only when the raw one fails: most clients sign raw
        # values, and the second string costs as much to build as the first.
        encoded = signing_string(signed.instruction, signed.params, signed.timestamp, signed.window, encode=True)
        if encoded != signed.message and valid_signature(signed.key, signed.signature, encoded):
            return signed.account_id
        raise ApiError("INVALID_SIGNATURE", f"Invalid signature for instruction {signed.instruction!r}: the request or its signing string does not match")

    def _key(self, api_key: str) -> bytes:
        """The raw public key of a registered key not decoded yet (a registered key is valid base64), remembered."""
        if len(self._keys) >= KEY_CACHE_MAX:
            self._keys.clear()
        key = self._keys[api_key] = base64.b64decode(api_key)
        return key


def valid_signature(key: bytes, signature: bytes, message: bytes) -> bool:
    """libsodium's Ed25519 verify (via PyNaCl): ~2x faster than OpenSSL's through ``cryptography`` here.

    Measured on this box: 70-150 µs against 140-290 µs per verify, the largest single cost of
    a signed order. libsodium also refuses non-canonical and small-order encodings.
    """
    try:
        crypto_sign_open(signature + message, key)
    except (BadSignatureError, ValueError):  # ValueError: a registered key that is not 32 bytes
        return False
    return True


class RateLimiter:
    """A token bucket per API key: ``per_minute`` requests, bursting up to the same number."""

    def __init__(self, per_minute: int = RATE_PER_MINUTE, clock_s: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.refill_per_s = per_minute / 60.0
        self.clock_s = clock_s
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, api_key: str) -> None:
        now = self.clock_s()
        tokens, since = self._buckets.get(api_key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - since) * self.refill_per_s)
        if tokens < 1.0:
            self._buckets[api_key] = (tokens, now)
            raise ApiError("TOO_MANY_REQUESTS", f"Rate limit exceeded: {int(self.capacity)} requests per minute per API key")
        self._buckets[api_key] = (tokens - 1.0, now)
