"""The published `crownstone-sse` 2.0.5 client runs unchanged against the simulator's stream.

Only its hard-coded addresses are pointed at the simulator (configuration, not protocol).

The library has a fault of its own: at a clean end of the stream, `__anext__` loops over an
exhausted reader without ever suspending, so it spins the event loop. These tests therefore
never let the stream end under it: they close the client (`close_client()`) before the
simulator stops. The token-expiry case is safe: the library reacts to TOKEN_EXPIRED, which the
server sends before it ends the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import hashlib
from typing import Any

import aiohttp
from crownstone_sse import CrownstoneSSEAsync
import crownstone_sse.async_client
from crownstone_sse.events import (
    AbilityChangeEvent,
    DataChangeEvent,
    MultiSwitchCommandEvent,
    PresenceEvent,
    SwitchStateUpdateEvent,
    SystemEvent,
)
import pytest

from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

TIMEOUT = 30.0  # a deadline against a hang; every wait ends on the awaited event


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CloudSimulator]:
    """The demo home; the library's addresses point at it."""
    simulator = CloudSimulator(phone_delay=0.01, ping_interval=30)
    await simulator.start()
    # async_client.py copied the constants at import time, so patch them where they are used.
    monkeypatch.setattr(crownstone_sse.async_client, "DEFAULT_CLOUD_ADDR", simulator.url)
    monkeypatch.setattr(crownstone_sse.async_client, "DEFAULT_SSE_ADDR", simulator.sse_url)
    yield simulator
    await simulator.stop()


class Listener:
    """The library's iterator, drained by a task into a queue."""

    def __init__(self, client: CrownstoneSSEAsync) -> None:
        self.client = client
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        async for event in self.client:
            self.queue.put_nowait(event)

    async def next_of[T](self, kind: type[T]) -> T:
        """The next event of this class (pings and others skipped)."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                event = await self.queue.get()
                if isinstance(event, kind):
                    return event


@pytest.fixture
async def listener(sim: CloudSimulator) -> AsyncIterator[Listener]:
    """Ann's stream through the published client, with its own session; closed before the
    simulator stops, so the stream never ends under the library."""
    client = CrownstoneSSEAsync(DEMO_EMAIL, DEMO_PASSWORD, reconnection_time=0)
    async with client:
        listening = Listener(client)
        yield listening
        client.close_client()
        async with asyncio.timeout(TIMEOUT):
            await listening.task


async def test_login_and_stream_start(sim: CloudSimulator, listener: Listener) -> None:
    start = await listener.next_of(SystemEvent)
    assert (start.sub_type, start.code, start.message) == ("STREAM_START", 200, "Stream Starting.")
    assert listener.client.is_available
    assert sim.request_count("POST", "/users/login") == 1
    assert sim.open_streams == 1


async def test_switching_presence_data_and_ability_events(
    sim: CloudSimulator, listener: Listener
) -> None:
    await listener.next_of(SystemEvent)
    home = sim.sphere_id("Home")
    desk = sim.stone_id("Desk lamp")

    sim.set_switch_state(desk, 30)
    update = await listener.next_of(SwitchStateUpdateEvent)
    assert (update.sphere_id, update.cloud_id, update.switch_state) == (home, desk, 30)
    assert update.unique_id == sim.stone(desk)[1].uid

    # A command through the REST API: the stream shows the command, then the phone's report.
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.url}/users/login", json=_login()) as response:
            token = (await response.json())["id"]
        async with http.post(
            f"{sim.url}/Stones/{desk}/switch",
            params={"access_token": token},
            json={"type": "PERCENTAGE", "percentage": 70},
        ) as response:
            assert response.status == 204
    command = await listener.next_of(MultiSwitchCommandEvent)
    assert command.sphere_id == home
    (switch,) = command.crownstone_list
    assert switch.cloud_id == desk
    assert (switch.switch_val.type.name, switch.switch_val.percentage) == ("PERCENTAGE", 70)
    assert (await listener.next_of(SwitchStateUpdateEvent)).switch_state == 70

    bob = sim.user_id("bob@example.com")
    kitchen = sim.location_id("Kitchen")
    sim.enter_location(bob, home, kitchen)
    presence = await listener.next_of(PresenceEvent)
    while presence.sub_type != "enterLocation":  # an enterSphere may come first
        presence = await listener.next_of(PresenceEvent)
    assert (presence.sphere_id, presence.location_id, presence.user_id) == (home, kitchen, bob)

    sim.rename_stone(desk, "Reading lamp")
    change = await listener.next_of(DataChangeEvent)
    assert (change.sub_type, change.operation, change.sphere_id) == ("stones", "update", home)
    assert (change.changed_item_id, change.changed_item_name) == (desk, "Reading lamp")

    sim.set_ability(desk, "dimming", False)
    ability = await listener.next_of(AbilityChangeEvent)
    assert (ability.cloud_id, ability.ability_type, ability.ability_enabled) == (
        desk,
        "dimming",
        False,
    )


def _login() -> dict[str, str]:
    return {"email": DEMO_EMAIL, "password": hashlib.sha1(DEMO_PASSWORD.encode()).hexdigest()}


async def test_token_expiry_logs_in_again_and_reconnects(
    sim: CloudSimulator, listener: Listener
) -> None:
    await listener.next_of(SystemEvent)
    sim.expire_tokens()
    # The library swallows TOKEN_EXPIRED, logs in, opens a new stream and goes on.
    restart = await listener.next_of(SystemEvent)
    assert restart.sub_type == "STREAM_START"
    assert sim.request_count("POST", "/users/login") == 2
    assert sim.stream_connections == 2
    sim.set_switch_state(sim.stone_id("Coffee machine"), 100)
    assert (await listener.next_of(SwitchStateUpdateEvent)).switch_state == 100
