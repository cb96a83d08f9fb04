"""The Engine's client API for funds: deposits, withdrawals, transfers and withdrawal requests.

A mixin of ``engine.runtime.Engine``. Intake checks syntax (known asset, positive
exact amount; for a request also address, blockchain and text lengths) and refuses
with Backpack's error codes before anything is queued; the owning account actor
decides everything that depends on state (funds, whether a request is still
pending). Results arrive once the journal made the fact durable; for a request,
``Result.value`` holds a copy of the request as that fact left it. Withdrawals and
withdrawal requests take their ids from one counter (``next_withdrawal_id``).

Kept apart from runtime.py so the engine's core file stays about actors and orders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from engine.messages import (
    WITHDRAWAL_TEXT_MAX,
    ApproveWithdrawal,
    Deposit,
    Rejection,
    RejectWithdrawal,
    RequestWithdrawal,
    Transfer,
    Withdraw,
)
from engine.results import Result
from engine.units import DecimalError, parse_units
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


class FundsApi:
    if TYPE_CHECKING:
        venue: Venue
        next_withdrawal_id: int

        async def _call(self, account_id: int, command: Any) -> Result: ...

    async def deposit(self, account_id: int, asset: str, amount: str) -> Result:
        parsed = self._amount(asset, amount)
        if isinstance(parsed, Rejection):
            return Result(rejection=parsed)
        return await self._call(account_id, Deposit(account_id, asset, parsed))

    async def withdraw(self, account_id: int, asset: str, amount: str) -> Result:
        parsed = self._amount(asset, amount)
        if isinstance(parsed, Rejection):
            return Result(rejection=parsed)
        withdrawal_id = self.next_withdrawal_id  # one id space with requests (request_withdrawal)
        self.next_withdrawal_id += 1
        return await self._call(account_id, Withdraw(account_id, asset, parsed, withdrawal_id))

    async def transfer(self, from_account_id: int, to_account_id: int, asset: str, amount: str) -> Result:
        parsed = self._amount(asset, amount)
        if isinstance(parsed, Rejection):
            return Result(rejection=parsed)
        if to_account_id not in self.venue.accounts:
            return Result(rejection=Rejection("RESOURCE_NOT_FOUND", f"Account {to_account_id} not found"))
        if to_account_id == from_account_id:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", "Cannot transfer to the same account"))
        return await self._call(from_account_id, Transfer(from_account_id, to_account_id, asset, parsed))

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
        return await self._decide(request_id, "transaction hash", tx_hash, ApproveWithdrawal)

    async def reject_withdrawal(self, request_id: int, reason: str = "") -> Result:
        """Decline a pending request: its reservation is released, nothing leaves."""
        return await self._decide(request_id, "reason", reason, RejectWithdrawal)

    async def _decide(
        self, request_id: int, what: str, text: str,
        command: type[ApproveWithdrawal] | type[RejectWithdrawal],
    ) -> Result:
        """The operator's decision on a request, sent to the account that made it (``text`` is ``what``)."""
        problem = _text_problem(what, text)
        if problem is not None:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", problem))
        owner = self._owner(request_id)
        if isinstance(owner, Rejection):
            return Result(rejection=owner)
        return await self._call(owner, command(owner, request_id, text))

    def withdrawals(self, account_id: int | None = None, status: str | None = None) -> list[WithdrawalRequest]:
        """Requests (of one account, or all), optionally in one status, oldest first.

        Live state: use the publisher's copy for anything shown to users (durable only).
        """
        return self.venue.withdrawal_requests(account_id, status)

    def _amount(self, asset: str, amount: str) -> int | Rejection:
        spec = self.venue.assets.get(asset)
        if spec is None:
            return Rejection("INVALID_ASSET", f"Unknown asset {asset!r}")
        try:
            value = parse_units(amount, spec.decimals, what="amount")
        except DecimalError as exc:
            return Rejection("INVALID_QUANTITY", str(exc))
        if value <= 0:
            return Rejection("INVALID_QUANTITY", "amount must be positive")
        return value

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
