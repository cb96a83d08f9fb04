"""Batched intake (``Engine.hold_markets``/``release_markets``): one market pass per adapter read,
run in the caller's step when the market is idle, with the same outcome as the actors' own passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from engine.audit import journal_events
from engine.config import DEFAULT, parse_config
from engine.messages import OrderPlaced, PlaceOrder
from engine.results import Result
from engine.runtime import Engine

CONFIG = parse_config(DEFAULT)


class Collect:
    """A sink that records each result and the journal's durable seq when it arrived."""

    def __init__(self, engine: Engine, out: list[tuple[Result, int]]) -> None:
        self.engine = engine
        self.out = out

    def set(self, value: Result) -> None:
        self.out.append((value, self.engine.journal.durable_seq))


def durable_when_answered(results: list[tuple[Result, int]], directory: Path) -> bool:
    """Whether every order's answer came once the record holding the order was durable (a refusal
    has no record to wait for)."""
    placed_in = {e.order_id: seq for seq, e in journal_events(directory) if type(e) is OrderPlaced}
    return all(placed_in[r.order.order_id] <= durable for r, durable in results if r.order is not None)


async def funded(engine: Engine) -> tuple[int, int]:
    buyer = (await engine.create_account()).value
    seller = (await engine.create_account()).value
    assert (await engine.deposit(buyer, "USDC", "10000")).ok
    assert (await engine.deposit(seller, "SOL", "100")).ok
    return buyer, seller


async def started(nursery: trio.Nursery, directory: Path) -> tuple[Engine, int, int]:
    """An engine serving in ``nursery``, with a funded buyer and seller, idle."""
    engine: Engine = await nursery.start(Engine(CONFIG, directory).run)
    buyer, seller = await funded(engine)
    await engine.wait_idle()
    return engine, buyer, seller


def orders(engine: Engine, buyer: int, seller: int) -> list[tuple[int, PlaceOrder]]:
    """Resting asks, a bid that takes two of them, an over-sized bid that is refused, a rest."""
    out = []
    for price, qty, side, account in (("20", "1", "Ask", seller), ("21", "1", "Ask", seller), ("22", "1", "Ask", seller),
                                      ("21", "2", "Bid", buyer), ("20", "99999", "Bid", buyer), ("19", "1", "Bid", buyer)):
        built = engine.build_order(account, "SOL_USDC", side, "Limit", price=price, quantity=qty)
        assert isinstance(built, PlaceOrder), built
        out.append((account, built))
    return out


def placed(directory: Path) -> list[tuple[Any, ...]]:
    """The journal's placements without their times (two runs differ only in those)."""
    return [(e.order_id, e.account_id, e.side, e.price_ticks, e.qty_steps, e.status, [(f.maker_order_id, f.qty_steps) for f in e.fills])
            for _, e in journal_events(directory) if isinstance(e, OrderPlaced)]


async def run(directory: Path, held: bool, second_read: bool = False) -> list[tuple[Result, int]]:
    results: list[tuple[Result, int]] = []
    async with trio.open_nursery() as nursery:
        engine, buyer, seller = await started(nursery, directory)
        actor = engine.market_actors["SOL_USDC"]
        if held:
            assert engine.hold_markets()
            assert not engine.hold_markets()  # one batch at a time: the inner caller holds nothing
        for account, order in orders(engine, buyer, seller):
            assert engine.submit(account, order, Collect(engine, results)) is None
        if held:
            assert actor.queue and not actor.woken  # queued, the actor not woken
            if second_read:  # another read already committed in this scheduler pass: this one must join the group
                assert engine.journal.commit_now([], [])
            framed = engine.journal.head_seq
            engine.release_markets()
            assert not actor.queue and not actor.woken  # decided here, in this step
            assert [r.rejection.code for r, _ in results if r.rejection] == ["INSUFFICIENT_FUNDS"]  # refused at intake
            if second_read:
                assert engine.journal.queued == 1  # one hand-off to the journal for the whole read
                assert engine.journal.head_seq == framed and len(results) == 1  # answered after the journal's fsync
            else:  # nothing else can join the commit: the read's one record is framed (and, on a fast disk, synced) here
                assert engine.journal.queued == 0 and engine.journal.head_seq == framed + 1
        await engine.wait_idle()
        engine.venue.check_invariants()
        engine.stop()
    return results


