"""Exact decimal strings <-> integer atoms (engine/units.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.units import MAX_AMOUNT, DecimalError, format_units, parse_units, ratio, scale_of


@pytest.mark.parametrize(
    ("text", "scale", "expected"),
    [
        ("1.25", 2, 125),
        ("1", 6, 1_000_000),
        ("0", 6, 0),
        ("0.000001", 6, 1),
        (".5", 1, 5),
        ("100.50", 2, 10050),
        ("1.2500", 2, 125),  # trailing zeros beyond the scale are not "too long"
        ("7.000", 0, 7),
        ("0012.3", 1, 123),
    ],
)
def test_parse_units_exact(text: str, scale: int, expected: int) -> None:
    assert parse_units(text, scale) == expected


@pytest.mark.parametrize(("text", "scale"), [("1.255", 2), ("0.0000001", 6), ("1.1", 0), ("0.1230001", 6)])
def test_parse_units_refuses_decimal_too_long(text: str, scale: int) -> None:
    with pytest.raises(DecimalError, match=rf"price decimal too long: '{text}' has more than {scale} decimals"):
        parse_units(text, scale, what="price")


@pytest.mark.parametrize("text", ["", " ", "-", "--1", "+1", "1.", "1e5", "1,5", "1_000", "0x10", "nan", "1.2.3", "١٢"])
def test_parse_units_refuses_non_decimals(text: str) -> None:
    with pytest.raises(DecimalError, match="quantity is not a decimal number"):
        parse_units(text, 2, what="quantity")


@pytest.mark.parametrize("text", ["-1", "-0.5", "-.5"])
def test_parse_units_says_a_negative_amount_is_negative(text: str) -> None:
    with pytest.raises(DecimalError, match=re.escape(f"amount must not be negative: '{text}'")):
        parse_units(text, 2)


@pytest.mark.parametrize("text", [" 15", "16 ", "\t16", "16\n", "  42.1 ", " -2 ", "\u00a01"])
def test_parse_units_refuses_whitespace_around_the_number(text: str) -> None:
    # Regression: the text was stripped, so " 15" and "16\n" placed orders over REST
    with pytest.raises(DecimalError, match=re.escape(f"price must not have whitespace around it: {text!r}")):
        parse_units(text, 2, what="price")
    with pytest.raises(DecimalError, match="must not have whitespace around it"):
        ratio(text, what="band")


@pytest.mark.parametrize(("value", "type_name"), [(1, "int"), (1.5, "float"), (None, "NoneType"), (b"1", "bytes")])
def test_parse_units_refuses_non_strings(value: object, type_name: str) -> None:
    with pytest.raises(DecimalError, match=f"amount must be a decimal string, got {type_name}"):
        parse_units(value, 2)


def test_parse_units_caps_amounts_below_max_amount() -> None:
    assert parse_units(str(MAX_AMOUNT - 1), 0) == MAX_AMOUNT - 1
    with pytest.raises(DecimalError, match="too large"):
        parse_units(str(MAX_AMOUNT), 0)
    with pytest.raises(DecimalError, match="too large"):
        parse_units("4611686018.427387904", 9)  # exactly 2**62 atoms


def test_decimal_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="decimal too long"):
        parse_units("0.001", 2)


@pytest.mark.parametrize(
    ("value", "scale", "text"),
    [
        (125, 2, "1.25"),
        (100, 2, "1"),
        (0, 6, "0"),
        (1, 6, "0.000001"),
        (1_000_010, 6, "1.00001"),
        (5, 0, "5"),
        (-125, 2, "-1.25"),
        (-1, 9, "-0.000000001"),
        (123_456_789_000, 9, "123.456789"),
    ],
)
def test_format_units(value: int, scale: int, text: str) -> None:
    assert format_units(value, scale) == text


@given(value=st.integers(min_value=0, max_value=MAX_AMOUNT - 1), scale=st.integers(min_value=0, max_value=12))
def test_format_then_parse_round_trips(value: int, scale: int) -> None:
    assert parse_units(format_units(value, scale), scale) == value


@pytest.mark.parametrize(
    ("text", "fraction"),
    [("0.75", (75, 100)), ("1.25", (125, 100)), ("2", (2, 1)), ("1.0", (10, 10)), (".5", (5, 10)), ("0", (0, 1))],
)
def test_ratio_is_exact(text: str, fraction: tuple[int, int]) -> None:
    assert ratio(text, what="band") == fraction


@pytest.mark.parametrize("text", ["1/2", "abc", ""])
def test_ratio_refuses_non_decimals(text: str) -> None:
    with pytest.raises(DecimalError, match="band is not a decimal number"):
        ratio(text, what="band")


def test_ratio_refuses_negatives() -> None:
    with pytest.raises(DecimalError, match=r"band must not be negative: '-0\.5'"):
        ratio("-0.5", what="band")


@pytest.mark.parametrize(("text", "scale"), [("0.010", 2), ("1", 0), ("1.000", 0), ("0.00001", 5), (".5", 1)])
def test_scale_of(text: str, scale: int) -> None:
    assert scale_of(text, what="tick") == scale


def test_scale_of_refuses_non_decimals() -> None:
    with pytest.raises(DecimalError, match="tick is not a decimal number: '1e-2'"):
        scale_of("1e-2", what="tick")


def test_parse_units_huge_whole_part_is_a_decimal_error() -> None:
    with pytest.raises(DecimalError, match="too long"):
        parse_units("1" * 5000, 2)
