"""The FIX 4.4 data dictionary and the validator that produces QuickFIX's session rejects.

Sources: the application messages, their required fields and the key enums come
from the QuickFIX FIX44.xml extract (``fix44_extract``, generated from
reference/fix44-dictionary.txt). The extract has no header, trailer or session
messages, no field types and leaves some components unexpanded, so this module
adds those from the FIX 4.4 specification (tables below).

Checks, in QuickFIX's order (so a message with several faults gets the same
reject): header/body/trailer order (373=14), valid MsgType (11), required
fields (1), then field by field in ascending tag order: repeated tag (13),
empty value (4), data format (6), enum value (5), known tag number (0), tag
defined for this message type (2), repeating-group count (16).

Known limits: tags 1..956 (the FIX 4.4 range) count as known fields; a message
type whose layout is not in this dictionary, or one with components we only know
in part, is not checked for "tag not defined for this message type". Custom tags
the venue accepts are listed in ``CUSTOM_FIELDS``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final, cast

import attrs

from adapters.fix.codec import Field, GroupValue, Message, is_number
from adapters.fix.fix44_extract import ENUMS, MESSAGES

HEADER_TAGS: Final = frozenset({
    8, 9, 35, 49, 56, 115, 128, 90, 91, 34, 50, 142, 57, 143, 116, 144, 129, 145, 43, 97, 52, 122,
    212, 213, 347, 369, 627, 628, 629, 630,
})
HEADER_REQUIRED: Final = (8, 9, 34, 35, 49, 52, 56)
# Header fields the session writes itself; everything else in an echoed or resent header is kept.
SESSION_HEADER: Final = frozenset({8, 9, 35, 34, 43, 49, 52, 56, 122, 10})
TRAILER_TAGS: Final = frozenset({93, 89, 10})
MAX_STANDARD_TAG: Final = 956

# Venue extensions (documented in README): self-trade prevention on D and G.
STP_TAG: Final = 7928
CUSTOM_FIELDS: Final = {STP_TAG: "SelfTradePreventionMode"}

ADMIN_TYPES: Final = frozenset({"0", "1", "2", "3", "4", "5", "A"})

# MsgType (35) values defined by FIX 4.4.
MSG_TYPES: Final = frozenset(
    list("0123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    + [f"A{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"] + [f"B{c}" for c in "ABCDEFGH"]
)


@attrs.frozen
class Group:
    """A repeating group: its NumInGroup tag, the delimiter (first field) and member tags."""

    count_tag: int
    members: tuple[int, ...]
    nested: tuple[Group, ...] = ()

    @property
    def delimiter(self) -> int:
        return self.members[0]


INSTRUMENT: Final = (
    55, 65, 48, 22, 460, 461, 167, 762, 200, 541, 201, 224, 225, 239, 226, 227, 228, 255, 543, 470, 471,
    472, 240, 202, 947, 206, 231, 223, 207, 106, 348, 349, 107, 350, 351, 691, 667, 875, 876, 873, 874,
)
SEC_ALT_ID: Final = Group(454, (455, 456))
TRDG_SES: Final = Group(386, (336, 625))
PARTIES: Final = Group(453, (448, 447, 452, 802), (Group(802, (523, 803)),))
MD_REQ: Final = Group(267, (269,))
INSTRMT_MD_REQ: Final = Group(146, (*INSTRUMENT, 454), (SEC_ALT_ID,))
MD_ENTRY_BODY: Final = (
    270, 15, 271, 272, 273, 274, 275, 336, 625, 276, 277, 282, 283, 284, 286, 59, 432, 126, 110, 18, 287,
    288, 289, 346, 290, 546, 811, 451, 58, 354, 355,
)
MD_FULL: Final = Group(268, (269, *MD_ENTRY_BODY))
MD_INC: Final = Group(268, (279, 285, 269, 278, 280, *INSTRUMENT, 454, 291, 292, *MD_ENTRY_BODY, 1003, 1057), (SEC_ALT_ID,))
SEC_LIST: Final = Group(146, (*INSTRUMENT, 454, 15, 561, 562, 336, 625, 827, 58, 354, 355), (SEC_ALT_ID,))
MD_RJCT: Final = Group(816, (817,))
AFFECTED_ORD: Final = Group(534, (41, 535, 536))
CONTRA: Final = Group(382, (375, 337, 437, 438, 655))
STIPULATIONS: Final = Group(232, (233, 234))
MISC_FEES: Final = Group(136, (137, 138, 139, 891))
CONT_AMT: Final = Group(518, (519, 520, 521))
HOPS: Final = Group(627, (628, 629, 630))
MSG_TYPES_GRP: Final = Group(384, (372, 385))

# Components the extract leaves unexpanded: (plain tags, groups, fully known?).
COMPONENTS: Final[dict[str, tuple[tuple[int, ...], tuple[Group, ...], bool]]] = {
    "Instrument": ((), (SEC_ALT_ID,), True),
    "Parties": ((), (PARTIES,), True),
    "TrdgSesGrp": ((), (TRDG_SES,), True),
    "MDReqGrp": ((), (MD_REQ,), True),
    "InstrmtMDReqGrp": ((), (INSTRMT_MD_REQ,), True),
    "MDFullGrp": ((), (MD_FULL,), True),
    "MDIncGrp": ((), (MD_INC,), True),
    "SecListGrp": ((), (SEC_LIST,), True),
    "MDRjctGrp": ((), (MD_RJCT,), True),
    "AffectedOrdGrp": ((), (AFFECTED_ORD,), True),
    "ContraGrp": ((), (CONTRA,), True),
    "Stipulations": ((), (STIPULATIONS,), True),
    "MiscFeesGrp": ((), (MISC_FEES,), True),
    "ContAmtGrp": ((), (CONT_AMT,), True),
    "CommissionData": ((12, 13, 479, 497), (), True),
    "PegInstructions": ((211, 835, 836, 837, 838, 840), (), True),
    "DiscretionInstructions": ((388, 389, 841, 842, 843, 844, 846), (), True),
    "FinancingDetails": ((913, 914, 915, 918, 788, 916, 917, 919, 898), (), True),
    "YieldData": ((235, 236, 701, 696, 697, 698), (), True),
    "SpreadOrBenchmarkCurveData": ((218, 220, 221, 222, 662, 663, 699, 761), (), True),
    "InstrumentExtension": ((668, 869), (Group(870, (871, 872)),), True),
    "UndInstrmtGrp": ((), (), False),
    "InstrmtLegGrp": ((), (), False),
    "InstrmtLegExecGrp": ((), (), False),
    "PreAllocGrp": ((), (), False),
    "UnderlyingInstrument": ((), (), False),
}

# Session messages: (required, allowed, groups).
ADMIN_MESSAGES: Final[dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[Group, ...]]]] = {
    "0": ((), (112,), ()),
    "1": ((112,), (112,), ()),
    "2": ((7, 16), (7, 16), ()),
    "3": ((45,), (45, 371, 372, 373, 58, 354, 355), ()),
    "4": ((36,), (123, 36), ()),
    "5": ((), (58, 354, 355), ()),
    "A": ((98, 108), (98, 108, 95, 96, 141, 789, 383, 384, 464, 553, 554, 925), (MSG_TYPES_GRP,)),
}

INT, FLOAT, CHAR, BOOL, TIMESTAMP, DATE, MONTHYEAR, TIMEONLY = "int", "float", "char", "bool", "ts", "date", "my", "time"
FIELD_TYPES: Final[dict[int, str]] = {
    **dict.fromkeys((7, 9, 16, 34, 36, 45, 95, 98, 102, 103, 108, 264, 265, 369, 371, 373, 380, 383, 385, 393,
                     533, 559, 560, 789, 911, 93), INT),
    **dict.fromkeys((73, 78, 136, 146, 232, 267, 268, 382, 384, 386, 453, 454, 518, 534, 555, 627, 711, 802,
                     816, 870), INT),
    **dict.fromkeys((6, 14, 31, 32, 38, 44, 99, 110, 111, 140, 151, 152, 192, 194, 195, 202, 210, 211, 228, 231,
                     223, 270, 271, 381, 389, 424, 425, 426, 561, 562, 640, 839, 845, 118, 119, 159, 12), FLOAT),
    **dict.fromkeys((43, 97, 114, 121, 123, 141, 266, 286, 325, 377, 464, 797, 893, 912), BOOL),
    **dict.fromkeys((52, 60, 122, 126, 168, 42, 483), TIMESTAMP),
    **dict.fromkeys((75, 64, 193, 229, 432, 541, 224, 225, 240, 230), DATE),
    **dict.fromkeys((200,), MONTHYEAR),
    **dict.fromkeys((273,), TIMEONLY),
}

SECURITY_TYPES: Final = ["EUSUPRA", "FAC", "FADN", "PEF", "SUPRA", "FUT", "OPT", "CORP", "CPP", "CB", "DUAL", "EUCORP", "XLINKD", "STRUCT", "YANK", "FOR", "CS", "PS", "WAR", "MF", "MLEG", "NONE", "BRADY", "EUSOV", "TBOND", "TINT", "TIPS", "TCAL", "TPRN", "UST", "USTB", "TNOTE", "TBILL", "REPO", "FORWARD", "BUYSELL", "SECLOAN", "SECPLEDGE", "TERM", "RVLV", "RVLVTRM", "BRIDGE", "LOFC", "SWING", "DINP", "DEFLTED", "WITHDRN", "REPLACD", "MATURED", "AMENDED", "RETIRED", "BA", "BN", "BOX", "CD", "CL", "CP", "DN", "EUCD", "EUCP", "LQN", "MTN", "ONITE", "PN", "PZFJ", "RP", "RVRP", "STN", "TD", "XCN", "POOL", "ABS", "CMBS", "CMO", "IET", "MBS", "MIO", "MPO", "MPP", "MPT", "PFAND", "TBA", "AN", "COFO", "COFP", "GO", "MT", "RAN", "REV", "SPCLA", "SPCLO", "SPCLT", "TAN", "TAXA", "TECP", "TRAN", "VRDN", "?", "WLD"]

# Enumerations not in the extract.
EXTRA_ENUMS: Final[dict[int, tuple[str, ...]]] = {
    21: ("1", "2", "3"),
    22: tuple("123456789ABCDEFGH"),
    98: ("0", "1", "2", "3", "4", "5", "6"),
    167: tuple(SECURITY_TYPES),
    321: ("0", "1", "2", "3"),
    323: ("1", "2", "3", "4", "5", "6"),
    460: tuple(str(n) for n in range(1, 14)),
    265: ("0", "1"),
    530: ("1", "2", "3", "4", "5", "6", "7"),
    531: ("0", "1", "2", "3", "4", "5", "6", "7"),
    585: ("1", "2", "3", "4", "5", "6", "7", "8"),
    560: ("0", "1", "2", "3", "4", "5"),
    STP_TAG: ("1", "2", "3"),
}

# The data formats as regular expressions (no capturing groups), so a whole message can be matched at once (shapes.py).
FORMAT_PATTERNS: Final[dict[str, str]] = {
    # Possessive (``++``, ``?+``): a value ends where its field does (at SOH, or ``\Z``), which no part of a pattern
    # matches, so giving back a character could never help; the matcher keeps no backtracking state for it
    # (the shape patterns, ``shapes.py``, match ~17% faster)
    INT: r"-?[0-9]++",
    # not ``[0-9]+\.?[0-9]*``: on a run of digits that fails at its end, its two digit runs try every split
    # (quadratic: a 64 KB price held the acceptor for seconds)
    FLOAT: r"-?(?:[0-9]++(?:\.[0-9]*+)?+|\.[0-9]++)",
    BOOL: "[YN]",
    TIMESTAMP: r"[0-9]{8}-[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9}+)?+",
    DATE: r"[0-9]{8}",
    MONTHYEAR: r"[0-9]{6}(?:[0-9]{2}|w[0-9])?+",
    TIMEONLY: r"[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9}+)?+",
}
_INT_RE: Final = re.compile(FORMAT_PATTERNS[INT] + r"\Z")
_FLOAT_RE: Final = re.compile(FORMAT_PATTERNS[FLOAT] + r"\Z")
_TIMESTAMP_RE: Final = re.compile(FORMAT_PATTERNS[TIMESTAMP] + r"\Z")
_DATE_RE: Final = re.compile(FORMAT_PATTERNS[DATE] + r"\Z")
_MONTHYEAR_RE: Final = re.compile(FORMAT_PATTERNS[MONTHYEAR] + r"\Z")
_TIMEONLY_RE: Final = re.compile(FORMAT_PATTERNS[TIMEONLY] + r"\Z")


@attrs.frozen
class SessionReject(Exception):
    """A message the session layer rejects with 35=3; ``text`` is QuickFIX's wording."""

    reason: int
    tag: int | None
    text: str


