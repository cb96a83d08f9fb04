"""Fixtures the FIX test modules share: a running venue, and closing every raw client a test opened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.adapters.fix.client import close_all
from tests.adapters.fix.venue import FixVenue, start_venue


@pytest.fixture
async def _close_clients() -> AsyncIterator[None]:
    yield
    await close_all()


@pytest.fixture
async def venue(nursery: trio.Nursery, tmp_path: Path) -> FixVenue:
    return await start_venue(nursery, tmp_path)
