"""The journal's event encoding: canonical, positional orjson.

Each event is a JSON array ``[TAG, field1, field2, ...]`` in the attrs field order
of its class; a ``Fill`` nests as an array the same way. A record's payload is a
JSON array of such events. orjson output for lists of ints, strings, bools is
byte-stable, so the same events always hash the same.

Why positional and not a cattrs dict: on this machine cattrs unstructuring costs
~2.5-9 us per event against ~1.2 us for ``attrgetter`` + one orjson call per batch,
and the journal is on every order's path. ``to_dict`` gives the named form for
auditors (``journal dump``) and the schema check on decode rejects wrong arity,
unknown tags and wrong field types instead of guessing.

Why the per-class encoders and decoders are generated source: replay decodes every
event of the journal and the live engine encodes every event it journals. A
function written out field by field (one tuple build; one unpack, one inline
``type(v) is int`` per field, one call) costs about half of a generic loop over the
fields or a ``tuple(map(type, row))`` comparison (measured: encode ~1.6 -> ~0.85
us, decode ~4.9 -> ~3.2 us per event of the journal bench's mix). It is generated
from ``attrs.fields`` so the field order still has one source of truth. A row that
fails the fast checks goes to the slow, field-by-field check that names the problem.
Nothing about the bytes changed: the generated encoder writes what the
``attrgetter`` one did (tests re-encode a journal written before it).

Replay does not build events at all: ``decode_rows`` decodes a payload into
small msgspec structs named after the events' fields (checked in C, exactly as
strictly as ``decode_events`` checks: see its docstring) and ``Venue.replay_rows``
applies them. Building ``OrderPlaced``/``Fill`` objects only to read them once was
about a third of replay's time (callgrind on the journal bench's mix: decode +
apply 41k -> 27k instructions per event); orjson rows plus the generated Python
check cost 9.4k instructions per event of decoding, msgspec structs 6.6k.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable
from sys import intern
from typing import Annotated, Any, Final, Literal

import attrs
import msgspec
import orjson

from engine.messages import (
    CANCELLED,
    EVENT_TYPES,
    EXPIRED,
    FILLED,
    NEW,
    ORDER_TYPES,
    PARTIALLY_FILLED,
    SIDES,
    STP_MODES,
    TIME_IN_FORCE,
    Event,
    Fill,
    OrderCancelled,
    OrderPlaced,
    Withdrawn,
)

LEGACY_WITHDRAWN_LEN: Final = 5  # format 2's ["Withdrawn", account_id, asset, amount, ts_us]
_FILL_FIELDS: Final = tuple(f.name for f in attrs.fields(Fill))
_fill_tuple: Final = operator.attrgetter(*_FILL_FIELDS)


class CodecError(ValueError):
    """A payload that is not a well-formed list of known events."""


def _json_type(annotation: Any) -> type:
    kind = {"int": int, "str": str, "bool": bool, "list[int]": list, "list[Fill]": list}.get(str(annotation))
    if kind is None:
        raise TypeError(f"event field type {annotation} has no JSON form")
    return kind


def _compile(name: str, source: str, namespace: dict[str, Any]) -> Callable[..., Any]:
    exec(compile(source, f"<codec {name}>", "exec"), namespace)  # the source holds attrs field names only
    fn: Callable[..., Any] = namespace[name]
    return fn


# --- encode ---------------------------------------------------------------------------------


def _row_source(cls: type) -> str:
    """Source of the expression ``(TAG, e.field1, ...)`` for an event ``e`` of ``cls``."""
    parts = [repr(cls.TAG)]  # type: ignore[attr-defined]
    for f in attrs.fields(cls):
        if str(f.type) == "list[Fill]":
            parts.append(f"list(map(fill_tuple, e.{f.name})) if e.{f.name} else e.{f.name}")
        else:
            parts.append(f"e.{f.name}")
    return f"({', '.join(parts)},)"


def _encoder(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """``event -> (TAG, field1, ...)``; orjson writes a tuple exactly as the list it once was."""
    source = f"def encode(e):\n    return {_row_source(cls)}\n"
    return _compile("encode", source, {"fill_tuple": _fill_tuple})


# --- decode ---------------------------------------------------------------------------------

# Replayed resting orders share their price ints, as live ones do
# (the engine's parse caches hand out one int object per distinct text): a
# million resting orders on a few thousand prices would otherwise hold a
# million 32-byte ints for their prices. Bounded: cleared when full.
_INTERN_MAX: Final = 65_536
_interned: dict[int, int] = {}


def _intern(value: int) -> int:
    """The kept int for ``value`` (the generated decoders try ``_interned.get`` first, inline)."""
    found = _interned.get(value)
    if found is not None:
        return found
    if len(_interned) >= _INTERN_MAX:
        _interned.clear()
    _interned[value] = value
    return value


def shared(value: int) -> int:
    """The kept int for ``value``: replay's resting orders share their price ints as decoded ones do."""
    found = _interned.get(value)
    return found if found is not None else _intern(value)


