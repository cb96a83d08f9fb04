"""Withdrawal requests: reserve, approve, decline, refusals, and replay of all of it.

Sans-IO tests drive ``engine.withdrawals`` on a ``Venue`` the way the account
actor does; runtime tests go through ``Engine`` with a real journal, restart it,
take a snapshot, and run ``satchel verify``'s code on the result.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from engine import snapshot, withdrawals
from engine.audit import journal_events, liabilities, verify_journal
from engine.codec import decode_events, encode_events
from engine.config import DEFAULT, parse_config
from engine.messages import (
    ApproveWithdrawal,
    Rejection,
    RejectWithdrawal,
    RequestWithdrawal,
    WithdrawalApproved,
    WithdrawalRejected,
    WithdrawalRequested,
    Withdrawn,
)
from engine.runtime import Engine
from engine.venue import InvariantViolation, Venue, account_state
from tests.engine.helpers import NOW_US, atoms, fund, limit, make_venue, open_account, place

CONFIG = parse_config(DEFAULT)
ADDRESS = "5Yq3kP9cFq2s7wWbJ8xYpA1nR4tLmZvD6hGe3uKsQ2Nf"


def request(venue: Venue, account_id: int, amount: str, request_id: int, asset: str = "USDC") -> WithdrawalRequested | Rejection:
    """Decide and apply one request as the account actor does; check every invariant after."""
    cmd = RequestWithdrawal(request_id, account_id, asset, atoms(venue, asset, amount), ADDRESS, "Solana", "")
    decided = withdrawals.decide(venue.accounts[account_id], cmd, NOW_US, lambda a: venue.assets[a].decimals)
    if not isinstance(decided, Rejection):
        venue.apply(decided)
    venue.check_invariants()
    return decided  # type: ignore[return-value]


def decide(venue: Venue, cmd: ApproveWithdrawal | RejectWithdrawal) -> WithdrawalApproved | WithdrawalRejected | Rejection:
    decided = withdrawals.decide(venue.accounts[cmd.account_id], cmd, NOW_US + 1, lambda a: 6)
    if not isinstance(decided, Rejection):
        venue.apply(decided)
    venue.check_invariants()
    return decided  # type: ignore[return-value]


@pytest.fixture
def funded() -> tuple[Venue, int]:
    venue = make_venue()
    account_id = open_account(venue)
    fund(venue, account_id, "USDC", "100")
    return venue, account_id


def test_request_reserves_the_amount_but_it_stays_owed(funded: tuple[Venue, int]) -> None:
    venue, a = funded
    e = request(venue, a, "30.5", 1)
    assert e == WithdrawalRequested(1, a, "USDC", 30_500_000, ADDRESS, "Solana", "", NOW_US)
    account = venue.accounts[a]
    assert account.available("USDC") == 69_500_000
    assert venue.balances(a)["USDC"] == {"available": "69.5", "locked": "30.5", "staked": "0"}
    assert liabilities(venue)["USDC"] == 100_000_000  # still the venue's debt until approved
    assert [r.status for r in account.withdrawals.values()] == ["pending"]
    # an order cannot spend the reserved funds
    refused = place(venue, limit(venue, a, "Bid", "10", "7"))
    assert isinstance(refused, Rejection) and refused.code == "INSUFFICIENT_FUNDS" and "available 69.5 USDC" in refused.message


def test_more_than_available_is_refused_and_changes_nothing(funded: tuple[Venue, int]) -> None:
    venue, a = funded
    assert isinstance(request(venue, a, "60", 1), WithdrawalRequested)
    before = venue.state_hash()
    refused = request(venue, a, "40.000001", 2)
    assert refused == Rejection(
        "INSUFFICIENT_FUNDS", "Insufficient funds: withdrawal of 40.000001 USDC exceeds available 40 USDC"
    )
    assert venue.state_hash() == before and 2 not in venue.withdrawal_owner
    assert isinstance(request(venue, a, "40", 2), WithdrawalRequested)  # exactly what is left


def test_approve_pays_out_and_cannot_happen_twice(funded: tuple[Venue, int]) -> None:
    venue, a = funded
    request(venue, a, "30", 1)
    approved = decide(venue, ApproveWithdrawal(a, 1, "0xabc"))
    assert approved == WithdrawalApproved(1, a, "USDC", 30_000_000, "0xabc", NOW_US + 1)
    account = venue.accounts[a]
    assert account.balances["USDC"] == 70_000_000 and account.reserved == {} and account.available("USDC") == 70_000_000
    assert account.net_deposits["USDC"] == 70_000_000  # conservation: it left the venue
    assert liabilities(venue)["USDC"] == 70_000_000
    record = account.withdrawals[1]
    assert (record.status, record.tx_hash, record.decided_us) == ("confirmed", "0xabc", NOW_US + 1)
    before = venue.state_hash()
    assert decide(venue, ApproveWithdrawal(a, 1, "")) == Rejection(
        "INVALID_CLIENT_REQUEST", "Withdrawal 1 is already confirmed; nothing changed"
    )
    assert decide(venue, RejectWithdrawal(a, 1, "late")).code == "INVALID_CLIENT_REQUEST"  # type: ignore[union-attr]
    assert venue.state_hash() == before


def test_decline_releases_the_reservation(funded: tuple[Venue, int]) -> None:
    venue, a = funded
    request(venue, a, "30", 1)
    request(venue, a, "20", 2)
    rejected = decide(venue, RejectWithdrawal(a, 1, "address on a sanctions list"))
    assert rejected == WithdrawalRejected(1, a, "USDC", 30_000_000, "address on a sanctions list", NOW_US + 1)
    account = venue.accounts[a]
    assert account.balances["USDC"] == 100_000_000 and account.reserved == {"USDC": 20_000_000}
    assert account.withdrawals[1].status == "declined" and account.withdrawals[1].reason == "address on a sanctions list"
    assert decide(venue, ApproveWithdrawal(a, 1, "")).code == "INVALID_CLIENT_REQUEST"  # type: ignore[union-attr]
    assert decide(venue, ApproveWithdrawal(a, 9, "")) == Rejection("RESOURCE_NOT_FOUND", "Withdrawal 9 not found")


def test_events_round_trip_through_the_journal_codec() -> None:
    events = [
        WithdrawalRequested(7, 3, "SOL", 5, "addr", "Solana", "my-ref", NOW_US),
        WithdrawalApproved(7, 3, "SOL", 5, "", NOW_US),
        WithdrawalRejected(8, 3, "SOL", 5, "no", NOW_US),
    ]
    assert decode_events(encode_events(events)) == events


def test_state_hash_and_snapshot_cover_requests(funded: tuple[Venue, int]) -> None:
    venue, a = funded
    untouched = venue.state_hash()
    assert len(account_state(venue.accounts[a])) == 10  # no requests: the hash is what it always was
    request(venue, a, "30", 1)
    request(venue, a, "10", 2)
    decide(venue, RejectWithdrawal(a, 2, "duplicate"))
    assert venue.state_hash() != untouched
    loaded = snapshot.load(venue.config, snapshot.dump(venue))
    assert loaded.state_hash() == venue.state_hash()
    loaded.check_invariants()
    assert loaded.accounts[a].reserved == {"USDC": 30_000_000}
    assert loaded.withdrawal_owner == {1: a, 2: a} and loaded.next_withdrawal_id == 3


def test_a_reservation_without_its_request_is_caught(funded: tuple[Venue, int]) -> None:
    venue, a = funded
    request(venue, a, "30", 1)
    venue.accounts[a].reserved["USDC"] += 1
    with pytest.raises(InvariantViolation, match=r"reserves .* for withdrawals, pending requests need"):
        venue.check_invariants()


# --- through the engine, with a real journal ---------------------------------------------------


async def account_with_10_sol(engine: Engine) -> int:
    account_id: int = (await engine.create_account()).value
    assert (await engine.deposit(account_id, "SOL", "10")).ok
    return account_id


async def test_engine_flow_survives_restart_snapshot_and_verify(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, directory).run)
            a = await account_with_10_sol(engine)
            first = await engine.request_withdrawal(a, "SOL", "4", ADDRESS, "Solana", client_id="ref-1")
            assert first.ok and first.value.status == "pending" and first.value.request_id == 1
            assert first.value.client_ref == "ref-1" and first.value.amount == 4 * 10**9
            second = await engine.request_withdrawal(a, "SOL", "5", ADDRESS, "Solana")
            assert second.ok and second.value.request_id == 2
            short = await engine.request_withdrawal(a, "SOL", "1.000000001", ADDRESS, "Solana")
            assert short.rejection is not None and short.rejection.code == "INSUFFICIENT_FUNDS"
            assert (await engine.withdraw(a, "SOL", "1.5")).rejection.code == "INSUFFICIENT_FUNDS"  # type: ignore[union-attr]
            done = await engine.approve_withdrawal(1, tx_hash="5xTx")
            assert done.ok and done.value.status == "confirmed" and done.value.tx_hash == "5xTx"
            again = await engine.approve_withdrawal(1)
            assert again.rejection is not None and "already confirmed" in again.rejection.message
            assert (await engine.checkpoint("snapshot")).ok
            declined = await engine.reject_withdrawal(2, reason="unverified address")
            assert declined.ok and declined.value.status == "declined"
            pending = await engine.request_withdrawal(a, "SOL", "1", ADDRESS, "Solana")
            # the refused request used id 3 and the refused operator withdrawal id 4 (one id space)
            assert pending.ok and pending.value.request_id == 5
            await engine.wait_idle()
            assert [(r.request_id, r.status) for r in engine.withdrawals(a)] == [
                (1, "confirmed"), (2, "declined"), (5, "pending"),
            ]
            assert [r.request_id for r in engine.withdrawals(status="pending")] == [5]
            assert engine.venue.balances(a)["SOL"] == {"available": "5", "locked": "1", "staked": "0"}
            engine.venue.check_invariants()
            before = engine.venue.state_hash()
            engine.stop()
        kinds = [type(e).__name__ for _, e in journal_events(directory) if type(e).__name__.startswith("Withdrawal")]
        assert kinds == ["WithdrawalRequested", "WithdrawalRequested", "WithdrawalApproved", "WithdrawalRejected",
                         "WithdrawalRequested"]
        async with trio.open_nursery() as nursery:  # recovery = the snapshot + replay of the tail
            again_engine: Engine = await nursery.start(Engine(CONFIG, directory).run)
            assert again_engine.venue.state_hash() == before
            assert again_engine.next_withdrawal_id == 6
            assert (await again_engine.approve_withdrawal(5)).ok
            await again_engine.wait_idle()
            after = again_engine.venue.state_hash()
            again_engine.stop()
    summary = verify_journal(directory, progress=False)
    assert summary["state_hash"] == after and summary["liabilities"]["SOL"] == "5"


async def test_operator_withdrawals_share_the_request_id_space_across_restarts(tmp_path: Path) -> None:
    """The wire lists both kinds in one list with one ``id`` filter: an id names one withdrawal."""
    directory = tmp_path / "journal"
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, directory).run)
            a = await account_with_10_sol(engine)
            assert (await engine.withdraw(a, "SOL", "1")).ok
            request = await engine.request_withdrawal(a, "SOL", "1", ADDRESS, "Solana")
            assert request.ok and request.value.request_id == 2
            assert (await engine.withdraw(a, "SOL", "1")).ok
            assert (await engine.checkpoint("snapshot")).ok  # the snapshot's head keeps the counter
            engine.stop()
        ids = [e.withdrawal_id for _, e in journal_events(directory) if type(e) is Withdrawn]
        assert ids == [1, 3]
        async with trio.open_nursery() as nursery:
            again: Engine = await nursery.start(Engine(CONFIG, directory).run)
            assert again.next_withdrawal_id == 4
            later = await again.request_withdrawal(a, "SOL", "1", ADDRESS, "Solana")
            assert later.ok and later.value.request_id == 4
            again.stop()


@pytest.mark.parametrize(("args", "code", "words"), [
    (("DOGE", "1", ADDRESS, "Solana"), "INVALID_ASSET", "DOGE"),
    (("SOL", "-1", ADDRESS, "Solana"), "INVALID_QUANTITY", "must not be negative"),
    (("SOL", "0", ADDRESS, "Solana"), "INVALID_QUANTITY", "positive"),
    (("SOL", "0.0000000001", ADDRESS, "Solana"), "INVALID_QUANTITY", "decimal"),
    (("SOL", "1", "", "Solana"), "INVALID_CLIENT_REQUEST", "address is required"),
    (("SOL", "1", "two words", "Solana"), "INVALID_CLIENT_REQUEST", "spaces"),
    (("SOL", "1", ADDRESS, "Sol ana"), "INVALID_CLIENT_REQUEST", "blockchain"),
    (("SOL", "1", ADDRESS, "Foo"), "INVALID_CLIENT_REQUEST", "Backpack's networks"),  # not in Backpack's enum
    (("SOL", "1", ADDRESS, "Solana", "x" * 256), "INVALID_CLIENT_REQUEST", "clientId"),
])
async def test_bad_requests_are_refused_at_intake(tmp_path: Path, args: tuple[str, ...], code: str, words: str) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(CONFIG, tmp_path / "j").run)
            a = (await engine.create_account()).value
            assert (await engine.deposit(a, "SOL", "10")).ok
            before = engine.venue.state_hash()
            refused = await engine.request_withdrawal(a, *args)
            assert refused.rejection is not None and refused.rejection.code == code and words in refused.rejection.message
            for bad in (await engine.approve_withdrawal(0), await engine.reject_withdrawal(5)):
                assert bad.rejection is not None
            await engine.wait_idle()
            assert engine.venue.state_hash() == before and engine.withdrawals() == []
            engine.stop()
