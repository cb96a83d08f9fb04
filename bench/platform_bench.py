"""How fast and how quiet this machine is, so the other figures can be read against the reference VM.

* ``heap_book``: the plain-Python book of reference/performance.md §4 (dict of
  price -> deque, heapq of prices) on the shared workload. The reference VM
  measured 1.96-2.14 M orders/s best; the ratio to that scales every target
  set on that VM.
* ``stalls``: a tight loop reading ``perf_counter`` for one second; any gap over
  1 ms is time this process was not running (other tenants, other processes on
  the box). It bounds what any latency percentile here can show.
"""

from __future__ import annotations

import heapq
import time
from collections import deque

from bench.workload import Order
from engine.messages import BID


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
