"""A runner for QuickFIX's acceptance-test ``.def`` format (semantics of test/Runner.rb).

The definitions are data owned by QuickFIX; they are read at test time from
``<repo>/../shared/conformance/quickfix-fix44/`` and never copied here.

Commands: ``iCONNECT``/``iDISCONNECT`` open/close a connection, ``I<msg>`` sends,
``E<msg>`` reads one message and compares it, ``eDISCONNECT`` expects the
acceptor to close; an optional ``N,`` picks the connection. ``<TIME±N>`` becomes
the UTC time in seconds. Missing BodyLength/CheckSum are filled in. Comparison:
same tags in the same order; values equal, except tags listed in fields.fmt,
which match its regular expressions.
"""

from __future__ import annotations

import datetime
import re
import ssl
from pathlib import Path

import trio

from adapters.fix.codec import Framer, checksum

REPO = Path(__file__).resolve().parents[3]
SUITE = REPO.parent / "shared" / "conformance" / "quickfix-fix44"
DEFINITIONS = SUITE / "definitions"
READ_TIMEOUT_S = 10.0
DISCONNECT_TIMEOUT_S = 10.0
TIME_RE = re.compile(rb"<TIME([+-]\d+)?>")
COMMAND_RE = re.compile(rb"^([iIeE])(?:(\d),)?(.*)$", re.S)


class Failure(AssertionError):
    pass


def field_patterns() -> dict[int, re.Pattern[str]]:
    patterns = {}
    for line in (SUITE / "fields.fmt").read_text().splitlines():
        if "=" in line:
            tag, pattern = line.split("=", 1)
            patterns[int(tag)] = re.compile(pattern)
    return patterns


def substitute_time(line: bytes, now: datetime.datetime | None = None) -> bytes:
    """``<TIME±N>`` as whole UTC seconds, N seconds from now, never fewer.

    The format has no fraction of a second, so a moment must be rounded to a
    whole second. ``<TIME>`` rounds down (a SendingTime is never in our
    future). An offset rounds away from now, so ``<TIME+121>`` is at least
    121 s ahead: rounded down it would be anywhere from 120 s to 121 s ahead,
    and a message that reached the acceptor later than the rest of that
    second (a loaded machine) was then within its 120 s tolerance, and
    2o_SendingTimeValueOutOfRange failed. The acceptor's check is the same
    either way; only the runner's rendering of the definition changed.
    """
    current = datetime.datetime.now(datetime.UTC) if now is None else now

    def repl(match: re.Match[bytes]) -> bytes:
        offset = int(match.group(1) or b"0")
        moment = current + datetime.timedelta(seconds=offset)
        if offset > 0 and moment.microsecond:
            moment += datetime.timedelta(microseconds=1_000_000 - moment.microsecond)
        return moment.strftime("%Y%m%d-%H:%M:%S").encode()

    return TIME_RE.sub(repl, line)


def fixify(message: bytes) -> bytes:
    if b"\x019=" not in message:
        head = message.index(b"\x01") + 1
        rest = message[head:]
        trailer = rest.find(b"\x0110=")
        length = len(rest) if trailer < 0 else trailer + 1
        message = message[:head] + b"9=%d\x01" % length + rest
    if b"\x0110=" not in message and not message.startswith(b"10="):
        message += b"10=%03d\x01" % checksum(message)
    return message


def fields(message: bytes) -> list[tuple[int, str]]:
    out = []
    for part in message.split(b"\x01"):
        if part:
            tag, _, value = part.partition(b"=")
            out.append((int(tag), value.decode("latin-1")))
    return out


def compare(expected: bytes, actual: bytes, patterns: dict[int, re.Pattern[str]]) -> None:
    want, got = fields(expected), fields(actual)
    show = f"\n expected {expected!r}\n received {actual!r}"
    if len(want) != len(got):
        raise Failure(f"field count {len(got)} != {len(want)}{show}")
    for (wtag, wvalue), (gtag, gvalue) in zip(want, got, strict=True):
        if wtag != gtag:
            raise Failure(f"tag {gtag} where {wtag} was expected{show}")
        pattern = patterns.get(wtag)
        if pattern is not None:
            if not pattern.search(gvalue):
                raise Failure(f"tag {wtag} value {gvalue!r} does not match {pattern.pattern}{show}")
        elif wvalue != gvalue:
            raise Failure(f"tag {wtag}: {gvalue!r} != {wvalue!r}{show}")


class Peer:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.framer = Framer()
        self.pending: list[bytes] = []

    async def read_message(self) -> bytes | None:
        while not self.pending:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset by the acceptor: a disconnect
                data = b""
            if not data:
                return None
            self.framer.feed(data)
            self.pending.extend(self.framer.frames())
        return self.pending.pop(0)


async def run_definition(path: Path, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
    """Run one .def script against the acceptor (over TLS with ``tls``); raise Failure on the first mismatch."""
    patterns = field_patterns()
    peers: dict[int, Peer] = {}
    try:
        for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):  # noqa: ASYNC240 - small test data
            line = raw.rstrip(b"\r")
            if not line.strip() or line.startswith(b"#"):
                continue
            match = COMMAND_RE.match(line)
            if match is None:
                continue
            command, conn_id, rest = match.group(1), int(match.group(2) or b"1"), match.group(3)
            try:
                await _step(command, rest, conn_id, peers, host, port, patterns, tls)
            except Failure as exc:
                raise Failure(f"{path.name} line {number}: {exc}") from None
    finally:
        for peer in peers.values():
            await peer.stream.aclose()


async def _step(
    command: bytes, rest: bytes, conn_id: int, peers: dict[int, Peer], host: str, port: int,
    patterns: dict[int, re.Pattern[str]], tls: ssl.SSLContext | None,
) -> None:
    if command == b"i" and rest == b"CONNECT":
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        if tls is not None:
            stream = trio.SSLStream(stream, tls, server_hostname="localhost")
            await stream.do_handshake()
        peers[conn_id] = Peer(stream)
    elif command == b"i" and rest == b"DISCONNECT":
        await peers.pop(conn_id).stream.aclose()
    elif command == b"e" and rest == b"DISCONNECT":
        peer = peers[conn_id]
        with trio.move_on_after(DISCONNECT_TIMEOUT_S) as scope:
            message = await peer.read_message()
        if scope.cancelled_caught:
            raise Failure("expected disconnection, connection still open after 10 s")
        if message is not None:
            raise Failure(f"expected disconnection, got data {message!r}")
        await peers.pop(conn_id).stream.aclose()
    elif command == b"I":
        await peers[conn_id].stream.send_all(fixify(substitute_time(rest)))
    elif command == b"E":
        expected = fixify(substitute_time(rest))
        with trio.move_on_after(READ_TIMEOUT_S):
            actual = await peers[conn_id].read_message()
            if actual is None:
                raise Failure(f"was disconnected, expected data {expected!r}")
            compare(expected, actual, patterns)
            return
        raise Failure(f"no message within {READ_TIMEOUT_S} s, expected {expected!r}")
