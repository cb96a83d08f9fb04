"""``satchel run``: the engine and the admin socket in one nursery, stopped by a signal.

Shutdown on SIGINT/SIGTERM: first each service's own stop, while the engine
still takes commands (the FIX acceptor logs its sessions out and cancels the
orders of cancel-on-disconnect sessions), bounded by ``SERVICE_STOP_TIMEOUT_S``;
then stop intake (services close; the admin socket takes no new connections
and answers the ones it accepted; the engine refuses new commands), drain what
is in flight, final fsync, exit 0. A second signal while stopping is ignored;
the drain is bounded by the engine's timeout. A full disk that halts the engine
still answers the admin clients waiting on it (``SERVER_ERROR ... not recorded``).
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Final

import trio

from engine.admin import AdminServer, ensure_token
from engine.config import Config
from engine.publisher_service import serve_publisher
from engine.recovery import StartupError
from engine.runtime import Engine

log = logging.getLogger("satchel.daemon")

SERVICE_STOP_TIMEOUT_S: Final = 5.0
# descriptors the connection caps can take (REST 4,096, WebSocket 4,096, FIX 1,000, admin) plus a reserve for the
# journal, snapshots and the replica; below this a flood of clients can leave the journal unable to open a file
DESCRIPTORS_WANTED: Final = 12_000


def admin_socket_path(config: Config, base: Path) -> Path:
    if config.admin.socket:
        path = Path(config.admin.socket)
        return path if path.is_absolute() else base / path
    return config.journal_dir(base) / "admin.sock"


def raise_descriptor_limit() -> int:
    """Lift this process's soft limit on open files to its hard limit (as servers do at start); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    if soft != resource.RLIM_INFINITY and soft < DESCRIPTORS_WANTED:
        log.warning("the open-file limit is %d, below the %d the connection caps and the journal can need: a flood "
                    "of clients could stop the journal opening a file; raise it (ulimit -n, LimitNOFILE)",
                    soft, DESCRIPTORS_WANTED)
    return soft


async def serve(config: Config, base: Path) -> None:
    directory = config.journal_dir(base)
    raise_descriptor_limit()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        engine = Engine(config, directory)
        # The admin socket lives outside the engine's nursery: when the engine ends (a signal, a full
        # disk) the connections it accepted still get their answers (AdminServer.finish).
        async with trio.open_nursery() as outer:
            admin: AdminServer | None = None
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(engine.run)
                    token = ensure_token(directory / "admin.token")
                    server = AdminServer(engine, admin_socket_path(config, base), token)
                    await outer.start(server.serve)
                    admin = server
                    services_scopes: list[trio.CancelScope] = []
                    stops: list[Callable[[], Awaitable[None]]] = []
                    bound = await _start_services(nursery, engine, services_scopes, stops)
                    listening = "".join(f", {name} {address}" for name, address in bound.items())
                    print(f"satchel ready: venue {config.venue.name}, journal {directory}, "
                          f"admin socket {admin.socket_path}{listening}", file=sys.stderr, flush=True)
                    async for signum in signals:
                        log.info("received %s: stopping the services, then intake; draining", signal.Signals(signum).name)
                        break
                    await _stop_services(stops)
                    for scope in services_scopes:
                        scope.cancel()
                    await admin.close()  # no new connections; the accepted ones are answered while the engine runs
                    engine.stop()
            finally:
                if admin is not None:
                    await admin.finish()
    print("satchel stopped cleanly", file=sys.stderr, flush=True)


SERVICES_GROUP = "satchel.services"


async def _start_services(nursery: trio.Nursery, engine: Engine, scopes: list[trio.CancelScope],
                          stops: list[Callable[[], Awaitable[None]]]) -> dict[str, str]:
    """Start every ``satchel.services`` entry point (the protocol adapters) after the engine.

    Found by entry point so ``engine`` never imports ``adapters``. Each service is
    ``async def serve(engine, *, task_status)`` and reports a mapping of names to
    bound addresses (string values are printed in the ready line, so a port of 0
    in the config is discoverable). A service may also report ``stop``: an async
    function the daemon awaits at shutdown before it cancels the services, while
    the engine still takes commands (``_stop_services``).
    """
    bound: dict[str, str] = {}
    points = sorted(entry_points(group=SERVICES_GROUP), key=lambda p: p.name)
    if points:  # one publisher for every adapter, rebuilt from the journal (engine.publisher)
        scope = trio.CancelScope()
        scopes.append(scope)

        async def run_publisher(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await serve_publisher(engine, task_status=task_status)

        await nursery.start(run_publisher)
    for point in points:
        service = point.load()
        scope = trio.CancelScope()  # one per service: a scope can enter only one ``with`` block
        scopes.append(scope)

        async def run(
            service: Any = service, scope: trio.CancelScope = scope, *,
            task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
        ) -> None:
            with scope:
                await service(engine, task_status=task_status)

        try:
            info = await nursery.start(run)
        except OSError as exc:
            raise StartupError(f"service {point.name!r} cannot listen: {exc}") from None
        info = dict(info or {})
        bound.update({k: v for k, v in info.items() if isinstance(v, str)})
        if callable(info.get("stop")):
            stops.append(info["stop"])
    return bound


async def _stop_services(stops: list[Callable[[], Awaitable[None]]]) -> None:
    """Run the services' own stops together, bounded: a peer that never answers cannot hold the shutdown."""
    with trio.move_on_after(SERVICE_STOP_TIMEOUT_S) as bounded:
        async with trio.open_nursery() as nursery:
            for stop in stops:
                nursery.start_soon(_stop_one, stop)
    if bounded.cancelled_caught:
        log.warning("services did not stop within %.0f s; stopping intake anyway", SERVICE_STOP_TIMEOUT_S)


async def _stop_one(stop: Callable[[], Awaitable[None]]) -> None:
    try:
        await stop()
    except Exception:  # the shutdown goes on: intake stops and the journal is synced regardless
        log.exception("a service failed in its stop")
