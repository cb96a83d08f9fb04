"""Exact decimal strings <-> integer atomic units.

Money never passes through float. A decimal string is parsed against a fixed
scale (number of decimals); more decimals than the scale allows is an error the
user sees ("decimal too long"), never a silent rounding.
"""

from __future__ import annotations

import re
from typing import Final

_DECIMAL: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?|\.([0-9]+)")

#: Longer input is refused before it is parsed (int() of huge digit strings is slow and capped).
MAX_DECIMAL_CHARS: Final = 64

#: orjson carries 64-bit integers; every journaled amount stays below this.
MAX_AMOUNT: Final = 2**62


_INTEGER: Final = re.compile(r"-?[0-9]{1,19}")


def is_integer_text(text: str) -> bool:
    """ASCII digits, after at most one minus sign, 19 of them at most: a wire integer ``int()`` may read.

    Not ``str.isdigit``: it passes superscripts ("\u00b2"), which ``int`` refuses, and
    full-width digits, which ``int`` silently reads as ASCII ones.
    """
    return _INTEGER.fullmatch(text) is not None


class DecimalError(ValueError):
    """A decimal string that cannot be represented exactly at the requested scale."""


def _match(text: str, what: str) -> re.Match[str]:
    """The parts of a non-negative decimal string, or an error that says what is wrong with it.

    Strict, as a wire field must be: whitespace around the number is refused, not
    stripped (the config and the CLI strip what a person typed before they parse).
    """
    if len(text) > MAX_DECIMAL_CHARS:
        raise DecimalError(f"{what} is too long ({len(text)} characters)")
    m = _DECIMAL.fullmatch(text)
    if m is None:
        stripped = text.strip()
        if stripped != text and _DECIMAL.fullmatch(stripped.removeprefix("-")):
            raise DecimalError(f"{what} must not have whitespace around it: {text!r}")
        if text.startswith("-") and _DECIMAL.fullmatch(text[1:]):
            raise DecimalError(f"{what} must not be negative: {text!r}")
        raise DecimalError(f"{what} is not a decimal number: {text!r}")
    return m


def parse_units(text: object, scale: int, *, what: str = "amount") -> int:
    """Parse a non-negative decimal string into an integer count of 10**-scale units.

    >>> parse_units("1.25", 2)
    125
    """
    if not isinstance(text, str):
        raise DecimalError(f"{what} must be a decimal string, got {type(text).__name__}")
    m = _match(text, what)
    whole, frac = (m.group(1) or "0"), (m.group(2) or m.group(3) or "")
    frac = frac.rstrip("0")
    if len(frac) > scale:
        raise DecimalError(f"{what} decimal too long: {text!r} has more than {scale} decimals")
    value: int = int(whole) * 10**scale + (int(frac) * 10 ** (scale - len(frac)) if frac else 0)
    if value >= MAX_AMOUNT:
        raise DecimalError(f"{what} too large: {text!r}")
    return value


def format_units(value: int, scale: int) -> str:
    """Format an integer count of 10**-scale units as a plain decimal string.

    >>> format_units(125, 2)
    '1.25'
    >>> format_units(100, 2)
    '1'
    """
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**scale)
    if scale == 0 or frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{str(frac).rjust(scale, '0').rstrip('0')}"


def ratio(text: str, *, what: str) -> tuple[int, int]:
    """A non-negative decimal string as an exact fraction (numerator, denominator)."""
    m = _match(text, what)
    frac = m.group(2) or m.group(3) or ""
    den = 10 ** len(frac)
    return int(m.group(1) or "0") * den + (int(frac) if frac else 0), den


def scale_of(text: str, *, what: str) -> int:
    """Number of decimals needed to write a decimal string exactly ("0.010" -> 2)."""
    m = _match(text, what)
    return len((m.group(2) or m.group(3) or "").rstrip("0"))
