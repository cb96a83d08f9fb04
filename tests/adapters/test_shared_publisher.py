"""The daemon runs one publisher per engine; the Backpack and FIX adapters both read from it."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from engine.config import DEFAULT, parse_config
from engine.daemon import _start_services
from engine.publisher_service import shared
from engine.runtime import Engine
from tests.adapters.fix.venue import SESSIONS


async def test_the_daemons_services_share_one_publisher(tmp_path: Path) -> None:
    data = copy.deepcopy(DEFAULT)
    data["adapters"]["fix"]["sessions"] = copy.deepcopy(SESSIONS)
    for name in ("rest", "websocket", "fix"):
        data["adapters"][name]["listen"] = "127.0.0.1:0"
    config = parse_config(data)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(Engine(config, tmp_path).run)
            scopes: list[trio.CancelScope] = []
            stops: list[Callable[[], Awaitable[None]]] = []
            bound = await _start_services(nursery, engine, scopes, stops)
            assert {"rest", "websocket", "fix"} <= set(bound)
            assert len(stops) == 1  # the FIX acceptor logs its sessions out before intake stops
            publisher = shared(engine)
            assert publisher is not None and publisher.listeners  # the WebSocket and FIX fan-outs
            created = await engine.create_account()
            await engine.deposit(created.value, "USDC", "10")
            await engine.wait_idle()
            await trio.sleep(0.01)
            assert publisher.balances(created.value) == {"USDC": (10_000_000, 0)}
            applied = publisher.events
            assert applied == 2  # each durable event applied once, for both protocols
            for scope in scopes:
                scope.cancel()
            engine.stop()
    assert shared(engine) is None
