"""The shared matching workload (reference/performance.md §2.2).

100,000 limit orders, ``random.Random(42)``, integer ticks around mid = 10,000,
quantity uniform 1..100, 50/50 side; 65% passive (1..50 ticks away on their own
side), 35% aggressive (1..25 ticks through mid). The draw order below
(side, quantity, passive/aggressive, offset) reproduces the reference figures
exactly: 29,999 orders (30.0%) produce at least one fill, 54,071 fills in all,
45,338 orders rest at the end. Every implementation benchmarked against it must
report the same fill count, which checks that it really matched.
"""

from __future__ import annotations

import random
from typing import Final

from engine.messages import ASK, BID

N_ORDERS: Final = 100_000
SEED: Final = 42
MID_TICKS: Final = 10_000
EXPECTED_FILLS: Final = 54_071
EXPECTED_CROSSING: Final = 29_999
EXPECTED_RESTING: Final = 45_338

Order = tuple[str, int, int]  # (side, price_ticks, qty_steps)


def generate(n: int = N_ORDERS, seed: int = SEED) -> list[Order]:
    rng = random.Random(seed)
    out: list[Order] = []
    for _ in range(n):
        bid = rng.random() < 0.5
        qty = rng.randint(1, 100)
        if rng.random() < 0.35:  # aggressive: through mid
            off = rng.randint(1, 25)
            price = MID_TICKS + off if bid else MID_TICKS - off
        else:  # passive: on its own side
            off = rng.randint(1, 50)
            price = MID_TICKS - off if bid else MID_TICKS + off
        out.append((BID if bid else ASK, price, qty))
    return out


def price_text(ticks: int) -> str:
    """Ticks of 0.01 as a decimal string: 10_000 -> "100.00"."""
    return f"{ticks // 100}.{ticks % 100:02d}"


def qty_text(qty: int) -> str:
    """Workload quantity q as q/10 units of base, so even q=1 clears a 1 USDC minimum notional.

    Scaling every quantity by the same factor does not change which orders match
    or how many fills there are.
    """
    return f"{qty // 10}.{qty % 10}"
