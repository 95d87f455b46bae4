"""Fixtures: a started cloud simulator and a plain aiohttp session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from simulators.crownstone_cloud import CloudSimulator


@pytest.fixture(autouse=True)
def loopback_sockets(socket_enabled: None) -> None:
    """Home Assistant's test plugin blocks sockets; the simulator needs 127.0.0.1."""


@pytest.fixture
async def cloud() -> AsyncIterator[CloudSimulator]:
    """The demo home on an ephemeral port, with fast pings and a fast phone."""
    sim = CloudSimulator(phone_delay=0.01, ping_interval=0.1)
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session the test owns."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """These tests need no Home Assistant instance (overrides the suite-wide fixture)."""
