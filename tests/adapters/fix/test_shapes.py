"""Compiled shapes decode and validate exactly as the field-by-field path does, or step aside."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.fix.codec import Garbled, decode, frame_text
from adapters.fix.dictionary import _CHECKS, ENUM_VALUES, SessionReject, validate, value_pattern
from adapters.fix.shapes import ShapeCache

SAMPLES = ["1", "2", "0", "-3", "1.5", ".5", "5.", "+1", "Y", "N", "YN", "6", "6 6", "6  6", "1 6", "A", "a", "AB",
           "20240101-00:00:00", "20240101-00:00:00.123", "20240101-00:00:00.", "20240101", "202401", "20240101w1",
           "12:00:00", "12:00:00.5", "x y", " ", "1 ", "FUT", "CS", "?", "D", "0.02", "SOL_USDC"]


def test_value_patterns_accept_exactly_what_validation_accepts() -> None:
    for tag, check in _CHECKS.items():
        pattern = value_pattern(tag)
        if pattern is None:
            continue
        matcher = re.compile(pattern).fullmatch
        for value in [*SAMPLES, *ENUM_VALUES.get(tag, ())]:
            if "\x01" in value or "=" in value:
                continue
            assert (matcher(value) is not None) == (check(value) == 0), (tag, value)


def _general(frame: bytes) -> object:
    try:
        message = decode(frame)
    except Garbled:
        return Garbled
    try:
        parts = validate(message)
    except SessionReject as exc:
        return (exc.reason, exc.tag)
    return message.fields, parts.header, parts.body


def _frame(msg_type: str, body: list[tuple[int, str]], *, seq: str = "2") -> bytes:
    header = [(34, seq), (49, "A"), (52, "20240101-00:00:00"), (56, "B")]
    return frame_text(f"35={msg_type}\x01", "".join(f"{t}={v}\x01" for t, v in header + body).encode("latin-1"))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["D", "F", "0", "8", "V"]),
       st.lists(st.tuples(st.sampled_from([11, 38, 40, 44, 54, 55, 59, 60, 18, 10, 146, 7928, 999, 5000]),
                          st.sampled_from(["1", "2", "x", "0.5", "20240101-00:00:00", "6 1"])), max_size=10),
       st.lists(st.sampled_from(["", "1", "2", "x", "+1", "0.5", "a=b", "20240101-00:00:00", "6 1", "\xb2"]),
                min_size=12, max_size=12),
       st.sampled_from(["2", "x", "-1", ""]), st.booleans())
def test_a_compiled_shape_agrees_with_decode_and_validate(
    msg_type: str, body: list[tuple[int, str]], values: list[str], seq: str, corrupt: bool,
) -> None:
    """Learn a shape from a valid message, then feed the same shape with other values (and bad checksums)."""
    cache = ShapeCache()
    first = _frame(msg_type, body)
    for _ in range(2):
        outcome = _general(first)
        if isinstance(outcome, tuple) and len(outcome) == 3:
            message = decode(first)
            cache.learn(message, validate(message))
    other_body = [(tag, values[i]) for i, (tag, _) in enumerate(body)]
    other = _frame(msg_type, other_body, seq=seq)
    if corrupt:
        other = other[:-4] + b"%03d\x01" % ((int(other[-4:-1]) + 1) % 256)
    for frame in (first, other):
        known = cache.decode(frame)
        if known is not None:
            message, parts = known
            assert (message.fields, parts.header, parts.body) == _general(frame)
            assert message.raw == frame and message.shape == decode(frame).shape


def test_a_familiar_new_order_is_matched_by_its_shape() -> None:
    cache = ShapeCache()
    body = [(11, "c1"), (38, "0.02"), (40, "2"), (44, "110"), (54, "2"), (55, "SOL_USDC"), (59, "1"),
            (60, "20240101-00:00:00")]
    for _ in range(2):
        message = decode(_frame("D", body))
        cache.learn(message, validate(message))
    known = cache.decode(_frame("D", [(11, "c2"), *body[1:]], seq="3"))
    assert known is not None and known[0].get(11) == "c2" and known[0].seq_num() == 3
    assert cache.decode(_frame("D", [(11, "c3"), (38, "+1"), *body[2:]], seq="4")) is None  # bad format: general path
    assert cache.decode(_frame("D", [(11, "c3"), *body[1:4], (54, "Z"), *body[5:]], seq="4")) is None  # bad enum


GOOD_ORDER = [(11, "c1"), (38, "0.02"), (40, "2"), (44, "110"), (54, "2"), (55, "SOL_USDC"), (59, "1"),
              (60, "20240101-00:00:00"), (18, "6"), (7928, "1")]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=8, max_value=len(GOOD_ORDER)),
       st.dictionaries(st.integers(min_value=0, max_value=len(GOOD_ORDER) - 1), st.sampled_from([
           "", "1", "2", "3", "6", "x", "+1", "-1", "0.5", ".5", "a=b", "6 1", "6  1", "\xb2", "Z", "20240101-00:00:00.5",
           "20241301-00:00:00"]), max_size=2),
       st.sampled_from(["2", "x", "-1", "", "02"]), st.booleans())
def test_new_orders_of_a_known_shape_agree_with_decode_and_validate(
    size: int, values: dict[int, str], seq: str, corrupt: bool,
) -> None:
    """A field or two take another value, good or bad; some checksums are wrong."""
    cache = ShapeCache()
    body = GOOD_ORDER[:size]
    for _ in range(2):
        message = decode(_frame("D", body))
        cache.learn(message, validate(message))
    assert cache.recent
    other = _frame("D", [(tag, values.get(i, value)) for i, (tag, value) in enumerate(body)], seq=seq)
    if corrupt:
        other = other[:-4] + b"%03d\x01" % ((int(other[-4:-1]) + 1) % 256)
    known = cache.decode(other)
    if known is not None:
        assert (known[0].fields, known[1].header, known[1].body) == _general(other)


def test_a_long_frame_is_checksummed_in_full() -> None:
    cache = ShapeCache()
    body = list(GOOD_ORDER[:8])
    body[5] = (55, "S" * 400)
    for _ in range(2):
        message = decode(_frame("D", body))
        cache.learn(message, validate(message))
    good = _frame("D", body, seq="3")
    assert cache.decode(good) is not None
    assert cache.decode(good[:-4] + b"%03d\x01" % ((int(good[-4:-1]) + 1) % 256)) is None
