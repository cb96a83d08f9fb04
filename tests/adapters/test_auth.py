"""Backpack signing strings and the verifier, with real Ed25519 keys (no server)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.backpack.auth import Verifier, signing_string
from adapters.backpack.errors import ApiError

NOW_MS = 1_700_000_000_000
TS, WINDOW = str(NOW_MS), "5000"


def _setup() -> tuple[Ed25519PrivateKey, str, Verifier]:
    private = Ed25519PrivateKey.generate()
    key = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    return private, key, Verifier({key: 7}.get, lambda: NOW_MS)


def _sign(private: Ed25519PrivateKey, text: str) -> str:
    return base64.b64encode(private.sign(text.encode())).decode()


def test_signing_string_raw_values_sorted_with_booleans_and_tail() -> None:
    params: dict[str, Any] = {"symbol": "SOL_USDC", "postOnly": True, "clientId": 5, "price": "1.5"}
    assert signing_string("orderExecute", params, TS, WINDOW) == (
        b"instruction=orderExecute&clientId=5&postOnly=true&price=1.5&symbol=SOL_USDC&timestamp=" + TS.encode() + b"&window=5000"
    )
    assert signing_string("balanceQuery", {}, TS, WINDOW) == b"instruction=balanceQuery&timestamp=" + TS.encode() + b"&window=5000"


def test_signing_string_batch_repeats_instruction_per_item() -> None:
    batch = [{"symbol": "SOL_USDC", "side": "Bid"}, {"side": "Ask", "symbol": "SOL_USDC"}]
    assert signing_string("orderExecute", batch, TS, WINDOW) == (
        b"instruction=orderExecute&side=Bid&symbol=SOL_USDC&instruction=orderExecute&side=Ask&symbol=SOL_USDC"
        b"&timestamp=" + TS.encode() + b"&window=5000"
    )


def test_signing_string_encoded_form_percent_encodes_values() -> None:
    params = {"address": "a b/c", "symbol": "SOL_USDC"}
    assert signing_string("withdraw", params, TS, WINDOW, encode=True).startswith(
        b"instruction=withdraw&address=a%20b%2Fc&symbol=SOL_USDC&")
    assert signing_string("withdraw", {"symbol": "SOL_USDC"}, TS, WINDOW, encode=True) == \
        signing_string("withdraw", {"symbol": "SOL_USDC"}, TS, WINDOW)


@pytest.mark.parametrize("encode", [False, True])
def test_raw_and_percent_encoded_signatures_both_verify(encode: bool) -> None:
    """Rust SDK style (raw) and ccxt style (encoded) for a value that encoding changes."""
    private, key, verifier = _setup()
    params = {"address": "a b/c", "symbol": "SOL_USDC"}
    value = quote(params["address"], safe="") if encode else params["address"]
    text = f"instruction=withdraw&address={value}&symbol=SOL_USDC&timestamp={TS}&window={WINDOW}"
    assert verifier.verify("withdraw", params, key, _sign(private, text), TS, WINDOW) == 7


def test_wrong_signature_is_refused_after_both_forms() -> None:
    private, key, verifier = _setup()
    params = {"address": "a b/c", "symbol": "SOL_USDC"}
    text = f"instruction=withdraw&address=elsewhere&symbol=SOL_USDC&timestamp={TS}&window={WINDOW}"
    with pytest.raises(ApiError) as refused:
        verifier.verify("withdraw", params, key, _sign(private, text), TS, WINDOW)
    assert refused.value.code == "INVALID_SIGNATURE" and "withdraw" in refused.value.message
    with pytest.raises(ApiError) as other_instruction:
        verifier.verify("orderExecute", {"symbol": "SOL_USDC"}, key,
                        _sign(private, f"instruction=orderCancel&symbol=SOL_USDC&timestamp={TS}&window={WINDOW}"), TS, WINDOW)
    assert other_instruction.value.code == "INVALID_SIGNATURE"


def test_the_parsed_key_is_reused_and_a_different_key_still_fails() -> None:
    private, key, verifier = _setup()
    text = f"instruction=balanceQuery&timestamp={TS}&window={WINDOW}"
    for _ in range(3):
        assert verifier.verify("balanceQuery", {}, key, _sign(private, text), TS, WINDOW) == 7
    impostor = Ed25519PrivateKey.generate()
    with pytest.raises(ApiError) as refused:
        verifier.verify("balanceQuery", {}, key, _sign(impostor, text), TS, WINDOW)
    assert refused.value.code == "INVALID_SIGNATURE"


@pytest.mark.parametrize(("timestamp", "window", "named"), [
    (TS, "²", "X-Window"), (TS, "0", "X-Window"), (TS, "60001", "X-Window"), (TS, "5s", "X-Window"),
    ("1²", WINDOW, "X-Timestamp"), ("-1", WINDOW, "X-Timestamp"),
])
def test_bad_window_or_timestamp_gets_its_own_error(timestamp: str, window: str, named: str) -> None:
    """Digits int() refuses ("²" is a digit to str.isdigit) get the same clear error as any other bad value."""
    private, key, verifier = _setup()
    text = f"instruction=balanceQuery&timestamp={timestamp}&window={window}"
    with pytest.raises(ApiError) as refused:
        verifier.verify("balanceQuery", {}, key, _sign(private, text), timestamp, window)
    assert refused.value.code == "INVALID_CLIENT_REQUEST" and f"Invalid {named}" in refused.value.message


def test_default_window_applies_without_the_header() -> None:
    private, key, verifier = _setup()
    text = f"instruction=balanceQuery&timestamp={TS}&window=5000"
    assert verifier.verify("balanceQuery", {}, key, _sign(private, text), TS, None) == 7
    stale = str(NOW_MS - 5001)
    with pytest.raises(ApiError) as refused:
        verifier.verify("balanceQuery", {}, key, _sign(private, text), stale, None)
    assert "5000 ms window" in refused.value.message
