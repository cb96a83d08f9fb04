"""The journal's event encoding: a compact binary layout, and the positional JSON it replaced.

A record's payload is a list of events in one of two forms; ``decode_events``
reads both, ``encode_events`` writes the binary one.

*Binary* (written since the journal-speed work; first byte ``0x01``)::

    0x01 | u32 table_len | table: JSON array of strings | u32 n_events | event*

  Every string an ``OrderPlaced``/``OrderCancelled`` carries (symbol, side, type,
  TIF, STP mode, status, expiry reason) is a u32 index into the record's own
  string table, in first-use order, so the same events always encode to the same
  bytes. Each event starts with a kind byte: ``1`` an ``OrderPlaced`` (fixed
  little-endian fields, its count of fills and of STP-cancelled ids, then 7 i64 per
  fill and one i64 per id), ``2`` an ``OrderCancelled``, ``0`` any other event as
  ``u32 length | one JSON row`` in the positional form below (also used for an
  order whose integers do not fit an i64). Ints come out of ``struct`` as ints and
  bools as 0/1 bytes, so only the JSON rows need the per-field type check; a
  short, overlong or out-of-range payload is refused.

*Positional JSON* (the first form; records already on disk keep it): a JSON array
of events, each ``[TAG, field1, field2, ...]`` in the attrs field order of its
class, a ``Fill`` nested as an array the same way. orjson output for lists of
ints, strings, bools is byte-stable.

Why binary: replay decodes every event in the journal. Positional JSON cost
~4.3 us per event here (orjson ~1 us, then a type check of every field of every
row and fill); the binary layout needs no check beyond its bounds and costs
~1.5 us. Encoding stays about as cheap as the JSON it replaces (one ``struct``
pack per order and per fill). Why positional and not a cattrs dict for the JSON
rows: cattrs unstructuring costs ~2.5-9 us per event. ``to_dict`` gives the named
form for auditors (``journal dump``).

Why the per-class JSON encoders and decoders are generated source: a function
written out field by field (one tuple build, one unpack, one call) costs a third
of a generic loop over the fields; it is generated from ``attrs.fields`` so the
field order still has one source of truth. The decoder's fast path checks the
whole row's types in one C-level comparison; anything that fails it goes to the
slow, field-by-field check that names the problem.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterable
from sys import intern
from typing import Any, Final

import attrs
import orjson

from engine.messages import EVENT_TYPES, Event, Fill, OrderCancelled, OrderPlaced

_FILL_FIELDS: Final = tuple(f.name for f in attrs.fields(Fill))
_fill_tuple: Final = operator.attrgetter(*_FILL_FIELDS)
_FILL_TYPES: Final = (int,) * len(_FILL_FIELDS)


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


def _encoder(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """``event -> (TAG, field1, ...)``; orjson writes a tuple exactly as the list it once was."""
    parts = ["tag"]
    for f in attrs.fields(cls):
        if str(f.type) == "list[Fill]":
            parts.append(f"[fill_tuple(f) for f in e.{f.name}] if e.{f.name} else e.{f.name}")
        else:
            parts.append(f"e.{f.name}")
    source = f"def encode(e):\n    return ({', '.join(parts)},)\n"
    return _compile("encode", source, {"tag": cls.TAG, "fill_tuple": _fill_tuple})  # type: ignore[attr-defined]


# --- decode ---------------------------------------------------------------------------------

# Replayed resting orders share their price ints, as live ones do
# (the engine's parse caches hand out one int object per distinct text): a
# million resting orders on a few thousand prices would otherwise hold a
# million 32-byte ints for their prices. Bounded: cleared when full.
_INTERN_MAX: Final = 65_536
_interned: dict[int, int] = {}


def _intern(value: int) -> int:
    found = _interned.get(value)
    if found is not None:
        return found
    if len(_interned) >= _INTERN_MAX:
        _interned.clear()
    _interned[value] = value
    return value


def _fills(rows: list[Any]) -> list[Fill]:
    """Fill rows -> Fills; every row must be an array of 7 integers."""
    out = []
    for row in rows:
        if type(row) is not list or tuple(map(type, row)) != _FILL_TYPES:
            raise CodecError("Fill: expected an array of 7 integers")
        out.append(Fill(*row))
    return out


def _ints(values: list[Any], where: str) -> list[int]:
    for v in values:
        if type(v) is not int:
            raise CodecError(f"{where}: expected an array of integers")
    return values


def _decoder(cls: type) -> Callable[[list[Any]], Any]:
    """``row -> event``, generated field by field (see the module docstring).

    Strings that state keeps (symbols, sides, assets...) come from small sets: replayed
    state holds one object per distinct value instead of a fresh copy per event. On
    the replay path's hottest event only the fields a resting order keeps are shared
    (and its price int).
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
                arg = f"share({arg})"
            elif f.name in ("symbol", "side", "stp"):
                arg = f"intern({arg})"
        elif kind is str:
            arg = f"intern({arg})"
        args.append(arg)
    source = (
        "def decode(row):\n"
        "    if tuple(map(type, row)) != row_types:\n"
        "        explain(row)\n"
        f"    _, {', '.join(names)}, = row\n"
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

    namespace = {"row_types": (str, *types), "explain": explain, "cls": cls, "fills": _fills, "ints": _ints,
                 "share": _intern, "intern": intern}
    return _compile("decode", source, namespace)


ENCODERS: Final = {cls: _encoder(cls) for cls in EVENT_TYPES}
DECODERS: Final = {cls.TAG: _decoder(cls) for cls in EVENT_TYPES}  # type: ignore[attr-defined]


def encode_events_json(events: Iterable[Event]) -> bytes:
    """Events -> the positional JSON payload (the first form, still read everywhere)."""
    enc = ENCODERS
    return orjson.dumps([enc[type(e)](e) for e in events])


def decode_events(payload: bytes) -> list[Event]:
    """Payload bytes (either form) -> events; raises CodecError on anything malformed."""
    if payload[:1] == BINARY:
        return _decode_binary(payload)
    try:
        rows = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"payload is not JSON: {exc}") from None
    if type(rows) is not list:
        raise CodecError("payload is not an array of events")
    return _decode_rows(rows)


