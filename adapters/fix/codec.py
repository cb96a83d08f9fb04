"""FIX tag=value framing, decoding and encoding (sans-IO, bytes in, bytes out).

Framing follows QuickFIX's reader so the acceptance suite sees the same
behaviour: find ``8=``, read ``9=N``, skip N bytes, then search forward for
``SOH 10=`` and the SOH after it. A BodyLength that is too long therefore
swallows the next message; both are then dropped as garbled. Garbled frames
(bad length, bad checksum, first three tags not 8/9/35, a tag that is not an
integer) are reported as ``Garbled`` and never consume a sequence number.

Values are ``str`` decoded as latin-1 (one byte, one character), so any byte
sequence round-trips and nothing here can raise on hostile input except the
documented ``Garbled``.

Bounds: a frame is at most ``MAX_MESSAGE_BYTES``; a buffer that grows past that
without yielding a message is reported as ``Overflow`` (the caller disconnects).
"""

from __future__ import annotations

import calendar
import datetime
import time
import zlib
from collections.abc import Iterable, Iterator, KeysView, Sequence
from typing import Final, Protocol, Union, overload

SOH: Final = b"\x01"
BEGIN_STRING: Final = "FIX.4.4"
MAX_MESSAGE_BYTES: Final = 64 * 1024

# Tags whose value is raw data whose length is carried by the preceding tag;
# such values may contain SOH.
DATA_LENGTH_TAGS: Final[dict[int, int]] = {
    90: 91, 93: 89, 95: 96, 212: 213, 348: 349, 350: 351, 352: 353, 354: 355, 356: 357,
    358: 359, 360: 361, 362: 363, 364: 365, 445: 446, 618: 619, 621: 622,
}

GroupValue = list[list[tuple[int, "FieldValue"]]]
FieldValue = Union[str, GroupValue]  # noqa: UP007 - recursive alias needs Union at runtime
Field = tuple[int, FieldValue]


class Garbled(Exception):
    """A frame that is not a well-formed FIX message; the text says why."""


class Overflow(Exception):
    """The peer sent more than MAX_MESSAGE_BYTES without a complete message."""


class _Lookup(Protocol):
    @overload
    def __call__(self, tag: int, /) -> str | None: ...

    @overload
    def __call__(self, tag: int, default: str, /) -> str: ...


class Message:
    """A decoded message: fields in wire order plus a first-occurrence index.

    ``fields`` includes 8, 9, 35 and 10. Repeated tags are kept (validation
    decides whether they are legal).
    """

    __slots__ = ("_fields", "_index", "_split", "get", "msg_type", "raw", "shape")

    def __init__(self, fields: list[tuple[int, str]], raw: bytes = b"", shape: str | None = None) -> None:
        self._fields: list[tuple[int, str]] | None = fields
        self._split: tuple[tuple[int, ...], tuple[str, ...]] = ((), ())
        self.raw = raw
        self.shape = shape  # the tag sequence (``split_shaped``), so a validator can remember its verdict per shape
        index = dict(fields)
        if len(index) != len(fields):  # a repeated tag: the first occurrence is the one that counts
            index = {}
            for tag, value in fields:
                if tag not in index:
                    index[tag] = value
        self._index = index
        # ``get(tag, default=None)``: the index's own lookup, no Python frame per call (a dozen per order)
        self.get: _Lookup = index.get
        self.msg_type: str = index.get(35, "")

    @classmethod
    def shaped(cls, index: dict[int, str], numbers: tuple[int, ...], values: tuple[str, ...], raw: bytes,
               shape: str | None, msg_type: str) -> Message:
        """A message a compiled shape matched (``shapes.py``): ``index`` maps its tags (unique by construction) to ``values``.

        Only the index is kept; the field list waits until something asks for it
        (a NewOrderSingle is read by tag only), one list of tuples fewer per order.
        """
        self = cls.__new__(cls)
        self._index = index
        self.get = index.get
        self.msg_type = msg_type
        self.raw = raw
        self.shape = shape
        self._fields = None
        self._split = (numbers, values)
        return self

    @property
    def fields(self) -> list[tuple[int, str]]:
        """Every field in wire order (8, 9, 35 and 10 included)."""
        fields = self._fields
        if fields is None:
            numbers, values = self._split
            fields = self._fields = list(zip(numbers, values))  # noqa: B905 - one value per tag by construction
        return fields

    def has(self, tag: int) -> bool:
        return tag in self._index

    def tags(self) -> KeysView[int]:
        """Every tag present (first occurrences)."""
        return self._index.keys()

    def seq_num(self) -> int:
        """MsgSeqNum, or 0 when absent or unparsable (validation reports those)."""
        value = self._index.get(34, "")
        return int(value) if value.isdigit() and value.isascii() else 0

    def __repr__(self) -> str:
        return "Message(" + "|".join(f"{t}={v}" for t, v in self.fields) + ")"