TEXTS: Final[dict[int, str]] = {
    0: "Invalid tag number",
    1: "Required tag missing",
    2: "Tag not defined for this message type",
    4: "Tag specified without a value",
    5: "Value is incorrect (out of range) for this tag",
    6: "Incorrect data format for value",
    9: "CompID problem",
    10: "SendingTime accuracy problem",
    11: "Invalid MsgType",
    13: "Tag appears more than once",
    14: "Tag specified out of required order",
    15: "Repeating group fields out of order",
    16: "Incorrect NumInGroup count for repeating group",
}


def reject(reason: int, tag: int | None = None) -> SessionReject:
    return SessionReject(reason, tag, TEXTS[reason])


@attrs.frozen
class Layout:
    """What one message type may carry."""

    required: frozenset[int]
    allowed: frozenset[int]
    groups: dict[int, Group]
    complete: bool  # every allowed tag is known, so "not defined for this message" can be checked


def _layouts() -> dict[str, Layout]:
    layouts: dict[str, Layout] = {}
    for msg_type, (required, allowed, admin_groups) in ADMIN_MESSAGES.items():
        layouts[msg_type] = Layout(frozenset(required), frozenset(allowed), {g.count_tag: g for g in admin_groups}, True)
    for msg_type, (_name, _cat, required, allowed, components) in MESSAGES.items():
        tags = set(allowed)
        req = set(required)
        groups: dict[int, Group] = {}
        complete = True
        for name, comp_required, expanded in components:
            plain, comp_groups, known = COMPONENTS.get(name, ((), (), expanded))
            complete = complete and known
            tags.update(plain)
            for group in comp_groups:
                groups[group.count_tag] = group
                tags.add(group.count_tag)
                if comp_required and name != "Instrument":
                    req.add(group.count_tag)
        if msg_type in ("D", "G"):
            tags.add(STP_TAG)
        layouts[msg_type] = Layout(frozenset(req), frozenset(tags), groups, complete)
    return layouts


