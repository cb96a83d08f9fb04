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

from engine.config import Config, ConfigError, load_config, render_default


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
    offline = _OFFLINE.get(args.command)
    if offline is not None and (args.command != "por" or args.action != "publish"):
        return offline(args)
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

    status = sub.add_parser("status", parents=[_COMMON], help="readiness, markets and journal position")
    status.add_argument("--state-hash", action="store_true", help="include the live state hash (when idle)")
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
    _withdrawal_parsers(sub)
    _audit_parsers(sub)
    return p


def _withdrawal_parsers(sub: Any) -> None:
    w = sub.add_parser("withdrawals", parents=[_COMMON], help="withdrawal requests waiting for (or given) approval")
    actions = w.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[_COMMON], help="requests, oldest first")
    listing.add_argument("--account", dest="account_id", type=int)
    listing.add_argument("--status", choices=["pending", "confirmed", "declined"])
    approve = actions.add_parser("approve", parents=[_COMMON], help="approve a pending request: its funds leave the account")
    approve.add_argument("id", type=int)
    approve.add_argument("--tx-hash", default="", help="the on-chain transaction that paid it out (shown to the user)")
    reject = actions.add_parser("reject", parents=[_COMMON], help="decline a pending request: its funds are released")
    reject.add_argument("id", type=int)
    reject.add_argument("--reason", default="", help="why (kept in the journal and shown to operators)")


