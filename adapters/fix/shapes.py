"""Compiled message shapes: decode and validate a familiar message with one regular-expression match.

A client sends the same few shapes (tag sequences) over and over: every
NewOrderSingle of a session carries the same tags in the same order. Once a
shape has been validated field by field twice (``codec.decode`` then
``dictionary.validate``), it is compiled into one regular expression over the
whole frame: the tags are literals, each value is the pattern of exactly the
values validation accepts for its tag (data format and enumeration,
``dictionary.value_pattern``), BeginString and MsgType are literals. A frame it
matches, with a BodyLength and CheckSum that agree, is exactly what
``decode`` + ``validate`` would have returned, in one C-level pass instead of a
Python step per field. Anything it does not match takes the general path,
which explains rejects and garbling; so the shape cache only ever skips work,
never changes an answer.

The pattern is tried where a frame starts in a read (``match_at``, used by
``Connection``): a match is also the frame the framer would have cut there, so
a familiar message is cut, decoded and validated by that one pass.

Left to the general path: shapes with repeating groups or raw data fields,
values holding '=', and any shape validation does not decide by plan.

Bounds: ``MAX_COMPILED`` shapes process-wide (the cache starts over when
full), ``MAX_RECENT`` tried per session, most recently matched first; a shape
is compiled only on its second sighting, so one-off messages cost no compile.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final
from zlib import adler32

from adapters.fix.codec import BEGIN_STRING, MAX_MESSAGE_BYTES, TRAILERS, Message, checksum
from adapters.fix.dictionary import Validated, shape_validates, value_pattern

MAX_COMPILED: Final = 1024
MAX_RECENT: Final = 8
TRAILER_BYTES: Final = 7  # "10=NNN" SOH
FRAMING_BYTES: Final = 20  # "8=FIX.4.4" SOH "9=" SOH and the trailer: a frame is these, BodyLength's digits and its body
# CheckSum text -> the byte sum (mod 256) of a whole frame that ends with it and is right: the sum of what CheckSum
# covers (its value) plus the trailer's own bytes. So a frame is summed in one call, without slicing its trailer off.
FRAME_SUMS: Final = {f"{n:03d}": (n + sum(TRAILERS[n])) & 0xFF for n in range(256)}


class Shape:
    """One compiled shape: the frame pattern, its tag numbers, its index builder and where the body starts."""

    __slots__ = ("body_start", "index", "match", "msg_type", "numbers", "shape")

    def __init__(self, message: Message, pattern: str, body_start: int) -> None:
        self.match = re.compile(pattern).match  # at a position of a read: it ends at the SOH after the CheckSum
        self.numbers = tuple(tag for tag, _ in message.fields)
        self.index = index_builder(self.numbers)
        self.shape = message.shape
        self.msg_type = message.msg_type
        self.body_start = body_start


def index_builder(numbers: tuple[int, ...]) -> Callable[..., dict[int, str]]:
    """A function of the match's groups returning ``dict(zip(numbers, groups))``, written for this shape.

    A dict display with constant keys is built in one step from the values,
    where ``dict(zip(...))`` makes and unpacks a tuple per field: the index is
    made for every matched message, and this costs ~40% less. The source holds
    only the shape's tag numbers (ints parsed by the codec) and argument names.
    """
    arguments = ", ".join(f"v{i}" for i in range(len(numbers)))
    entries = ", ".join(f"{int(tag)}: v{i}" for i, tag in enumerate(numbers))
    built: Callable[..., dict[int, str]] = eval(f"lambda {arguments}: {{{entries}}}")  # the source holds ints only
    return built


_COMPILED: dict[tuple[str, str], Shape | None] = {}  # (MsgType, shape) -> compiled, None: cannot be compiled
_SIGHTED: dict[tuple[str, str], None] = {}  # shapes seen once (compiled on the second sighting)


def compile_shape(message: Message, parts: Validated) -> Shape | None:
    """The compiled form of a validated message's shape, or None when it must keep the general path."""
    if message.shape is None or message.get(8) != BEGIN_STRING or not shape_validates(message):
        return None
    fields = message.fields
    last = len(fields) - 1
    pieces = [r"8=(FIX\.4\.4)" "\x01" r"9=([0-9]+)" "\x01" f"35=({re.escape(message.msg_type)})\x01"]
    for tag, _value in fields[3:last]:
        pattern = value_pattern(tag)
        if pattern is None:
            return None
        pieces.append(f"{tag}=({pattern})\x01")
    pieces.append(r"10=([0-9]{3})" "\x01")
    return Shape(message, "".join(pieces), 3 + len(parts.header))


class ShapeCache:
    """A session's recently matched shapes, tried in order on each incoming frame."""

    __slots__ = ("recent",)

    def __init__(self) -> None:
        self.recent: list[Shape] = []

    def decode(self, frame: bytes) -> tuple[Message, Validated] | None:
        """``(decode(frame), validate(...))`` when a known shape matches the whole frame and both agree; else None."""
        if not self.recent:
            return None
        known = self.match_at(frame, frame.decode("latin-1"), 0)
        if known is None or len(known[0].raw) != len(frame):  # or a match that ends inside the frame
            return None
        return known

    def match_at(self, data: bytes, text: str, pos: int) -> tuple[Message, Validated] | None:
        """The frame that starts at ``pos`` in ``data`` (``text`` is ``data`` as latin-1), decoded and validated,
        when a known shape matches it and its BodyLength and CheckSum agree; else None.

        A match is the frame ``Framer.next_frame`` cuts at ``pos`` (it starts with ``8=FIX.4.4`` SOH ``9=``, ends
        where its BodyLength, at most MAX_MESSAGE_BYTES, says), so the next frame starts ``len(message.raw)`` on.
        """
        recent = self.recent
        for shape in recent:
            found = shape.match(text, pos)
            if found is not None:
                break
        else:
            return None
        values = found.groups()
        end = found.end()
        body_length = end - pos - FRAMING_BYTES - len(values[1])
        if body_length > MAX_MESSAGE_BYTES or str(body_length) != values[1]:
            return None  # BodyLength disagrees: garbled, which the general path reports
        raw = data[pos:end]
        if end - pos <= 256:  # Adler-32 is (high half << 16) + 1 + the byte sum while that stays below 65521
            if (adler32(raw) - 1) & 0xFF != FRAME_SUMS.get(values[-1]):
                return None
        elif checksum(raw[:-TRAILER_BYTES]) != int(values[-1]):
            return None
        if shape is not recent[0]:
            recent.remove(shape)
            recent.insert(0, shape)
        message = Message.shaped(shape.index(*values), shape.numbers, values, raw, shape.shape, shape.msg_type)
        return message, Validated.of_shape(message, shape.body_start)

    def learn(self, message: Message, parts: Validated) -> None:
        """A message the general path validated: remember its shape (compiled on the second sighting)."""
        shape_text = message.shape
        if shape_text is None:
            return
        key = (message.msg_type, shape_text)
        try:
            shape = _COMPILED[key]
        except KeyError:
            if key not in _SIGHTED:
                if len(_SIGHTED) >= MAX_COMPILED:
                    _SIGHTED.clear()
                _SIGHTED[key] = None
                return
            if len(_COMPILED) >= MAX_COMPILED:
                _COMPILED.clear()
            shape = _COMPILED[key] = compile_shape(message, parts)
        if shape is None or shape in self.recent:
            return
        self.recent.insert(0, shape)
        del self.recent[MAX_RECENT:]
