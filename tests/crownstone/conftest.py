"""Fixtures for the cloud library: the simulator and a scripted cloud, both on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import aiohttp
import pytest

from custom_components.crownstone_spotflow.crownstone import CrownstoneCloud
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator, demo_home

from .scripted import ScriptedCloud


@pytest.fixture(autouse=True)
def loopback_sockets(socket_enabled: None) -> None:
    """Home Assistant's test plugin blocks sockets; our servers need 127.0.0.1."""


@pytest.fixture
async def cloud_sim() -> AsyncGenerator[CloudSimulator]:
    """The demo home, served by the simulator (no phone: switch calls change nothing)."""
    sim = CloudSimulator(demo_home(), phone_delay=None)
    await sim.start(host="127.0.0.1", port=0)
    yield sim
    await sim.stop()


@pytest.fixture
async def websession() -> AsyncGenerator[aiohttp.ClientSession]:
    """A session owned by the test, as Home Assistant would inject its own."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def cloud(cloud_sim: CloudSimulator, websession: aiohttp.ClientSession) -> CrownstoneCloud:
    """Ann's account against the simulator, not logged in yet."""
    return CrownstoneCloud(
        DEMO_EMAIL, DEMO_PASSWORD, websession, base_url=cloud_sim.url, request_timeout=2.0
    )


@pytest.fixture
async def synced_cloud(cloud: CrownstoneCloud, cloud_sim: CloudSimulator) -> CrownstoneCloud:
    """Ann's account with the whole tree read; the simulator's counters start from zero."""
    await cloud.async_initialize()
    cloud_sim.reset_counters()
    return cloud


@pytest.fixture
async def scripted() -> AsyncGenerator[ScriptedCloud]:
    """A tiny cloud that answers whatever a test scripts."""
    server = ScriptedCloud()
    await server.start()
    yield server
    await server.stop()