shared_get: Final = _interned.get  # ``shared_get(v) or shared(v)``: the common hit without a Python call


def _is(var: str, kind: type) -> str:
    """Source for 'the value in ``var`` has exactly type ``kind``' (bool is not int)."""
    return f"type({var}) is {kind.__name__}"


def _fill_decoder() -> Callable[[Any], Fill]:
    names = [f"v{i}" for i in range(len(_FILL_FIELDS))]
    source = (
        "def decode_fill(row):\n"
        f"    {', '.join(names)}, = row\n"
        f"    if not ({' and '.join(_is(n, int) for n in names)}):\n"
        "        raise ValueError\n"
        f"    return Fill({', '.join(names)})\n"
    )
    return _compile("decode_fill", source, {"Fill": Fill})


_decode_fill: Final = _fill_decoder()


def _fills(rows: list[Any]) -> list[Fill]:
    """Fill rows -> Fills; every row must be an array of 7 integers."""
    try:
        return [_decode_fill(row) for row in rows]
    except (ValueError, TypeError):
        raise CodecError("Fill: expected an array of 7 integers") from None


def _ints(values: list[Any], where: str) -> list[int]:
    for v in values:
        if type(v) is not int:
            raise CodecError(f"{where}: expected an array of integers")
    return values


def _decoder(cls: type) -> tuple[Callable[[list[Any]], Any], Callable[[list[Any]], None]]:
    """``row -> event``, generated field by field (see the module docstring).

    The row is unpacked first (a wrong arity raises ValueError, which
    ``decode_events`` turns into the named error) and every field's type is tested
    inline: ``type(v) is int`` compiles to a specialised opcode, where
    ``tuple(map(type, row))`` cost a call per field. Strings that state keeps
    (symbols, sides, assets...) come from small sets: replayed state holds one
    object per distinct value instead of a fresh copy per event. On the replay
    path's hottest event only the fields a resting order keeps are shared (and its
    price int).
    """
    fields = attrs.fields(cls)
    types = tuple(_json_type(f.type) for f in fields)
    names = [f"v{i}" for i in range(len(fields))]
    args = []
    checks = []
    for i, (f, kind) in enumerate(zip(fields, types, strict=True)):
        arg = names[i]
        annotation = str(f.type)
        if annotation == "list[Fill]":
            arg = f"fills({arg}) if {arg} else {arg}"
        elif annotation == "list[int]":
            checks.append(f"    if {arg}:\n        ints({arg}, {cls.__name__ + '.' + f.name!r})\n")
        elif cls is OrderPlaced:
            if f.name == "price_ticks":
                arg = f"(shared_get({arg}) or share({arg}))"
            elif f.name in ("symbol", "side", "stp"):
                arg = f"intern({arg})"
        elif kind is str:
            arg = f"intern({arg})"
        args.append(arg)
    source = (
        "def decode(row):\n"
        f"    _, {', '.join(names)}, = row\n"
        f"    if not ({' and '.join(_is(n, k) for n, k in zip(names, types, strict=True))}):\n"
        "        explain(row)\n"
        + "".join(checks)
        + f"    return cls({', '.join(args)})\n"
    )

    def explain(row: list[Any]) -> None:
        args = row[1:]
        if len(args) != len(fields):
            raise CodecError(f"{cls.__name__}: expected {len(fields)} fields, got {len(args)}")
        for value, expected, field in zip(args, types, fields, strict=True):
            if type(value) is not expected:
                raise CodecError(f"{cls.__name__}.{field.name}: expected {expected.__name__}")

    namespace = {"explain": explain, "cls": cls, "fills": _fills, "ints": _ints, "share": _intern,
                 "shared_get": _interned.get, "intern": intern}
    return _compile("decode", source, namespace), explain