def is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts characters ``int()`` refuses (such as superscripts)."""
    return text.isascii() and text.isdigit()


def checksum(data: bytes | memoryview) -> int:
    """The FIX CheckSum: the byte sum mod 256.

    Summed in C through Adler-32: for at most 256 bytes its low half is
    exactly ``1 + sum(bytes)`` (the sum stays below the modulus 65521), so
    each 256-byte chunk costs one zlib call instead of a Python-level pass.
    """
    if len(data) <= _ADLER_CHUNK:  # most messages: one call
        return ((zlib.adler32(data) & 0xFFFF) - 1) & 0xFF
    view = memoryview(data)
    total = 0
    for start in range(0, len(data), _ADLER_CHUNK):
        total += (zlib.adler32(view[start:start + _ADLER_CHUNK]) & 0xFFFF) - 1
    return total & 0xFF


_ADLER_CHUNK: Final = 256


class Framer:
    """Cuts a byte stream into candidate frames (QuickFIX ``Parser::readFixMessage``).

    The unread bytes are kept as one ``bytes`` object: a read that holds
    whole messages (the usual case) is cut in place, with one copy per frame
    and none for the buffer.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else bytes(data)

    def frames(self) -> Iterator[bytes]:
        """Yield every complete frame now in the buffer; raise Overflow on runaway input.

        The buffer is consumed before the first frame is yielded, so frames
        not taken when the caller stops early (it is closing) are dropped.
        """
        found = self._cut()
        yield from found
        if len(self._buffer) > MAX_MESSAGE_BYTES:
            self._buffer = b""
            raise Overflow(f"no complete FIX message in {MAX_MESSAGE_BYTES} bytes")

    def take(self) -> bytes:
        """The unread bytes, for a caller that cuts them itself (``next_frame``) and hands back the rest (``keep``)."""
        data, self._buffer = self._buffer, b""
        return data

    def keep(self, data: bytes, pos: int) -> None:
        """``data[pos:]``, the start of a frame not complete yet, waits for the next read; raise Overflow on runaway input."""
        rest = data[pos:] if pos else data
        if len(rest) > MAX_MESSAGE_BYTES:
            raise Overflow(f"no complete FIX message in {MAX_MESSAGE_BYTES} bytes")
        self._buffer = rest

    def _cut(self) -> list[bytes]:
        data = self._buffer
        found: list[bytes] = []
        pos = 0
        while pos < len(data):  # a read of whole messages ends exactly at a frame's end: no search past it
            frame, pos = self.next_frame(data, pos)
            if frame is None:
                break
            found.append(frame)
        self._buffer = data[pos:] if pos else data
        return found

    @staticmethod
    def next_frame(data: bytes, pos: int) -> tuple[bytes | None, int]:
        """The frame at or after ``pos`` and where the next search starts; (None, where to keep from) if none."""
        if data.startswith(b"8=FIX.4.4\x019=", pos):  # the usual case: a message right here, its trailer where
            length_end = data.find(SOH, pos + 12)  # BodyLength says (else the search below decides)
            text = data[pos + 12:length_end]
            if length_end > 0 and text.isdigit() and int(text) <= MAX_MESSAGE_BYTES:
                trailer = length_end + int(text)
                end = trailer + 8
                if data.startswith(b"\x0110=", trailer) and data[end - 1:end] == SOH and SOH not in data[trailer + 4:end - 1]:
                    return data[pos:end], end
        start = data.find(b"8=", pos)
        if start < 0:
            return None, max(pos, len(data) - 1)  # keep a trailing '8' that may start the next message
        length_at = data.find(b"\x019=", start)
        if length_at < 0:
            return None, start
        length_end = data.find(SOH, length_at + 3)
        if length_end < 0:
            return None, start
        text = data[length_at + 3:length_end]
        if not text.isdigit() or int(text) > MAX_MESSAGE_BYTES:
            return b"", length_end + 1  # unusable length: drop what we have read, resync on next 8=
        body_end = length_end + 1 + int(text)
        if len(data) < body_end:
            return None, start
        trailer = data.find(b"\x0110=", body_end - 1)
        if trailer < 0:
            return None, start
        end = data.find(SOH, trailer + 4)
        if end < 0:
            return None, start
        return data[start:end + 1], end + 1


