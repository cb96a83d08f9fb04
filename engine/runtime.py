"""The engine in one trio nursery: actors, intake, and the in-process client API.

Adapters, the admin socket and tests all talk to the venue through ``Engine``:
``place_order``/``cancel_order``/``cancel_all``/``amend_order``, the funds
commands (``engine/funds_api.py``) and the registry commands return a ``Result``
once the journal has made its events durable. ``submit`` is the non-waiting form
for adapters that pipeline: the result goes to a ``Sink`` later, and a full inbox
is refused at once.

Intake (``engine/intake.py``) validates syntax against the market's static spec
(tick, step, minimum size and notional, field combinations) and refuses with
Backpack's error codes before anything is queued; everything that depends on
state is decided by the owning actor. At start ``run`` recovers the venue from
the journal (``engine/recovery.py``) before any actor starts.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pluggy
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from engine import audit, signing
from engine.actors import CMD, AccountActor, MarketActor
from engine.channels import Sink
from engine.checkpointer import Checkpointer
from engine.config import Config
from engine.funds_api import FundsApi
from engine.host import cpu_latency
from engine.intake import (
    OWN_SIDE,
    OWN_STP,
    OWN_TIF,
    Invalid,
    MarketIntake,
    checked_order,
    new_place_order,
    order_target,
)
from engine.interpreter import tune_interpreter
from engine.journal_actor import JournalActor
from engine.journal_writer import DiskFull, JournalWriter
from engine.messages import (
    CLIENT_ID_MAX,
    FEE_ACCOUNT_ID,
    GTC,
    LIMIT,
    MARKET_STATES,
    NO_CLIENT_ID,
    REJECT_TAKER,
    AccountCreated,
    AmendOrder,
    ApiKeyAdded,
    CancelAllOrders,
    CancelOrder,
    OrderView,
    PlaceOrder,
    Rejection,
    SetMarketState,
)
from engine.plugin_api import AccountProfile, plugin_manager
from engine.recovery import StartupError, recover
from engine.results import Result
from engine.spec import MarketSpec
from engine.units import MAX_AMOUNT
from engine.venue import Venue

CATEGORIES: Final = ("retail", "professional", "eligible_counterparty")
DRAIN_TIMEOUT_S: Final = 10.0
ORDER_COMMANDS: Final = frozenset({PlaceOrder, CancelOrder, CancelAllOrders, AmendOrder})


def first_leaf(group: BaseException) -> BaseException:
    """The first plain exception inside (possibly nested) exception groups."""
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group


@contextlib.contextmanager
def listening(key: str, address: str) -> Iterator[None]:
    """Around a service's start: a failure to listen on ``address`` (the config's ``key``) becomes a
    StartupError naming both, also when the service's own nursery wrapped the OSError in a group."""
    try:
        yield
    except OSError as exc:
        raise StartupError(f"{key}: cannot listen on {address}: {_listen_problem(exc)}") from None
    except BaseExceptionGroup as group:
        failed, rest = group.split(OSError)
        if failed is None or rest is not None:
            raise
        leaf = first_leaf(failed)
        assert isinstance(leaf, OSError)
        raise StartupError(f"{key}: cannot listen on {address}: {_listen_problem(leaf)}") from None


