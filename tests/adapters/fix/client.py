"""A minimal raw FIX client for tests: builds, sends and reads messages over a real socket."""

from __future__ import annotations

import ssl

import trio

from adapters.fix.codec import Field, Framer, Message, Timestamps, decode, encode_body, frame_message
from adapters.fix.server import wall_clock_us

OPEN: list[RawClient] = []


async def close_all() -> None:
    """Close every client a test opened (tests call this from a fixture)."""
    while OPEN:
        await OPEN.pop().aclose()


class RawClient:
    def __init__(self, stream: trio.abc.Stream, sender: str = "TW44", target: str = "ISLD") -> None:
        self.stream = stream
        self.sender = sender
        self.target = target
        self.seq = 1
        self.framer = Framer()
        self.pending: list[bytes] = []
        self.times = Timestamps()
        OPEN.append(self)

    @classmethod
    async def connect(cls, address: tuple[str, int], sender: str = "TW44", target: str = "ISLD") -> RawClient:
        return cls(await trio.open_tcp_stream(*address), sender, target)

    @classmethod
    async def connect_tls(cls, address: tuple[str, int], context: ssl.SSLContext, sender: str = "TW44",
                          target: str = "ISLD", *, sock: trio.socket.SocketType | None = None) -> RawClient:
        """Over TLS (trio's SSLStream: Python's ssl, i.e. OpenSSL), the handshake done; ``sock``: already connected."""
        stream = trio.SocketStream(sock) if sock is not None else await trio.open_tcp_stream(*address)
        tls = trio.SSLStream(stream, context, server_hostname="localhost")
        await tls.do_handshake()
        return cls(tls, sender, target)

    def build(self, msg_type: str, body: list[Field] | None = None, *, seq: int | None = None,
              header: list[tuple[int, str]] | None = None) -> bytes:
        number = self.seq if seq is None else seq
        if seq is None:
            self.seq += 1
        head = [(34, str(number)), (49, self.sender), (52, self.times.millis(wall_clock_us())), (56, self.target)]
        return frame_message(msg_type, head + (header or []), encode_body(body or []))

    async def send(self, msg_type: str, body: list[Field] | None = None, **kwargs: object) -> None:
        await self.stream.send_all(self.build(msg_type, body, **kwargs))  # type: ignore[arg-type]

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read(self, wait_s: float = 5.0) -> Message | None:
        """The next message, or None when the acceptor closed the connection."""
        with trio.fail_after(wait_s):
            while not self.pending:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.BrokenResourceError:  # a reset, or a TLS connection ended without close_notify
                    data = b""
                if not data:
                    return None
                self.framer.feed(data)
                self.pending.extend(self.framer.frames())
        return decode(self.pending.pop(0))

    async def expect(self, msg_type: str, wait_s: float = 5.0) -> Message:
        message = await self.read(wait_s)
        assert message is not None, f"disconnected while waiting for 35={msg_type}"
        assert message.msg_type == msg_type, f"expected 35={msg_type}, got {message}"
        return message

    async def logon(self, heartbeat: int = 30, extra: list[tuple[int, str]] | None = None) -> Message:
        await self.send("A", [(98, "0"), (108, str(heartbeat)), *(extra or [])])
        return await self.expect("A")

    async def aclose(self) -> None:
        await self.stream.aclose()