LAYOUTS: Final = _layouts()
ENUM_VALUES: Final[dict[int, frozenset[str]]] = {
    **{tag: frozenset(values) for tag, (_n, _k, values) in ENUMS.items()},
    **{tag: frozenset(values) for tag, values in EXTRA_ENUMS.items()},
}
MULTI_VALUE: Final = frozenset(tag for tag, (_n, kind, _v) in ENUMS.items() if kind == "MULTIPLEVALUESTRING")
CHAR_TAGS: Final = frozenset(tag for tag, (_n, kind, _v) in ENUMS.items() if kind == "CHAR")
ALL_GROUPS: Final = {g.count_tag: g for layout in LAYOUTS.values() for g in layout.groups.values()}


def known_tag(tag: int) -> bool:
    return 1 <= tag <= MAX_STANDARD_TAG or tag in CUSTOM_FIELDS


def check_format(tag: int, value: str) -> bool:
    kind = FIELD_TYPES.get(tag)
    if kind is None:
        if tag in CHAR_TAGS:
            return len(value) == 1
        return True
    if kind == INT:
        return _INT_RE.match(value) is not None
    if kind == FLOAT:
        return _FLOAT_RE.match(value) is not None
    if kind == BOOL:
        return value in ("Y", "N")
    if kind == TIMESTAMP:
        return _TIMESTAMP_RE.match(value) is not None
    if kind == DATE:
        return _DATE_RE.match(value) is not None
    if kind == MONTHYEAR:
        return _MONTHYEAR_RE.match(value) is not None
    return _TIMEONLY_RE.match(value) is not None


