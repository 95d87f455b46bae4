"""Desired and reported properties of the device twin."""

from __future__ import annotations

import asyncio

from custom_components.crownstone_spotflow.spotflow import DesiredProperties
from simulators.spotflow_platform import PlatformSimulator

from .conftest import StartClient, wait_connected


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 (twin state has no public event)
            await asyncio.sleep(0.02)


async def test_desired_properties(start_client: StartClient, sim: PlatformSimulator) -> None:
    """Current values at connect, the callback once after start and on each change."""
    seen: list[DesiredProperties] = []
    client = await start_client(desired_properties_updated_callback=seen.append)
    await wait_connected(client)
    version = sim.set_desired("dev-1", {"interval": 5, "nested": {"a": 1, "b": 2}})
    await _until(lambda: client.get_desired_properties().version == version)
    assert client.get_desired_properties().values == {"interval": 5, "nested": {"a": 1, "b": 2}}
    version = sim.set_desired("dev-1", {"nested": {"a": None}})
    await _until(lambda: client.get_desired_properties().version == version)
    assert client.get_desired_properties().values == {"interval": 5, "nested": {"b": 2}}
    assert client.get_desired_properties_if_newer(version) is None
    assert client.get_desired_properties_if_newer(version - 1) == client.get_desired_properties()
    assert seen[0].version < version
    assert seen[-1] == client.get_desired_properties()
    assert len({properties.version for properties in seen}) == len(seen)


async def test_desired_change_while_offline(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """A change made while the device is away arrives after it reconnects, and is stored."""
    client = await start_client()
    await wait_connected(client)
    await sim.stop_broker()
    await wait_connected(client, connected=False)
    version = sim.set_desired("dev-1", {"mode": "eco"})
    version = sim.set_desired("dev-1", {"mode": "away"})
    await sim.start_broker()
    await _until(lambda: client.get_desired_properties().version == version)
    assert client.get_desired_properties().values == {"mode": "away"}
    await client.close()
    await sim.stop_broker()
    offline = await start_client()
    assert offline.get_desired_properties() == DesiredProperties(version, {"mode": "away"})
    await sim.start_broker()


async def test_reported_properties_survive_restart(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """Reported properties are persisted while offline and sent once connected."""
    client = await start_client()
    await wait_connected(client)
    await sim.stop_broker()
    await wait_connected(client, connected=False)
    await client.update_reported_properties({"firmware": "1.0", "uptime": 1})
    await client.update_reported_properties({"uptime": 2})
    assert client.any_pending_reported_properties_updates
    await client.close()
    await sim.start_broker()
    client = await start_client()
    assert client.any_pending_reported_properties_updates
    await _until(lambda: not client.any_pending_reported_properties_updates)
    reported = sim.reported("dev-1")
    assert (reported["firmware"], reported["uptime"]) == ("1.0", 2)
