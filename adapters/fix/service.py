"""The FIX acceptor as a daemon service (entry point ``satchel.services: fix``).

Starts only when ``[adapters.fix]`` has sessions (or runs the echo profile), so
a default config opens no FIX port. Sequence stores live in
``<journal dir>/fix/<SenderCompID>-<TargetCompID>.log``. Reports
``{"fix": "host:port"}`` so a port of 0 is discoverable from the ready line.
"""

from __future__ import annotations

from typing import Any

import trio

from adapters.fix.auth import make_authenticator
from adapters.fix.echo import EchoApplication
from adapters.fix.exchange import ExchangeApplication
from adapters.fix.server import FixServer, wall_clock_us
from adapters.fix.session import Acceptor, Application, Session, SessionConfig
from adapters.fix.store import FileStore
from engine.publisher import Publisher
from engine.runtime import Engine


def session_configs(engine: Engine) -> list[SessionConfig]:
    return [
        SessionConfig(
            s.sender_comp_id, s.target_comp_id, s.account, s.heartbeat_min_s, s.heartbeat_max_s,
            s.reset_on_logon, s.require_signature, s.drop_copy, s.cancel_on_disconnect,
        )
        for s in engine.config.adapters.fix.sessions
    ]


async def serve_fix(
    engine: Engine, *, listen: str | None = None, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the FIX acceptor until cancelled."""
    fix = engine.config.adapters.fix
    configs = session_configs(engine)
    if not configs:
        task_status.started({})
        return
    host, _, port = (listen or fix.listen).rpartition(":")
    store_dir = engine.directory / "fix"
    async with trio.open_nursery() as nursery:
        publisher: Publisher | None = None
        application: Application
        if fix.application == "echo":
            application = EchoApplication()
        else:
            await engine.wait_idle()
            publisher = Publisher.for_engine(engine)
            await nursery.start(publisher.run, engine)
            application = exchange = ExchangeApplication(engine, publisher, wall_us=wall_clock_us)
        sessions = []
        for config in configs:
            store = FileStore(store_dir / f"{config.sender_comp_id}-{config.target_comp_id}.log")
            session = Session(config, application, store=store, wall_us=wall_clock_us, monotonic=trio.current_time)
            sessions.append(session)
            if publisher is not None:
                exchange.register(session)
        # the echo profile only runs the QuickFIX acceptance suite: no keys, no signatures
        authenticate = make_authenticator(publisher.account_for_key) if publisher is not None else None
        acceptor = Acceptor(sessions, authenticate=authenticate)
        server = FixServer(acceptor, host, int(port))
        address = await nursery.start(server.serve)
        task_status.started({"fix": f"{address[0]}:{address[1]}", "server": server, "application": application})
