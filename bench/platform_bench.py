"""How fast and how quiet this machine is, so the other figures can be read against the reference VM.

* ``heap_book``: the plain-Python book of reference/performance.md §4 (dict of
  price -> deque, heapq of prices) on the shared workload. The reference VM
  measured 1.96-2.14 M orders/s best; the ratio to that scales every target
  set on that VM.
* ``speed``: one heap-book run under the interpreter's default collector, as a
  fraction of the reference VM's median. The benchmarks with a throughput target
  take it right before and right after each of their runs: this box's speed
  moves 2x within minutes, so only a probe taken beside a run says what that run
  would have measured on the reference VM (``reference_equivalent``).
* ``stalls``: a tight loop reading ``perf_counter`` for one second; any gap over
  1 ms is time this process was not running (other tenants, other processes on
  the box). It bounds what any latency percentile here can show.
"""

from __future__ import annotations

import gc
import heapq
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, TypeVar

from bench.workload import Order
from engine.messages import BID

# performance.md §2.3: the heap book's median run on the reference VM was 1.84-2.0 M orders/s
# (best 1.96-2.14 M); the middle of the medians, since a probe here is one run, not a best-of.
REFERENCE_HEAP_BOOK: Final = 1_920_000
DEFAULT_GC_THRESHOLD: Final = (700, 10, 10)  # CPython's own, which the reference figures were taken under

T = TypeVar("T")


def heap_book(orders: list[Order]) -> tuple[float, int, int]:
    bids: dict[int, deque[list[int]]] = {}
    asks: dict[int, deque[list[int]]] = {}
    bid_heap: list[int] = []  # negated prices
    ask_heap: list[int] = []
    fills = 0
    t0 = time.perf_counter()
    for oid, (side, price, qty) in enumerate(orders):
        if side == BID:
            while qty and ask_heap and ask_heap[0] <= price:
                best = ask_heap[0]
                level = asks[best]
                while qty and level:
                    maker = level[0]
                    traded = maker[1] if maker[1] < qty else qty
                    maker[1] -= traded
                    qty -= traded
                    fills += 1
                    if maker[1] == 0:
                        level.popleft()
                if not level:
                    del asks[best]
                    heapq.heappop(ask_heap)
            if qty:
                level = bids.get(price)
                if level is None:
                    level = bids[price] = deque()
                    heapq.heappush(bid_heap, -price)
                level.append([oid, qty])
        else:
            while qty and bid_heap and -bid_heap[0] >= price:
                best = -bid_heap[0]
                level = bids[best]
                while qty and level:
                    maker = level[0]
                    traded = maker[1] if maker[1] < qty else qty
                    maker[1] -= traded
                    qty -= traded
                    fills += 1
                    if maker[1] == 0:
                        level.popleft()
                if not level:
                    del bids[best]
                    heapq.heappop(bid_heap)
            if qty:
                level = asks.get(price)
                if level is None:
                    level = asks[price] = deque()
                    heapq.heappush(ask_heap, price)
                level.append([oid, qty])
    elapsed = time.perf_counter() - t0
    resting = sum(map(len, bids.values())) + sum(map(len, asks.values()))
    return elapsed, fills, resting


def stalls(seconds: float = 1.0, threshold_s: float = 0.001) -> dict[str, float]:
    """Share of wall time lost to gaps > threshold, and the largest gap, in a busy loop."""
    clock = time.perf_counter
    start = last = clock()
    end = start + seconds
    lost = largest = 0.0
    count = 0
    while last < end:
        now = clock()
        gap = now - last
        if gap > threshold_s:
            lost += gap
            count += 1
            largest = max(largest, gap)
        last = now
    return {"lost_fraction": lost / (last - start), "largest_ms": largest * 1e3, "gaps": count}


@contextmanager
def default_collector() -> Iterator[None]:
    """The collector as a fresh interpreter has it, for a block; then the settings from before.

    ``Engine.run`` tunes the collector process-wide and leaves it tuned, so a
    probe taken after an engine run would otherwise run under other settings
    than the reference's. What the engine froze stays frozen (never walked).
    """
    threshold, callbacks = gc.get_threshold(), list(gc.callbacks)
    gc.callbacks.clear()
    gc.set_threshold(*DEFAULT_GC_THRESHOLD)
    try:
        gc.collect()
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks[:] = callbacks


def speed(orders: list[Order]) -> float:
    """This box's speed now, as a fraction of the reference VM's: one heap-book run (~0.1 s)."""
    with default_collector():
        elapsed, _, _ = heap_book(orders)
    return len(orders) / elapsed / REFERENCE_HEAP_BOOK


def paced(run: Callable[[], T], orders: list[Order]) -> tuple[T, float]:
    """``run()`` with the box's speed probed right before and right after it: (result, mean speed)."""
    before = speed(orders)
    result = run()
    return result, (before + speed(orders)) / 2


def at_reference_speed(rates: list[float], speeds: list[float], target: float) -> dict[str, object]:
    """Fields for a throughput figure whose runs were ``paced``: what each run would have been on the
    reference VM (rate / speed), their median, and whether that meets the target."""
    equivalents = [rate / s for rate, s in zip(rates, speeds, strict=True)]
    value = statistics.median(equivalents)
    return {
        "speed_vs_reference_vm": [round(s, 3) for s in speeds],
        "reference_vm_equivalent": round(value),
        "reference_vm_equivalent_runs": [round(v) for v in equivalents],
        "meets_at_reference_speed": value >= target,
        "reference_note": f"each run divided by this box's speed beside it (a heap-book probe before and after, "
                          f"against the reference VM's median {REFERENCE_HEAP_BOOK:,} orders/s, performance.md §2.3)",
    }
