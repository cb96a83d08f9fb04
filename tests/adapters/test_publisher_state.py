"""The shared publisher saves its state when it stops; the next start loads it and replays only the tail."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import trio

from engine import publisher_state
from engine.audit import verify_journal
from engine.config import DEFAULT, parse_config
from engine.journal import JournalReader
from engine.messages import ASK, BID
from engine.publisher import Publisher
from engine.publisher_service import serve_publisher
from engine.publisher_state import STATE_FILE
from engine.replica import Replica
from engine.runtime import Engine
from engine.venue import Venue
from tests.engine.helpers import NOW_US

CONFIG = parse_config(copy.deepcopy(DEFAULT))
SOL = "SOL_USDC"


async def trade(engine: Engine, a: int, b: int, rounds: int, start: int) -> None:
    for i in range(start, start + rounds):
        await engine.place_order(a, SOL, ASK, "Limit", price=str(100 + i % 3), quantity="1")
        await engine.place_order(b, SOL, BID, "Limit", price=str(99 + i % 4), quantity="1.5", client_id=i)
        if i % 3 == 0:
            await engine.cancel_order(b, SOL, client_id=i)


async def two_funded_accounts(engine: Engine) -> list[int]:
    ids = [(await engine.create_account()).value for _ in range(2)]
    for account in ids:
        await engine.deposit(account, "SOL", "100")
        await engine.deposit(account, "USDC", "100000")
    return ids


async def from_genesis(engine: Engine) -> Publisher:
    publisher = Publisher(Venue(engine.config))
    await publisher._replay(engine, JournalReader(engine.directory), 0)
    return publisher


def same(one: Publisher, other: Publisher, accounts: list[int]) -> None:
    assert one.venue.state_hash() == other.venue.state_hash()
    assert one.events == other.events
    for account in accounts:
        assert one.fills(account) == other.fills(account)
        assert one.closed_orders(account) == other.closed_orders(account)
        assert one.funds(account, "deposit") == other.funds(account, "deposit")
    assert one.trades(SOL, 10_000) == other.trades(SOL, 10_000)
    for interval in ("1s", "1m", "1d", "1month"):
        assert one.klines(SOL, interval, 0, 1 << 40) == other.klines(SOL, interval, 0, 1 << 40)
    assert one.update_id(SOL) == other.update_id(SOL) and one.book_top(SOL) == other.book_top(SOL)


async def test_saved_state_plus_tail_equals_a_replay_from_genesis(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            scope, stopped = trio.CancelScope(), trio.Event()

            async def run_shared(*, task_status: trio.TaskStatus[Publisher] = trio.TASK_STATUS_IGNORED) -> None:
                with scope:
                    await serve_publisher(engine, task_status=task_status)
                stopped.set()

            first: Publisher = await nursery.start(run_shared)
            ids = await two_funded_accounts(engine)
            await trade(engine, *ids, rounds=12, start=0)
            await engine.wait_idle()
            await trio.sleep(0.01)
            assert first.source == "replayed from genesis" and first.events > 0
            scope.cancel()  # the shared publisher saves its state as it stops
            await stopped.wait()
            assert (tmp_path / STATE_FILE).stat().st_mode & 0o777 == 0o600  # every account's state: the operator's only
            await trade(engine, *ids, rounds=5, start=12)  # the tail the saved state has not seen
            engine.stop()

        async with trio.open_nursery() as nursery:
            engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            await engine.deposit(ids[0], "USDC", "1")  # and one more after the restart
            await engine.wait_idle()
            loaded = await Publisher.rebuild(engine)
            assert loaded.source == "saved state + tail"
            same(loaded, await from_genesis(engine), ids)
            assert loaded.venue.state_hash() == engine.venue.state_hash()

            (tmp_path / STATE_FILE).write_bytes(b'{"format":1}\ngarbage')  # damaged: replay from genesis
            fallback = await Publisher.rebuild(engine)
            assert fallback.source == "replayed from genesis"
            same(fallback, loaded, ids)
            engine.stop()


async def test_a_dropped_publisher_catches_up_from_disk_without_gap_or_duplicate(tmp_path: Path) -> None:
    from engine.updates import ACCEPTED, OrderUpdate

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            ids = await two_funded_accounts(engine)
            publisher: Publisher = await nursery.start(serve_publisher, engine)
            accepted: list[int] = []
            publisher.listeners.append(
                lambda updates: accepted.extend(u.view.order_id for u in updates
                                                if isinstance(u, OrderUpdate) and u.kind == ACCEPTED))
            await trade(engine, *ids, rounds=4, start=0)
            await engine.wait_idle()
            await trio.sleep(0.01)
            for tx in list(engine.journal.subscribers):  # what the journal does to a subscriber that fell behind
                engine.journal.subscribers.remove(tx)
                tx.close()
            await trade(engine, *ids, rounds=4, start=4)  # written while the publisher is not subscribed
            await engine.wait_idle()
            await trio.sleep(0.01)
            assert publisher.resyncs == 1
            await trade(engine, *ids, rounds=2, start=8)
            await engine.wait_idle()
            await trio.sleep(0.01)
            assert accepted == sorted(set(accepted)) and len(accepted) == 20  # every order once, in order
            assert publisher.venue.state_hash() == engine.venue.state_hash()
            same(publisher, await from_genesis(engine), ids)
            engine.stop()
            nursery.cancel_scope.cancel()


async def run_shared(engine: Engine, scope: trio.CancelScope, *,
                     task_status: trio.TaskStatus[Publisher] = trio.TASK_STATUS_IGNORED) -> None:
    with scope:
        await serve_publisher(engine, task_status=task_status)


async def test_a_state_file_from_another_journal_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(30):
        for name in ("one", "two"):
            async with trio.open_nursery() as nursery:
                engine: Engine = await nursery.start(Engine(CONFIG, tmp_path / name).run)
                created = await engine.create_account()
                await engine.deposit(created.value, "USDC", "5" if name == "one" else "7")
                await engine.wait_idle()
                if name == "two":
                    (tmp_path / "one" / STATE_FILE).replace(tmp_path / "two" / STATE_FILE)
                scope = trio.CancelScope()

                publisher: Publisher = await nursery.start(run_shared, engine, scope)
                assert publisher.source == "replayed from genesis"  # "two" got "one"'s file: not used
                assert publisher.venue.state_hash() == engine.venue.state_hash()
                scope.cancel()
                engine.stop()


async def test_a_snapshot_saves_the_publisher_state_so_a_crash_replays_only_the_tail(tmp_path: Path) -> None:
    """No clean stop ever saved a state here (no shared publisher ran): the checkpoint replica's
    process wrote one with the snapshot, and the next start replays only what came after it."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            ids = await two_funded_accounts(engine)
            await trade(engine, *ids, rounds=10, start=0)
            taken = await engine.checkpoint("snapshot")
            assert taken.ok and "snapshot" in taken.value
            assert (tmp_path / STATE_FILE).exists()
            await trade(engine, *ids, rounds=4, start=10)  # the tail after the saved state
            await engine.wait_idle()
            engine.stop()

        async with trio.open_nursery() as nursery:
            engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            loaded = await Publisher.rebuild(engine)
            assert loaded.source == "saved state + tail"
            same(loaded, await from_genesis(engine), ids)
            assert loaded.venue.state_hash() == engine.venue.state_hash()
            engine.stop()


