"""Fixtures: the platform simulator on 127.0.0.1 and device clients with short timings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from custom_components.crownstone_spotflow.spotflow import DeviceClient, OutboxConfig
from simulators.spotflow_platform import PlatformSimulator

FAST_OUTBOX = OutboxConfig(commit_interval=0.01, pack_linger=0.01, synchronous="NORMAL")

type StartClient = Callable[..., Awaitable[DeviceClient]]


@pytest.fixture
async def sim(tmp_path: Path, socket_enabled: None) -> AsyncGenerator[PlatformSimulator]:
    """Run a simulator that approves provisioning on its own (sockets on 127.0.0.1 only)."""
    simulator = PlatformSimulator(tmp_path / "platform", auto_approve=True)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Return the device's outbox database path."""
    return tmp_path / "device.db"


@pytest.fixture
async def start_client(sim: PlatformSimulator, db_path: Path) -> AsyncGenerator[StartClient]:
    """Start device clients against the simulator; all are closed at the end."""
    clients: list[DeviceClient] = []

    async def start(device_id: str = "dev-1", **options: Any) -> DeviceClient:
        options.setdefault("outbox", FAST_OUTBOX)
        client = await DeviceClient.start(
            device_id,
            options.pop("provisioning_token", sim.provisioning_token),
            options.pop("db", db_path),
            instance=options.pop("instance", sim.instance),
            ca_file=sim.ca_file,
            provisioning_poll_interval=0.05,
            retry_interval=0.2,
            **options,
        )
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def client(start_client: StartClient, sim: PlatformSimulator) -> DeviceClient:
    """Return a connected device client."""
    device = await start_client()
    await wait_connected(device)
    return device


async def wait_connected(client: DeviceClient, connected: bool = True) -> None:
    """Wait until the client reports the connection state."""
    changed = asyncio.Event()
    remove = client.add_connection_listener(lambda state: changed.set())
    try:
        async with asyncio.timeout(10):
            while client.connected != connected:
                changed.clear()
                await changed.wait()
    finally:
        remove()
