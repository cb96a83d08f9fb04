"""The 59 QuickFIX FIX 4.4 acceptance definitions against Satchel's acceptor with the echo application.

Each definition is one test case, in plaintext and over TLS. They run over real TCP on 127.0.0.1 on trio's
MockClock with autojump, so the heartbeat tests (4a, 6) run in well under a
second instead of 12 s and 34 s of wall time; SendingTime checks still use the
wall clock, as the definitions' ``<TIME>`` does.
"""

from __future__ import annotations

import copy
import datetime
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing

from adapters.fix.connection import Acceptor
from adapters.fix.echo import EchoApplication
from adapters.fix.server import FixServer, wall_clock_us
from adapters.fix.service import serve_fix
from adapters.fix.session import Session, SessionConfig
from adapters.tls import server_context
from engine.config import DEFAULT, parse_config
from engine.runtime import Engine
from tests.adapters.fix.conformance import DEFINITIONS, run_definition, substitute_time
from tests.adapters.tls_certs import make_pki

DEFINITION_FILES = sorted(p.name for p in DEFINITIONS.glob("*.def")) if DEFINITIONS.exists() else []


def echo_acceptor() -> Acceptor:
    app = EchoApplication()
    sessions = [
        Session(SessionConfig("ISLD", peer, reset_on_logon=True), app,
                wall_us=wall_clock_us, monotonic=trio.current_time)
        for peer in ("TW44", "TW")
    ]
    return Acceptor(sessions)


@pytest.fixture
async def echo_server(nursery: trio.Nursery) -> tuple[str, int]:
    server = FixServer(echo_acceptor(), "127.0.0.1", 0)
    address = await nursery.start(server.serve)
    return address


def test_time_offsets_are_never_shorter_than_written() -> None:
    """Late in a second, ``<TIME+121>`` rounded down would be only 120.001 s ahead: inside the
    acceptor's 120 s tolerance once the message takes a millisecond to arrive (2o failed so once)."""
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, 999_000, tzinfo=datetime.UTC)
    line = substitute_time(b"52=<TIME+121>|52=<TIME-121>|52=<TIME>|122=<TIME+10>", now)
    assert line == b"52=20260102-03:06:07|52=20260102-03:02:04|52=20260102-03:04:05|122=20260102-03:04:16"
    whole = now.replace(microsecond=0)
    assert substitute_time(b"<TIME+121>", whole) == b"20260102-03:06:06"


def test_the_suite_is_there() -> None:
    assert len(DEFINITION_FILES) == 59, f"expected the 59 fix44 definitions in {DEFINITIONS}"


@pytest.mark.parametrize("name", DEFINITION_FILES)
async def test_quickfix_acceptance(name: str, echo_server: tuple[str, int], autojump_clock: trio.testing.MockClock) -> None:
    host, port = echo_server
    with trio.fail_after(120):
        await run_definition(DEFINITIONS / name, host, port)


@pytest.mark.parametrize("name", DEFINITION_FILES)
async def test_quickfix_acceptance_over_tls(
    name: str, nursery: trio.Nursery, tmp_path: Path, autojump_clock: trio.testing.MockClock,
) -> None:
    """The same definitions through TLS: disconnects, resends and garbled input behave as in plaintext."""
    pki = make_pki(tmp_path)
    server = FixServer(echo_acceptor(), "127.0.0.1", 0, tls=server_context("fix", str(pki.cert_file), str(pki.key_file)))
    host, port = await nursery.start(server.serve)
    with trio.fail_after(120):
        await run_definition(DEFINITIONS / name, host, port, ssl.create_default_context(cafile=str(pki.ca_file)))


async def test_the_echo_profile_from_config_passes_a_sample(nursery: trio.Nursery, tmp_path: Path) -> None:
    """``[adapters.fix] application = "echo"`` as the daemon starts it (no signatures in this profile)."""
    data = copy.deepcopy(DEFAULT)
    data["adapters"]["fix"] = {"listen": "127.0.0.1:0", "application": "echo", "sessions": [
        {"sender_comp_id": "ISLD", "target_comp_id": peer, "account": 1, "heartbeat_min_s": 1, "reset_on_logon": True}
        for peer in ("TW44", "TW")
    ]}
    engine = Engine(parse_config(data), tmp_path)
    info = await nursery.start(lambda task_status: serve_fix(engine, task_status=task_status))
    host, _, port = info["fix"].rpartition(":")
    with trio.fail_after(60):
        for name in ("1a_ValidLogonWithCorrectMsgSeqNum.def", "2r_UnregisteredMsgType.def", "14e_IncorrectEnumValue.def"):
            await run_definition(DEFINITIONS / name, host, int(port))
