"""Resident memory per resting order, measured in a fresh subprocess.

``python -m bench.rss_bench [N]`` builds a venue (default config), creates and
funds accounts, and then rests N non-crossing limit orders by applying
``OrderPlaced`` events with status New through ``Venue.apply`` — the replay
path, which fills both the market's book and each account's open orders, the
same state the live actors end up with. The events go through the journal codec
first (encoded and decoded in batches of 1,000, as recovery reads them), so
their ints are the objects replay would keep. Bids sit on 1,000 price levels below
100.00 and asks on 1,000 levels above, so nothing matches; quantities are 10..1,000
steps (0.1..10 SOL), the sizes the engine benchmark sends.

RSS is read from /proc/self/statm (current resident pages) after a full
``gc.collect()`` before and after the orders; the event objects are dropped as
they are applied, so only what the venue keeps is counted. The garbage
collector keeps its default settings (no freeze, no threshold changes).
It prints one JSON object.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterator

import orjson

from engine.codec import decode_events, encode_events
from engine.config import DEFAULT, parse_config
from engine.messages import (
    ASK,
    BID,
    GTC,
    LIMIT,
    NEW,
    NO_CLIENT_ID,
    REJECT_TAKER,
    AccountCreated,
    Deposited,
    OrderPlaced,
)
from engine.venue import Venue

SYMBOL = "SOL_USDC"
N_ACCOUNTS = 1_000
LEVELS = 1_000  # per side
MID_TICKS = 10_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def resting_events(n: int, first_order_id: int, qpts: int, bps: int) -> Iterator[OrderPlaced]:
    """N GTC limit orders that never cross; each is its own OrderPlaced with status New."""
    ts = 1_700_000_000_000_000
    for i in range(n):
        bid = i % 2 == 0
        level = (i // 2) % LEVELS + 1
        price = MID_TICKS - level if bid else MID_TICKS + level
        qty = 10 * (i % 100 + 1)  # 0.1..10 SOL in 0.01 steps, as in the engine benchmark
        lock = price * qty * qpts if bid else qty * bps
        yield OrderPlaced(
            first_order_id + i, 1 + i % N_ACCOUNTS, SYMBOL, BID if bid else ASK, LIMIT, GTC,
            price, qty, 0, False, REJECT_TAKER, NO_CLIENT_ID, lock, ts + i, NEW, "", [], [],
        )


def measure(n: int) -> dict[str, object]:
    venue = Venue(parse_config(DEFAULT))
    spec = venue.specs[SYMBOL]
    for aid in range(1, N_ACCOUNTS + 1):
        venue.apply(AccountCreated(aid, -1, "", "retail", 0))
        venue.apply(Deposited(aid, spec.quote, 10**17, 0))
        venue.apply(Deposited(aid, spec.base, 10**17, 0))
    gc.collect()
    before = rss_bytes()
    t0 = time.perf_counter()
    apply = venue.apply
    batch: list[OrderPlaced] = []
    for event in resting_events(n, venue.next_order_id, spec.quote_per_tick_step, spec.base_per_step):
        batch.append(event)
        if len(batch) == 1_000:
            for decoded in decode_events(encode_events(batch)):
                apply(decoded)
            batch.clear()
    for decoded in decode_events(encode_events(batch)):
        apply(decoded)
    del batch
    build_s = time.perf_counter() - t0
    gc.collect()
    after = rss_bytes()
    book = venue.markets[SYMBOL].book
    assert len(book.orders) == n, len(book.orders)
    assert sum(len(a.orders) for a in venue.accounts.values()) == n
    venue.check_invariants()
    return {
        "orders": n,
        "rss_before": before,
        "rss_after": after,
        "bytes_per_order": (after - before) / n,
        "build_s": round(build_s, 2),
        "gc": "default",
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    sys.stdout.write(orjson.dumps(measure(n)).decode() + "\n")


if __name__ == "__main__":
    main()
