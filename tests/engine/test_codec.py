"""The journal's binary event form (engine/codec.py) beside the positional JSON one it replaced.

Records already on disk keep their JSON payloads: replay and ``verify`` must read
them, alone or mixed with binary ones, to the same state. The JSON form's own
checks are in test_venue.py.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from engine.audit import read_genesis, verify_journal
from engine.codec import BINARY, CodecError, decode_events, encode_events, encode_events_json
from engine.config import DEFAULT, parse_config
from engine.journal import read_records
from engine.messages import BID, Event, Fill, OrderCancelled, OrderPlaced
from engine.runtime import Engine
from tests.engine.helpers import NOW_US, SOL_USDC
from tests.engine.test_venue import session

CONFIG = parse_config(DEFAULT)
# A journal written by the engine before the binary form existed (engine + trades +
# clean shutdown, so it ends in a signed checkpoint of this state hash).
JSON_JOURNAL = Path(__file__).parent / "data" / "journal-json"
JSON_JOURNAL_STATE = "cdef27def4996a182b36b406abbaa552728a0dfba1b6d1e1a70fc6d825621908"


def placed(order_id: int = 11, **changes: object) -> OrderPlaced:
    fields: dict[str, object] = {
        "order_id": order_id, "account_id": 7, "symbol": SOL_USDC, "side": BID, "order_type": "Limit",
        "tif": "IOC", "price_ticks": 10_000, "qty_steps": 150, "quote_qty": 0, "post_only": False,
        "stp": "RejectMaker", "client_id": -1, "lock": 150 * 10**6, "ts_us": NOW_US, "status": "Expired",
        "expiry_reason": "ImmediateOrCancel", "fills": [Fill(3, 10, 5, 10_000, 100, 20_000, 500_000)],
        "stp_cancelled": [9, 4],
    }
    fields.update(changes)
    return OrderPlaced(**fields)  # type: ignore[arg-type]


def test_binary_round_trips_every_event_type_canonically() -> None:
    _, log, _ = session()
    payload = encode_events(log)
    assert payload[:1] == BINARY
    assert decode_events(payload) == log
    assert encode_events(decode_events(payload)) == payload


def test_an_integer_beyond_i64_travels_as_a_json_row() -> None:
    """The JSON form held any integer orjson writes (up to u64); the binary form must too."""
    big = [placed(lock=2**64 - 1), placed(12, fills=[Fill(3, 10, 5, 10_000, 100, 2**63, 0)]),
           OrderCancelled(2**63, 7, SOL_USDC, NOW_US), placed(13)]
    payload = encode_events(big)
    assert decode_events(payload) == big
    assert encode_events(decode_events(payload)) == payload


def test_decoded_binary_orders_share_the_values_state_keeps() -> None:
    first = decode_events(encode_events([placed(1)]))[0]
    second = decode_events(encode_events([placed(2)]))[0]
    assert isinstance(first, OrderPlaced) and isinstance(second, OrderPlaced)
    for name in ("symbol", "side", "stp", "price_ticks"):
        assert getattr(first, name) is getattr(second, name), name


def _binary(names: list[str], count: int, body: bytes) -> bytes:
    table = orjson.dumps(names)
    return BINARY + struct.pack("<I", len(table)) + table + struct.pack("<I", count) + body


GOOD = encode_events([placed()])
TABLE_LEN = struct.unpack_from("<I", GOOD, 1)[0]
BODY_AT = 9 + TABLE_LEN
NAMES = orjson.loads(GOOD[5:5 + TABLE_LEN])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (BINARY, "string table cut short"),
        (BINARY + struct.pack("<I", 50) + b"[]", "string table cut short"),
        (_binary([1], 0, b""), "string table is not an array of strings"),  # type: ignore[list-item]
        (GOOD[:-1], "event cut short"),
        (GOOD[:BODY_AT + 20], "event cut short"),
        (GOOD + b"\x02", "event cut short"),
        (GOOD + b"\x07", "unknown event kind 7"),
        (_binary(NAMES, 2, GOOD[BODY_AT:]), "holds 1 events, its header says 2"),
        (_binary(NAMES[:2], 1, GOOD[BODY_AT:]), "out of range"),
        (_binary(NAMES, 1, GOOD[BODY_AT:BODY_AT + 57] + b"\x02" + GOOD[BODY_AT + 58:]), "out of range"),
        (_binary([], 1, b"\x00" + struct.pack("<I", 100) + b"[]"), "out of range"),
        (_binary([], 1, b"\x00" + struct.pack("<I", 2) + b"[x"), "an event row is not JSON"),
        (_binary([], 1, b"\x00" + struct.pack("<I", 9) + b'["Nope",1]'[:9]), "an event row is not JSON"),
        (_binary([], 1, b"\x00" + struct.pack("<I", 10) + b'["Nope",1]'), "unknown event tag 'Nope'"),
        (_binary([], 1, b"\x00" + struct.pack("<I", 18) + b'["Deposited",1,2]'.ljust(18)), "expected 4 fields"),
    ],
)
def test_decode_refuses_malformed_binary_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_events(payload)


def test_the_post_only_byte_sits_where_the_layout_says() -> None:
    """Guards the malformed-bool case above: byte 57 of an order is its post_only flag."""
    flipped = GOOD[:BODY_AT + 57] + b"\x01" + GOOD[BODY_AT + 58:]
    decoded = decode_events(flipped)[0]
    assert isinstance(decoded, OrderPlaced) and decoded.post_only is True


# --- journals: old records keep replaying -------------------------------------------------------


def write_journal(directory: Path, log: list[Event], encode: Callable[[list[Event], int], bytes]) -> None:
    """Genesis by the engine itself, then ``log`` in records of 4 events, record k encoded by ``encode(batch, k)``."""
    engine = Engine(CONFIG, directory)
    writer = engine._recover()
    try:
        writer.append([encode(log[i:i + 4], i // 4) for i in range(0, len(log), 4)])
    finally:
        writer.close()
        os.close(engine._lock_fd)


def recovered_state(directory: Path) -> str:
    engine = Engine(CONFIG, directory)
    writer = engine._recover()
    writer.close()
    os.close(engine._lock_fd)
    return engine.venue.state_hash()


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda batch, k: encode_events_json(batch), id="json"),
        pytest.param(lambda batch, k: encode_events(batch), id="binary"),
        pytest.param(lambda batch, k: encode_events_json(batch) if k % 2 else encode_events(batch), id="mixed"),
    ],
)
def test_json_binary_and_mixed_journals_recover_to_the_same_state(
    tmp_path: Path, encode: Callable[[list[Event], int], bytes],
) -> None:
    venue, log, _ = session()
    directory = tmp_path / "journal"
    write_journal(directory, log, encode)
    kinds = {r.payload[:1] for r in read_records(directory, repair=False) if r.seq > 1}
    assert kinds <= {b"[", BINARY}
    assert recovered_state(directory) == venue.state_hash()
    assert verify_journal(directory, progress=False)["state_hash"] == venue.state_hash()


def test_a_journal_written_before_the_binary_form_verifies_to_its_signed_state(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    shutil.copytree(JSON_JOURNAL, directory)
    assert all(r.payload[:1] in (b"[", b"{") for r in read_records(directory, repair=False))
    report = verify_journal(directory, progress=False)
    # verify compares the replayed state with the state hash the shutdown checkpoint signed
    assert report["state_hash"] == JSON_JOURNAL_STATE and report["claims_checked"] >= 1
    assert read_genesis(directory)["format"] == 2


def test_a_journal_written_before_the_binary_form_recovers_and_continues_in_binary(tmp_path: Path) -> None:
    """Start-up on the old journal (its own config and key), then new records in the binary form."""
    directory = tmp_path / "journal"
    shutil.copytree(JSON_JOURNAL, directory)
    (directory / "venue.key").chmod(0o600)
    config = parse_config(read_genesis(directory)["config"])
    engine = Engine(config, directory)
    writer = engine._recover()
    assert engine.venue.state_hash() == JSON_JOURNAL_STATE
    extra = OrderCancelled(3, 2, SOL_USDC, NOW_US)  # order 3 (account 2's ask) still rests
    assert 3 in engine.venue.markets[SOL_USDC].book.orders
    engine.venue.apply(extra)
    writer.append([encode_events([extra])])
    writer.close()
    os.close(engine._lock_fd)
    again = Engine(config, directory)
    writer = again._recover()
    writer.close()
    os.close(again._lock_fd)
    assert again.venue.state_hash() == engine.venue.state_hash() != JSON_JOURNAL_STATE
