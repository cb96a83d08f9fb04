"""The 59 QuickFIX FIX 4.4 acceptance definitions against Satchel's acceptor with the echo application.

Each definition is one test case. They run over real TCP on 127.0.0.1 on trio's
MockClock with autojump, so the heartbeat tests (4a, 6) run in well under a
second instead of 12 s and 34 s of wall time; SendingTime checks still use the
wall clock, as the definitions' ``<TIME>`` does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import trio
import trio.testing

from adapters.fix.echo import EchoApplication
from adapters.fix.server import FixServer, wall_clock_us
from adapters.fix.service import serve_fix
from adapters.fix.session import Acceptor, Session, SessionConfig
from engine.config import DEFAULT, parse_config
from engine.runtime import Engine
from tests.adapters.fix.conformance import DEFINITIONS, run_definition

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


def test_the_suite_is_there() -> None:
    assert len(DEFINITION_FILES) == 59, f"expected the 59 fix44 definitions in {DEFINITIONS}"


@pytest.mark.parametrize("name", DEFINITION_FILES)
async def test_quickfix_acceptance(name: str, echo_server: tuple[str, int], autojump_clock: trio.testing.MockClock) -> None:
    host, port = echo_server
    with trio.fail_after(120):
        await run_definition(DEFINITIONS / name, host, port)


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
