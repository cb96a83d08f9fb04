"""The trio runtime with a real journal on disk: results, durability, flow control, restart."""

from __future__ import annotations

import copy
import errno
import os
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

from engine.actors import MARKET_QUEUE_MAX
from engine.audit import journal_events
from engine.config import DEFAULT, parse_config
from engine.messages import BID, REJECT_MAKER, OrderPlaced, PlaceOrder, Rejection
from engine.recovery import StartupError
from engine.results import Result
from engine.runtime import Engine

CONFIG = parse_config(DEFAULT)


async def start(nursery: trio.Nursery, directory: Path) -> Engine:
    engine: Engine = await nursery.start(Engine(CONFIG, directory).run)
    return engine


async def funded(engine: Engine) -> tuple[int, int]:
    buyer = (await engine.create_account(country="DE")).value
    seller = (await engine.create_account(country="FR")).value
    assert (await engine.deposit(buyer, "USDC", "10000")).ok
    assert (await engine.deposit(seller, "SOL", "100")).ok
    return buyer, seller


def journaled_order_ids(directory: Path) -> set[int]:
    return {e.order_id for _, e in journal_events(directory) if isinstance(e, OrderPlaced)}


@pytest.fixture
async def engine(nursery: trio.Nursery, tmp_path: Path):
    eng = await start(nursery, tmp_path / "journal")
    yield eng
    eng.stop()


async def test_trade_settles_both_accounts_and_fees(engine: Engine) -> None:
    with trio.fail_after(10):
        buyer, seller = await funded(engine)
        ask = await engine.place_order(seller, "SOL_USDC", "Ask", "Limit", price="20", quantity="5")
        assert ask.ok and ask.order is not None and ask.order.status == "New"
        bid = await engine.place_order(buyer, "SOL_USDC", "Bid", "Limit", price="21", quantity="2", client_id=7)
        assert bid.order is not None and bid.order.status == "Filled"
        assert bid.order.executed_quote == 40_000_000  # 2 SOL at the maker's 20 USDC
        await engine.wait_idle()
        assert engine.venue.balances(buyer) == {
            "SOL": {"available": "1.999", "locked": "0", "staked": "0"},  # 2 SOL less 5 bps taker fee
            "USDC": {"available": "9960", "locked": "0", "staked": "0"},  # the 21 limit's surplus released
        }
        assert engine.venue.balances(seller)["USDC"]["available"] == "39.992"  # 40 less 2 bps maker fee
        assert engine.venue.balances(seller)["SOL"] == {"available": "95", "locked": "3", "staked": "0"}
        engine.venue.check_invariants()


async def test_cancel_by_client_id_and_cancel_all_release_locks(engine: Engine) -> None:
    with trio.fail_after(10):
        buyer, _ = await funded(engine)
        for i, price in enumerate(("10", "11", "12")):
            assert (await engine.place_order(buyer, "SOL_USDC", "Bid", "Limit", price=price, quantity="1", client_id=i)).ok
        cancelled = await engine.cancel_order(buyer, "SOL_USDC", client_id=1)
        assert cancelled.order is not None and cancelled.order.status == "Cancelled"
        assert cancelled.order.price_ticks == 1100
        again = await engine.cancel_order(buyer, "SOL_USDC", client_id=1)
        assert again.rejection is not None and again.rejection.code == "RESOURCE_NOT_FOUND"
        await engine.wait_idle()
        assert engine.venue.balances(buyer)["USDC"]["locked"] == "22"
        everything = await engine.cancel_all(buyer, "SOL_USDC")
        assert sorted(v.price_ticks for v in everything.orders) == [1000, 1200]
        await engine.wait_idle()
        assert engine.venue.balances(buyer)["USDC"] == {"available": "10000", "locked": "0", "staked": "0"}
        assert engine.open_orders(buyer) == []


