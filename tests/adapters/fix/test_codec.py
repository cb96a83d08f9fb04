"""Codec, dictionary and store: the sans-IO pieces, driven directly."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.fix import store as store_module
from adapters.fix.cl_ord_ids import ClOrdIds
from adapters.fix.codec import (
    Framer,
    Garbled,
    Message,
    checksum,
    decode,
    frame_message,
    frame_text,
    split_fields,
    split_shaped,
)
from adapters.fix.dictionary import SessionReject, validate
from adapters.fix.gen_dictionary import OUTPUT, default_source, parse_extract, render
from adapters.fix.mapped_log import MappedLog
from adapters.fix.store import FileStore, MemoryStore


def test_generated_dictionary_matches_the_reference_extract() -> None:
    text = default_source().read_text(encoding="utf-8")
    assert OUTPUT.read_text(encoding="utf-8") == render(parse_extract(text)), "re-run python -m adapters.fix.gen_dictionary"



def test_torn_store_tail_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    store = FileStore(path)
    raw = frame_message("D", [(34, "1")], b"11=a\x01")
    store.record_sent(1, raw)
    store.next_target = 5
    store.close()
    with open(path, "ab") as handle:
        handle.write(b"S 2 999\n8=FIX")
    again = FileStore(path)
    assert (again.next_sender, again.next_target, again.get(1)) == (2, 5, raw)
    again.close()


def test_store_keeps_the_newest_messages_and_drops_the_oldest_in_constant_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the bound each send drops the oldest message; a resend of those is a gap fill (``get`` None)."""
    monkeypatch.setattr(store_module, "MAX_STORED", 50)
    store = FileStore(tmp_path / "s.log")
    for seq in range(1, 1001):
        store.record_sent(seq, b"m%d" % seq if seq % 3 else None)
    kept = [seq for seq in range(1, 1001) if store.get(seq) is not None]
    assert kept == [seq for seq in range(1, 1001) if seq % 3][-50:]
    assert store.next_sender == 1001
    store.close()
    again = FileStore(tmp_path / "s.log")  # the log holds them all; the reload keeps the same newest 50
    assert [seq for seq in range(1, 1001) if again.get(seq) is not None] == kept
    again.close()


def test_store_drops_the_oldest_across_a_long_gap_in_sequence_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "MAX_STORED", 3)
    store = MemoryStore()
    for seq in (1, 2, 3, 500, 501, 502, 503):  # 4 -> 499: not stored (a SequenceReset of ours skipped them)
        store.record_sent(seq, b"m%d" % seq)
    assert store.stored_between(1, 1000) == [501, 502, 503]
    store.reset()
    for seq in (1, 2, 3, 4):
        store.record_sent(seq, b"m%d" % seq)
    assert store.stored_between(1, 1000) == [2, 3, 4]