def _listen_problem(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"the host does not resolve ({exc.strerror})"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no interface of this host has that address"
    return str(exc.strerror or exc)


class EngineHalted(Exception):
    """The engine stopped itself (disk full) rather than run on with state the journal lacks."""


class Reply:
    """A one-shot sink an in-process caller awaits."""

    __slots__ = ("_done", "value")

    def __init__(self) -> None:
        self._done = trio.Event()
        self.value: Result | None = None

    def set(self, value: Result) -> None:
        self.value = value
        self._done.set()

    async def wait(self) -> Result:
        await self._done.wait()
        assert self.value is not None
        return self.value


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class Engine(FundsApi):
    def __init__(
        self, config: Config, directory: Path, *, clock: Callable[[], int] = wall_clock_us,
        plugins: pluggy.PluginManager | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.clock = clock
        self.pm = plugins if plugins is not None else plugin_manager(config.plugins.enabled)
        self.gated = bool(self.pm.hook.satchel_order_gate.get_hookimpls())  # any plugin gating orders?
        self.venue = Venue(config)
        # specs come from the config alone, so a venue recovered from a snapshot has the same ones
        self.intake = {symbol: MarketIntake(spec) for symbol, spec in self.venue.specs.items()}
        self.journal: JournalActor
        self.market_actors: dict[str, MarketActor] = {}
        self.account_actors: dict[int, AccountActor] = {}
        self.pending = 0  # actor messages queued or being handled
        self.inflight = 0  # commands whose result has not been delivered
        self.accepting = False
        self.next_order_id = 1
        self.next_withdrawal_id = 1
        self._nursery: trio.Nursery
        self._stop = trio.Event()
        self._lock_fd = -1
        self.key: signing.VenueKey
        self.checkpointer: Checkpointer
        self.recovered_seq = 0
        self.halted: str | None = None  # why the engine stopped itself (a full disk): nothing after it was recorded
        self.held_markets: dict[MarketActor, None] | None = None  # markets with commands of a held batch
        self.cpu_latency_held = False  # [host] cpu_latency_us is in force while serving (engine/host.py)

    # --- lifecycle -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Engine] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover, start the actors, report ready, and serve until ``stop()``."""
        try:
            writer = self._recover()
        except BaseException:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
            raise
        self.journal = JournalActor(writer, self.deliver, self.delivered)
        self.checkpointer = Checkpointer(self, self.key)
        tune_interpreter()
        clean = False
        try:
            with cpu_latency(self.config.host.cpu_latency_us) as self.cpu_latency_held:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    await nursery.start(self.journal.run)
                    await nursery.start(self.checkpointer.run)
                    for symbol, market in self.venue.markets.items():
                        self.market_actors[symbol] = actor = MarketActor(self, market)
                        nursery.start_soon(actor.run)
                    for account in self.venue.accounts.values():
                        self._start_account(account)
                    self.accepting = True
                    task_status.started(self)
                    await self._stop.wait()
                    with trio.move_on_after(DRAIN_TIMEOUT_S):
                        await self.wait_idle()
                    clean = self.idle()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            full = group.subgroup(DiskFull)
            if full is None:
                raise
            self.accepting = False
            exc = first_leaf(full)
            assert isinstance(exc, DiskFull)
            self.halted = str(exc)
            raise EngineHalted(
                f"{exc.strerror}; intake stopped. Every acknowledged command is on disk; "
                "free space and restart the daemon."
            ) from exc
        finally:
            self.cpu_latency_held = False  # the with block has withdrawn the request
            # Final signed checkpoint and fsync (synchronous, so no cancellation can cut
            # them). Only after a clean drain: then live state is exactly the journal's.
            try:
                if clean:
                    self._final_checkpoint(writer)
            finally:
                writer.close()
                os.close(self._lock_fd)

    def _final_checkpoint(self, writer: JournalWriter) -> None:
        """The signed shutdown checkpoint. A full disk leaves it out (``EngineHalted`` says so): it
        only vouches for what the journal already holds, and every acknowledged command is there."""
        body = audit.checkpoint_body(writer.seq, writer.hash, self.venue.state_hash(), self.clock(), "shutdown")
        try:
            writer.append([audit.checkpoint_payload(self.key, body)])
        except DiskFull as exc:
            raise EngineHalted(
                f"the shutdown checkpoint was not written ({exc.strerror}); every acknowledged command is on disk. "
                "Free space before the next start."
            ) from None

    def stop(self) -> None:
        """Stop intake now; ``run`` drains what is in flight, syncs and returns."""
        self.accepting = False
        self._stop.set()

    def idle(self) -> bool:
        return (
            self.pending == 0 and self.inflight == 0 and not self.journal.busy
            and self.journal.rx.statistics().current_buffer_used == 0
        )

    async def wait_idle(self) -> None:
        """Wait until every command has its result and every actor has applied its events."""
        while not self.idle():  # noqa: ASYNC110 - idleness spans many actors; polling is the simple honest check
            await trio.sleep(0.0005)

    def _start_account(self, account: Any) -> None:
        actor = AccountActor(self, account)
        self.account_actors[account.account_id] = actor
        self._nursery.start_soon(actor.run)

    # --- recovery ----------------------------------------------------------------

    def _lock(self) -> None:
        """One engine per journal directory: a second writer would fork the history."""
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise StartupError(f"journal dir {self.directory} is in use by another Satchel process") from None

    def _recover(self) -> JournalWriter:
        """Lock the journal dir for this engine and recover the venue from it (``engine.recovery``).

        Returns the writer that appends after the journal's last record.
        """
        directory = self.directory
        if directory.exists() and not directory.is_dir():
            raise StartupError(f"journal.dir: {directory} is not a directory")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OSError as exc:  # read-only file system, no permission, a parent that is a file
            raise StartupError(f"journal.dir: cannot use {directory}: {exc.strerror or exc}") from None
        self.venue, self.key, writer = recover(self.config, directory, self.pm, self.venue)
        self.next_order_id = self.venue.next_order_id
        self.next_withdrawal_id = self.venue.next_withdrawal_id
        self.recovered_seq = writer.seq
        return writer

    # --- delivery ---------------------------------------------------------------------

    def deliver(self, sink: Sink, value: Result) -> None:
        self.inflight -= 1
        sink.set(value)

    def delivered(self, count: int) -> None:
        """``count`` results are on their way to their sinks (the journal delivers a batch at once)."""
        self.inflight -= count

    def gate_order(self, account: Any, spec: MarketSpec, cmd: PlaceOrder) -> Rejection | None:
        if not self.gated:
            return None
        profile = AccountProfile(account.account_id, account.parent_id, account.country, account.category)
        for reason in self.pm.hook.satchel_order_gate(account=profile, market=spec, order=cmd):
            if reason:
                return Rejection("FORBIDDEN", str(reason))
        return None

    # --- intake ----------------------------------------------------------------------------

    def submit(self, account_id: int, command: Any, sink: Sink) -> Rejection | None:
        """Queue a command for its account without waiting; the result goes to ``sink``."""
        if not self.accepting:
            return Rejection("MAINTENANCE", "Satchel is not accepting commands (starting or shutting down)")
        actor = self.account_actors.get(account_id)
        if actor is None:
            return Rejection("RESOURCE_NOT_FOUND", f"Account {account_id} not found")
        kind = type(command)
        if kind is PlaceOrder or kind in ORDER_COMMANDS:  # nearly every command is a PlaceOrder: no set lookup
            if account_id == FEE_ACCOUNT_ID:
                # it collects fees in every market; settlement treats its part of a trade as fees only
                return Rejection("FORBIDDEN", "The venue's fee account cannot trade")
            self.inflight += 1
            if actor.admit(command, sink):
                return None
            self.inflight -= 1
        try:
            actor.post_nowait((CMD, command, sink))
        except trio.WouldBlock:
            return Rejection("TOO_MANY_REQUESTS", f"Engine overloaded: account {account_id} has too many commands in flight")
        self.inflight += 1
        return None

    def hold_markets(self) -> bool:
        """Start a batch of ``submit`` calls (one adapter read): markets queue commands without waking.

        Returns False (and holds nothing) when a batch is already in progress.
        End it with ``release_markets`` in the same synchronous step: no await in
        between, so nothing else runs while commands wait. One market pass and one
        journal hand-off per read instead of per wake-up, run in the caller's step
        when the market is idle (``MarketActor.pass_now``).
        """
        if self.held_markets is not None:
            return False
        self.held_markets = {}
        return True

    def release_markets(self) -> None:
        """End the batch: each market with commands from it runs its pass now when it can, else its actor wakes.

        A failure in a pass stops the engine, as it would in the market's own task.
        """
        held, self.held_markets = self.held_markets, None
        if not held:
            return
        for actor in held:
            try:
                ran = actor.pass_now()
            except BaseException as exc:
                self._nursery.start_soon(_fail, exc)
                raise
            if not ran:
                actor.wake_if_queued()

    async def _call(self, account_id: int, command: Any) -> Result:
        reply = Reply()
        refused = self.submit(account_id, command, reply)
        if refused is not None:
            return Result(rejection=refused)
        return await reply.wait()

    def build_order(
        self, account_id: int, symbol: str, side: str, order_type: str, *,
        quantity: str | None = None, quote_quantity: str | None = None, price: str | None = None,
        time_in_force: str | None = None, post_only: bool = False,
        self_trade_prevention: str | None = None, client_id: int | None = None,
    ) -> PlaceOrder | Rejection:
        """Validate a new order against its market's filters; allocate its id."""
        market = self.intake.get(symbol)
        if market is not None and order_type == LIMIT and quote_quantity is None and post_only is False and (
            client_id is None or (type(client_id) is int and 0 <= client_id <= CLIENT_ID_MAX)
        ):
            # the common case (a plain limit order): cached parses, no re-checks of what the lookups proved
            try:
                price_ticks = market.ticks[price]
                qty_steps = market.steps[quantity]
                side = OWN_SIDE[side]  # the engine's own string objects, not the request's copies
                tif = OWN_TIF[time_in_force] if time_in_force else GTC
                stp = OWN_STP[self_trade_prevention] if self_trade_prevention else REJECT_TAKER
            except (KeyError, TypeError):  # not seen yet, not a string, not a valid value: the full path explains
                pass
            else:
                notional = price_ticks * qty_steps * market.quote_per_tick_step
                if market.min_notional_quote <= notional < MAX_AMOUNT and qty_steps >= market.min_qty_steps and (
                    qty_steps * market.base_per_step < MAX_AMOUNT
                ):
                    order_id = self.next_order_id
                    self.next_order_id = order_id + 1
                    return new_place_order(
                        order_id, account_id, market.symbol, side, LIMIT, tif, price_ticks, qty_steps, 0,
                        False, stp, NO_CLIENT_ID if client_id is None else client_id, 0,
                    )
        spec = self.venue.specs.get(symbol)
        if spec is None:
            return Rejection("INVALID_CLIENT_REQUEST", f"Invalid market symbol: {symbol!r}")
        tif = time_in_force or GTC
        stp = self_trade_prevention or REJECT_TAKER
        return self._build_order_checked(
            spec, account_id, symbol, side, order_type, tif, stp, quantity, quote_quantity, price, post_only, client_id
        )

    def _build_order_checked(
        self, spec: MarketSpec, account_id: int, symbol: str, side: str, order_type: str, tif: str, stp: str,
        quantity: str | None, quote_quantity: str | None, price: str | None, post_only: bool, client_id: int | None,
    ) -> PlaceOrder | Rejection:
        built = checked_order(spec, self.intake[spec.symbol], self.next_order_id, account_id, side, order_type, tif,
                              stp, quantity, quote_quantity, price, post_only, client_id)
        if type(built) is PlaceOrder:
            self.next_order_id += 1
        return built

    # --- client API: orders --------------------------------------------------------------

    async def place_order(self, account_id: int, symbol: str, side: str, order_type: str, **fields: Any) -> Result:
        """Place an order (Backpack semantics); fields as in ``build_order``."""
        built = self.build_order(account_id, symbol, side, order_type, **fields)
        if isinstance(built, Rejection):
            return Result(rejection=built)
        return await self._call(account_id, built)

    async def cancel_order(
        self, account_id: int, symbol: str, *, order_id: int | None = None, client_id: int | None = None
    ) -> Result:
        if symbol not in self.venue.specs:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"Invalid market symbol: {symbol!r}"))
        target = order_target(order_id, client_id)
        if isinstance(target, Rejection):
            return Result(rejection=target)
        return await self._call(account_id, CancelOrder(account_id, symbol, *target))

    async def cancel_all(self, account_id: int, symbol: str) -> Result:
        if symbol not in self.venue.specs:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"Invalid market symbol: {symbol!r}"))
        return await self._call(account_id, CancelAllOrders(account_id, symbol))

    async def amend_order(
        self, account_id: int, symbol: str, *, order_id: int | None = None, client_id: int | None = None,
        price: str | None = None, quantity: str | None = None,
    ) -> Result:
        """Change a resting order's price and/or total quantity.

        Priority is kept only when the price is unchanged and the quantity does not grow.
        """
        spec = self.venue.specs.get(symbol)
        if spec is None:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"Invalid market symbol: {symbol!r}"))
        target = order_target(order_id, client_id)
        if isinstance(target, Rejection):
            return Result(rejection=target)
        if price is None and quantity is None:
            return Result(rejection=Rejection("INVALID_ORDER", "Amend needs a new price or quantity"))
        try:
            intake = self.intake[spec.symbol]
            price_ticks = intake.price(price) if price is not None else 0
            qty_steps = intake.qty(quantity) if quantity is not None else 0
        except Invalid as bad:
            return Result(rejection=bad.rejection)
        if qty_steps and qty_steps < spec.min_qty_steps:
            return Result(rejection=Rejection("INVALID_QUANTITY", f"Quantity is below the minimum {spec.format_qty(spec.min_qty_steps)}"))
        return await self._call(account_id, AmendOrder(account_id, symbol, target[0], target[1], price_ticks, qty_steps))

    def open_orders(self, account_id: int, symbol: str | None = None) -> list[OrderView]:
        return self.venue.open_orders(account_id, symbol)

    def get_order(self, account_id: int, symbol: str, *, order_id: int | None = None, client_id: int | None = None) -> OrderView | None:
        return self.venue.open_order(account_id, symbol, order_id, client_id)

    # --- client API: accounts, markets (funds: FundsApi) --------------------------------------

    async def create_account(self, *, country: str = "", category: str = "retail", parent_id: int | None = None) -> Result:
        if not self.accepting:
            return Result(rejection=Rejection("MAINTENANCE", "Satchel is not accepting commands"))
        if type(country) is not str or type(category) is not str:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", "country and category must be strings"))
        if parent_id is not None and type(parent_id) is not int:  # a bool is not an account id (True == 1)
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"parent must be an account id, got {parent_id!r}"))
        country = country.upper()
        if country and (len(country) != 2 or not country.isalpha()):
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"country must be an ISO 3166 alpha-2 code, got {country!r}"))
        if category not in CATEGORIES:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"category must be one of {', '.join(CATEGORIES)}"))
        parent = -1 if parent_id is None else parent_id
        if parent_id is not None:
            owner = self.venue.accounts.get(parent_id)
            if owner is None or parent_id == 0:
                return Result(rejection=Rejection("RESOURCE_NOT_FOUND", f"Parent account {parent_id} not found"))
            if owner.parent_id >= 0:
                return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"Account {parent_id} is itself a sub-account"))
        for reason in self.pm.hook.satchel_account_opening(country=country, category=category, parent_id=parent):
            if reason:
                return Result(rejection=Rejection("FORBIDDEN", str(reason)))
        event = AccountCreated(self.venue.next_account_id, parent, country, category, self.clock())
        account = self.venue.apply_account_created(event)
        self._start_account(account)
        return await self._journal_call([event], Result(events=[event], value=event.account_id))

    async def add_api_key(self, account_id: int, public_key: str) -> Result:
        if not self.accepting:
            return Result(rejection=Rejection("MAINTENANCE", "Satchel is not accepting commands"))
        if account_id not in self.venue.accounts or account_id == 0:
            return Result(rejection=Rejection("RESOURCE_NOT_FOUND", f"Account {account_id} not found"))
        try:
            raw = base64.b64decode(public_key, validate=True)
            Ed25519PublicKey.from_public_bytes(raw)
        except (binascii.Error, ValueError):
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", "public key must be 32 bytes of Ed25519 public key in base64"))
        key = base64.b64encode(raw).decode()
        if key in self.venue.api_keys:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", "API key is already registered"))
        event = ApiKeyAdded(account_id, key, self.clock())
        self.venue.apply_key_added(event)
        return await self._journal_call([event], Result(events=[event]))

    async def set_market_state(self, symbol: str, state: str) -> Result:
        if not self.accepting:
            return Result(rejection=Rejection("MAINTENANCE", "Satchel is not accepting commands"))
        actor = self.market_actors.get(symbol)
        if actor is None:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"Invalid market symbol: {symbol!r}"))
        if state not in MARKET_STATES:
            return Result(rejection=Rejection("INVALID_CLIENT_REQUEST", f"state must be one of {', '.join(MARKET_STATES)}"))
        reply = Reply()
        if not actor.post(SetMarketState(symbol, state), reply):
            return Result(rejection=Rejection("TOO_MANY_REQUESTS", f"Engine overloaded: market {symbol} is busy"))
        self.inflight += 1
        return await reply.wait()

    async def _journal_call(self, events: list[Any], result: Result) -> Result:
        reply = Reply()
        self.inflight += 1
        await self.journal.submit(events, [(reply, result)])
        return await reply.wait()

    async def checkpoint(self, kind: str) -> Result:
        """A signed checkpoint now; ``snapshot`` also writes a snapshot, ``por`` publishes a PoR root."""
        if not self.accepting:
            return Result(rejection=Rejection("MAINTENANCE", "Satchel is not accepting commands (starting or shutting down)"))
        reply = Reply()
        self.inflight += 1
        self.checkpointer.request(kind, reply)
        return await reply.wait()

    # --- reads -------------------------------------------------------------------------

    def status(self, *, state_hash: bool = False) -> dict[str, Any]:
        markets = {}
        for symbol, market in self.venue.markets.items():
            spec = market.spec
            book = market.book
            markets[symbol] = {
                "state": market.state,
                "bestBid": spec.format_price(book.best_bid()) if book.best_bid() else None,
                "bestAsk": spec.format_price(book.best_ask()) if book.best_ask() else None,
                "lastPrice": spec.format_price(market.last_price) if market.last_price else None,
                "restingOrders": len(book.orders),
            }
        out = {
            "ready": self.accepting,
            "venue": self.config.venue.name,
            "markets": markets,
            "accounts": len(self.venue.accounts) - 1,
            "journal": {"dir": str(self.directory), "durableSeq": self.journal.durable_seq},
            "venueKey": self.key.public_b64,
            "cpuLatencyHeld": self.cpu_latency_held,
        }
        if state_hash:
            # Live state equals the journal's only when nothing is in flight.
            out["stateHash"] = self.venue.state_hash() if self.idle() else None
        return out


async def _fail(exc: BaseException) -> None:
    """Raise in the engine's nursery: a bug in a market pass run by an adapter stops the engine (fail-stop)."""
    raise exc
