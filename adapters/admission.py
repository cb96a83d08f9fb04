"""Connection slots of one listening port: a total, and a share no single address may exceed.

Every socket a client holds costs the daemon a file descriptor and some memory,
and the process has one descriptor table for REST, WebSocket, FIX, the admin
socket and the journal. A port without a total lets one client take them all;
a total without a per-address share lets one client take the whole port (a
slowloris holding every HTTP slot). ``admit`` is asked before anything else is
done for a new connection; ``release`` when it closes. A refused connection is
closed at once: the caller decides whether it says why first.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

# per port: REST and WebSocket 4,096 each and FIX 1,000 stay far below the 20,000-descriptor limit of this daemon's
# process (`ulimit -n` on the project's VM); the share lets one address hold a busy client's pool, never the port
PER_PEER_DEFAULT: Final = 512


class Admission:
    """At most ``total`` connections, at most ``per_peer`` from one address."""

    def __init__(self, total: int, per_peer: int = PER_PEER_DEFAULT) -> None:
        self.total = total
        self.per_peer = per_peer
        self.open = 0
        self.by_peer: dict[str, int] = {}

    def admit(self, peer: str) -> str | None:
        """Take a slot for a connection from ``peer``; None if taken, else why it is refused."""
        if self.open >= self.total:
            return f"too many connections (at most {self.total})"
        held = self.by_peer.get(peer, 0)
        if held >= self.per_peer:
            return f"too many connections from {peer} (at most {self.per_peer})"
        self.open += 1
        self.by_peer[peer] = held + 1
        return None

    def release(self, peer: str) -> None:
        self.open -= 1
        held = self.by_peer[peer] - 1
        if held:
            self.by_peer[peer] = held
        else:
            del self.by_peer[peer]


class _Socket(Protocol):
    def getpeername(self) -> Any: ...


def peer_of(sock: _Socket) -> str:
    """The address a socket's peer connects from (its host part), or "" when it has none (a Unix socket)."""
    try:
        name = sock.getpeername()
    except OSError:  # already reset by the peer
        return ""
    return str(name[0]) if isinstance(name, tuple) else ""