def check_value(tag: int, value: str) -> bool:
    allowed = ENUM_VALUES.get(tag)
    if allowed is None:
        return True
    if tag in MULTI_VALUE:
        return all(part in allowed for part in value.split(" "))
    return value in allowed


class Validated:
    """A message split into header and a body with its repeating groups nested.

    ``of_shape``: the split of a shape-matched message (no groups) is made only
    when read; a NewOrderSingle's never is.
    """

    __slots__ = ("_body", "_header", "_message", "_start")

    def __init__(self, header: list[tuple[int, str]], body: list[Field]) -> None:
        self._header: list[tuple[int, str]] | None = header
        self._body: list[Field] | None = body
        self._message: Message | None = None
        self._start = 0

    @classmethod
    def of_shape(cls, message: Message, start: int) -> Validated:
        """Header ``fields[3:start]``, body the rest but the CheckSum, split when first read."""
        self = cls.__new__(cls)
        self._header = self._body = None
        self._message = message
        self._start = start
        return self

    def _split(self) -> None:
        assert self._message is not None
        fields = self._message.fields
        self._header, self._body = fields[3:self._start], cast("list[Field]", fields[self._start:-1])

    @property
    def header(self) -> list[tuple[int, str]]:
        if self._header is None:
            self._split()
        assert self._header is not None
        return self._header

    @property
    def body(self) -> list[Field]:
        if self._body is None:
            self._split()
        assert self._body is not None
        return self._body

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Validated):
            return NotImplemented
        return (self.header, self.body) == (other.header, other.body)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside, as before

    def __repr__(self) -> str:
        return f"Validated(header={self.header!r}, body={self.body!r})"


