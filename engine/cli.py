"""The ``satchel`` command: run the daemon, write a config, and operate a running venue.

Every operator command prints JSON. Exit status: 0 done, 1 refused by the venue
(the JSON says why), 2 bad usage or config, 3 the daemon is not reachable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from engine.config import ConfigError, load_config, render_default


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "init":
        return _init(Path(args.path), args.force)
    if args.command == "run":
        return _run(Path(args.config))
    return _operate(args)


_COMMON = argparse.ArgumentParser(add_help=False)
_COMMON.add_argument("--config", default=argparse.SUPPRESS, help="venue config (default: config.toml)")
_COMMON.add_argument("--socket", default=argparse.SUPPRESS, help="admin socket path (default: from the config)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="satchel", description="Satchel exchange engine")
    p.add_argument("--config", default="config.toml", help="venue config (default: config.toml)")
    p.add_argument("--socket", help="admin socket path (default: from the config)")
    sub = p.add_subparsers(dest="command")

    sub.add_parser("run", parents=[_COMMON], help="start the daemon in the foreground")
    init = sub.add_parser("init", parents=[_COMMON], help="write a fresh, commented default config")
    init.add_argument("path")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    sub.add_parser("status", parents=[_COMMON], help="readiness, markets and journal position")
    account = sub.add_parser("account", parents=[_COMMON], help="accounts").add_subparsers(dest="action", required=True)
    create = account.add_parser("create", parents=[_COMMON], help="create an account (or a sub-account with --parent)")
    create.add_argument("--country", default="")
    create.add_argument("--category", default="retail")
    create.add_argument("--parent", type=int)
    key = sub.add_parser("key", parents=[_COMMON], help="API keys").add_subparsers(dest="action", required=True)
    key_add = key.add_parser("add", parents=[_COMMON], help="register an Ed25519 public key (base64)")
    key_add.add_argument("account_id", type=int)
    key_add.add_argument("public_key")
    for name in ("deposit", "withdraw"):
        cmd = sub.add_parser(name, parents=[_COMMON], help=f"{name} an amount (decimal string)")
        cmd.add_argument("account_id", type=int)
        cmd.add_argument("asset")
        cmd.add_argument("amount")
    transfer = sub.add_parser("transfer", parents=[_COMMON], help="move funds between a main account and its sub-account")
    transfer.add_argument("from_account", type=int)
    transfer.add_argument("to_account", type=int)
    transfer.add_argument("asset")
    transfer.add_argument("amount")
    balances = sub.add_parser("balances", parents=[_COMMON], help="an account's balances")
    balances.add_argument("account_id", type=int)
    orders = sub.add_parser("orders", parents=[_COMMON], help="an account's open orders")
    orders.add_argument("account_id", type=int)
    orders.add_argument("--symbol")
    market = sub.add_parser("market", parents=[_COMMON], help="halt, resume or restrict a market")
    market.add_argument("action", choices=["halt", "resume", "cancel-only", "post-only", "limit-only"])
    market.add_argument("symbol")
    _order_parsers(sub)
    return p


def _order_parsers(sub: Any) -> None:
    order = sub.add_parser("order", parents=[_COMMON], help="place, cancel or amend orders").add_subparsers(dest="action", required=True)
    place = order.add_parser("place", parents=[_COMMON], help="place an order")
    place.add_argument("account_id", type=int)
    place.add_argument("symbol")
    place.add_argument("side", choices=["Bid", "Ask"])
    place.add_argument("order_type", choices=["Limit", "Market"])
    place.add_argument("--price")
    place.add_argument("--quantity")
    place.add_argument("--quote-quantity")
    place.add_argument("--tif", dest="time_in_force", choices=["GTC", "IOC", "FOK"])
    place.add_argument("--post-only", action="store_true")
    place.add_argument("--stp", dest="self_trade_prevention", choices=["RejectTaker", "RejectMaker", "RejectBoth"])
    place.add_argument("--client-id", type=int)
    for name in ("cancel", "amend"):
        cmd = order.add_parser(name, parents=[_COMMON], help=f"{name} one order")
        cmd.add_argument("account_id", type=int)
        cmd.add_argument("symbol")
        target = cmd.add_mutually_exclusive_group(required=True)
        target.add_argument("--order-id", type=int)
        target.add_argument("--client-id", type=int)
        if name == "amend":
            cmd.add_argument("--price")
            cmd.add_argument("--quantity")
    cancel_all = order.add_parser("cancel-all", parents=[_COMMON], help="cancel all of an account's orders in a market")
    cancel_all.add_argument("account_id", type=int)
    cancel_all.add_argument("symbol")


def _init(path: Path, force: bool) -> int:
    if path.exists() and not force:
        print(f"satchel: {path} exists; use --force to overwrite", file=sys.stderr)
        return 2
    path.write_text(render_default(), encoding="utf-8")
    _print({"written": str(path)})
    return 0


def _run(config_path: Path) -> int:
    import trio

    from engine.daemon import serve
    from engine.journal import JournalCorrupt
    from engine.plugin_api import PluginError
    from engine.runtime import StartupError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(config_path)
        trio.run(serve, config, config_path.resolve().parent)
    except (ConfigError, PluginError) as exc:
        print(f"satchel: config error: {exc}", file=sys.stderr)
        return 2
    except (StartupError, JournalCorrupt) as exc:
        print(f"satchel: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _operate(args: argparse.Namespace) -> int:
    from engine.admin import request
    from engine.daemon import admin_socket_path

    config_path = Path(args.config)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"satchel: config error: {exc}", file=sys.stderr)
        return 2
    base = config_path.resolve().parent
    socket_path = Path(args.socket) if args.socket else admin_socket_path(config, base)
    token_path = config.journal_dir(base) / "admin.token"
    command, payload = _request_of(args)
    try:
        token = token_path.read_text().strip()
        answer = request(socket_path, token, command, payload)
    except OSError as exc:
        print(f"satchel: daemon not reachable at {socket_path}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    if not answer.get("ok"):
        _print(answer.get("error"))
        return 1
    _print(answer.get("result"))
    return 0


def _request_of(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    c = args.command
    if c == "status":
        return "status", {}
    if c == "account":
        return "account.create", {"country": args.country, "category": args.category, "parent": args.parent}
    if c == "key":
        return "key.add", {"account_id": args.account_id, "public_key": args.public_key}
    if c in ("deposit", "withdraw"):
        return c, {"account_id": args.account_id, "asset": args.asset, "amount": args.amount}
    if c == "transfer":
        return "transfer", {"from": args.from_account, "to": args.to_account, "asset": args.asset, "amount": args.amount}
    if c == "balances":
        return "balances", {"account_id": args.account_id}
    if c == "orders":
        return "orders", {"account_id": args.account_id, "symbol": args.symbol}
    if c == "market":
        return "market", {"action": args.action, "symbol": args.symbol}
    payload = {k: v for k, v in vars(args).items() if k not in ("command", "action", "config", "socket")}
    if args.action == "place" and not payload.get("post_only"):
        payload.pop("post_only", None)
    return f"order.{args.action}", payload


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    sys.exit(main())