_NOT_SEPARATORS: Final = bytes(b for b in range(256) if b not in b"=\x01")
_SHAPES: dict[str, tuple[int, ...]] = {}  # tag sequence -> its tag numbers (no raw data tags), bounded
_SHAPES_MAX: Final = 4096


def split_shaped(data: bytes) -> tuple[list[tuple[int, str]], str | None]:
    """``split_fields`` plus the message's shape (its tag sequence as text), None when it has no plain shape.

    Clients send the same few shapes over and over (every NewOrderSingle of a
    session has the same tags), so tags are parsed once per shape and a
    message is cut with a few C-level passes instead of a Python loop per
    field. The separators must alternate ``= SOH = SOH ...`` (every field has
    exactly one '=' and ends with SOH); anything else (a value holding '=',
    raw data fields, signed or non-digit tags) takes the field-by-field path,
    which explains garbling.
    """
    separators = data.translate(None, _NOT_SEPARATORS)
    if separators != b"=\x01" * (len(separators) >> 1) or not data.endswith(b"\x01"):
        return split_fields(data), None
    items = data.decode("latin-1")[:-1].replace("\x01", "=").split("=")
    tags = items[0::2]
    shape = "=".join(tags)
    numbers = _SHAPES.get(shape)
    if numbers is None:
        if not all(tag.isdigit() and tag.isascii() for tag in tags):
            return split_fields(data), None
        numbers = tuple(map(int, tags))
        if not DATA_LENGTH_TAGS.keys().isdisjoint(numbers):
            return _split_with_data(data), None
        if len(_SHAPES) >= _SHAPES_MAX:
            _SHAPES.clear()
        _SHAPES[shape] = numbers
    return list(zip(numbers, items[1::2], strict=True)), shape


def split_fields(data: bytes) -> list[tuple[int, str]]:
    """``tag=value SOH ...`` -> [(tag, value)]; data fields may contain SOH (length from the tag before)."""
    text = data.decode("latin-1")
    if not text.endswith("\x01"):
        raise Garbled("field not terminated by SOH")
    fields: list[tuple[int, str]] = []
    append = fields.append
    try:
        for part in text[:-1].split("\x01"):
            tag, sep, value = part.partition("=")
            if not sep:
                raise Garbled("field without '='")
            if not (tag.isdigit() and tag.isascii()) and not (tag[:1] == "-" and is_number(tag[1:])):
                raise Garbled(f"tag {tag[:20]!r} is not a number")
            number = int(tag)
            if number in DATA_LENGTH_TAGS:
                return _split_with_data(data)
            append((number, value))
    except ValueError:
        raise Garbled("a tag is not a number") from None
    return fields


def _split_with_data(data: bytes) -> list[tuple[int, str]]:
    """The slow path for messages carrying raw data fields (RawData 96 on a Logon...)."""
    fields: list[tuple[int, str]] = []
    pos, end = 0, len(data)
    data_len = -1
    data_tag = 0
    while pos < end:
        eq = data.find(b"=", pos)
        if eq < 0:
            raise Garbled("field without '='")
        try:
            tag = int(data[pos:eq])
        except ValueError:
            raise Garbled(f"tag {data[pos:eq][:20]!r} is not a number") from None
        if tag == data_tag and data_len >= 0 and eq + 1 + data_len <= end and data[eq + 1 + data_len:eq + 2 + data_len] == SOH:
            stop = eq + 1 + data_len
        else:
            stop = data.find(SOH, eq + 1)
            if stop < 0:
                raise Garbled("field not terminated by SOH")
        value = data[eq + 1:stop].decode("latin-1")
        fields.append((tag, value))
        data_tag, data_len = 0, -1
        if tag in DATA_LENGTH_TAGS and is_number(value):
            data_tag, data_len = DATA_LENGTH_TAGS[tag], int(value)
        pos = stop + 1
    return fields


def decode(frame: bytes) -> Message:
    """Check BodyLength, CheckSum and the 8/9/35 prefix; return the message or raise Garbled."""
    if not frame:
        raise Garbled("unreadable BodyLength")
    fields, shape = split_shaped(frame)
    if len(fields) < 4 or fields[0][0] != 8 or fields[1][0] != 9 or fields[2][0] != 35:
        raise Garbled("the first three fields must be 8, 9 and 35")
    if fields[-1][0] != 10:
        raise Garbled("the last field must be CheckSum (10)")
    body_start = frame.find(SOH) + 1
    body_start = frame.find(SOH, body_start) + 1
    trailer_at = frame.rfind(b"\x0110=") + 1
    if str(trailer_at - body_start) != fields[1][1]:
        raise Garbled(f"BodyLength {fields[1][1]} does not match {trailer_at - body_start}")
    declared = fields[-1][1]
    computed = checksum(memoryview(frame)[:trailer_at])
    if len(declared) != 3 or not is_number(declared) or int(declared) != computed:
        raise Garbled(f"CheckSum {declared} does not match {computed:03d}")
    return Message(fields, frame, shape)