def _decode_rows(rows: list[Any]) -> list[Event]:
    decoders = DECODERS
    try:
        # rows that are not arrays starting with a known tag fail the lookup (a JSON
        # object only has string keys, so ``row[0]`` is a KeyError there)
        return [decoders[row[0]](row) for row in rows]
    except (KeyError, IndexError, TypeError) as exc:
        _explain_rows(rows)
        raise CodecError(f"malformed event: {exc!r}") from None


def _explain_rows(rows: list[Any]) -> None:
    """Raise the CodecError naming the first malformed row."""
    for row in rows:
        if type(row) is not list or not row or type(row[0]) is not str:
            raise CodecError("event is not an array starting with its tag")
        decoder = DECODERS.get(row[0])
        if decoder is None:
            raise CodecError(f"unknown event tag {row[0]!r}")
        decoder(row)


# --- binary -----------------------------------------------------------------------------------

BINARY: Final = b"\x01"
KIND_ROW: Final = 0
KIND_PLACED: Final = 1
KIND_CANCELLED: Final = 2
_U32: Final = struct.Struct("<I")
_ROW_HEAD: Final = struct.Struct("<BI")  # KIND_ROW, length of the JSON row
# kind, order_id, account_id, symbol, side, order_type, tif, price_ticks, qty_steps, quote_qty,
# post_only, stp, client_id, lock, ts_us, status, expiry_reason, len(fills), len(stp_cancelled)
_PLACED: Final = struct.Struct("<BqqIIIIqqqBIqqqIIII")
_CANCELLED: Final = struct.Struct("<BqqIq")  # kind, order_id, account_id, symbol, ts_us
_FILL: Final = struct.Struct("<7q")
_BOOLS: Final = (False, True)

assert [f.name for f in attrs.fields(OrderPlaced)] == [
    "order_id", "account_id", "symbol", "side", "order_type", "tif", "price_ticks", "qty_steps", "quote_qty",
    "post_only", "stp", "client_id", "lock", "ts_us", "status", "expiry_reason", "fills", "stp_cancelled",
], "OrderPlaced changed: update the binary layout (and keep reading the old one)"
assert [f.name for f in attrs.fields(OrderCancelled)] == ["order_id", "account_id", "symbol", "ts_us"], (
    "OrderCancelled changed: update the binary layout (and keep reading the old one)"
)


class _Strings(dict[str, int]):
    """A record's string table: string -> index, a new string gets the next index."""

    def __missing__(self, key: str) -> int:
        index = self[key] = len(self)
        return index


