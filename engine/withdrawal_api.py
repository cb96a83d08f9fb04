"""The Engine's client API for withdrawal requests (a mixin of ``engine.runtime.Engine``).

Intake checks syntax (known asset, positive exact amount, address, blockchain and
text lengths) and refuses with Backpack's error codes before anything is queued;
the owning account actor decides everything that depends on state (funds, whether a
request is still pending). Results arrive once the journal made the fact durable,
with ``Result.value`` holding a copy of the request as that fact left it.

Kept apart from runtime.py so the engine's core file stays about orders and recovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from engine.messages import (
    WITHDRAWAL_TEXT_MAX,
    ApproveWithdrawal,
    Rejection,
    RejectWithdrawal,
    RequestWithdrawal,
)
from engine.results import Result
from engine.withdrawals import WithdrawalRequest

if TYPE_CHECKING:
    from engine.venue import Venue

#: Backpack's ``Blockchain`` enum (reference/backpack-openapi.yml, components.schemas.Blockchain): a closed
#: list, so a request naming any other network is refused before anything is reserved.
BLOCKCHAINS: Final = frozenset((
    "0G", "Aptos", "Arbitrum", "Avalanche", "Base", "Berachain", "Bitcoin", "BitcoinCash", "Bsc", "Cardano",
    "Dogecoin", "Eclipse", "EqualsMoney", "Ethereum", "Fogo", "HyperEVM", "Hyperliquid", "Linea", "Litecoin",
    "Monad", "Near", "Optimism", "Plasma", "Polygon", "Sei", "Sui", "Solana", "Stable", "Story", "Tron", "XRP",
    "Zcash",
))


class WithdrawalApi:
    if TYPE_CHECKING:
        venue: Venue
        next_withdrawal_id: int

        async def _call(self, account_id: int, command: Any) -> Result: ...
        def _amount(self, asset: str, amount: str) -> int | Rejection: ...

    async def request_withdrawal(
        self, account_id: int, asset: str, amount: str, address: str, blockchain: str, client_id: str | None = None,
    ) -> Result:
        """Queue a withdrawal request for operator approval; its amount is reserved at once."""
        if not isinstance(asset, str):
            return Result(rejection=Rejection("INVALID_ASSET", f"Unknown asset {asset!r}"))
        parsed = self._amount(asset, amount)
        if isinstance(parsed, Rejection):
            return Result(rejection=parsed)
        problem = (
            _text_problem("address", address, required=True)
            or ("address must not contain spaces" if any(c.isspace() for c in address) else None)
            or _blockchain_problem(blockchain)
            or (_text_problem("clientId", client_id) if client_id is not None else None)
        )
        if problem is not None:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", problem))
        request_id = self.next_withdrawal_id
        self.next_withdrawal_id += 1
        command = RequestWithdrawal(request_id, account_id, asset, parsed, address, blockchain, client_id or "")
        return await self._call(account_id, command)

    async def approve_withdrawal(self, request_id: int, tx_hash: str = "") -> Result:
        """Approve a pending request: the reserved amount leaves the account."""
        problem = _text_problem("transaction hash", tx_hash)
        if problem is not None:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", problem))
        owner = self._owner(request_id)
        if isinstance(owner, Rejection):
            return Result(rejection=owner)
        return await self._call(owner, ApproveWithdrawal(owner, request_id, tx_hash))

    async def reject_withdrawal(self, request_id: int, reason: str = "") -> Result:
        """Decline a pending request: its reservation is released, nothing leaves."""
        problem = _text_problem("reason", reason)
        if problem is not None:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", problem))
        owner = self._owner(request_id)
        if isinstance(owner, Rejection):
            return Result(rejection=owner)
        return await self._call(owner, RejectWithdrawal(owner, request_id, reason))

    def withdrawals(self, account_id: int | None = None, status: str | None = None) -> list[WithdrawalRequest]:
        """Requests (of one account, or all), optionally in one status, oldest first.

        Live state: use the publisher's copy for anything shown to users (durable only).
        """
        return self.venue.withdrawal_requests(account_id, status)

    def _owner(self, request_id: Any) -> int | Rejection:
        if type(request_id) is not int or request_id <= 0:
            return Rejection("INVALID_CLIENT_REQUEST", "withdrawal id must be a positive integer")
        owner = self.venue.withdrawal_owner.get(request_id)
        if owner is None:
            return Rejection("RESOURCE_NOT_FOUND", f"Withdrawal {request_id} not found")
        return owner


def _text_problem(name: str, value: Any, *, required: bool = False) -> str | None:
    if not isinstance(value, str):
        return f"{name} must be a string"
    if required and not value.strip():
        return f"{name} is required"
    if len(value) > WITHDRAWAL_TEXT_MAX:
        return f"{name} is longer than {WITHDRAWAL_TEXT_MAX} characters"
    if not value.isprintable():
        return f"{name} contains control characters"
    return None


def _blockchain_problem(value: Any) -> str | None:
    if not isinstance(value, str) or value not in BLOCKCHAINS:
        shown = value if isinstance(value, str) and len(value) <= 40 else f"{str(value)[:40]}..."
        return f"blockchain must be one of Backpack's networks such as Solana or Ethereum, got {shown!r}"
    return None