async def test_amend_changes_price_and_lock(engine: Engine) -> None:
    with trio.fail_after(10):
        buyer, _ = await funded(engine)
        placed = await engine.place_order(buyer, "SOL_USDC", "Bid", "Limit", price="10", quantity="2")
        assert placed.order is not None
        amended = await engine.amend_order(buyer, "SOL_USDC", order_id=placed.order.order_id, price="12", quantity="3")
        assert amended.order is not None and (amended.order.price_ticks, amended.order.qty_steps) == (1200, 300)
        await engine.wait_idle()
        assert engine.venue.balances(buyer)["USDC"]["locked"] == "36"
        too_big = await engine.amend_order(buyer, "SOL_USDC", order_id=placed.order.order_id, quantity="10000")
        assert too_big.rejection is not None and too_big.rejection.code == "INSUFFICIENT_FUNDS"
        await engine.wait_idle()
        assert engine.venue.balances(buyer)["USDC"]["locked"] == "36"
        engine.venue.check_invariants()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"symbol": "DOGE_USDC", "price": "1", "quantity": "1"}, "INVALID_CLIENT_REQUEST"),
        ({"price": "1.001", "quantity": "1"}, "INVALID_PRICE"),
        ({"price": "1", "quantity": "1.001"}, "INVALID_QUANTITY"),
        ({"price": "1", "quantity": "0.5"}, "INVALID_ORDER"),  # 0.5 USDC under the 1 USDC minimum notional
        ({"price": "-1", "quantity": "1"}, "INVALID_PRICE"),
        ({"price": "1", "quantity": "1", "client_id": 2**32}, "INVALID_CLIENT_REQUEST"),
        ({"price": "1", "quantity": "1", "time_in_force": "GTD"}, "INVALID_ORDER"),
        ({"price": "1", "quantity": "1", "time_in_force": "IOC", "post_only": True}, "INVALID_ORDER"),
        ({"quantity": "1"}, "INVALID_ORDER"),
        ({"price": "1", "quantity": "100000000"}, "INSUFFICIENT_FUNDS"),
    ],
)
async def test_bad_orders_are_refused_and_change_nothing(engine: Engine, fields: dict, code: str) -> None:
    with trio.fail_after(10):
        buyer, _ = await funded(engine)
        await engine.wait_idle()
        before = engine.venue.state_hash()
        seq = engine.journal.durable_seq
        symbol = fields.pop("symbol", "SOL_USDC")
        result = await engine.place_order(buyer, symbol, "Bid", "Limit", **fields)
        assert result.rejection is not None and result.rejection.code == code, result
        assert result.rejection.message
        await engine.wait_idle()
        assert engine.venue.state_hash() == before
        assert engine.journal.durable_seq == seq


@pytest.mark.parametrize(
    ("side", "fields", "problem"),
    [
        ("Buy", {}, "Invalid side 'Buy'"),
        (["Bid"], {}, "Invalid side ['Bid']"),  # JSON can carry any type; an unhashable one too
        ("Bid", {"time_in_force": "GTD"}, "Invalid timeInForce 'GTD'"),
        ("Bid", {"self_trade_prevention": "Allow"}, "Invalid selfTradePrevention 'Allow'"),
    ],
)
async def test_bad_fields_are_named_when_price_and_quantity_are_cached(engine: Engine, side: Any, fields: dict, problem: str) -> None:
    """The plain-limit path (price and quantity texts seen before) refuses bad fields as the full path does."""
    account = (await engine.create_account()).value
    assert isinstance(engine.build_order(account, "SOL_USDC", "Bid", "Limit", price="20", quantity="1"), PlaceOrder)
    refused = engine.build_order(account, "SOL_USDC", side, "Limit", price="20", quantity="1", **fields)
    assert isinstance(refused, Rejection) and refused.code == "INVALID_ORDER", refused
    assert refused.message.startswith(problem), refused.message


def test_engines_in_one_process_never_share_a_parse(tmp_path: Path) -> None:
    """The parse caches are the engine's: the same text means other ticks under another tick size."""
    coarse = copy.deepcopy(DEFAULT)
    coarse["markets"]["SOL_USDC"].update(tick_size="0.5", min_notional="0.5")
    fine_engine = Engine(CONFIG, tmp_path / "fine")
    coarse_engine = Engine(parse_config(coarse), tmp_path / "coarse")
    for _ in range(2):  # the second time from the caches
        fine = fine_engine.build_order(2, "SOL_USDC", "Bid", "Limit", price="1.5", quantity="1")
        coarse_order = coarse_engine.build_order(2, "SOL_USDC", "Bid", "Limit", price="1.5", quantity="1")
        assert isinstance(fine, PlaceOrder) and isinstance(coarse_order, PlaceOrder)
        assert (fine.price_ticks, coarse_order.price_ticks) == (150, 3)
    refused = coarse_engine.build_order(2, "SOL_USDC", "Bid", "Limit", price="1.25", quantity="1")
    assert isinstance(refused, Rejection) and refused.code == "INVALID_PRICE", refused