_GOOD_VALUES: dict[tuple[int, str], None] = {}  # (tag, value) pairs already checked, bounded
_GOOD_VALUES_MAX: Final = 65_536


def validate(message: Message) -> Validated:
    """Check a decoded message against the dictionary; raise SessionReject or return its parts.

    Most messages are valid and carry no repeating group, so one unordered pass
    with remembered good values decides them; anything else takes the ordered
    path that reports the same reject QuickFIX would.
    """
    fast = _fast(message)
    if fast is not None:
        return fast
    return _ordered(message)


@attrs.frozen
class _Plan:
    """What a message shape (its tag sequence) proves, so only its values are checked per message."""

    body_start: int  # index in ``fields`` of the first body field
    checks: tuple[tuple[int, int, Callable[[str], int]], ...]  # (index, tag, value check) of checked tags


_PLANS: dict[tuple[str, str], _Plan | None] = {}  # (MsgType, shape) -> plan, None: not a simple shape; bounded
_PLANS_MAX: Final = 4096


def _fast(message: Message) -> Validated | None:
    shape = message.shape
    if shape is None:
        return _fast_unshaped(message)
    key = (message.msg_type, shape)
    try:
        plan = _PLANS[key]
    except KeyError:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[key] = _plan(message)
    if plan is None or b"=\x01" in message.raw:  # every field of a shape has one '=': this is an empty value
        return None
    fields = message.fields
    good = _GOOD_VALUES
    for index, tag, check in plan.checks:
        value = fields[index][1]
        if (tag, value) not in good:
            if check(value):
                return None
            if len(good) >= _GOOD_VALUES_MAX:
                good.clear()
            good[tag, value] = None
    body: list[Field] = list(fields[plan.body_start:-1])
    return Validated(fields[3:plan.body_start], body)


def shape_validates(message: Message) -> bool:
    """Whether ``message``'s shape passes the per-shape structural checks (``_plan``): the messages a
    compiled shape (shapes.py) may take over must be the ones ``validate`` decides by plan."""
    if message.shape is None:
        return False
    key = (message.msg_type, message.shape)
    plan = _PLANS[key] if key in _PLANS else _plan(message)
    return plan is not None


