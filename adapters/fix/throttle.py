"""Per-session inbound message rate limits of the FIX acceptor (sans-IO: the time is passed in).

Two token buckets per session, refilled from the time of the socket read a
message came in (``Connection.receive`` reads the clock once per read, and a
read of a pipelining peer holds ~100 messages), so checking a message is an
integer comparison and a subtraction:

* the **rate**: application messages (D, F, G, H, q, AF, V, x and any other
  type that is not session-level) at ``max_messages_per_s`` on average and up to
  ``burst_messages`` at once. A message over it is received (its MsgSeqNum is
  consumed) but refused: the application answers it with its type's rejection
  naming the limit (``Application.refuse``), and it reaches nothing else.
* the **ceiling**: every message the peer sends once logged on (session-level
  ones and garbled frames included) at ``FLOOD_FACTOR`` times that rate and
  burst. Session-level messages (Heartbeat, TestRequest, ResendRequest,
  SequenceReset, Reject, Logout) are never refused, since the session depends
  on them; they count here only, so a peer flooding them is not free. A peer
  that empties the ceiling is logged out at once, the Logout naming the limit
  (``Session._flood``); cancel-on-disconnect applies as for any disconnect.
  With the defaults (1,000/s, bursts of 2,000) that is a peer sending 8,000
  messages a second for 2 s, or 5,000 a second for 8 s; at up to 4,000 a
  second it is only refused.

The buckets belong to the session, not the connection: logging on again does
not refill them. Units: a message is ``UNIT`` (10^6) and the time is in
microseconds, so ``rate`` messages a second adds exactly ``rate`` units per
microsecond, with no rounding to accumulate.
"""

from __future__ import annotations

from typing import Final

UNIT: Final = 1_000_000  # one message, in the buckets' units
FLOOD_FACTOR: Final = 4  # the ceiling's rate and burst, in multiples of the session's rate and burst


class Throttle:
    """One session's two buckets: ``take`` for an application message, ``admit`` for every message."""

    __slots__ = ("capacity", "ceiling", "ceiling_capacity", "ceiling_rate", "flood_text", "last_us", "now",
                 "rate", "refusal_text", "tokens")

    def __init__(self, per_s: int, burst: int) -> None:
        assert per_s >= 1 and burst >= 1  # the config's validation says so to the operator
        self.rate = per_s
        self.capacity = self.tokens = burst * UNIT
        self.ceiling_rate = FLOOD_FACTOR * per_s
        self.ceiling_capacity = self.ceiling = FLOOD_FACTOR * burst * UNIT
        self.now = float("nan")  # the time of the last refill (never equal to a time: the first admit refills)
        self.last_us = 0
        self.refusal_text = f"Rate limit: at most {per_s} messages per second on this session (bursts of {burst})"
        self.flood_text = (f"Rate limit: more than {FLOOD_FACTOR * per_s} messages per second on this session, "
                           f"{FLOOD_FACTOR} times the limit of {per_s}")

    def admit(self, now: float) -> bool:
        """A message arrived at ``now`` (once logged on); False: the ceiling is empty, the peer is logged out."""
        if now != self.now:
            self._refill(now)
        if self.ceiling < UNIT:
            return False
        self.ceiling -= UNIT
        return True

    def take(self) -> bool:
        """An application message, already ``admit``-ted; False: it is over the rate and is refused."""
        if self.tokens < UNIT:
            return False
        self.tokens -= UNIT
        return True

    def _refill(self, now: float) -> None:
        self.now = now
        now_us = int(now * 1_000_000)
        elapsed_us = now_us - self.last_us
        self.last_us = now_us
        if elapsed_us > 0:  # the buckets start full: the first refill (from 0) changes nothing
            self.tokens = min(self.capacity, self.tokens + elapsed_us * self.rate)
            self.ceiling = min(self.ceiling_capacity, self.ceiling + elapsed_us * self.ceiling_rate)