async def test_results_are_released_only_after_their_events_are_on_disk(engine: Engine) -> None:
    with trio.fail_after(10):
        buyer, seller = await funded(engine)
        seen: list[tuple[int, bool]] = []

        class CheckingSink:
            def set(self, value: Result) -> None:
                assert value.order is not None
                seen.append((value.order.order_id, value.order.order_id in journaled_order_ids(engine.directory)))

        for i in range(20):
            side, account = ("Bid", buyer) if i % 2 else ("Ask", seller)
            order = engine.build_order(account, "SOL_USDC", side, "Limit", price="20", quantity="1")
            assert not isinstance(order, type(None))
            assert engine.submit(account, order, CheckingSink()) is None
        await engine.wait_idle()
        assert len(seen) == 20
        assert all(durable for _, durable in seen)


async def test_built_orders_keep_the_engines_strings_not_the_requests(engine: Engine) -> None:
    """A resting order lives long: it must not pin a copy of each string parsed off the wire."""
    account = (await engine.create_account()).value
    for fields in ({}, {"client_id": 7}, {"post_only": True}):
        order = engine.build_order(
            account, "".join(["SOL_", "USDC"]), "".join(["B", "id"]), "Limit",
            price="20", quantity="1", self_trade_prevention="".join(["Reject", "Maker"]), **fields,
        )
        assert isinstance(order, PlaceOrder), order
        assert order.symbol is engine.venue.specs["SOL_USDC"].symbol
        assert order.side is BID and order.stp is REJECT_MAKER