def value_pattern(tag: int) -> str | None:
    """A regular expression for exactly the values of ``tag`` validation accepts that hold neither SOH nor '='.

    None when no such pattern is written here (the message then keeps the
    field-by-field path). Tags without a check take any non-empty value.
    """
    if tag not in _CHECKS:
        return "[^\x01=]++"  # possessive: see FORMAT_PATTERNS
    kind = FIELD_TYPES.get(tag)
    allowed = ENUM_VALUES.get(tag)
    if allowed is None:
        return FORMAT_PATTERNS[kind] if kind is not None and tag not in CHAR_TAGS else None
    plain = sorted((v for v in allowed if v and "\x01" not in v and "=" not in v), key=lambda v: (-len(v), v))
    if tag in MULTI_VALUE:
        if kind is not None or tag in CHAR_TAGS:
            return None
        parts = [re.escape(v) for v in plain if " " not in v]
        one = "(?:" + "|".join(parts) + ")"
        return f"{one}(?: {one})*" if parts else None
    good = [v for v in plain if check_format(tag, v)]
    if good and all(len(v) == 1 for v in good):
        # one character class (Side, OrdType, TimeInForce...): the matcher tests a set instead of trying each branch
        return "[" + "".join(re.escape(v) for v in sorted(good)) + "]"
    return "(?:" + "|".join(re.escape(v) for v in good) + ")" if good else None


def _plan(message: Message) -> _Plan | None:
    """The structural half of ``_fast_unshaped`` for one shape: order, repeats, known and allowed tags, required."""
    layout = LAYOUTS.get(message.msg_type)
    if layout is None or layout.groups.keys() & message.tags():
        return None
    allowed = layout.allowed if layout.complete else None
    seen: set[int] = set()
    checks = []
    body_start = None
    for index, (tag, _value) in enumerate(message.fields[3:-1], 3):
        if tag in seen or not known_tag(tag):
            return None
        seen.add(tag)
        if tag in HEADER_TAGS:
            if body_start is not None:
                return None
        elif tag in TRAILER_TAGS or (allowed is not None and tag not in allowed):
            return None
        elif body_start is None:
            body_start = index
        check = _CHECKS.get(tag)
        if check is not None:
            checks.append((index, tag, check))
    if not seen.issuperset(_HEADER_REQUIRED_BODY) or not seen.issuperset(layout.required):
        return None
    return _Plan(len(message.fields) - 1 if body_start is None else body_start, tuple(checks))


def _fast_unshaped(message: Message) -> Validated | None:
    layout = LAYOUTS.get(message.msg_type)
    if layout is None or layout.groups.keys() & message.tags():
        return None
    header: list[tuple[int, str]] = []
    body: list[Field] = []
    seen: set[int] = set()
    good = _GOOD_VALUES
    allowed = layout.allowed if layout.complete else None
    for tag, value in message.fields[3:-1]:
        if tag in seen:
            return None
        seen.add(tag)
        if (tag, value) not in good:
            check = _CHECKS.get(tag)
            if not value or (check is not None and check(value)) or not known_tag(tag):
                return None
            if len(good) >= _GOOD_VALUES_MAX:
                good.clear()
            good[tag, value] = None
        if tag in HEADER_TAGS:
            if body:
                return None
            header.append((tag, value))
        elif tag in TRAILER_TAGS or (allowed is not None and tag not in allowed):
            return None
        else:
            body.append((tag, value))
    if not seen.issuperset(_HEADER_REQUIRED_BODY) or not seen.issuperset(layout.required):
        return None
    return Validated(header, body)


_HEADER_REQUIRED_BODY: Final = frozenset(HEADER_REQUIRED) - {8, 9, 35}


def _ordered(message: Message) -> Validated:
    fields = message.fields[3:-1]  # without 8, 9, 35 and 10
    header, body, trailer = _split(fields)
    msg_type = message.msg_type
    if msg_type not in MSG_TYPES:
        raise reject(11)
    layout = LAYOUTS.get(msg_type)
    present = {tag for tag, _ in fields} | {8, 9, 35}
    for tag in HEADER_REQUIRED:
        if tag not in present:
            raise reject(1, tag)
    if layout is not None:
        for tag in sorted(layout.required):
            if tag not in present:
                raise reject(1, tag)
    _check_fields(sorted(header), layout, msg_type, in_body=False)
    _check_fields(sorted(trailer), layout, msg_type, in_body=False)
    groups = layout.groups if layout is not None else ALL_GROUPS
    structured = _nest(body, groups)
    _check_fields(sorted(_top_level(structured)), layout, msg_type, in_body=True)
    return Validated(header, structured)