def encode_events(events: Iterable[Event]) -> bytes:
    """Events -> canonical binary payload bytes (see the module docstring)."""
    table = _Strings()
    parts = [b""]
    add = parts.append
    placed, cancelled, fill = _PLACED.pack, _CANCELLED.pack, _FILL.pack
    count = 0
    for e in events:
        count += 1
        t = type(e)
        try:
            if t is OrderPlaced:
                fills, stp_cancelled = e.fills, e.stp_cancelled  # type: ignore[union-attr]
                data = placed(
                    KIND_PLACED, e.order_id, e.account_id, table[e.symbol], table[e.side],  # type: ignore[union-attr]
                    table[e.order_type], table[e.tif], e.price_ticks, e.qty_steps, e.quote_qty,  # type: ignore[union-attr]
                    e.post_only, table[e.stp], e.client_id, e.lock, e.ts_us,  # type: ignore[union-attr]
                    table[e.status], table[e.expiry_reason], len(fills), len(stp_cancelled),  # type: ignore[union-attr]
                )
                if fills:
                    data += b"".join([fill(*_fill_tuple(f)) for f in fills])
                if stp_cancelled:
                    data += struct.pack(f"<{len(stp_cancelled)}q", *stp_cancelled)
                add(data)
                continue
            if t is OrderCancelled:
                add(cancelled(KIND_CANCELLED, e.order_id, e.account_id, table[e.symbol], e.ts_us))  # type: ignore[union-attr]
                continue
        except struct.error:
            pass  # an integer beyond i64: this event goes as a JSON row, which holds any the JSON form held
        row = orjson.dumps(ENCODERS[t](e))
        add(_ROW_HEAD.pack(KIND_ROW, len(row)) + row)
    names = orjson.dumps(list(table))
    parts[0] = BINARY + _U32.pack(len(names)) + names + _U32.pack(count)
    return b"".join(parts)


def _decode_binary(payload: bytes) -> list[Event]:
    """The binary form -> events; bounds, table and every index are checked (CodecError)."""
    try:
        (names_len,) = _U32.unpack_from(payload, 1)
        names = orjson.loads(payload[5:5 + names_len])
        (count,) = _U32.unpack_from(payload, 5 + names_len)
    except (struct.error, orjson.JSONDecodeError):
        raise CodecError("binary payload: string table cut short or not JSON") from None
    if type(names) is not list or any(type(n) is not str for n in names):
        raise CodecError("binary payload: string table is not an array of strings")
    strs = [intern(n) for n in names]
    try:
        out = _decode_binary_events(payload, 9 + names_len, strs)
    except (struct.error, IndexError) as exc:
        raise CodecError(f"binary payload: event cut short or out of range ({exc})") from None
    if len(out) != count:
        raise CodecError(f"binary payload: holds {len(out)} events, its header says {count}")
    return out


def _decode_binary_events(payload: bytes, offset: int, strs: list[str]) -> list[Event]:
    """The event loop of ``_decode_binary``; raises struct.error or IndexError on a bad event."""
    out: list[Event] = []
    add = out.append
    placed, placed_size = _PLACED.unpack_from, _PLACED.size
    cancelled, cancelled_size = _CANCELLED.unpack_from, _CANCELLED.size
    fill_row = _FILL.unpack_from
    end = len(payload)
    bools, share = _BOOLS, _intern
    while offset < end:
        kind = payload[offset]
        if kind == KIND_PLACED:
            (_, order_id, account_id, symbol, side, order_type, tif, price_ticks, qty_steps, quote_qty, post_only,
             stp, client_id, lock, ts_us, status, expiry, n_fills, n_stp) = placed(payload, offset)
            offset += placed_size
            fills: list[Fill] = []
            if n_fills:
                fills = [Fill(*fill_row(payload, offset + 56 * k)) for k in range(n_fills)]
                offset += 56 * n_fills
            stp_cancelled: list[int] = []
            if n_stp:
                stp_cancelled = list(struct.unpack_from(f"<{n_stp}q", payload, offset))
                offset += 8 * n_stp
            add(OrderPlaced(
                order_id, account_id, strs[symbol], strs[side], strs[order_type], strs[tif], share(price_ticks),
                qty_steps, quote_qty, bools[post_only], strs[stp], client_id, lock, ts_us, strs[status], strs[expiry],
                fills, stp_cancelled,
            ))
        elif kind == KIND_CANCELLED:
            _, order_id, account_id, symbol, ts_us = cancelled(payload, offset)
            offset += cancelled_size
            add(OrderCancelled(order_id, account_id, strs[symbol], ts_us))
        elif kind == KIND_ROW:
            _, size = _ROW_HEAD.unpack_from(payload, offset)
            start = offset + _ROW_HEAD.size
            offset = start + size
            if offset > end:
                raise IndexError("JSON row runs past the payload")
            try:
                row = orjson.loads(payload[start:offset])
            except orjson.JSONDecodeError as exc:
                raise CodecError(f"binary payload: an event row is not JSON: {exc}") from None
            add(*_decode_rows([row]))
        else:
            raise CodecError(f"binary payload: unknown event kind {kind}")
    return out


def to_dict(event: Event) -> dict[str, Any]:
    """The named form of an event, for auditors and logs."""
    body = attrs.asdict(event)
    return {"type": type(event).TAG, **body}