def _audit_parsers(sub: Any) -> None:
    sub.add_parser("pubkey", parents=[_COMMON], help="print the venue's Ed25519 public key (base64)")
    sub.add_parser("checkpoint", parents=[_COMMON], help="write a signed checkpoint now")
    sub.add_parser("snapshot", parents=[_COMMON], help="write a snapshot (and its signed checkpoint) now")
    verify = sub.add_parser("verify", parents=[_COMMON], help="check a journal offline and rebuild its state")
    verify.add_argument("dir")
    verify.add_argument("--pubkey", help="the venue key you expect (base64); default: the one in the journal")
    journal = sub.add_parser("journal", parents=[_COMMON], help="journal tools").add_subparsers(dest="action", required=True)
    dump = journal.add_parser("dump", parents=[_COMMON], help="events as JSON lines")
    dump.add_argument("dir")
    dump.add_argument("--from", dest="start", type=int, default=1)
    dump.add_argument("--to", dest="stop", type=int)
    por = sub.add_parser("por", parents=[_COMMON], help="proof of reserves").add_subparsers(dest="action", required=True)
    por.add_parser("publish", parents=[_COMMON], help="build the Merkle sum tree now and sign its root")
    proof = por.add_parser("proof", parents=[_COMMON], help="an account's inclusion proof (JSON)")
    proof.add_argument("account_id", type=int)
    proof.add_argument("--seq", type=int, help="publication seq (default: the newest)")
    proof.add_argument("--dir", help="journal dir (default: from the config)")
    check = por.add_parser("verify", parents=[_COMMON],
                           help="check an inclusion proof against the venue's signed publication (or a root)")
    check.add_argument("proof")
    against = check.add_mutually_exclusive_group(required=True)
    against.add_argument("--publication", help="the venue's publication por/<seq>.json; needs --pubkey")
    against.add_argument("--root", help="a root hash you already trust")
    check.add_argument("--pubkey", help="the venue's public key (base64), from a source you trust")


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
    try:
        path.write_text(render_default(), encoding="utf-8")
    except OSError as exc:  # no such directory, a directory, no permission
        print(f"satchel: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    _print({"written": str(path)})
    return 0


def _run(config_path: Path) -> int:
    import trio

    from engine.daemon import serve
    from engine.journal import JournalCorrupt
    from engine.plugin_api import PluginError
    from engine.recovery import StartupError
    from engine.runtime import EngineHalted, first_leaf

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(config_path)
        trio.run(serve, config, config_path.resolve().parent)
    except (ConfigError, PluginError) as exc:
        return _config_error(exc)
    except BaseExceptionGroup as group:  # what the daemon's nurseries raise
        known = group.subgroup((EngineHalted, StartupError, JournalCorrupt))
        if known is None:
            raise
        return _stopped(first_leaf(known))
    except (StartupError, JournalCorrupt, EngineHalted) as exc:
        return _stopped(exc)
    return 0


def _stopped(exc: BaseException) -> int:
    """One line for why the daemon did not start (a StartupError names the config key) or stopped itself."""
    from engine.runtime import EngineHalted

    print(f"satchel: {'stopped' if isinstance(exc, EngineHalted) else 'cannot start'}: {exc}", file=sys.stderr)
    return 1


def _config_error(exc: Exception) -> int:
    print(f"satchel: config error: {exc}", file=sys.stderr)
    return 2


def _config(args: argparse.Namespace) -> tuple[Config, Path]:
    """The config ``--config`` names, and the directory its relative paths start from."""
    config_path = Path(getattr(args, "config", "config.toml"))
    return load_config(config_path), config_path.resolve().parent


def _journal_dir(args: argparse.Namespace) -> Path:
    config, base = _config(args)
    return config.journal_dir(base)


def _pubkey(args: argparse.Namespace) -> int:
    from engine import signing

    try:
        config, base = _config(args)
        path = signing.key_path(config.journal_dir(base), config.journal.signing_key)
        _print({"venue_key": signing.load_or_create(path, create=False).public_b64, "path": str(path)})
    except ConfigError as exc:
        return _config_error(exc)
    except signing.KeyError_ as exc:
        _print({"code": "RESOURCE_NOT_FOUND", "message": f"{exc} (the daemon creates it on first start)"})
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from engine.audit import AuditError, verify_journal
    from engine.signing import KeyError_

    logging.basicConfig(level=logging.WARNING)
    try:
        summary = verify_journal(Path(args.dir), args.pubkey)
    except (AuditError, KeyError_) as exc:
        failure: dict[str, Any] = {"ok": False, "error": str(exc)}
        if isinstance(exc, AuditError) and exc.segment is not None:
            failure.update(segment=exc.segment.name, offset=exc.offset, seq=exc.seq)
        _print(failure)
        return 1
    _print(summary)
    return 0 if summary["ok"] else 1  # a claim it could not check; with --pubkey, a tail no signature covers


def _journal_dump(args: argparse.Namespace) -> int:
    from engine.audit import AuditError, dump_journal
    from engine.journal import JournalCorrupt

    out = sys.stdout.buffer
    try:
        for row in dump_journal(Path(args.dir), args.start, args.stop):
            out.write(orjson.dumps(row) + b"\n")
    except (AuditError, JournalCorrupt) as exc:
        out.flush()
        print(f"satchel: journal dump: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    out.flush()
    return 0


def _por(args: argparse.Namespace) -> int:
    from engine.checkpointer import load_tree
    from engine.por import PorError, check_proof, read_json

    try:
        if args.action == "verify":
            publication = read_json(args.publication, "publication") if args.publication else None
            _print(check_proof(read_json(args.proof, "proof"), root=args.root, publication=publication, pubkey=args.pubkey))
            return 0
        directory = Path(args.dir) if args.dir else _journal_dir(args)
        seq, tree = load_tree(directory, args.seq)
        _print(tree.proof(args.account_id, seq))
        return 0
    except ConfigError as exc:
        return _config_error(exc)
    except PorError as exc:
        _print({"ok": False, "error": str(exc)})
        return 1


_OFFLINE = {"pubkey": _pubkey, "verify": _verify, "journal": _journal_dump, "por": _por}


def _operate(args: argparse.Namespace) -> int:
    from engine.admin import NoAnswer, request
    from engine.daemon import admin_socket_path

    try:
        config, base = _config(args)
    except ConfigError as exc:
        return _config_error(exc)
    socket_path = Path(args.socket) if args.socket else admin_socket_path(config, base)
    token_path = config.journal_dir(base) / "admin.token"
    command, payload = _request_of(args)
    try:
        token = token_path.read_text().strip()
        answer = request(socket_path, token, command, payload)
    except NoAnswer as exc:
        print(f"satchel: {exc}; outcome unknown", file=sys.stderr)
        return 3
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
        return "status", {"state_hash": args.state_hash}
    if c == "account":
        return "account.create", {"country": args.country, "category": args.category, "parent": args.parent}
    if c == "key":
        return "key.add", {"account_id": args.account_id, "public_key": args.public_key}
    if c in ("deposit", "withdraw"):
        return c, {"account_id": args.account_id, "asset": args.asset, "amount": _decimal(args.amount)}
    if c == "transfer":
        return "transfer", {"from": args.from_account, "to": args.to_account, "asset": args.asset,
                            "amount": _decimal(args.amount)}
    if c == "balances":
        return "balances", {"account_id": args.account_id}
    if c == "orders":
        return "orders", {"account_id": args.account_id, "symbol": args.symbol}
    if c == "market":
        return "market", {"action": args.action, "symbol": args.symbol}
    if c in ("checkpoint", "snapshot"):
        return c, {}
    if c == "por":
        return "por.publish", {}
    payload = {k: v for k, v in vars(args).items() if k not in ("command", "action", "config", "socket")}
    if c == "withdrawals":
        return f"withdrawals.{args.action}", payload
    for name in ("price", "quantity", "quote_quantity"):
        if payload.get(name) is not None:
            payload[name] = _decimal(payload[name])
    if args.action == "place" and not payload.get("post_only"):
        payload.pop("post_only", None)
    return f"order.{args.action}", payload


def _decimal(text: str) -> str:
    """An amount typed on the command line: spaces around it (a quoted " 5") are not part of it.
    The engine's parser is strict, as the wire needs; a person at a shell gets this leeway."""
    return text.strip()


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":
    sys.exit(main())
