"""Codec, dictionary and store: the sans-IO pieces, driven directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.fix.codec import Framer, decode, frame_message
from adapters.fix.dictionary import SessionReject, validate
from adapters.fix.gen_dictionary import OUTPUT, default_source, parse_extract, render
from adapters.fix.store import FileStore


def test_generated_dictionary_matches_the_reference_extract() -> None:
    text = default_source().read_text(encoding="utf-8")
    assert OUTPUT.read_text(encoding="utf-8") == render(parse_extract(text)), "re-run python -m adapters.fix.gen_dictionary"



def test_torn_store_tail_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    store = FileStore(path)
    raw = frame_message("D", [(34, "1")], b"11=a\x01")
    store.record_sent(1, raw)
    store.set_next_target(5)
    store.close()
    with open(path, "ab") as handle:
        handle.write(b"S 2 999\n8=FIX")
    again = FileStore(path)
    assert (again.next_sender, again.next_target, again.get(1)) == (2, 5, raw)
    again.close()


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
