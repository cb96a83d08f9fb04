"""An engine on a temporary journal with FIX sessions, funded accounts and their Ed25519 keys."""

from __future__ import annotations

import base64
import copy
import ssl
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from adapters.fix.auth import sign_logon
from adapters.fix.codec import Message
from adapters.fix.service import serve_fix
from engine.config import DEFAULT, parse_config
from engine.runtime import Engine
from tests.adapters.fix.client import RawClient
from tests.adapters.tls_certs import TestPki

SESSIONS = [
    {"sender_comp_id": "SATCHEL", "target_comp_id": "MAKER", "account": 1, "heartbeat_min_s": 1},
    {"sender_comp_id": "SATCHEL", "target_comp_id": "TAKER", "account": 2, "heartbeat_min_s": 1,
     "cancel_on_disconnect": True},
    {"sender_comp_id": "SATCHEL", "target_comp_id": "MAKERDC", "account": 1, "drop_copy": True},
]


def fix_config(sessions: list[dict[str, Any]] | None = None, tls: TestPki | None = None) -> Any:
    data = copy.deepcopy(DEFAULT)
    data["limits"] = {"max_open_orders_per_account": 10_000}  # the mass-status test rests 1,020 orders on one account
    data["adapters"]["fix"]["sessions"] = copy.deepcopy(SESSIONS if sessions is None else sessions)
    if tls is not None:
        data["adapters"]["fix"] |= {"tls_cert": str(tls.cert_file), "tls_key": str(tls.key_file)}
    return parse_config(data)


class FixVenue:
    def __init__(self, engine: Engine, address: tuple[str, int], info: dict[str, Any],
                 tls: ssl.SSLContext | None = None) -> None:
        self.engine = engine
        self.address = address
        self.info = info
        self.tls = tls  # what clients connect with (trusting the test CA) when the venue serves TLS
        self.keys: dict[int, Ed25519PrivateKey] = {}

    async def account(self, **funds: str) -> int:
        result = await self.engine.create_account()
        account = result.value
        key = Ed25519PrivateKey.generate()
        public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
        assert (await self.engine.add_api_key(account, public)).ok
        self.keys[account] = key
        for asset, amount in funds.items():
            assert (await self.engine.deposit(account, asset, amount)).ok
        return int(account)

    def public_key(self, account: int) -> str:
        raw = self.keys[account].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    async def connect(self, comp_id: str) -> RawClient:
        if self.tls is None:
            return await RawClient.connect(self.address, sender=comp_id, target="SATCHEL")
        return await RawClient.connect_tls(self.address, self.tls, sender=comp_id, target="SATCHEL")

    async def logon(self, comp_id: str, account: int, *, heartbeat: int = 30) -> RawClient:
        client = await self.connect(comp_id)
        logon = signed_logon(client, self.keys[account], self.public_key(account), heartbeat)
        await client.send_raw(logon)
        await client.expect("A")
        return client


def signed_logon(client: RawClient, key: Ed25519PrivateKey, api_key: str, heartbeat: int = 30) -> bytes:
    from adapters.fix.codec import encode_body, frame_message
    from adapters.fix.server import wall_clock_us

    sending_time = client.times.millis(wall_clock_us())
    seq = client.seq
    client.seq += 1
    signature = sign_logon(key, client.sender, client.target, seq, sending_time)
    header = [(34, str(seq)), (49, client.sender), (52, sending_time), (56, client.target)]
    body = [(98, "0"), (108, str(heartbeat)), (95, str(len(signature))), (96, signature), (553, api_key)]
    return frame_message("A", header, encode_body(body))


async def start_venue(nursery: trio.Nursery, directory: Path, sessions: list[dict[str, Any]] | None = None, *,
                      tls: TestPki | None = None) -> FixVenue:
    """A venue serving FIX on a free port; with ``tls``, over TLS with that PKI's server certificate."""
    engine = Engine(fix_config(sessions, tls), directory)
    await nursery.start(engine.run)
    info = await nursery.start(lambda task_status: serve_fix(engine, listen="127.0.0.1:0", task_status=task_status))
    host, _, port = info["fix"].rpartition(":")
    client_tls = None if tls is None else ssl.create_default_context(cafile=str(tls.ca_file))
    return FixVenue(engine, (host, int(port)), info, client_tls)


SOL = "SOL_USDC"
NOW = "20240101-00:00:00"


def order(cl_ord_id: str, side: str, qty: str, price: str | None = None, **extra: str) -> list[tuple[int, str]]:
    """A NewOrderSingle body for SOL_USDC: limit with a price, market without; ``t<tag>=value`` adds fields."""
    body = [(11, cl_ord_id), (55, SOL), (54, side), (60, NOW), (38, qty), (40, "2" if price else "1")]
    if price:
        body.append((44, price))
    body += [(int(k[1:]), v) for k, v in extra.items()]
    return body


def fields(message: Message, *tags: int) -> tuple[str | None, ...]:
    return tuple(message.get(tag) for tag in tags)