def _split(fields: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[tuple[int, str]], list[tuple[int, str]]]:
    """Header, body, trailer; a header tag after the body or a body tag after the trailer is out of order."""
    header: list[tuple[int, str]] = []
    body: list[tuple[int, str]] = []
    trailer: list[tuple[int, str]] = []
    for tag, value in fields:
        if tag in HEADER_TAGS:
            if body or trailer:
                raise reject(14, tag)
            header.append((tag, value))
        elif tag in TRAILER_TAGS:
            trailer.append((tag, value))
        else:
            if trailer:
                raise reject(14, tag)
            body.append((tag, value))
    return header, body, trailer


def _nest(body: list[tuple[int, str]], groups: dict[int, Group]) -> list[Field]:
    """Fold repeating groups into nested entries; raise on a wrong NumInGroup count."""
    out: list[Field] = []
    pos = 0
    while pos < len(body):
        tag, value = body[pos]
        pos += 1
        group = groups.get(tag)
        if group is None or not is_number(value):
            out.append((tag, value))
            continue
        entries, pos = _read_group(body, pos, group)
        if len(entries) != int(value):
            raise reject(16, tag)
        out.append((tag, entries))
    return out


def _read_group(body: list[tuple[int, str]], pos: int, group: Group) -> tuple[GroupValue, int]:
    entries: GroupValue = []
    members = set(group.members)
    nested = {g.count_tag: g for g in group.nested}
    while pos < len(body) and body[pos][0] == group.delimiter:
        entry: list[Field] = [body[pos]]
        seen = {body[pos][0]}
        pos += 1
        while pos < len(body) and body[pos][0] in members and body[pos][0] != group.delimiter:
            tag, value = body[pos]
            pos += 1
            if tag in seen:
                raise reject(13, tag)
            seen.add(tag)
            inner = nested.get(tag)
            if inner is not None and is_number(value):
                sub, pos = _read_group(body, pos, inner)
                if len(sub) != int(value):
                    raise reject(16, tag)
                entry.append((tag, sub))
            else:
                entry.append((tag, value))
        entries.append(entry)
    return entries, pos


def _top_level(body: Iterable[Field]) -> list[tuple[int, str]]:
    """Top-level fields of a nested body, with group entries checked recursively first."""
    flat: list[tuple[int, str]] = []
    for tag, value in body:
        if isinstance(value, str):
            flat.append((tag, value))
        else:
            flat.append((tag, str(len(value))))
            for entry in value:
                for inner_tag, inner_value in entry:
                    if isinstance(inner_value, str):
                        _check_value(inner_tag, inner_value)
    return flat


def _checker(tag: int) -> Callable[[str], int] | None:
    """A function value -> 0 (good), 6 (bad format) or 5 (not an allowed value), or None if anything goes."""
    if tag not in FIELD_TYPES and tag not in CHAR_TAGS and tag not in ENUM_VALUES:
        return None

    def check(value: str) -> int:
        if not check_format(tag, value):
            return 6
        if not check_value(tag, value):
            return 5
        return 0

    return check


_CHECKS: Final = {
    tag: check for tag in range(-1, MAX_STANDARD_TAG + 1) if (check := _checker(tag)) is not None
} | {tag: check for tag in CUSTOM_FIELDS if (check := _checker(tag)) is not None}


def _check_value(tag: int, value: str) -> None:
    if not value:
        raise reject(4, tag)
    check = _CHECKS.get(tag)
    if check is not None:
        problem = check(value)
        if problem:
            raise reject(problem, tag)


def _check_fields(fields: list[tuple[int, str]], layout: Layout | None, msg_type: str, *, in_body: bool) -> None:
    last = None
    for tag, value in fields:
        if tag == last:
            raise reject(13, tag)
        last = tag
        _check_value(tag, value)
        if not known_tag(tag):
            raise reject(0, tag)
        if in_body and layout is not None and layout.complete and tag not in layout.allowed:
            raise reject(2, tag)