@pytest.mark.parametrize(("held", "second_read"), [(False, False), (True, False), (True, True)])
async def test_a_held_batch_decides_exactly_as_the_actors_do(tmp_path: Path, held: bool, second_read: bool) -> None:
    with trio.fail_after(20):
        results = await run(tmp_path / "held", held, second_read)
        await run(tmp_path / "plain", False)
    assert durable_when_answered(results, tmp_path / "held")  # every answer after the fsync of what came before it
    assert [r.rejection.code if r.rejection else r.order.status for r, _ in results] == [  # type: ignore[union-attr]
        "INSUFFICIENT_FUNDS", "New", "New", "New", "Filled", "New"]  # a refusal changes nothing: answered at once
    assert placed(tmp_path / "held") == placed(tmp_path / "plain")


async def test_one_read_per_scheduler_pass_commits_in_its_own_step(tmp_path: Path) -> None:
    """Two reads in one scheduler pass: the first is synced in its step, the second joins the journal's
    next group commit; once the pass ends, the next read commits in its step again."""
    results: list[tuple[Result, int]] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            engine, buyer, seller = await started(nursery, tmp_path)
            journal = engine.journal
            (a1, ask1), (a2, ask2), (a3, ask3), *_ = orders(engine, buyer, seller)

            def read(account: int, order: PlaceOrder) -> None:  # what an adapter does with one read
                assert engine.hold_markets()
                assert engine.submit(account, order, Collect(engine, results)) is None
                engine.release_markets()

            # framed here (and answered here too while the disk is fast: synced in this step)
            framed = journal.head_seq
            read(a1, ask1)
            assert journal.queued == 0 and journal.head_seq == framed + 1
            read(a2, ask2)  # same scheduler pass: handed to the journal actor
            assert journal.queued == 1 and journal.head_seq == framed + 1
            await engine.wait_idle()  # scheduler passes go by
            assert len(results) == 2 and not journal.committed_this_pass
            framed = journal.head_seq
            read(a3, ask3)
            assert journal.queued == 0 and journal.head_seq == framed + 1
            await engine.wait_idle()
            engine.stop()
    assert durable_when_answered(results, tmp_path)
    assert [r.order.status for r, _ in results] == ["New", "New", "New"]  # type: ignore[union-attr]


async def test_a_busy_market_is_woken_instead(tmp_path: Path) -> None:
    """The actor already has a wake-up pending: the batch's commands join its next pass, in order."""
    results: list[tuple[Result, int]] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            engine, buyer, seller = await started(nursery, tmp_path)
            actor = engine.market_actors["SOL_USDC"]
            first, *rest = orders(engine, buyer, seller)
            assert engine.submit(first[0], first[1], Collect(engine, results)) is None  # wakes the actor
            assert actor.woken
            assert engine.hold_markets()
            for account, order in rest:
                assert engine.submit(account, order, Collect(engine, results)) is None
            engine.release_markets()
            assert len(actor.queue) == len(rest)  # left to the actor's pass (the refused bid never gets there)
            await engine.wait_idle()
            engine.stop()
    assert [r.rejection.code if r.rejection else r.order.status for r, _ in results] == [  # type: ignore[union-attr]
        "INSUFFICIENT_FUNDS", "New", "New", "New", "Filled", "New"]  # a refusal changes nothing: answered at once


async def test_a_failing_pass_stops_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail-stop, as when the market's own task fails: never an engine running on with half a pass applied."""
    with trio.fail_after(20), pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="boom"), flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            engine, buyer, seller = await started(nursery, tmp_path)

            def boom(*args: Any) -> None:
                raise RuntimeError("boom")

            monkeypatch.setattr(engine.market_actors["SOL_USDC"], "_handle", boom)
            account, order = orders(engine, buyer, seller)[0]
            engine.hold_markets()
            engine.submit(account, order, Collect(engine, []))
            with pytest.raises(RuntimeError, match="boom"):
                engine.release_markets()
            await trio.sleep_forever()