async def test_an_older_state_never_replaces_a_newer_one(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            ids = [(await engine.create_account()).value for _ in range(2)]
            for account in ids:
                await engine.deposit(account, "SOL", "100")
            older = await from_genesis(engine)
            await trade(engine, *ids, rounds=3, start=0)
            await engine.wait_idle()
            newer = await from_genesis(engine)
            publisher_state.save(newer, tmp_path)
            saved = (tmp_path / STATE_FILE).read_bytes()
            publisher_state.save(older, tmp_path)
            assert (tmp_path / STATE_FILE).read_bytes() == saved
            assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
            engine.stop()


def forge_state(directory: Path, account: int) -> None:
    """Rewrite the state file as a forger would: ``account`` holds 1,000,000 USDC more (deposits and supply
    moved with it, so every invariant holds), same journal position, digest recomputed."""
    loaded = publisher_state.load(directory, CONFIG)
    assert loaded is not None
    publisher, seq, prev_hash, skip = loaded
    venue, extra = publisher.venue, 10**12
    venue.accounts[account].balances["USDC"] += extra
    venue.accounts[account].net_deposits["USDC"] += extra
    venue.supply["USDC"] += extra
    publisher.at_position(seq, prev_hash)
    publisher._followed = skip
    publisher_state.save(publisher, directory)


async def saved_by_a_clean_stop(directory: Path) -> list[int]:
    """A journal whose shared publisher saved its state at a clean stop, with more written after it."""
    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(Engine(CONFIG, directory).run)
        scope = trio.CancelScope()
        await nursery.start(run_shared, engine, scope)
        ids = await two_funded_accounts(engine)
        await trade(engine, *ids, rounds=4, start=0)
        await engine.wait_idle()
        await trio.sleep(0.01)
        scope.cancel()
        await trio.sleep(0.05)
        await trade(engine, *ids, rounds=2, start=4)  # after the publisher stopped: the shutdown checkpoint covers it
        engine.stop()
    return ids


def replica_of(directory: Path, engine: Engine) -> Replica:
    return Replica(CONFIG, directory, 10**9, engine.key.public_b64)


async def test_a_forged_state_file_is_trusted_neither_by_the_publisher_nor_by_the_replica(tmp_path: Path) -> None:
    """Before, both loaded it as it was: users saw the forged balance and the replica signed its state hash."""
    with trio.fail_after(60):
        ids = await saved_by_a_clean_stop(tmp_path)
        forge_state(tmp_path, ids[0])
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            truth = engine.venue.state_hash()
            loaded = await Publisher.rebuild(engine)
            assert loaded.source == "replayed from genesis" and loaded.venue.state_hash() == truth
            replica = replica_of(tmp_path, engine)
            assert replica.from_state  # it read the file ...
            found = replica.advance(engine.journal.durable_seq, frozenset(), NOW_US, None)
            assert found.state_hash == truth and not replica.from_state  # ... and threw it away
            signed = await engine.checkpoint("checkpoint")  # the replica process the daemon runs
            assert signed.value["state_hash"] == engine.venue.state_hash()
            engine.stop()
    assert verify_journal(tmp_path, progress=False)["ok"]


async def test_a_state_file_the_journal_signed_is_used_as_is(tmp_path: Path) -> None:
    """The normal start stays fast: a state saved at a clean stop (events after it included) is carried to the
    shutdown checkpoint, matches it, and only the tail is replayed, by the publisher and the replica alike."""
    with trio.fail_after(60):
        await saved_by_a_clean_stop(tmp_path)
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            loaded = await Publisher.rebuild(engine)
            assert loaded.source == "saved state + tail"
            assert loaded.venue.state_hash() == engine.venue.state_hash()
            replica = replica_of(tmp_path, engine)
            found = replica.advance(engine.journal.durable_seq, frozenset(), NOW_US, None)
            assert replica.from_state and found.state_hash == engine.venue.state_hash()
            engine.stop()


async def test_a_state_no_checkpoint_covers_yet_is_not_used(tmp_path: Path) -> None:
    """A state saved past the last signed checkpoint (a crash right after it was written) has nothing to vouch for it."""
    with trio.fail_after(60):
        await saved_by_a_clean_stop(tmp_path)
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, tmp_path).run)
            publisher = await from_genesis(engine)  # through the shutdown checkpoint's own record
            publisher_state.save(publisher, tmp_path)
            position = (*publisher._base, 0)
            with pytest.raises(publisher_state.StateInvalid, match="no signed checkpoint"):
                publisher_state.vouch(publisher, tmp_path, engine.key.public, position, engine.journal.durable_seq)
            assert (await Publisher.rebuild(engine)).source == "replayed from genesis"
            engine.stop()
