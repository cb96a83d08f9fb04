"""Withdrawal requests queued for operator approval (sans-IO: decide and apply on an ``Account``).

Flow. A user asks (``RequestWithdrawal``); the owning account actor checks the
amount against what is available and journals ``WithdrawalRequested``, which
*reserves* the amount: it stays in the balance (the venue still owes it, so
proof-of-reserves liabilities include it) but no order, transfer or other
withdrawal can use it. An operator then approves (``WithdrawalApproved``: the
amount leaves the balance, exactly like ``Withdrawn``) or declines
(``WithdrawalRejected``: the reservation is released). Each step is one
journaled fact decided once by the account actor; replay only applies it, so a
restart or ``satchel verify`` rebuilds the same requests and reservations.

Invariants (checked by ``Venue.check_invariants`` through ``check``):
    reserved[a] == sum of the amounts of the account's pending requests in asset a;
    a request is pending, confirmed or declined, and only a pending one can be decided.

Known limits: decided requests stay in state (they are the listing's history, and
the state hash and snapshots cover them); there is no fee, address book or chain
integration: the operator sends the funds out of band and may record the
transaction hash on approval.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from engine.account import Account
from engine.messages import (
    W_CONFIRMED,
    W_DECLINED,
    W_PENDING,
    ApproveWithdrawal,
    Rejection,
    RejectWithdrawal,
    RequestWithdrawal,
    WithdrawalApproved,
    WithdrawalEvent,
    WithdrawalRejected,
    WithdrawalRequested,
)


class WithdrawalRequest:
    """One request and, once decided, its outcome."""

    __slots__ = (
        "account_id", "address", "amount", "asset", "blockchain", "client_ref", "created_us",
        "decided_us", "reason", "request_id", "status", "tx_hash",
    )

    def __init__(self, e: WithdrawalRequested) -> None:
        self.request_id = e.request_id
        self.account_id = e.account_id
        self.asset = e.asset
        self.amount = e.amount
        self.address = e.address
        self.blockchain = e.blockchain
        self.client_ref = e.client_ref
        self.created_us = e.ts_us
        self.status = W_PENDING
        self.decided_us = 0
        self.tx_hash = ""
        self.reason = ""


# --- decisions ----------------------------------------------------------------------


def decide(
    account: Account, cmd: RequestWithdrawal | ApproveWithdrawal | RejectWithdrawal, now_us: int,
    decimals_of: Callable[[str], int],
) -> WithdrawalEvent | Rejection:
    """The fact a withdrawal command makes, or why it changes nothing."""
    if type(cmd) is RequestWithdrawal:
        return decide_request(account, cmd, now_us, decimals_of(cmd.asset))
    if type(cmd) is ApproveWithdrawal:
        return decide_approve(account, cmd, now_us)
    assert type(cmd) is RejectWithdrawal, f"not a withdrawal command: {cmd!r}"
    return decide_reject(account, cmd, now_us)


def decide_request(account: Account, cmd: RequestWithdrawal, now_us: int, decimals: int) -> WithdrawalRequested | Rejection:
    short = account.short_of("withdrawal", cmd.asset, cmd.amount, decimals)
    if short is not None:
        return short
    if cmd.request_id in account.withdrawals:
        return Rejection("INVALID_CLIENT_REQUEST", f"Withdrawal {cmd.request_id} already exists")
    return WithdrawalRequested(
        cmd.request_id, account.account_id, cmd.asset, cmd.amount, cmd.address, cmd.blockchain, cmd.client_ref, now_us,
    )


def _pending(account: Account, request_id: int) -> WithdrawalRequest | Rejection:
    request = account.withdrawals.get(request_id)
    if request is None:
        return Rejection("RESOURCE_NOT_FOUND", f"Withdrawal {request_id} not found")
    if request.status != W_PENDING:
        return Rejection("INVALID_CLIENT_REQUEST", f"Withdrawal {request_id} is already {request.status}; nothing changed")
    return request


def decide_approve(account: Account, cmd: ApproveWithdrawal, now_us: int) -> WithdrawalApproved | Rejection:
    request = _pending(account, cmd.request_id)
    if isinstance(request, Rejection):
        return request
    return WithdrawalApproved(request.request_id, account.account_id, request.asset, request.amount, cmd.tx_hash, now_us)


def decide_reject(account: Account, cmd: RejectWithdrawal, now_us: int) -> WithdrawalRejected | Rejection:
    request = _pending(account, cmd.request_id)
    if isinstance(request, Rejection):
        return request
    return WithdrawalRejected(request.request_id, account.account_id, request.asset, request.amount, cmd.reason, now_us)


# --- apply ----------------------------------------------------------------------------


def apply(account: Account, e: WithdrawalEvent) -> None:
    """Mutate the account by one withdrawal fact (never decides)."""
    if type(e) is WithdrawalRequested:
        account.withdrawals[e.request_id] = WithdrawalRequest(e)
        account.reserved[e.asset] = account.reserved.get(e.asset, 0) + e.amount
        return
    request = account.withdrawals[e.request_id]
    assert request.status == W_PENDING and request.amount == e.amount and request.asset == e.asset, (
        f"account {account.account_id} withdrawal {e.request_id} cannot be decided twice or with other amounts"
    )
    _release(account, request.asset, request.amount)
    request.decided_us = e.ts_us
    if type(e) is WithdrawalApproved:
        request.status = W_CONFIRMED
        request.tx_hash = e.tx_hash
        account.balances[e.asset] = account.balances.get(e.asset, 0) - e.amount
        account.net_deposits[e.asset] = account.net_deposits.get(e.asset, 0) - e.amount
    else:
        assert type(e) is WithdrawalRejected
        request.status = W_DECLINED
        request.reason = e.reason


def _release(account: Account, asset: str, amount: int) -> None:
    left = account.reserved[asset] - amount
    if left:
        account.reserved[asset] = left
    else:
        del account.reserved[asset]


def view(account: Account, request_id: int) -> WithdrawalRequest:
    """A copy of one request, safe to hand out while the live one may change later."""
    return copy.copy(account.withdrawals[request_id])


# --- state (hash, snapshot) and invariants -------------------------------------------------


def state(account: Account) -> list[list[Any]]:
    """Every request of the account in id order, for the state hash and snapshots."""
    return [
        [r.request_id, r.asset, r.amount, r.address, r.blockchain, r.client_ref, r.created_us,
         r.status, r.decided_us, r.tx_hash, r.reason]
        for _, r in sorted(account.withdrawals.items())
    ]


def restore(account: Account, rows: list[list[Any]]) -> None:
    """Rebuild requests and reservations from ``state`` rows."""
    for request_id, asset, amount, address, blockchain, client_ref, created_us, status, decided_us, tx_hash, reason in rows:
        request = WithdrawalRequest(WithdrawalRequested(
            request_id, account.account_id, asset, amount, address, blockchain, client_ref, created_us,
        ))
        request.status, request.decided_us, request.tx_hash, request.reason = status, decided_us, tx_hash, reason
        account.withdrawals[request_id] = request
        if status == W_PENDING:
            account.reserved[asset] = account.reserved.get(asset, 0) + amount


def check(account: Account) -> None:
    """Reservations equal the pending requests; raise AssertionError naming the first problem."""
    need: dict[str, int] = {}
    for request_id, r in account.withdrawals.items():
        assert r.request_id == request_id and r.account_id == account.account_id, f"withdrawal {request_id} misfiled"
        assert r.amount > 0, f"withdrawal {request_id} has amount {r.amount}"
        assert r.status in (W_PENDING, W_CONFIRMED, W_DECLINED), f"withdrawal {request_id} has status {r.status!r}"
        if r.status == W_PENDING:
            need[r.asset] = need.get(r.asset, 0) + r.amount
    assert account.reserved == need, (
        f"account {account.account_id} reserves {account.reserved} for withdrawals, pending requests need {need}"
    )