def test_session_files_are_readable_by_their_owner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every order and report of a session is in them: 0600 like the journal, when made, compacted or inherited."""
    monkeypatch.setattr(store_module, "COMPACT_RECORDS", 5)
    store = FileStore(tmp_path / "s.log")
    for seq in range(1, 20):  # compacts on the way
        store.record_sent(seq, b"m%d" % seq)
    store.close()
    ids = ClOrdIds(tmp_path / "clordids.log")  # compacts at start
    ids.close()
    older = tmp_path / "older.log"  # a log an older version made 0644
    older.write_bytes(b"")
    older.chmod(0o644)
    FileStore(older).close()
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        "s.log": "0o600", "clordids.log": "0o600", "older.log": "0o600"}


def test_framer_swallows_the_next_message_after_an_overlong_body_length() -> None:
    framer = Framer()
    first = b"8=FIX.4.4\x019=40\x0135=0\x0134=2\x0110=000\x01"
    second = frame_message("0", [(34, "3")], b"")
    framer.feed(first + second)
    frames = list(framer.frames())
    assert len(frames) == 1 and frames[0] == first + second


def test_validator_names_the_offending_tag() -> None:
    message = decode(frame_message("D", [(34, "2"), (49, "A"), (52, "20240101-00:00:00"), (56, "B")],
                                   b"11=x\x0138=+1\x0140=2\x0154=1\x0160=20240101-00:00:00\x01"))
    with pytest.raises(SessionReject) as caught:
        validate(message)
    assert (caught.value.reason, caught.value.tag, caught.value.text) == (6, 38, "Incorrect data format for value")


@pytest.mark.parametrize("data", [
    b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01",
    b"34\x015=6=7\x01",  # a field without '=' next to one with two: never re-paired
    b"58=a=b\x0134=1\x01",  # '=' inside a value
    b"-5=x\x0134=1\x01",  # a signed tag
    b"=5\x0134=1\x01",  # an empty tag
    b"3\xb2=x\x01",  # a non-ASCII digit
    b"95=3\x0196=a\x01b\x0134=1\x01",  # raw data holding SOH
    b"34=1\x01\x01",
    b"34=1",
    b"8=FIX\x0112",  # digits after the last SOH
    b"34=1\x0134",
    b"34=\x0135=\x01",
    b"",
])
def test_shaped_split_agrees_with_the_field_by_field_split(data: bytes) -> None:
    assert_splits_agree(data)


def assert_splits_agree(data: bytes) -> None:
    """The shaped split gives what the field-by-field split gives (fields, or Garbled), twice:
    the second time the shape is known."""
    for _ in range(2):
        try:
            expected: object = split_fields(data)
        except Garbled:
            expected = Garbled
        try:
            got: object = split_shaped(data)[0]
        except Garbled:
            got = Garbled
        assert got == expected


def test_validation_by_shape_still_checks_every_value() -> None:
    def new_order(seq: int, qty: str, clordid: str) -> bytes:
        return frame_message("D", [(34, str(seq)), (49, "A"), (52, "20240101-00:00:00"), (56, "B")],
                             f"11={clordid}\x0138={qty}\x0140=2\x0144=1\x0154=1\x0155=X\x0160=20240101-00:00:00\x01".encode())
    parts = validate(decode(new_order(2, "1", "a")))
    assert [tag for tag, _ in parts.header] == [34, 49, 52, 56] and [tag for tag, _ in parts.body][:2] == [11, 38]
    for bad, reason, tag in (("+1", 6, 38), ("", 4, 38)):
        with pytest.raises(SessionReject) as caught:
            validate(decode(new_order(3, bad, "b")))
        assert (caught.value.reason, caught.value.tag) == (reason, tag)
    assert validate(decode(new_order(4, "2", "c"))).body[1] == (38, "2")


def test_checksum_is_the_byte_sum_mod_256_at_any_length() -> None:
    data = bytes(range(256)) * 3 + b"\xff" * 700
    for length in (0, 1, 255, 256, 257, 511, 512, 513, len(data)):
        assert checksum(data[:length]) == sum(data[:length]) % 256


def test_store_writes_the_next_target_once_per_flush_and_reloads_the_last_value(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    store = FileStore(path)
    for target in range(2, 50):
        store.next_target = target
    store.flush()
    assert path.read_bytes().count(b"T ") == 1
    store.next_target = 60
    store.reset()  # a reset drops the pending value with everything else
    store.next_target = 3
    store.close()
    again = FileStore(path)
    assert (again.next_target, again.next_sender) == (3, 1)
    again.close()


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b"8", b"34", b"95", b"96", b"3", b"=", b"\x01", b"a", b"-", b"\xb2", b"==", b""]),
                max_size=24))
def test_shaped_split_agrees_on_arbitrary_bytes(pieces: list[bytes]) -> None:
    assert_splits_agree(b"".join(pieces))


def _outcome(message: Message) -> object:
    try:
        return validate(message)
    except SessionReject as exc:
        return (exc.reason, exc.tag, exc.text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["D", "F", "0", "8", "V"]),
       st.lists(st.tuples(st.sampled_from([11, 38, 40, 44, 54, 55, 59, 60, 34, 49, 52, 56, 10, 89, 146, 7928, 999, 5000]),
                          st.sampled_from(["", "1", "2", "x", "0.5", "20240101-00:00:00", "SOL_USDC"])), max_size=12))
def test_validation_by_shape_agrees_with_validation_field_by_field(msg_type: str, body: list[tuple[int, str]]) -> None:
    header = [(34, "2"), (49, "A"), (52, "20240101-00:00:00"), (56, "B")]
    frame = frame_text(f"35={msg_type}\x01", "".join(f"{t}={v}\x01" for t, v in header + body).encode())
    for _ in range(2):
        shaped = decode(frame)
        assert shaped.shape is not None
        assert _outcome(shaped) == _outcome(Message(shaped.fields, shaped.raw))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([
    frame_message("0", [(34, "2")], b""), frame_message("D", [(34, "3")], b"11=a\x01"), b"8=FIX.4.4\x019=", b"5\x01",
    b"35=0\x01", b"\x0110=", b"123\x01", b"1234\x01", b"8=FIX.4.4\x019=70000\x01", b"8=FIX.4.4\x019=0\x01", b"x",
]), max_size=6))
def test_the_framers_quick_cut_finds_what_the_search_finds(pieces: list[bytes]) -> None:
    """A frame cut where the stream says it is (``Framer.next_frame``'s first branch) is the one the general search finds."""
    data = b"".join(pieces)
    frame, end = Framer.next_frame(data, 0)
    if frame:
        assert Framer.next_frame(b"\x01" + data, 0) == (frame, end + 1)  # a leading byte forces the general search


def test_store_records_are_in_the_file_once_flushed_without_a_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash of the process loses no record the peer may have seen: the server flushes the store before every
    write to the socket, and a flush puts the burst's records in the mapped log (past its first mapping too) in
    one write. A record not flushed yet is of a message nobody has seen; a resend reads it from memory at once."""
    writes: list[int] = []
    write = MappedLog.write
    monkeypatch.setattr(MappedLog, "write", lambda log, record: writes.append(len(record)) or write(log, record))
    path = tmp_path / "s.log"
    store = FileStore(path)
    raw = frame_message("D", [(34, "1")], b"11=a\x01" + b"x" * 300)
    store.record_sent(1, None)
    store.next_target = 7
    for seq in range(2, 5000):
        store.record_sent(seq, raw)
    assert store.get(4999) == raw and writes == []
    store.flush()
    assert len(writes) == 1
    store.record_sent(5000, raw)  # sent after the flush: not on the wire yet
    crashed = tmp_path / "crashed.log"
    crashed.write_bytes(path.read_bytes())  # the log as a crash leaves it: the mapping's zero tail included
    assert crashed.read_bytes().endswith(b"\0")
    again = FileStore(crashed)
    assert (again.next_target, again.get(1), again.get(4999)) == (7, None, raw)
    assert again.next_sender >= 5000
    again.close()
    store.close()
    assert path.read_bytes().endswith(b"S 5000 %d\n%s" % (len(raw), raw))  # close writes what is pending, trims the zeros


def test_store_compaction_keeps_what_was_not_flushed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush that compacts writes the log from memory: the records pending at that flush are in it."""
    monkeypatch.setattr(store_module, "COMPACT_RECORDS", 10)
    path = tmp_path / "s.log"
    store = FileStore(path)
    for seq in range(1, 30):
        store.record_sent(seq, b"m%d" % seq if seq % 2 else None)
    store.next_target = 4
    store.flush()
    assert store.records < 30  # compacted
    crashed = tmp_path / "crashed.log"
    crashed.write_bytes(path.read_bytes())  # the log as a crash after that flush leaves it
    again = FileStore(crashed)
    assert (again.next_sender, again.next_target, again.get(29), again.get(28)) == (30, 4, b"m29", None)
    again.close()
    store.close()
