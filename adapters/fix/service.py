"""The FIX acceptor as a daemon service (entry point ``satchel.services: fix``).

Starts only when ``[adapters.fix]`` has sessions (or runs the echo profile), so
a default config opens no FIX port. Sequence stores live in
``<journal dir>/fix/<SenderCompID>-<TargetCompID>.log``. ClOrdIDs
in ``<journal dir>/fix/clordids.log`` (``cl_ord_ids``). Reports
``{"fix": "host:port"}`` so a port of 0 is discoverable from the ready line.
The exchange application reads the daemon's shared publisher
(``engine.publisher_service.acquire``). Also reports ``stop``, which the daemon awaits
at shutdown before it stops intake: every session logged out, and the orders
of cancel-on-disconnect sessions cancelled (``FixServer.stop``,
``ExchangeApplication.drained``).

With ``tls_cert`` and ``tls_key`` set the acceptor serves FIX over TLS
(``adapters.tls``); a file it cannot use stops start-up with a StartupError
naming the key, before the port is opened.
"""

from __future__ import annotations

from typing import Any

import trio

from adapters.fix.auth import make_authenticator
from adapters.fix.cl_ord_ids import ClOrdIds
from adapters.fix.connection import Acceptor
from adapters.fix.echo import EchoApplication
from adapters.fix.exchange import ExchangeApplication
from adapters.fix.server import FixServer, wall_clock_us
from adapters.fix.session import Application, Session, SessionConfig
from adapters.fix.store import FileStore
from adapters.tls import server_context
from engine.config import address_text, split_listen
from engine.publisher import Publisher
from engine.publisher_service import acquire
from engine.runtime import Engine, listening

CL_ORD_IDS_FILE = "clordids.log"
DRAIN_POLL_S = 0.001


def session_configs(engine: Engine) -> list[SessionConfig]:
    return [
        SessionConfig(
            s.sender_comp_id, s.target_comp_id, s.account, s.heartbeat_min_s, s.heartbeat_max_s,
            s.reset_on_logon, s.require_signature, s.drop_copy, s.cancel_on_disconnect,
            max_messages_per_s=s.max_messages_per_s, burst_messages=s.burst_messages,
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
    configured = listen or fix.listen
    host, port = split_listen(configured)
    tls = server_context("fix", fix.tls_cert, fix.tls_key)  # a TlsFileError stops start-up naming the key
    store_dir = engine.directory / "fix"
    exchange: ExchangeApplication | None = None
    try:
        async with trio.open_nursery() as nursery:
            publisher: Publisher | None = None
            application: Application
            if fix.application == "echo":
                application = EchoApplication()
            else:
                publisher = await acquire(engine, nursery)
                application = exchange = ExchangeApplication(
                    engine, publisher, wall_us=wall_clock_us, cl_ord_ids=ClOrdIds(store_dir / CL_ORD_IDS_FILE),
                )
            sessions = []
            for config in configs:
                store = FileStore(store_dir / f"{config.sender_comp_id}-{config.target_comp_id}.log")
                session = Session(config, application, store=store, wall_us=wall_clock_us, monotonic=trio.current_time)
                sessions.append(session)
                if exchange is not None:
                    exchange.register(session)
            # the echo profile only runs the QuickFIX acceptance suite: no keys, no signatures
            authenticate = make_authenticator(publisher.account_for_key) if publisher is not None else None
            acceptor = Acceptor(sessions, authenticate=authenticate, intake=engine if exchange is not None else None)
            server = FixServer(acceptor, host, port, tls=tls)
            with listening("adapters.fix.listen", configured):
                address = await nursery.start(server.serve)

            async def stop() -> None:
                """The daemon's shutdown, while the engine still takes commands: Logouts, then the
                cancel-on-disconnect sessions' cancels, done and reported."""
                await server.stop()
                while exchange is not None and not exchange.drained():  # noqa: ASYNC110 - sans-IO state
                    await trio.sleep(DRAIN_POLL_S)

            task_status.started({"fix": address_text(*address), "server": server, "application": application,
                                 "stop": stop})
    finally:
        if exchange is not None:
            exchange.close()