ENCODERS: Final = {cls: _encoder(cls) for cls in EVENT_TYPES}
_DECODE_AND_EXPLAIN: Final = {cls.TAG: _decoder(cls) for cls in EVENT_TYPES}  # type: ignore[attr-defined]
DECODERS: Final = {tag: pair[0] for tag, pair in _DECODE_AND_EXPLAIN.items()}


def _batch_encoder() -> Callable[[Iterable[Event]], bytes]:
    """The whole batch in one comprehension, the common ``OrderPlaced`` row written inline (no call per order)."""
    source = (
        "def encode_all(events):\n"
        f"    return dumps([{_row_source(OrderPlaced)} if type(e) is OrderPlaced else enc[type(e)](e) for e in events])\n"
    )
    namespace = {"dumps": orjson.dumps, "enc": ENCODERS, "OrderPlaced": OrderPlaced, "fill_tuple": _fill_tuple}
    return _compile("encode_all", source, namespace)


_encode_all: Final = _batch_encoder()


def encode_events(events: Iterable[Event]) -> bytes:
    """Events -> canonical payload bytes."""
    return _encode_all(events)


def _parse(payload: bytes) -> list[Any]:
    """The payload's JSON array of rows, or a CodecError saying what it is instead."""
    try:
        rows = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"payload is not JSON: {exc}") from None
    if type(rows) is not list:
        raise CodecError("payload is not an array of events")
    return rows


def _upgrade_format_2(rows: list[Any]) -> bool:
    """Give format 2's ``Withdrawn`` rows (no withdrawal id) the id 0, in place; True if any changed.

    Format 3 added ``Withdrawn.withdrawal_id``. A journal begun in format 2 keeps its
    rows as written (the hash chain covers them), so readers upgrade them here, on
    the slow path a row of the wrong arity already takes. Id 0 is never assigned:
    it marks an operator withdrawal from before ids were shared with requests.
    """
    changed = False
    for i, row in enumerate(rows):
        if type(row) is list and len(row) == LEGACY_WITHDRAWN_LEN and row[0] == Withdrawn.TAG:
            rows[i] = [row[0], 0, *row[1:]]
            changed = True
    return changed


def decode_events(payload: bytes) -> list[Event]:
    """Payload bytes -> events; raises CodecError on anything malformed."""
    rows = _parse(payload)
    decoders = DECODERS
    try:
        # rows that are not arrays starting with a known tag fail the lookup (a JSON
        # object only has string keys, so ``row[0]`` is a KeyError there)
        return [decoders[row[0]](row) for row in rows]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if _upgrade_format_2(rows):
            return decode_events(orjson.dumps(rows))
        _explain_rows(rows)
        raise CodecError(f"malformed event: {exc!r}") from None


# --- replay: checked rows, no event objects ----------------------------------------------


