"""Fixtures shared by the REST test modules (each module starts its own ``venue``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.adapters.live import Http, LiveVenue


@pytest.fixture
def http(venue: LiveVenue) -> Iterator[Http]:
    """A keep-alive HTTP connection to the module's venue, closed after the test."""
    client = Http(venue)
    yield client
    client.conn.close()
