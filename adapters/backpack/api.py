"""Backpack's REST surface as a route table, shared by REST and WebSocket order entry.

Each ``Route`` names its method and path, its signing instruction (empty for
public routes), the fields it accepts and its handler. The HTTP app and the
WebSocket adapter only find a route and call ``BackpackApi.dispatch``; adding
margin, lending or perpetual endpoints later means adding rows, not branches.

Order of checks (each failure changes nothing and says what was wrong):
malformed JSON -> signature (headers, key, window, timestamp, signature) ->
rate limit per API key -> unknown or missing fields -> values -> engine.

Reads come from the ``Publisher`` (durable state only); writes go through the
``Engine``'s client API, which answers once the journal has made them durable.
A read first waits until the publisher has applied everything durable when it
arrived (``Publisher.reached``, usually at once, else one task switch): the
journal answers a write a step before the publisher applies it, so a read sent
on receiving an answer (over REST or WebSocket, on any connection, or FIX) sees
what that answer said. The wait costs the order path nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs

from adapters.backpack import param, wire
from adapters.backpack.auth import RATE_PER_MINUTE, RateLimiter, Signed, Verifier, wall_ms
from adapters.backpack.errors import ApiError, bad_request
from adapters.backpack.param import HISTORY_LIMIT_MAX
from engine.channels import Sink
from engine.messages import CLIENT_ID_MAX, LIMIT, MARKET, OrderView, PlaceOrder, Rejection
from engine.publisher import Publisher
from engine.results import Result
from engine.runtime import Engine, Reply
from engine.spec import MarketSpec
from engine.units import is_integer_text
from engine.updates import INTERVALS, FillRecord
from engine.views import withdrawal_json

log = logging.getLogger("satchel.adapters.backpack")

DEPTH_LIMITS: Final = (5, 10, 20, 50, 100, 500, 1000)
BATCH_MAX: Final = 20
ORDER_TYPES: Final = {"Limit": LIMIT, "Market": MARKET, "LIMIT": LIMIT, "MARKET": MARKET}
ORDER_FIELDS: Final = frozenset({
    "symbol", "side", "orderType", "price", "quantity", "quoteQuantity", "timeInForce", "postOnly",
    "selfTradePrevention", "clientId", "reduceOnly", "brokerId", "autoLend", "autoLendRedeem", "autoBorrow",
    "autoBorrowRepay", "triggerPrice", "triggerQuantity", "triggerBy", "takeProfitTriggerPrice",
    "takeProfitLimitPrice", "takeProfitTriggerBy", "stopLossTriggerPrice", "stopLossLimitPrice",
    "stopLossTriggerBy", "slippageTolerance", "slippageToleranceType",
})
NOT_YET: Final = {  # order fields whose features come with later issues: refused when given, never ignored
    "autoLend": "spot margin", "autoLendRedeem": "spot margin", "autoBorrow": "spot margin",
    "autoBorrowRepay": "spot margin", "reduceOnly": "futures", "triggerPrice": "trigger orders",
    "triggerQuantity": "trigger orders", "triggerBy": "trigger orders", "takeProfitTriggerPrice": "take-profit orders",
    "takeProfitLimitPrice": "take-profit orders", "takeProfitTriggerBy": "take-profit orders",
    "stopLossTriggerPrice": "stop-loss orders", "stopLossLimitPrice": "stop-loss orders",
    "stopLossTriggerBy": "stop-loss orders", "slippageTolerance": "slippage limits",
    "slippageToleranceType": "slippage limits",
}
NOT_YET_FLAGS: Final = frozenset({"autoLend", "autoLendRedeem", "autoBorrow", "autoBorrowRepay", "reduceOnly"})  # false asks for nothing
BROKER_ID_MAX: Final = 2**16 - 1
ORDER_PATH: Final = "/api/v1/order"
INTERNAL_ERROR: Final = "Internal error; the request may not have been applied, check open orders"
READ_FAILED: Final = "Internal error while reading; nothing was changed"
HISTORY_FIELDS: Final = frozenset({
    "limit", "offset", "sortDirection", "sort_direction", "marketType", "symbol", "orderId", "strategyId",
})


@attrs.frozen
class Call:
    """One request as a handler sees it: who (0 for public) and the parameters."""

    account_id: int
    params: Any  # dict, or a list of dicts for batches


Handler = Callable[[Call], Awaitable[Any]]


@attrs.frozen
class Route:
    method: str
    path: str
    handler: Handler
    instruction: str = ""  # empty: public
    fields: frozenset[str] = frozenset()
    required: tuple[str, ...] = ()
    batch: bool = False
    text: bool = False  # body is plain text (ping, time)


class BackpackApi:
    def __init__(
        self, engine: Engine, publisher: Publisher, *, clock_ms: Callable[[], int] = wall_ms,
        rate_per_minute: int | None = RATE_PER_MINUTE,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.clock_ms = clock_ms
        self.verifier = Verifier(publisher.account_for_key, clock_ms)
        self.limiter = RateLimiter(rate_per_minute) if rate_per_minute else None
        self.decimals = {s: a.decimals for s, a in engine.venue.assets.items()}
        self.routes: dict[tuple[str, str], Route] = {}
        self.by_instruction: dict[tuple[str, bool], Route] = {}
        for route in self._table():
            self.routes[route.method, route.path] = route
            if route.instruction:
                self.by_instruction.setdefault((route.instruction, route.batch), route)
        self.order_route = self.routes["POST", ORDER_PATH]

    # --- dispatch ------------------------------------------------------------------------

    async def dispatch(
        self, route: Route, params: Any, api_key: str | None = None, signature: str | None = None,
        timestamp: str | None = None, window: str | None = None,
    ) -> Any:
        """Authenticate (signed routes), check fields, run the handler. Raises ``ApiError``."""
        account_id = self.admit(route, params, api_key, signature, timestamp, window)
        if route.method == "GET":  # read your writes: see every answer already sent (``Publisher.reached``)
            await self.publisher.reached(self.engine.journal.durable_event_seq)
        try:
            return await route.handler(Call(account_id, params))
        except ApiError:
            raise
        except Exception:
            log.exception("handler for %s %s failed", route.method, route.path)
            raise ApiError("SERVER_ERROR", READ_FAILED if route.method == "GET" else INTERNAL_ERROR) from None

    def admit(
        self, route: Route, params: Any, api_key: str | None, signature: str | None,
        timestamp: str | None, window: str | None,
    ) -> int:
        """Everything before the handler: shape, signature, rate limit, fields; the account id (0: public)."""
        _check_shape(route, params)
        account_id = 0
        if route.instruction:
            account_id = self.verifier.verify(route.instruction, params, api_key, signature, timestamp, window)
        return self._admit_signed(route, params, account_id, api_key)

    def _admit_signed(self, route: Route, params: Any, account_id: int, api_key: str | None) -> int:
        """The checks after the signature: rate limit, then fields."""
        if route.instruction and self.limiter is not None:
            self.limiter.take(api_key or "")
        for item in params if route.batch else [params]:
            _check_fields(route, item)  # each a dict: _check_shape ran first
        return account_id

    def prepare_order(
        self, params: Any, api_key: str | None, signature: str | None, timestamp: str | None, window: str | None,
    ) -> tuple[int, PlaceOrder]:
        """``POST /api/v1/order`` up to the engine, synchronously: the signer's account and the order.

        With ``place`` it lets WebSocket order entry answer from the engine's reply
        sink without a task per order. Raises ``ApiError`` for anything refused
        before the engine.
        """
        account_id = self.admit(self.order_route, params, api_key, signature, timestamp, window)
        return account_id, self._build(account_id, params)

    def check_order(
        self, params: Any, api_key: str | None, signature: str | None, timestamp: str | None, window: str | None,
    ) -> Signed:
        """``prepare_order`` split in two around the Ed25519 verification, so the REST server can have a
        connection's orders verified together off the event loop: every check before it. Raises ``ApiError``."""
        route = self.order_route
        _check_shape(route, params)
        return self.verifier.check(route.instruction, params, api_key, signature, timestamp, window)

    def accept_order(self, signed: Signed, valid: bool) -> tuple[int, PlaceOrder]:
        """The rest of ``prepare_order``, given whether ``signed``'s signature verified. Raises ``ApiError``."""
        account_id = self.verifier.conclude(signed, valid)
        self._admit_signed(self.order_route, signed.params, account_id, signed.api_key)
        assert isinstance(signed.params, dict)  # _check_shape
        return account_id, self._build(account_id, signed.params)

    def place(self, account_id: int, cmd: PlaceOrder, sink: Sink) -> None:
        """Queue the order; its result goes to ``sink.set`` (``order_payload`` formats it). Raises ``ApiError`` if refused now."""
        refused = self.engine.submit(account_id, cmd, sink)
        if refused is not None:
            raise ApiError.of(refused)

    def order_payload(self, result: Result, symbol: str) -> Any:
        """The answer to a placed order: Backpack's ``Order``; raises the ``ApiError`` of a rejection."""
        if result.rejection is not None:
            raise ApiError.of(result.rejection)
        assert result.order is not None
        return wire.order_json(result.order, self.engine.venue.specs[symbol])

    def spec(self, params: dict[str, Any], required: bool = True) -> MarketSpec | None:
        symbol = params.get("symbol")
        if symbol is None:
            if required:
                raise bad_request("Missing required field: symbol")
            return None
        spec = self.engine.venue.specs.get(symbol) if isinstance(symbol, str) else None
        if spec is None:
            raise bad_request(f"Invalid market symbol: {symbol!r}")
        return spec

    # --- the table ---------------------------------------------------------------------------

    def _table(self) -> list[Route]:
        get, post, delete, patch = "GET", "POST", "DELETE", "PATCH"
        v1, w1 = "/api/v1", "/wapi/v1"
        return [
            Route(get, f"{v1}/status", self.status),
            Route(get, f"{v1}/ping", self.ping, text=True),
            Route(get, f"{v1}/time", self.time, text=True),
            Route(get, f"{v1}/assets", self.assets, fields=frozenset({"country"})),
            Route(get, f"{v1}/markets", self.markets, fields=frozenset({"marketType"})),
            Route(get, f"{v1}/market", self.market, fields=frozenset({"symbol"}), required=("symbol",)),
            Route(get, f"{v1}/depth", self.depth, fields=frozenset({"symbol", "limit"}), required=("symbol",)),
            Route(get, f"{v1}/ticker", self.ticker, fields=frozenset({"symbol", "interval"}), required=("symbol",)),
            Route(get, f"{v1}/tickers", self.tickers, fields=frozenset({"interval"})),
            Route(get, f"{v1}/klines", self.klines, fields=frozenset({"symbol", "interval", "startTime", "endTime", "priceType"}),
                  required=("symbol", "interval", "startTime")),
            Route(get, f"{v1}/trades", self.trades, fields=frozenset({"symbol", "limit"}), required=("symbol",)),
            Route(get, f"{v1}/trades/history", self.trades, fields=frozenset({"symbol", "limit", "offset"}), required=("symbol",)),
            Route(get, f"{v1}/securities", self.securities),
            Route(get, f"{v1}/wallets", self.wallets),
            Route(get, f"{v1}/account", self.account, "accountQuery"),
            Route(patch, f"{v1}/account", self.account_update, "accountUpdate",
                  frozenset({"autoBorrowSettlements", "autoLend", "autoRepayBorrows", "leverageLimit"})),
            Route(get, f"{v1}/capital", self.capital, "balanceQuery"),
            Route(get, f"{v1}/order", self.order_query, "orderQuery", frozenset({"symbol", "orderId", "clientId"}), ("symbol",)),
            Route(post, ORDER_PATH, self.order_execute, "orderExecute", ORDER_FIELDS, ("symbol", "side", "orderType")),
            Route(delete, f"{v1}/order", self.order_cancel, "orderCancel", frozenset({"symbol", "orderId", "clientId"}), ("symbol",)),
            Route(get, f"{v1}/orders", self.orders_query, "orderQueryAll", frozenset({"symbol", "marketType"})),
            Route(post, f"{v1}/orders", self.orders_execute, "orderExecute", ORDER_FIELDS, ("symbol", "side", "orderType"), batch=True),
            Route(delete, f"{v1}/orders", self.orders_cancel, "orderCancelAll", frozenset({"symbol", "orderType"}), ("symbol",)),
            Route(get, f"{w1}/history/orders", self.order_history, "orderHistoryQueryAll", HISTORY_FIELDS),
            Route(get, f"{w1}/history/fills", self.fill_history, "fillHistoryQueryAll",
                  HISTORY_FIELDS | {"from", "to", "fillType"}),
            Route(get, f"{w1}/capital/deposits", self.deposits, "depositQueryAll",
                  frozenset({"from", "to", "limit", "offset", "excludePlatform"})),
            Route(get, f"{w1}/capital/deposit/address", self.deposit_address, "depositAddressQuery",
                  frozenset({"blockchain"}), ("blockchain",)),
            Route(get, f"{w1}/capital/withdrawals", self.withdrawals, "withdrawalQueryAll",
                  frozenset({"id", "clientId", "from", "to", "limit", "offset"})),
            Route(post, f"{w1}/capital/withdrawals", self.withdraw, "withdraw",
                  frozenset({"address", "blockchain", "clientId", "quantity", "symbol", "twoFactorToken", "autoBorrow",
                             "autoLendRedeem", "recipientInformation"}), ("address", "blockchain", "quantity", "symbol")),
        ]

    # --- public ----------------------------------------------------------------------------

    async def status(self, call: Call) -> Any:
        if self.engine.accepting:
            return {"status": "Ok", "message": None}
        return {"status": "Maintenance", "message": "Satchel is starting or shutting down"}

    async def ping(self, call: Call) -> Any:
        return "pong"

    async def time(self, call: Call) -> Any:
        return str(self.clock_ms())

    async def assets(self, call: Call) -> Any:
        return [wire.asset_json(a) for a in self.engine.venue.assets.values()]

    async def markets(self, call: Call) -> Any:
        if not param.spot_wanted(call.params, "SPOT"):
            return []
        return [self._market_json(spec) for spec in self.engine.venue.specs.values()]

    async def market(self, call: Call) -> Any:
        spec = self.spec(call.params)
        assert spec is not None
        return self._market_json(spec)

    def _market_json(self, spec: MarketSpec) -> dict[str, Any]:
        return wire.market_json(spec, self.engine.config.markets[spec.symbol], self.publisher.venue.markets[spec.symbol].state)

    async def depth(self, call: Call) -> Any:
        spec = self.spec(call.params)
        assert spec is not None
        limit = param.integer(call.params, "limit", 1000)
        if limit not in DEPTH_LIMITS:
            raise bad_request(f"Invalid limit {limit}: expected one of {', '.join(map(str, DEPTH_LIMITS))}")
        bids, asks, update_id = self.publisher.depth(spec.symbol, limit)
        return wire.depth_json(spec, bids, asks, update_id, self.clock_ms() * 1000)

    async def ticker(self, call: Call) -> Any:
        spec = self.spec(call.params)
        assert spec is not None
        window = param.window(call.params)
        return wire.ticker_json(spec, self.publisher.ticker(spec.symbol, self.clock_ms() * 1000, window))

    async def tickers(self, call: Call) -> Any:
        window = param.window(call.params)
        now_us = self.clock_ms() * 1000
        return [wire.ticker_json(spec, self.publisher.ticker(s, now_us, window)) for s, spec in self.engine.venue.specs.items()]

    async def klines(self, call: Call) -> Any:
        spec = self.spec(call.params)
        assert spec is not None
        interval = call.params["interval"]
        if not isinstance(interval, str) or interval not in INTERVALS:
            raise bad_request(f"Invalid interval {interval!r}: expected one of {', '.join(INTERVALS)}")
        price_type = call.params.get("priceType", "Last")
        if price_type != "Last":
            raise bad_request(f"priceType {price_type!r} is not available on spot markets (only Last)")
        start_s = param.integer(call.params, "startTime", 0)
        end_s = param.integer(call.params, "endTime", self.clock_ms() // 1000)
        return [wire.kline_json(spec, c) for c in self.publisher.klines(spec.symbol, interval, start_s, end_s)]

    async def trades(self, call: Call) -> Any:
        spec = self.spec(call.params)
        assert spec is not None
        limit = param.integer(call.params, "limit", 100, 1, HISTORY_LIMIT_MAX)
        offset = param.integer(call.params, "offset", 0, 0)
        newest_first = self.publisher.trades(spec.symbol, limit, offset)
        return [wire.trade_json(spec, t) for t in reversed(newest_first)]

    async def securities(self, call: Call) -> Any:
        return []

    async def wallets(self, call: Call) -> Any:
        """The venue's on-chain wallets: none, deposits are credited by the operator (``satchel deposit``)."""
        return []

    async def deposit_address(self, call: Call) -> Any:
        raise ApiError("NOT_IMPLEMENTED", "On-chain deposits are not available on this venue: the operator "
                       "credits deposits, so there is no deposit address to show; nothing was changed")

    # --- account and capital -------------------------------------------------------------------

    async def account(self, call: Call) -> Any:
        specs = list(self.engine.venue.specs.values())
        maker = min((s.maker_fee_bps for s in specs), default=0)
        taker = min((s.taker_fee_bps for s in specs), default=0)
        return {
            "autoBorrowSettlements": False, "autoLend": False, "autoRealizePnl": False, "autoRepayBorrows": False,
            "borrowLimit": "0", "futuresMakerFee": "0", "futuresTakerFee": "0", "leverageLimit": "1",
            "limitOrders": len(self.publisher.open_orders(call.account_id)), "liquidating": False,
            "positionLimit": "0", "spotMakerFee": str(maker), "spotTakerFee": str(taker), "triggerOrders": 0,
        }

    async def account_update(self, call: Call) -> Any:
        spot_defaults = {"autoBorrowSettlements": False, "autoLend": False, "autoRepayBorrows": False, "leverageLimit": "1"}
        changed = [k for k, v in call.params.items() if str(v).lower() != str(spot_defaults[k]).lower()]
        if changed:
            raise ApiError("NOT_IMPLEMENTED", f"{', '.join(sorted(changed))}: margin settings arrive with spot margin; "
                                              "this venue trades spot only")
        return None

    async def capital(self, call: Call) -> Any:
        out = {}
        for asset, (available, locked) in self.publisher.balances(call.account_id).items():
            decimals = self.decimals[asset]
            out[asset] = {"available": wire.format_units(available, decimals),
                          "locked": wire.format_units(locked, decimals), "staked": "0"}
        return out

    async def deposits(self, call: Call) -> Any:
        return self._funds(call, "deposit")

    async def withdrawals(self, call: Call) -> Any:
        """Queued requests (pending, confirmed, declined) and operator withdrawals, newest first."""
        p = call.params
        start, end = param.integer(p, "from", 0, 0), param.integer(p, "to", 2**63, 0)
        wanted_id = param.integer(p, "id", 0, 0)
        wanted_client = p.get("clientId")
        decimals = self.decimals
        rows = [(r.created_us, withdrawal_json(r, decimals[r.asset])) for r in self.publisher.withdrawal_requests(call.account_id)]
        rows += [(r.ts_us, wire.funds_json(r, decimals[r.asset])) for r in self.publisher.funds(call.account_id, "withdrawal")]
        rows = [
            (ts_us, row) for ts_us, row in rows
            if start <= ts_us // 1000 <= end and (not wanted_id or row["id"] == wanted_id)
            and (wanted_client is None or row["clientId"] == str(wanted_client))
        ]
        rows.sort(key=lambda item: item[0], reverse=True)
        return [row for _, row in param.page(p, rows)]

    def _funds(self, call: Call, kind: str) -> Any:
        records = self.publisher.funds(call.account_id, kind)
        start, end = param.integer(call.params, "from", 0, 0), param.integer(call.params, "to", 2**63, 0)
        records = [r for r in records if start <= r.ts_us // 1000 <= end]
        records.reverse()
        page = param.page(call.params, records)
        return [wire.funds_json(r, self.decimals[r.asset]) for r in page]

    async def withdraw(self, call: Call) -> Any:
        """Queue a withdrawal request; it answers ``pending`` and waits for the operator's decision.

        ``twoFactorToken`` is accepted and ignored (Backpack documents it as disabled);
        margin and fiat options are refused, since this venue has neither.
        """
        p = call.params
        for name in ("autoBorrow", "autoLendRedeem"):
            if p.get(name) not in (None, False, "false"):
                raise ApiError("NOT_IMPLEMENTED", f"{name}: spot margin is not available on this venue yet; nothing was changed")
        if p.get("recipientInformation") is not None:
            raise ApiError("NOT_IMPLEMENTED", "recipientInformation: fiat withdrawals are not available on this venue")
        symbol = p["symbol"]
        if not isinstance(symbol, str) or symbol not in self.decimals:
            raise ApiError("INVALID_ASSET", f"Unknown asset {symbol!r}")
        client_id = p.get("clientId")
        if type(client_id) is int:
            client_id = str(client_id)
        quantity = param.decimal(p, "quantity")
        assert quantity is not None  # a required field
        result = await self.engine.request_withdrawal(
            call.account_id, symbol, quantity, p["address"], p["blockchain"], client_id,
        )
        if result.rejection is not None:
            raise ApiError.of(result.rejection)
        return withdrawal_json(result.value, self.decimals[symbol])

    # --- orders -----------------------------------------------------------------------------------

    async def order_query(self, call: Call) -> Any:
        spec = self.spec(call.params)
        assert spec is not None
        order_id, client_id = param.target(call.params)
        view = self.publisher.open_order(call.account_id, spec.symbol, order_id, client_id)
        if view is None:
            raise ApiError("RESOURCE_NOT_FOUND", "Order not found (only resting orders are returned; see /wapi/v1/history/orders)")
        return wire.order_json(view, spec)

    async def orders_query(self, call: Call) -> Any:
        spec = self.spec(call.params, required=False)
        if not param.spot_wanted(call.params, "SPOT"):
            return []
        views = self.publisher.open_orders(call.account_id, spec.symbol if spec else None)
        specs = self.engine.venue.specs
        return [wire.order_json(v, specs[v.symbol]) for v in views]

    async def order_execute(self, call: Call) -> Any:
        cmd = self._build(call.account_id, call.params)
        result = await self._submit_one(call.account_id, cmd)
        return self.order_payload(result, cmd.symbol)

    async def _submit_one(self, account_id: int, cmd: PlaceOrder) -> Result:
        reply = Reply()
        refused = self.engine.submit(account_id, cmd, reply)
        if refused is not None:
            raise ApiError.of(refused)
        return await reply.wait()

    async def orders_execute(self, call: Call) -> Any:
        """Place up to 20 orders in order; each answers Ok or Err on its own."""
        if not call.params or len(call.params) > BATCH_MAX:
            raise bad_request(f"A batch holds 1 to {BATCH_MAX} orders")
        pending: list[Reply | ApiError] = []
        for item in call.params:
            try:
                cmd = self._build(call.account_id, item)
            except ApiError as exc:
                pending.append(exc)
                continue
            except Exception:  # a bug answers this item alone: the orders already queued keep their answers
                log.exception("building batch order failed")
                pending.append(ApiError("SERVER_ERROR", INTERNAL_ERROR))
                continue
            reply = Reply()
            refused = self.engine.submit(call.account_id, cmd, reply)
            pending.append(ApiError.of(refused) if refused is not None else reply)
        out = []
        for item, entry in zip(call.params, pending, strict=True):
            if isinstance(entry, ApiError):
                out.append({"operation": "Err", **entry.body()})
                continue
            result = await entry.wait()
            if result.rejection is not None:
                out.append({"operation": "Err", "code": result.rejection.code, "message": result.rejection.message})
            else:
                out.append({"operation": "Ok", **self.order_payload(result, item["symbol"])})
        return out

    def _build(self, account_id: int, p: dict[str, Any]) -> PlaceOrder:
        if not NOT_YET.keys().isdisjoint(p):
            for name in sorted(p.keys() & NOT_YET.keys()):
                value = p[name]
                if value is not None and not (name in NOT_YET_FLAGS and (value is False or value == "false")):
                    raise ApiError("NOT_IMPLEMENTED", f"{name}: {NOT_YET[name]} are not available on this venue yet")
        if "brokerId" in p:  # attribution only: checked, then not needed
            param.integer(p, "brokerId", 0, 0, BROKER_ID_MAX)
        self.spec(p)
        order_type = ORDER_TYPES.get(p["orderType"]) if isinstance(p["orderType"], str) else None
        if order_type is None:
            raise ApiError("INVALID_ORDER", f"Invalid orderType {p['orderType']!r}: expected Limit or Market")
        client_id = p.get("clientId")
        if isinstance(client_id, str) and is_integer_text(client_id):
            client_id = int(client_id)
        if client_id is not None and (type(client_id) is not int or not 0 <= client_id <= CLIENT_ID_MAX):
            raise bad_request("clientId must be an unsigned 32-bit integer")
        built = self.engine.build_order(
            account_id, p["symbol"], p["side"], order_type,
            quantity=param.decimal(p, "quantity"), quote_quantity=param.decimal(p, "quoteQuantity"), price=param.decimal(p, "price"),
            time_in_force=p.get("timeInForce"), post_only=param.boolean(p, "postOnly"),
            self_trade_prevention=p.get("selfTradePrevention"), client_id=client_id,
        )
        if isinstance(built, Rejection):
            raise ApiError.of(built)
        return built

    async def order_cancel(self, call: Call) -> Any:
        spec = self.spec(call.params)
        assert spec is not None
        order_id, client_id = param.target(call.params)
        result = await self.engine.cancel_order(call.account_id, spec.symbol, order_id=order_id, client_id=client_id)
        return self.order_payload(result, spec.symbol)

    async def orders_cancel(self, call: Call) -> Any:
        spec = self.spec(call.params)
        assert spec is not None
        kind = call.params.get("orderType", "RestingLimitOrder")
        if kind == "ConditionalOrder":
            return []
        if kind != "RestingLimitOrder":
            raise bad_request(f"Invalid orderType {kind!r}: expected RestingLimitOrder or ConditionalOrder")
        result = await self.engine.cancel_all(call.account_id, spec.symbol)
        if result.rejection is not None:
            raise ApiError.of(result.rejection)
        return [wire.order_json(v, spec) for v in result.orders]

    # --- history ----------------------------------------------------------------------------------

    async def order_history(self, call: Call) -> Any:
        p = call.params
        spec = self.spec(p, required=False)
        order_id = param.integer(p, "orderId", 0, 0)
        views: list[OrderView] = []
        if param.spot_wanted(p) and not param.strategy_filter(p):  # every order here is a spot order, none a strategy's
            views = self.publisher.closed_orders(call.account_id) + self.publisher.open_orders(call.account_id)
        views = [v for v in views if (spec is None or v.symbol == spec.symbol) and (not order_id or v.order_id == order_id)]
        views.sort(key=lambda v: (v.created_us, v.order_id), reverse=param.descending(p))
        specs = self.engine.venue.specs
        return [wire.history_order_json(v, specs[v.symbol]) for v in param.page(p, views)]

    async def fill_history(self, call: Call) -> Any:
        p = call.params
        spec = self.spec(p, required=False)
        fill_type = p.get("fillType", "User")
        if fill_type not in ("User", "BookLiquidation", "Adl", "Backstop", "Liquidation", "AllLiquidation",
                             "CollateralConversion", "CollateralConversionAndSpotLiquidation"):
            raise bad_request(f"Invalid fillType {fill_type!r}")
        order_id = param.integer(p, "orderId", 0, 0)
        start, end = param.integer(p, "from", 0, 0), param.integer(p, "to", 2**63, 0)
        fills: list[FillRecord] = []
        if fill_type == "User" and param.spot_wanted(p) and not param.strategy_filter(p):  # user fills of spot orders only
            fills = self.publisher.fills(call.account_id)
        fills = [
            f for f in fills
            if (spec is None or f.symbol == spec.symbol) and (not order_id or f.order_id == order_id)
            and start <= f.ts_us // 1000 <= end
        ]
        if param.descending(p):
            fills.reverse()
        specs = self.engine.venue.specs
        decimals = self.decimals
        return [wire.fill_json(specs[f.symbol], decimals[f.fill.fee_asset], f) for f in param.page(p, fills)]


# --- parameter helpers ---------------------------------------------------------------------------


def _check_shape(route: Route, params: Any) -> None:
    """A JSON object, or for a batch route an array of objects: before anything reads the parameters
    (the signing string is built from their items)."""
    if not route.batch:
        if not isinstance(params, dict):
            raise bad_request("expected a JSON object")
        return
    if not isinstance(params, list):
        raise bad_request("this endpoint takes a JSON array of orders")
    for item in params:
        if not isinstance(item, dict):
            raise bad_request("each order must be a JSON object")


def _check_fields(route: Route, params: dict[str, Any]) -> None:
    if not params.keys() <= route.fields:
        unknown = sorted(set(params) - route.fields)
        name = route.instruction or route.path
        raise bad_request(f"Unknown field{'s' if len(unknown) > 1 else ''} for {name}: {', '.join(unknown)}")
    for field in route.required:
        if params.get(field) in (None, ""):
            missing = [f for f in route.required if params.get(f) in (None, "")]
            raise bad_request(f"Missing required field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