def _text(fields: Iterable[Field]) -> str:
    parts = []
    for tag, value in fields:
        if isinstance(value, str):
            parts.append(f"{tag}={value}\x01")
        else:
            parts.append(f"{tag}={len(value)}\x01")
            for entry in value:
                parts.append(_text(entry))
    return "".join(parts)


def encode_body(fields: Sequence[Field]) -> bytes:
    """Body fields in ascending tag order (QuickFIX's layout); group entries keep their own order."""
    return _text(sorted(fields, key=_tag)).encode("latin-1")


def _tag(field: Field) -> int:
    return field[0]


def frame_message(msg_type: str, header: Sequence[tuple[int, str]], body: bytes) -> bytes:
    """Wrap header (sorted here) and an encoded body with 8, 9, 35 and 10."""
    return frame_text(f"35={msg_type}\x01{_text(sorted(header, key=_tag))}", body)


def frame_text(head: str, body: bytes) -> bytes:
    """``35=...`` and the header as text, plus the encoded body -> a complete message.

    One per message sent: the prefix is made as text (latin-1: one byte per
    character, so ``len(head)`` is its encoded length) and joined to the body
    once; the CheckSum of a message of at most 256 bytes (an acknowledgement)
    is one Adler-32 call (``checksum``) and its trailer comes from a table.
    """
    out = f"8=FIX.4.4\x019={len(head) + len(body)}\x01{head}".encode("latin-1") + body
    total = ((zlib.adler32(out) & 0xFFFF) - 1) & 0xFF if len(out) <= _ADLER_CHUNK else checksum(out)
    return out + TRAILERS[total]


# ``10=NNN<SOH>`` for every CheckSum: indexing is ~10x cheaper than formatting one per message sent
TRAILERS: Final = tuple(b"10=%03d\x01" % total for total in range(256))


class Timestamps:
    """UTC timestamps in FIX formats; the seconds part is cached (one strftime per second)."""

    __slots__ = ("_last", "_last_ms", "_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""
        self._last_ms = -1
        self._last = ""

    def millis(self, wall_us: int) -> str:
        """``YYYYMMDD-HH:MM:SS.sss`` (SendingTime as QuickFIX writes it); a burst within one millisecond reuses it."""
        ms = wall_us // 1000
        if ms == self._last_ms:
            return self._last
        self._last_ms = ms
        self._last = self._millis(wall_us)
        return self._last

    def _millis(self, wall_us: int) -> str:
        second, micros = divmod(wall_us, 1_000_000)
        if second != self._second:
            self._second = second
            self._text = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(second))
        return f"{self._text}.{micros // 1000:03d}"


_SECONDS_CACHE: dict[str, int] = {}
_SECONDS_CACHE_MAX: Final = 4096


def parse_utc_timestamp(text: str) -> int | None:
    """``YYYYMMDD-HH:MM:SS[.sss...]`` -> microseconds since the epoch, or None if malformed."""
    head = text[:17]
    seconds = _SECONDS_CACHE.get(head)
    if seconds is None:
        seconds = _parse_seconds(head)
        if seconds is None:
            return None
        if len(_SECONDS_CACHE) >= _SECONDS_CACHE_MAX:
            _SECONDS_CACHE.clear()
        _SECONDS_CACHE[head] = seconds
    fraction = text[17:]
    if not fraction:
        return seconds * 1_000_000
    digits = fraction[1:]
    if fraction[0] != "." or not is_number(digits) or len(digits) > 9:
        return None
    return seconds * 1_000_000 + int(digits.ljust(6, "0")[:6])


def _parse_seconds(text: str) -> int | None:
    if len(text) != 17 or text[8] != "-" or text[11] != ":" or text[14] != ":":
        return None
    digits = text[:8] + text[9:11] + text[12:14] + text[15:17]
    if not digits.isdigit() or not digits.isascii():
        return None
    try:
        moment = datetime.datetime(
            int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[9:11]), int(text[12:14]), int(text[15:17]),
            tzinfo=datetime.UTC,
        )
    except ValueError:
        return None
    return calendar.timegm(moment.utctimetuple())