async def test_overload_is_answered_at_once(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Flooding without yielding: the excess is refused synchronously, inside submit()."""
    # one account floods the market's whole queue: lift the per-account cap, which would refuse it first
    config = parse_config({**DEFAULT, "limits": {"max_open_orders_per_account": 100_000}})
    engine: Engine = await nursery.start(Engine(config, tmp_path).run)
    with trio.fail_after(20):
        buyer, _ = await funded(engine)
        answers: list[Result] = []

        class Collect:
            def set(self, value: Result) -> None:
                answers.append(value)

        flood = MARKET_QUEUE_MAX + 10  # the market queue fills first; 10 USDC of funds to spare
        refused_at_once = 0
        for _ in range(flood):  # no checkpoint in this loop: no actor can drain
            order = engine.build_order(buyer, "SOL_USDC", "Bid", "Limit", price="1", quantity="1")
            assert not isinstance(order, Rejection)
            before = len(answers)
            refused = engine.submit(buyer, order, Collect())
            if refused is not None or len(answers) > before:
                refused_at_once += 1
                code = refused.code if refused is not None else answers[-1].rejection.code  # type: ignore[union-attr]
                assert code == "TOO_MANY_REQUESTS"
        assert refused_at_once > 0
        await engine.wait_idle()
        accepted = [a for a in answers if a.ok]
        assert len(accepted) == flood - refused_at_once
        assert len(engine.open_orders(buyer)) == len(accepted)
        engine.venue.check_invariants()  # every refused order's hold was released


async def test_restart_rebuilds_the_same_state(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            engine = await start(nursery, directory)
            buyer, seller = await funded(engine)
            sub = (await engine.create_account(parent_id=buyer)).value
            assert (await engine.transfer(buyer, sub, "USDC", "100")).ok
            for i in range(30):
                price = str(18 + i % 5)
                await engine.place_order(seller, "SOL_USDC", "Ask", "Limit", price=price, quantity="1")
                await engine.place_order(buyer, "SOL_USDC", "Bid", "Limit", price=str(17 + i % 6), quantity="0.5")
            await engine.place_order(sub, "SOL_USDC", "Bid", "Market", quote_quantity="50")
            await engine.wait_idle()
            engine.venue.check_invariants()
            before = engine.venue.state_hash()
            engine.stop()
        async with trio.open_nursery() as nursery:
            again = await start(nursery, directory)
            assert again.venue.state_hash() == before
            assert again.next_order_id == engine.next_order_id
            again.stop()


async def test_an_account_holds_at_most_the_configured_open_orders(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Counted over all markets, orders in flight included; the refusal names the cap and changes nothing."""
    config = parse_config({**DEFAULT, "limits": {"max_open_orders_per_account": 3}})
    engine: Engine = await nursery.start(Engine(config, tmp_path).run)
    buyer, _ = await funded(engine)
    assert (await engine.deposit(buyer, "BTC", "1")).ok
    for symbol, price in (("SOL_USDC", "10"), ("SOL_USDC", "11")):
        assert (await engine.place_order(buyer, symbol, BID, "Limit", price=price, quantity="1")).ok
    sink = _Collect()
    ask = engine.build_order(buyer, "BTC_USDC", "Ask", "Limit", price="90000", quantity="0.001")
    assert engine.submit(buyer, ask, sink) is None
    refused = await engine.place_order(buyer, "SOL_USDC", BID, "Limit", price="12", quantity="1")  # the ask in flight
    assert refused.rejection == Rejection(
        "INVALID_ORDER", "Too many open orders: at most 3 per account, counting orders in flight; cancel some first")
    await engine.wait_idle()
    assert sink.results[0].ok
    before = engine.venue.balances(buyer), engine.venue.state_hash()
    for kind, fields in (("Limit", {"price": "12", "quantity": "1"}), ("Market", {"quantity": "1"})):
        again = await engine.place_order(buyer, "SOL_USDC", BID, kind, **fields)
        assert again.rejection is not None and again.rejection.message.startswith("Too many open orders")
    assert (engine.venue.balances(buyer), engine.venue.state_hash()) == before
    sub = (await engine.create_account(parent_id=buyer)).value  # a sub-account has its own
    assert (await engine.transfer(buyer, sub, "USDC", "100")).ok
    assert (await engine.place_order(sub, "SOL_USDC", BID, "Limit", price="10", quantity="1")).ok
    first = engine.open_orders(buyer, "SOL_USDC")[0]
    assert (await engine.cancel_order(buyer, "SOL_USDC", order_id=first.order_id)).ok
    assert (await engine.place_order(buyer, "SOL_USDC", BID, "Limit", price="12", quantity="1")).ok


async def test_second_engine_on_the_same_journal_is_refused(engine: Engine) -> None:
    with trio.fail_after(10), pytest.raises(StartupError, match="in use by another Satchel process"):
        await Engine(CONFIG, engine.directory).run()


async def test_changed_config_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            (await start(nursery, tmp_path)).stop()
        other = parse_config({**DEFAULT, "venue": {"name": "elsewhere"}})
        with pytest.raises(StartupError, match=r'config differs .*: venue.name: "satchel-local" in the journal, '
                                               r'"elsewhere" in the config; start with'):
            await Engine(other, tmp_path).run()
        markets = copy.deepcopy(DEFAULT["markets"])
        markets["SOL_USDC"]["maker_fee_bps"] = 3
        del markets["ETH_USDC"]
        other = parse_config({**DEFAULT, "markets": markets})
        with pytest.raises(StartupError, match=r"markets.ETH_USDC: \{.*\} in the journal, absent in the config; "
                                               r"markets.SOL_USDC.maker_fee_bps: 2 in the journal, 3 in the config;"):
            await Engine(other, tmp_path).run()


async def test_a_journal_whose_key_is_missing_is_refused_and_no_new_key_is_made(tmp_path: Path) -> None:
    """A new key could never sign this journal's history: name the missing file rather than leave a stray key."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            (await start(nursery, tmp_path)).stop()
        moved = parse_config({**DEFAULT, "journal": {**DEFAULT["journal"], "signing_key": "elsewhere.key"}})
        with pytest.raises(StartupError, match=r"journal.signing_key: no venue signing key at .*elsewhere.key"):
            await Engine(moved, tmp_path).run()
        assert not (tmp_path / "elsewhere.key").exists()


async def test_failed_fsync_stops_the_engine_and_acknowledges_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.fail_after(10):
        results: list[Result] = []
        with pytest.RaisesGroup(pytest.RaisesExc(OSError, match="Input/output"), flatten_subgroups=True):
            async with trio.open_nursery() as nursery:
                engine = await start(nursery, tmp_path)
                buyer = (await engine.create_account()).value

                def broken(fd: int) -> None:
                    raise OSError(errno.EIO, os.strerror(errno.EIO))

                monkeypatch.setattr(os, "fdatasync", broken)
                results.append(await engine.deposit(buyer, "USDC", "5"))
        assert results == []


class _Collect:
    """A sink that keeps every result (a pipelining adapter's stand-in)."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    def set(self, value: Result) -> None:
        self.results.append(value)


async def test_pipelined_flow_with_busy_accounts_leaves_the_state_the_journal_replays_to(tmp_path: Path) -> None:
    """Orders pipelined from a few accounts that trade with each other and themselves (every TIF and STP
    mode, client ids), with deposits in between so some account actors are busy or have queued work when
    their market settles a trade (the market then posts their share instead of settling it at once).
    The fee account takes deposits too, so it is sometimes busy when fees arrive.

    The live state must equal the journal applied event by event through ``Venue.apply`` (the general
    path: ``Market.apply_placed``, ``Account.apply_placed`` for every party), and a restart.
    """
    import random

    from engine.messages import Deposit
    from engine.venue import Venue

    directory = tmp_path / "journal"
    rng = random.Random(11)
    sink = _Collect()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            engine = await start(nursery, directory)
            ids = [(await engine.create_account()).value for _ in range(5)]
            for aid in ids:
                assert (await engine.deposit(aid, "USDC", "1000000")).ok
                assert (await engine.deposit(aid, "SOL", "10000")).ok
            sent = 0
            for _ in range(30):
                for _ in range(40):
                    aid = rng.choice(ids)
                    if rng.random() < 0.15:  # through the account's inbox: the actor is busy or queued for a while
                        # (sometimes the fee account's, so it is busy when a trade's fees arrive)
                        target = 0 if rng.random() < 0.3 else aid
                        command: object = Deposit(target, "USDC", 1_000_000)
                        aid = target
                    else:
                        command = engine.build_order(
                            aid, "SOL_USDC", rng.choice(["Bid", "Ask"]), "Limit",
                            price=f"{rng.randint(95, 105)}.{rng.choice(['00', '50'])}",
                            quantity=rng.choice(["0.5", "1", "2.25", "4"]),
                            time_in_force=rng.choice(["GTC", "GTC", "GTC", "IOC", "FOK"]),
                            self_trade_prevention=rng.choice(["RejectTaker", "RejectMaker", "RejectBoth"]),
                            client_id=rng.choice([None, None, rng.randint(0, 20)]),
                        )
                        assert not isinstance(command, Rejection), command
                    assert engine.submit(aid, command, sink) is None
                    sent += 1
                await trio.lowlevel.checkpoint()
            await engine.wait_idle()
            assert len(sink.results) == sent
            traded = [r for r in sink.results if r.ok and r.events and isinstance(r.events[0], OrderPlaced)]
            assert sum(len(r.events[0].fills) for r in traded) > 100  # the flow really traded
            engine.venue.check_invariants()
            before = engine.venue.state_hash()
            engine.stop()
        twin = Venue(CONFIG)
        for _, event in journal_events(directory):
            twin.apply(event)
        twin.check_invariants()
        assert twin.state_hash() == before
        async with trio.open_nursery() as nursery:
            again = await start(nursery, directory)
            assert again.venue.state_hash() == before
            again.stop()


async def test_the_fee_account_cannot_trade(engine: Engine) -> None:
    """Account 0 collects every market's fees; an order for it is refused and changes nothing."""
    with trio.fail_after(10):
        assert (await engine.deposit(0, "USDC", "1000")).ok
        before = engine.venue.state_hash()
        placed = await engine.place_order(0, "SOL_USDC", "Bid", "Limit", price="20", quantity="1")
        assert placed.rejection == Rejection("FORBIDDEN", "The venue's fee account cannot trade")
        assert (await engine.cancel_all(0, "SOL_USDC")).rejection is not None
        await engine.wait_idle()
        assert engine.venue.state_hash() == before
