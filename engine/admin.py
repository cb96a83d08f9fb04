"""The operator's local admin interface: a Unix socket speaking JSON lines.

Authentication is two-fold: the socket file is owner-only (0600) and every
request carries the token stored in ``admin.token`` next to the journal (0600,
created on first start). A request is one line
``{"token": ..., "command": ..., "args": {...}}``; the answer is one line
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {"code", "message"}}``.
A malformed or unauthenticated request gets an error answer and changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import os
import secrets
import socket as stdsocket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import orjson
import trio

from engine.messages import FEE_ACCOUNT_ID, WITHDRAWAL_STATES, OrderView, Withdrawn
from engine.recovery import StartupError
from engine.results import Result
from engine.runtime import Engine
from engine.views import iso_naive, order_json, withdrawal_json
from engine.withdrawals import WithdrawalRequest

log = logging.getLogger("satchel.admin")

MAX_REQUEST_BYTES: Final = 64 * 1024
REQUEST_TIMEOUT_S: Final = 30.0
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_S: Final = 0.1
CLOSE_TIMEOUT_S: Final = 5.0  # at shutdown: for a request still arriving, then for answers still being sent


def _failure(code: str, message: str) -> dict[str, Any]:
    """The answer to a request that was refused or failed."""
    return {"ok": False, "error": {"code": code, "message": message}}


INTERNAL_ERROR: Final = _failure("SERVER_ERROR", "internal error answering the request (see the daemon's log); "
                                "check with status, balances or orders whether it was done")
SHUTTING_DOWN: Final = _failure("MAINTENANCE", "Satchel is shutting down; the request was not taken")
STATES: Final = {
    "halt": "Closed", "resume": "Open", "cancel-only": "CancelOnly",
    "post-only": "PostOnly", "limit-only": "LimitOnly",
}


class AdminError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def ensure_token(path: Path) -> str:
    """Read the admin token, creating it (0600) on first use; a StartupError naming it when neither works."""
    try:
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            token = secrets.token_hex(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            return token
    except OSError as exc:  # a directory in its place, no permission, a full disk
        raise StartupError(f"journal.dir: cannot use the admin token {path}: {exc.strerror or exc}") from None


class AdminServer:
    def __init__(self, engine: Engine, socket_path: Path, token: str) -> None:
        self.engine = engine
        self.socket_path = socket_path
        self.token = token
        self._scope = trio.CancelScope()  # everything: ``finish`` ends what is left
        self._accepting = trio.CancelScope()  # the accept loop: ``close`` ends it
        self._reading: set[trio.CancelScope] = set()  # connections receiving their request
        self._waiting: set[trio.CancelScope] = set()  # connections whose command is with the engine
        self._closing = False
        self._gone: dict[str, Any] | None = None  # the answer for commands the engine ended without answering
        self._done = trio.Event()  # ``serve`` has returned: every connection is over
        self.handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "status": self._status,
            "account.create": self._account_create,
            "key.add": self._key_add,
            "deposit": self._deposit,
            "withdraw": self._withdraw,
            "transfer": self._transfer,
            "balances": self._balances,
            "orders": self._orders,
            "order.place": self._order_place,
            "order.cancel": self._order_cancel,
            "order.cancel-all": self._order_cancel_all,
            "order.amend": self._order_amend,
            "market": self._market,
            "checkpoint": self._checkpoint,
            "snapshot": self._snapshot,
            "por.publish": self._por_publish,
            "withdrawals.list": self._withdrawals_list,
            "withdrawals.approve": self._withdrawals_approve,
            "withdrawals.reject": self._withdrawals_reject,
        }

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``close`` or ``finish``; every connection accepted by then is answered first."""
        plain = self._bind()
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(plain))
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    with self._accepting:
                        await self._accept(listener, nursery)
                    # intake closed: no client can find the socket now; those the kernel queued are served too
                    self.socket_path.unlink(missing_ok=True)
                    for stream in _queued(plain):
                        nursery.start_soon(self._connection, stream)
        finally:
            listener.socket.close()
            self.socket_path.unlink(missing_ok=True)
            self._done.set()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # out of file descriptors: wait for connections to end (as trio.serve_listeners)
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("admin socket cannot accept: %s; retrying", exc.strerror)
                await trio.sleep(ACCEPT_RETRY_S)
                continue
            nursery.start_soon(self._connection, stream)

    def _bind(self) -> stdsocket.socket:
        """The listening socket, owner-only; a path that cannot take it is a StartupError naming admin.socket."""
        path = self.socket_path
        try:
            if path.exists() and not stat.S_ISSOCK(path.stat().st_mode):
                raise StartupError(f"admin.socket: {path} exists and is not a socket (left as it is)")
            path.unlink(missing_ok=True)
            plain = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
            # the umask is process-wide: bound synchronously, so no other task (or the replica child a
            # worker thread spawns) runs while it is narrowed; the socket is never world-reachable
            old_umask = os.umask(0o177)
            try:
                plain.bind(str(path))
            except OSError:
                plain.close()
                raise
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)
            plain.listen(64)
        except OSError as exc:  # a missing directory, a path too long for a Unix socket, no permission
            raise StartupError(f"admin.socket: cannot listen on {path}: {exc.strerror or exc}") from None
        return plain

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop taking connections and let every accepted one have its answer, while the engine still runs.

        For the daemon's shutdown, before it stops the engine. A client that has not sent
        its whole request within ``timeout_s`` is told the request was not taken; one
        whose command is with the engine keeps waiting (the engine's drain answers it).
        """
        self._closing = True
        self._accepting.cancel()
        with trio.move_on_after(timeout_s):
            await self._done.wait()
        for scope in list(self._reading):
            scope.cancel()

    async def finish(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """The engine has ended: send the answers it gave, and end the connections it will never answer.

        After a full disk those commands were not recorded, and their clients are told
        so (``SERVER_ERROR``, as the journal tells the batch it could not write); after
        anything else their outcome is unknown, and the connection closes without an
        answer (the CLI says so). Bounded: a client that does not read its answer is cut.
        """
        self._closing = True
        if self.engine.halted is not None:
            self._gone = _failure("SERVER_ERROR", f"{self.engine.halted}; not recorded, intake stopped")
        self._accepting.cancel()
        for scope in [*self._reading, *self._waiting]:
            scope.cancel()
        with trio.move_on_after(timeout_s):
            await self._done.wait()
        self._scope.cancel()

    async def _connection(self, stream: trio.SocketStream) -> None:
        """One request, one answer. A client that goes away (Ctrl-C, a timeout) ends only its
        own connection: what it asked for is still done, the answer is dropped."""
        async with stream:
            try:
                line = await self._receive(stream)
                answer = SHUTTING_DOWN if line is None else await self._answer(line)
                if answer is not None:
                    with trio.move_on_after(REQUEST_TIMEOUT_S):
                        await stream.send_all(orjson.dumps(answer) + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                log.info("admin client went away before its answer: %s", exc)
            except Exception:  # a bug answering one request closes its connection, never the daemon
                log.exception("admin request failed")
                with trio.move_on_after(REQUEST_TIMEOUT_S), contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(orjson.dumps(INTERNAL_ERROR) + b"\n")

    async def _receive(self, stream: trio.SocketStream) -> bytes | None:
        """The request line (what arrived of it by the timeout); None when shutdown cut it short."""
        buffer = b""
        scope = trio.CancelScope(deadline=trio.current_time() + REQUEST_TIMEOUT_S)
        self._reading.add(scope)
        try:
            with scope:
                while b"\n" not in buffer and len(buffer) <= MAX_REQUEST_BYTES:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        break
                    buffer += chunk
        finally:
            self._reading.discard(scope)
        if scope.cancelled_caught and self._closing:
            return None
        return buffer.split(b"\n", 1)[0]

    async def _answer(self, line: bytes) -> dict[str, Any] | None:
        """The engine's answer; after ``finish`` cut the wait, what the client is told instead (None: nothing)."""
        scope = trio.CancelScope()
        self._waiting.add(scope)
        try:
            with scope:
                return await self.handle(line)
        finally:
            self._waiting.discard(scope)
        return self._gone

    async def handle(self, line: bytes) -> dict[str, Any]:
        try:
            if len(line) > MAX_REQUEST_BYTES:
                raise AdminError("INVALID_CLIENT_REQUEST", "request too large")
            try:
                request = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise AdminError("INVALID_CLIENT_REQUEST", "request is not valid JSON") from None
            if not isinstance(request, dict):
                raise AdminError("INVALID_CLIENT_REQUEST", "request must be a JSON object")
            token = request.get("token")
            if not isinstance(token, str) or not hmac.compare_digest(token, self.token):
                raise AdminError("UNAUTHORIZED", "bad or missing admin token")
            handler = self.handlers.get(request.get("command"))  # type: ignore[arg-type]
            if handler is None:
                raise AdminError("INVALID_CLIENT_REQUEST", f"unknown command {request.get('command')!r}")
            args = request.get("args") or {}
            if not isinstance(args, dict):
                raise AdminError("INVALID_CLIENT_REQUEST", "args must be an object")
            return {"ok": True, "result": await handler(args)}
        except AdminError as exc:
            return _failure(exc.code, exc.message)
        except (KeyError, TypeError, ValueError) as exc:
            return _failure("INVALID_CLIENT_REQUEST", f"bad arguments: {exc}")

    # --- handlers -----------------------------------------------------------------

    def _account(self, args: dict[str, Any], key: str = "account_id", *, fee_account: bool = False) -> int:
        """A user account named in ``args``; the fee account (0) only where ``fee_account`` (it is read, never moved)."""
        value = args.get(key)
        if type(value) is not int or value not in self.engine.venue.accounts or (value == FEE_ACCOUNT_ID and not fee_account):
            raise AdminError("RESOURCE_NOT_FOUND", f"Account {value} not found")
        return value

    def _unwrap(self, result: Result) -> Result:
        if result.rejection is not None:
            raise AdminError(result.rejection.code, result.rejection.message)
        return result

    def _order(self, view: OrderView | None) -> dict[str, Any] | None:
        if view is None:
            return None
        return order_json(view, self.engine.venue.specs[view.symbol])

    async def _status(self, args: dict[str, Any]) -> Any:
        return self.engine.status(state_hash=bool(args.get("state_hash")))

    async def _account_create(self, args: dict[str, Any]) -> Any:
        result = self._unwrap(await self.engine.create_account(
            country=args.get("country") or "", category=args.get("category") or "retail",
            parent_id=args.get("parent"),
        ))
        return {"account_id": result.value}

    async def _key_add(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args)
        self._unwrap(await self.engine.add_api_key(account_id, str(args.get("public_key"))))
        return {"account_id": account_id, "public_key": args["public_key"]}

    async def _deposit(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args)
        self._unwrap(await self.engine.deposit(account_id, args["asset"], args["amount"]))
        return self.engine.venue.balances(account_id)

    async def _withdraw(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args)
        result = self._unwrap(await self.engine.withdraw(account_id, args["asset"], args["amount"]))
        withdrawn = result.events[0]
        assert isinstance(withdrawn, Withdrawn)
        return {"withdrawal_id": withdrawn.withdrawal_id, "balances": self.engine.venue.balances(account_id)}

    async def _transfer(self, args: dict[str, Any]) -> Any:
        source = self._account(args, "from")
        target = self._account(args, "to")
        self._unwrap(await self.engine.transfer(source, target, args["asset"], args["amount"]))
        return {"from": self.engine.venue.balances(source), "to": self.engine.venue.balances(target)}

    async def _balances(self, args: dict[str, Any]) -> Any:
        return self.engine.venue.balances(self._account(args, fee_account=True))

    async def _orders(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args)
        symbol = args.get("symbol")
        if symbol is not None and symbol not in self.engine.venue.specs:
            raise AdminError("INVALID_CLIENT_REQUEST", f"Invalid market symbol: {symbol!r}")
        return [self._order(v) for v in self.engine.open_orders(account_id, symbol)]

    async def _order_place(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args)
        fields = {k: args[k] for k in (
            "quantity", "quote_quantity", "price", "time_in_force", "post_only",
            "self_trade_prevention", "client_id",
        ) if args.get(k) is not None}
        result = self._unwrap(await self.engine.place_order(
            account_id, args["symbol"], args["side"], args["order_type"], **fields
        ))
        return self._order(result.order)

    async def _order_cancel(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args)
        result = self._unwrap(await self.engine.cancel_order(
            account_id, args["symbol"], order_id=args.get("order_id"), client_id=args.get("client_id")
        ))
        return self._order(result.order)

    async def _order_cancel_all(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args)
        result = self._unwrap(await self.engine.cancel_all(account_id, args["symbol"]))
        return [self._order(v) for v in result.orders]

    async def _order_amend(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args)
        result = self._unwrap(await self.engine.amend_order(
            account_id, args["symbol"], order_id=args.get("order_id"), client_id=args.get("client_id"),
            price=args.get("price"), quantity=args.get("quantity"),
        ))
        return self._order(result.order)

    async def _market(self, args: dict[str, Any]) -> Any:
        action = args.get("action")
        state = STATES.get(action)  # type: ignore[arg-type]
        if state is None:
            raise AdminError("INVALID_CLIENT_REQUEST", f"market action must be one of {', '.join(STATES)}")
        self._unwrap(await self.engine.set_market_state(args["symbol"], state))
        return {"symbol": args["symbol"], "state": state}

    async def _checkpoint(self, args: dict[str, Any]) -> Any:
        return await self._checkpoint_now("checkpoint")

    async def _snapshot(self, args: dict[str, Any]) -> Any:
        return await self._checkpoint_now("snapshot")

    async def _por_publish(self, args: dict[str, Any]) -> Any:
        return await self._checkpoint_now("por")

    async def _checkpoint_now(self, kind: str) -> Any:
        """The checkpointer's answer, or an error when it did not do what was asked (the CLI then exits 1).

        A snapshot that could not be written (a full disk) fails ``snapshot``; for the
        other kinds it is a snapshot that happened to fall due with them, and their own
        work was done, so it stays a ``snapshot_error`` field of their answer.
        """
        value = self._unwrap(await self.engine.checkpoint(kind)).value
        if value.get("error") is not None:
            raise AdminError("SERVER_ERROR", f"{kind} failed: {value['error']}")
        if kind == "snapshot" and value.get("snapshot_error") is not None:
            raise AdminError("SERVER_ERROR", f"snapshot not written: {value['snapshot_error']} (the signed checkpoint "
                                             f"at seq {value['seq']} was written; the journal has everything)")
        return value

    # --- withdrawal requests (engine/withdrawals.py) ------------------------------------

    def _withdrawal(self, r: WithdrawalRequest) -> dict[str, Any]:
        """Backpack's withdrawal object plus what only the operator sees."""
        return {
            **withdrawal_json(r, self.engine.venue.assets[r.asset].decimals),
            "accountId": r.account_id,
            "decidedAt": iso_naive(r.decided_us) if r.decided_us else None,
            "reason": r.reason or None,
        }

    async def _withdrawals_list(self, args: dict[str, Any]) -> Any:
        account_id = self._account(args) if args.get("account_id") is not None else None
        status = args.get("status")
        if status is not None and status not in WITHDRAWAL_STATES:
            raise AdminError("INVALID_CLIENT_REQUEST", f"status must be one of {', '.join(WITHDRAWAL_STATES)}")
        return [self._withdrawal(r) for r in self.engine.withdrawals(account_id, status)]

    async def _withdrawals_approve(self, args: dict[str, Any]) -> Any:
        result = self._unwrap(await self.engine.approve_withdrawal(args["id"], args.get("tx_hash") or ""))
        return self._withdrawal(result.value)

    async def _withdrawals_reject(self, args: dict[str, Any]) -> Any:
        result = self._unwrap(await self.engine.reject_withdrawal(args["id"], args.get("reason") or ""))
        return self._withdrawal(result.value)


def _queued(plain: stdsocket.socket) -> list[trio.SocketStream]:
    """Connections the kernel has accepted and the accept loop has not taken yet (taken without waiting)."""
    streams: list[trio.SocketStream] = []
    while True:
        try:
            conn, _ = plain.accept()
        except OSError:  # BlockingIOError: none left
            return streams
        streams.append(trio.SocketStream(trio.socket.from_stdlib_socket(conn)))


class NoAnswer(ConnectionError):
    """The daemon took the request but the connection ended without a usable answer: the outcome is unknown."""


def request(socket_path: Path, token: str, command: str, args: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    """Blocking client: send one request, return the decoded answer.

    OSError when the daemon cannot be reached; NoAnswer once the request may have
    reached it (the daemon stopped, the connection broke, the answer is garbled).
    """
    with stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(socket_path))
        data = b""
        try:
            sock.sendall(orjson.dumps({"token": token, "command": command, "args": args}) + b"\n")
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            raise NoAnswer(f"the connection to the daemon broke ({exc.strerror or exc})") from None
    if not data:
        raise NoAnswer("daemon closed the connection")
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise NoAnswer("daemon's answer is garbled")
    return answer
