"""``satchel run``: the engine and the admin socket in one nursery, stopped by a signal.

Shutdown on SIGINT/SIGTERM: stop intake (admin socket closes, the engine refuses
new commands), drain what is in flight, final fsync, exit 0. A second signal
while draining is ignored; the drain is bounded by the engine's timeout.
"""

from __future__ import annotations

import logging
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import trio

from engine.admin import AdminServer, ensure_token
from engine.config import Config
from engine.publisher import serve_publisher
from engine.runtime import Engine, StartupError

log = logging.getLogger("satchel.daemon")


def admin_socket_path(config: Config, base: Path) -> Path:
    if config.admin.socket:
        path = Path(config.admin.socket)
        return path if path.is_absolute() else base / path
    return config.journal_dir(base) / "admin.sock"


async def serve(config: Config, base: Path) -> None:
    directory = config.journal_dir(base)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        engine = Engine(config, directory)
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            token = ensure_token(directory / "admin.token")
            admin = AdminServer(engine, admin_socket_path(config, base), token)
            admin_scope = trio.CancelScope()

            async def run_admin(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with admin_scope:
                    await admin.serve(task_status=task_status)

            await nursery.start(run_admin)
            services_scopes: list[trio.CancelScope] = []
            bound = await _start_services(nursery, engine, services_scopes)
            listening = "".join(f", {name} {address}" for name, address in bound.items())
            print(f"satchel ready: venue {config.venue.name}, journal {directory}, "
                  f"admin socket {admin.socket_path}{listening}", file=sys.stderr, flush=True)
            async for signum in signals:
                log.info("received %s: stopping intake, draining", signal.Signals(signum).name)
                break
            for scope in services_scopes:
                scope.cancel()
            admin_scope.cancel()
            engine.stop()
    print("satchel stopped cleanly", file=sys.stderr, flush=True)


SERVICES_GROUP = "satchel.services"


async def _start_services(nursery: trio.Nursery, engine: Engine, scopes: list[trio.CancelScope]) -> dict[str, str]:
    """Start every ``satchel.services`` entry point (the protocol adapters) after the engine.

    Found by entry point so ``engine`` never imports ``adapters``. Each service is
    ``async def serve(engine, *, task_status)`` and reports a mapping of names to
    bound addresses (string values are printed in the ready line, so a port of 0
    in the config is discoverable).
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
        bound.update({k: v for k, v in dict(info or {}).items() if isinstance(v, str)})
    return bound