def _check_source(cls: type, indent: str) -> str:
    """Source that checks ``row`` as an event of ``cls`` the way its decoder does, building nothing.

    Same unpack (arity), same exact-type test per field, the same fill and id-array
    checks; what fails raises ValueError/TypeError, which ``decode_rows`` turns into
    the named error through ``_explain_rows``.
    """
    fields = attrs.fields(cls)
    names = [f"v{i}" for i in range(len(fields))]
    types = [_json_type(f.type) for f in fields]
    fill_names = [f"w{i}" for i in range(len(_FILL_FIELDS))]
    lines = [
        f"_, {', '.join(names)}, = row",
        f"if not ({' and '.join(_is(n, k) for n, k in zip(names, types, strict=True))}):",
        "    raise ValueError",
    ]
    for name, f in zip(names, fields, strict=True):
        annotation = str(f.type)
        if annotation == "list[Fill]":
            lines += [
                f"for fill in {name}:",
                f"    {', '.join(fill_names)}, = fill",
                f"    if not ({' and '.join(_is(n, int) for n in fill_names)}):",
                "        raise ValueError",
            ]
        elif annotation == "list[int]":
            lines += [f"if {name}:", f"    ints({name}, {cls.__name__ + '.' + f.name!r})"]
    return "".join(f"{indent}{line}\n" for line in lines)


def _rows_checker() -> Callable[[list[Any]], None]:
    """``check_all(rows)``: every row checked as ``decode_events`` would, one generated loop.

    The two events replay meets nearly always are checked inline; any other tag
    goes through its decoder (the event it builds is dropped: those rows are rare).
    """
    hot = (OrderPlaced, OrderCancelled)
    branches = "".join(
        f"        {'if' if i == 0 else 'elif'} tag == {cls.TAG!r}:\n{_check_source(cls, ' ' * 12)}"  # type: ignore[attr-defined]
        for i, cls in enumerate(hot)
    )
    source = (
        "def check_all(rows):\n"
        "    for row in rows:\n"
        "        tag = row[0]\n"
        + branches
        + "        else:\n"
        "            decoders[tag](row)\n"
    )
    return _compile("check_all", source, {"decoders": DECODERS, "ints": _ints})


_check_all: Final = _rows_checker()


# --- replay: rows decoded and checked in one C pass --------------------------------------

_INT64: Final = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]
# strings of the hot event with a closed set of values: msgspec hands back these very
# objects (no string built per row, and they are the shared objects state keeps)
_CHOICES: Final[dict[tuple[type, str], tuple[str, ...]]] = {
    (OrderPlaced, "side"): SIDES,
    (OrderPlaced, "order_type"): ORDER_TYPES,
    (OrderPlaced, "tif"): TIME_IN_FORCE,
    (OrderPlaced, "stp"): STP_MODES,
    (OrderPlaced, "status"): (NEW, PARTIALLY_FILLED, FILLED, CANCELLED, EXPIRED),
}
_ROW_OPTIONS: Final[dict[str, Any]] = {"array_like": True, "forbid_unknown_fields": True, "gc": False}

FillRow: Final = msgspec.defstruct("FillRow", [(name, _INT64) for name in _FILL_FIELDS], **_ROW_OPTIONS)


def _row_field_type(cls: type, field: Any) -> Any:
    """The msgspec type of one event field on the fast path: never looser than the orjson check."""
    annotation = str(field.type)
    # arrays as tuples: an empty one (most orders' fills and STP cancels) is the shared ``()``, not a new list
    if annotation == "list[Fill]":
        return tuple[FillRow, ...]  # type: ignore[valid-type]
    if annotation == "list[int]":
        return tuple[_INT64, ...]  # type: ignore[valid-type]
    if annotation == "str" and (cls, field.name) in _CHOICES:
        return Literal[_CHOICES[cls, field.name]]
    return {"int": _INT64, "str": str, "bool": bool}[annotation]


def _row_struct(cls: type) -> type:
    fields = [(f.name, _row_field_type(cls, f)) for f in attrs.fields(cls)]
    return msgspec.defstruct(f"{cls.__name__}Row", fields, tag=cls.TAG, **_ROW_OPTIONS)  # type: ignore[attr-defined]


