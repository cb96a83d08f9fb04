"""Journals the codec must keep reading: records already on disk keep their meaning.

The codec's own round trips and refusals are in test_venue.py; here whole journals
go through recovery and ``verify``, including one written by the engine before the
codec was rewritten (checked in with its venue key).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs
import orjson
import pytest

from engine.audit import is_control, read_genesis, verify_journal
from engine.codec import CodecError, decode_events, decode_rows, encode_events, row_event
from engine.config import DEFAULT, Config, parse_config
from engine.journal import read_records
from engine.messages import Deposited, Event, Fill, OrderCancelled, OrderPlaced, Withdrawn
from engine.runtime import Engine
from tests.engine.helpers import NOW_US, SOL_USDC
from tests.engine.test_venue import session

# Written by the engine before the generated codec (accounts, trades, clean shutdown),
# so it ends in a checkpoint that signs this state hash.
OLD_JOURNAL = Path(__file__).parent / "data" / "journal-old-engine"
OLD_JOURNAL_STATE = "cdef27def4996a182b36b406abbaa552728a0dfba1b6d1e1a70fc6d825621908"


def recover(config: Config, directory: Path) -> Engine:
    """Start-up recovery (the daemon's own code), then release the journal."""
    engine = Engine(config, directory)
    writer = engine._recover()
    writer.close()
    os.close(engine._lock_fd)
    return engine


def old_journal(tmp_path: Path) -> tuple[Path, Config]:
    directory = tmp_path / "journal"
    shutil.copytree(OLD_JOURNAL, directory)
    (directory / "venue.key").chmod(0o600)  # git keeps no file modes; the engine refuses a shared key
    return directory, parse_config(read_genesis(directory)["config"])


def test_the_old_journal_re_encodes_to_the_bytes_on_disk(tmp_path: Path) -> None:
    directory, _ = old_journal(tmp_path)
    payloads = [r.payload for r in read_records(directory, repair=False) if not is_control(r.payload)]
    assert payloads
    for payload in payloads:
        assert encode_events(decode_events(payload)) == payload


def test_the_old_journal_verifies_to_its_signed_state(tmp_path: Path) -> None:
    directory, _ = old_journal(tmp_path)
    report = verify_journal(directory, progress=False)
    # verify compares the replayed state with the state hash the shutdown checkpoint signed
    assert report["state_hash"] == OLD_JOURNAL_STATE and report["claims_checked"] >= 1


def test_the_old_journal_recovers_and_takes_new_records(tmp_path: Path) -> None:
    directory, config = old_journal(tmp_path)
    engine = Engine(config, directory)
    writer = engine._recover()
    assert engine.venue.state_hash() == OLD_JOURNAL_STATE
    assert 3 in engine.venue.markets[SOL_USDC].book.orders  # account 2's ask still rests
    cancelled = OrderCancelled(3, 2, SOL_USDC, NOW_US)
    engine.venue.apply(cancelled)
    writer.append([encode_events([cancelled])])
    writer.close()
    os.close(engine._lock_fd)
    assert recover(config, directory).venue.state_hash() == engine.venue.state_hash() != OLD_JOURNAL_STATE


def test_format_2_withdrawn_rows_read_with_withdrawal_id_0() -> None:
    """Format 3 added ``Withdrawn.withdrawal_id``; a journal begun in format 2 still replays."""
    payload = orjson.dumps([["Deposited", 2, "SOL", 5, NOW_US], ["Withdrawn", 2, "SOL", 3, NOW_US]])
    expected = [Deposited(2, "SOL", 5, NOW_US), Withdrawn(0, 2, "SOL", 3, NOW_US)]
    assert decode_events(payload) == expected
    assert [row_event(row) for row in decode_rows(payload)] == expected
    current = encode_events([Withdrawn(7, 2, "SOL", 3, NOW_US)])
    assert decode_events(current) == [Withdrawn(7, 2, "SOL", 3, NOW_US)]
    with pytest.raises(CodecError, match="Withdrawn"):  # any other arity is still malformed
        decode_events(orjson.dumps([["Withdrawn", 2, "SOL", NOW_US]]))


def test_every_event_type_recovers_to_the_state_it_was_applied_to(tmp_path: Path) -> None:
    venue, log, _ = session()
    config = parse_config(DEFAULT)
    directory = tmp_path / "journal"
    engine = Engine(config, directory)
    writer = engine._recover()  # genesis, as the daemon writes it
    writer.append([encode_events(log[i:i + 4]) for i in range(0, len(log), 4)])
    writer.close()
    os.close(engine._lock_fd)
    assert recover(config, directory).venue.state_hash() == venue.state_hash()
    assert verify_journal(directory, progress=False)["state_hash"] == venue.state_hash()


def reference_payload(events: list[Event]) -> bytes:
    """The positional form written out by hand, field by field from attrs: what the codec must produce."""
    rows = []
    for e in events:
        row: list[object] = [type(e).TAG]  # type: ignore[attr-defined]
        for f in attrs.fields(type(e)):
            value = getattr(e, f.name)
            if f.name == "fills":
                value = [[getattr(fill, g.name) for g in attrs.fields(Fill)] for fill in value]
            row.append(value)
        rows.append(row)
    return orjson.dumps(rows)


def test_the_generated_encoder_writes_the_reference_positional_bytes() -> None:
    _, log, _ = session()
    assert any(isinstance(e, OrderPlaced) and e.fills for e in log)
    assert encode_events(log) == reference_payload(log)
    for i in range(len(log)):  # every event alone and in every position of a batch
        assert encode_events(log[i:i + 1]) == reference_payload(log[i:i + 1])
        assert encode_events(log[i:] + log[:i]) == reference_payload(log[i:] + log[:i])
