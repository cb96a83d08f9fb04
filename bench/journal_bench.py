"""Journal figures (issue 3): append with group commit, replay, recovery from a snapshot, PoR build.

History for replay and recovery is made by the sans-IO venue itself (account
decides the lock, market matches, venue applies), from the shared workload with
cancels mixed in so the book stays bounded: a realistic stream of OrderPlaced
(with fills) and OrderCancelled events. It is written as the live journal
writes it: one record per group commit (``EVENTS_PER_RECORD`` events), fsynced
in groups, with a real genesis and venue key made by ``Engine`` itself.
Recovery and replay are timed through ``Engine._recover``, the code the daemon
runs at start.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any, Final

import trio

from bench.engine_bench import engine_config
from bench.workload import generate
from engine import por, snapshot
from engine.audit import checkpoint_body, checkpoint_payload
from engine.codec import encode_events
from engine.interpreter import tune_interpreter
from engine.journal_actor import JournalActor
from engine.messages import (
    BID,
    GTC,
    LIMIT,
    NO_CLIENT_ID,
    REJECT_TAKER,
    CancelOrder,
    Fill,
    OrderPlaced,
    PlaceOrder,
    Rejection,
)
from engine.runtime import Engine
from engine.venue import Venue

EVENTS_PER_RECORD: Final = 128
RECORDS_PER_SYNC: Final = 16
N_ACCOUNTS: Final = 200
MAX_RESTING: Final = 20_000
SYMBOL: Final = "SOL_USDC"
NOW_US: Final = 1_790_000_000_000_000


def _fund(venue: Venue, writer_events: list[Any]) -> list[int]:
    from engine.messages import AccountCreated, Deposited

    ids = []
    for i in range(N_ACCOUNTS):
        account_id = venue.next_account_id
        e1 = AccountCreated(account_id, -1, "DE", "retail", NOW_US + i)
        venue.apply(e1)
        e2 = Deposited(account_id, "USDC", 10**17, NOW_US)
        e3 = Deposited(account_id, "SOL", 10**17, NOW_US)
        venue.apply(e2)
        venue.apply(e3)
        writer_events.extend((e1, e2, e3))
        ids.append(account_id)
    return ids


def history(n_events: int, directory: Path, snapshot_at: int | None = None) -> dict[str, Any]:
    """Write a journal of ``n_events`` events; a snapshot at ``snapshot_at`` events if given."""
    config = engine_config(directory)
    engine = Engine(config, directory)
    writer = engine._recover()  # genesis record and venue key, exactly as the daemon makes them
    venue = Venue(config)
    market = venue.markets[SYMBOL]
    spec = venue.specs[SYMBOL]
    pending: list[Any] = []
    accounts = _fund(venue, pending)
    rng = random.Random(7)
    resting: deque[tuple[int, int]] = deque()
    orders = generate()
    written = len(pending)
    total = len(pending)
    batch: list[bytes] = []
    snap_done = snapshot_at is None
    i = 0

    def flush(force: bool = False) -> None:
        nonlocal batch
        if batch and (force or len(batch) >= RECORDS_PER_SYNC):
            writer.append(batch)
            batch = []

    while total < n_events:
        side, price, qty = orders[i % len(orders)]
        i += 1
        if len(resting) > MAX_RESTING:
            order_id, account_id = resting.popleft()
            if order_id in market.book.orders:
                cancelled = market.decide_cancel(CancelOrder(account_id, SYMBOL, order_id), NOW_US)
                if not isinstance(cancelled, Rejection):
                    venue.apply(cancelled)
                    pending.append(cancelled)
                    total += 1
        account_id = accounts[rng.randrange(N_ACCOUNTS // 2) + (0 if side == BID else N_ACCOUNTS // 2)]
        cmd = PlaceOrder(venue.next_order_id, account_id, SYMBOL, side, LIMIT, GTC, price, qty, 0, False,
                         REJECT_TAKER, NO_CLIENT_ID)
        venue.next_order_id += 1
        account = venue.accounts[account_id]
        decided = account.decide_place(cmd, spec)
        assert not isinstance(decided, Rejection), decided
        cmd.lock = decided[1]
        event = market.decide_place(cmd, NOW_US + i)
        assert isinstance(event, OrderPlaced), event
        venue.apply(event)
        pending.append(event)
        total += 1
        if event.status in ("New", "PartiallyFilled"):
            resting.append((event.order_id, account_id))
        if len(pending) >= EVENTS_PER_RECORD:
            batch.append(encode_events(pending))
            written += len(pending)
            pending = []
            flush()
        if not snap_done and snapshot_at is not None and total >= snapshot_at:
            if pending:
                batch.append(encode_events(pending))
                written += len(pending)
                pending = []
            flush(force=True)
            # as the daemon makes one: the snapshot, and a checkpoint signing its state (recovery uses only a
            # snapshot a signed checkpoint vouches for)
            state_hash = venue.state_hash()
            snapshot.write(directory, venue, writer.seq, writer.hash, state_hash, NOW_US)
            body = checkpoint_body(writer.seq, writer.hash, state_hash, NOW_US, "snapshot")
            writer.append([checkpoint_payload(engine.key, body)])
            snap_done = True
    if pending:
        batch.append(encode_events(pending))
        written += len(pending)
    flush(force=True)
    writer.close()
    os.close(engine._lock_fd)
    venue.check_invariants()
    return {"events": written, "records": writer.seq, "state_hash": venue.state_hash(),
            "bytes": sum(p.stat().st_size for p in directory.glob("*.seg"))}


def recover(directory: Path) -> tuple[float, Engine]:
    engine = Engine(engine_config(directory), directory)
    started = time.perf_counter()
    writer = engine._recover()
    elapsed = time.perf_counter() - started
    writer.close()
    os.close(engine._lock_fd)
    return elapsed, engine


def replay_and_recovery(base: Path, n_events: int, snapshot_at: int) -> dict[str, Any]:
    directory = base / "history"
    made = history(n_events, directory, snapshot_at=snapshot_at)
    with_snapshot, engine = recover(directory)
    assert engine.venue.state_hash() == made["state_hash"]
    hidden = base / "snapshots-hidden"
    shutil.move(str(directory / snapshot.SNAPSHOT_DIR), str(hidden))
    full, engine = recover(directory)
    assert engine.venue.state_hash() == made["state_hash"]
    shutil.rmtree(directory)
    shutil.rmtree(hidden)
    return {"made": made, "recovery_s": with_snapshot, "replay_s": full}


async def _append(directory: Path, n_events: int, producers: int, per_message: int) -> float:
    config = engine_config(directory)
    engine = Engine(config, directory)
    writer = engine._recover()
    journal = JournalActor(writer, lambda sink, value: None)
    tune_interpreter()  # the settings Engine.run applies before intake opens

    per_producer = n_events // producers // per_message
    # the events exist before the clock starts: this measures the journal, not event construction
    messages = [[[
        OrderPlaced(order_id, 1, SYMBOL, BID, LIMIT, GTC, 10_000, 50, 0, False, REJECT_TAKER, NO_CLIENT_ID,
                    500_000, NOW_US, "PartiallyFilled", "", [Fill(order_id, 7, 2, 9_999, 20, 4, 10)], [])
        for order_id in range((k * per_producer + j) * per_message, (k * per_producer + j + 1) * per_message)
    ] for j in range(per_producer)] for k in range(producers)]

    async def produce(k: int) -> None:
        for events in messages[k]:
            await journal.submit(events, [])

    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        started = time.perf_counter()
        async with trio.open_nursery() as producers_nursery:
            for k in range(producers):
                producers_nursery.start_soon(produce, k)
        while journal.rx.statistics().current_buffer_used or journal.busy:  # noqa: ASYNC110
            await trio.sleep(0.001)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    writer.close()
    os.close(engine._lock_fd)
    return producers * per_producer * per_message / elapsed


def append_events_per_s(base: Path, n_events: int = 300_000) -> float:
    directory = base / "append"
    try:
        return trio.run(_append, directory, n_events, 8, 4)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def por_build_s(n_accounts: int, workers: int = por.WORKERS) -> tuple[float, str]:
    from engine.account import Account

    venue = Venue(engine_config(Path("/nonexistent")))
    rng = random.Random(3)
    for account_id in range(1, n_accounts + 1):
        account = Account(account_id, -1, "", "retail", 0)
        account.balances = {"USDC": rng.randrange(10**12), "SOL": rng.randrange(10**13)}
        if account_id % 3 == 0:
            account.balances["BTC"] = rng.randrange(10**9)
        venue.accounts[account_id] = account
    started = time.perf_counter()
    tree = por.venue_tree(venue, b"k" * 32, 1, workers)
    elapsed = time.perf_counter() - started
    return elapsed, tree.root.hex()

