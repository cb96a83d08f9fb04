"""The publisher's view of withdrawal requests: reserved amounts are locked, decisions free or spend them."""

from __future__ import annotations

import copy

from engine.messages import WithdrawalApproved, WithdrawalRejected, WithdrawalRequested
from engine.publisher import Publisher
from engine.updates import BalanceUpdate
from tests.engine.helpers import NOW_US, atoms, fund, make_venue, open_account

ADDRESS = "5Yq3kP9cFq2s7wWbJ8xYpA1nR4tLmZvD6hGe3uKsQ2Nf"


def test_balance_updates_follow_reservation_payout_and_release() -> None:
    venue = make_venue()
    a = open_account(venue)
    fund(venue, a, "USDC", "100")
    pub = Publisher(copy.deepcopy(venue))
    usdc = atoms(venue, "USDC", "1")

    ups = pub.apply_batch([
        WithdrawalRequested(1, a, "USDC", 30 * usdc, ADDRESS, "Solana", "", NOW_US),
        WithdrawalRequested(2, a, "USDC", 20 * usdc, ADDRESS, "Solana", "", NOW_US),
    ])
    assert ups == [BalanceUpdate(a, "USDC", 50 * usdc, 50 * usdc, NOW_US)]  # one update per touched asset per batch
    assert pub.balances(a) == {"USDC": (50 * usdc, 50 * usdc)}
    assert [(r.request_id, r.status) for r in pub.withdrawal_requests(a)] == [(1, "pending"), (2, "pending")]

    ups = pub.apply_batch([WithdrawalApproved(1, a, "USDC", 30 * usdc, "0xabc", NOW_US + 1)])
    assert ups == [BalanceUpdate(a, "USDC", 50 * usdc, 20 * usdc, NOW_US + 1)]  # paid out: the balance shrinks
    ups = pub.apply_batch([WithdrawalRejected(2, a, "USDC", 20 * usdc, "no", NOW_US + 2)])
    assert ups == [BalanceUpdate(a, "USDC", 70 * usdc, 0, NOW_US + 2)]  # released: available again
    assert [r.status for r in pub.withdrawal_requests(a)] == ["confirmed", "declined"]
    pub.venue.check_invariants()