ROW_TYPES: Final = {cls: _row_struct(cls) for cls in EVENT_TYPES}
PlacedRow: Final = ROW_TYPES[OrderPlaced]
CancelledRow: Final = ROW_TYPES[OrderCancelled]
_ROWS_DECODER: Final = msgspec.json.Decoder(list[functools.reduce(operator.or_, ROW_TYPES.values())])  # type: ignore[misc]
_ROW_TYPE_BY_TAG: Final = {cls.TAG: row for cls, row in ROW_TYPES.items()}  # type: ignore[attr-defined]
_TAG_BY_ROW_TYPE: Final = {row: tag for tag, row in _ROW_TYPE_BY_TAG.items()}


def decode_rows(payload: bytes) -> list[Any]:
    """Payload bytes -> its events as row structs (``PlacedRow``, ``CancelledRow``...), checked as ``decode_events`` checks.

    Replay's decoding. msgspec parses and type-checks the whole payload in one C
    pass into small structs (fields named as the event's), where orjson rows plus a
    generated Python check cost about twice as much. Its schema is never looser than
    ``decode_events``: exact JSON types, no missing or extra fields, ints inside
    int64, the hot event's enumerated strings from their closed sets. Whatever it
    refuses goes the old way, orjson then the field-by-field check: a payload that
    fails there raises the very CodecError ``decode_events`` raises (same text), and
    one that passes (an int between 2**63 and 2**64, an unknown side...) is turned
    into the same structs. So the rows accepted, and every error text, are exactly
    ``decode_events``'. Nothing is applied before the whole payload has passed.

    The int64 bound costs a live journal nothing: assets have at most 12 decimals and
    every amount, balance and lock stays below ``units.MAX_AMOUNT`` (2**62), so only a
    hand-made journal takes the slower path (msgspec cannot bound at 2**64 - 1, orjson's
    limit; past it orjson reads a float and the check refuses, as before).
    """
    try:
        return _ROWS_DECODER.decode(payload)  # type: ignore[no-any-return]
    except (msgspec.MsgspecError, ValueError):  # ValueError: a UnicodeDecodeError in a string, say
        pass
    rows = _parse(payload)
    _upgrade_format_2(rows)
    try:
        _check_all(rows)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        _explain_rows(rows)
        raise CodecError(f"malformed event: {exc!r}") from None
    return [_row_from_list(row) for row in rows]


def _row_from_list(row: list[Any]) -> Any:
    """A checked orjson row as its struct (the rare rows msgspec's stricter schema leaves to the old check)."""
    values = [
        tuple([FillRow(*item) if type(item) is list else item for item in value]) if type(value) is list
        else intern(value) if type(value) is str else value
        for value in row[1:]
    ]
    return _ROW_TYPE_BY_TAG[row[0]](*values)


def row_event(row: Any) -> Event:
    """The event a row struct stands for (replay applies its rare rows through ``Venue.apply``)."""
    values = [
        [list(msgspec.structs.astuple(item)) if type(item) is FillRow else item for item in value]
        if type(value) is tuple else value
        for value in msgspec.structs.astuple(row)
    ]
    tag = _TAG_BY_ROW_TYPE[type(row)]
    event: Event = DECODERS[tag]([tag, *values])
    return event


def _explain_rows(rows: list[Any]) -> None:
    """Raise the CodecError naming the first malformed row."""
    for row in rows:
        if type(row) is not list or not row or type(row[0]) is not str:
            raise CodecError("event is not an array starting with its tag")
        pair = _DECODE_AND_EXPLAIN.get(row[0])
        if pair is None:
            raise CodecError(f"unknown event tag {row[0]!r}")
        decode, explain = pair
        explain(row)  # arity and field types, by name
        decode(row)  # then what only decoding checks (fills, arrays of ids)


def to_dict(event: Event) -> dict[str, Any]:
    """The named form of an event, for auditors and logs."""
    body = attrs.asdict(event)
    return {"type": type(event).TAG, **body}
