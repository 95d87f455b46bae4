"""One MQTT session against the simulator's broker: connection failures inside paho's loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
import socket
import ssl
import threading

import aiohttp
import pytest

from custom_components.crownstone_spotflow.spotflow import SpotflowConnectionError
from custom_components.crownstone_spotflow.spotflow.api import PlatformApi, Registration
from custom_components.crownstone_spotflow.spotflow.mqtt import MqttSession
from simulators.spotflow_platform import PlatformSimulator


@pytest.fixture
async def registration(sim: PlatformSimulator) -> AsyncGenerator[Registration]:
    """Provision and register a device over the HTTPS API."""
    context = ssl.create_default_context(cafile=sim.ca_file)
    async with aiohttp.ClientSession() as http:
        api = PlatformApi(http, sim.instance, context)
        operation = await api.init_provisioning(sim.provisioning_token, "dev-1")
        token = await api.complete_provisioning(sim.provisioning_token, operation.id)
        assert token is not None
        yield await api.register(token.token)


async def connect(sim: PlatformSimulator, registration: Registration) -> MqttSession:
    """Open a session as the device."""
    messages: list[tuple[str, bytes]] = []
    session = new_session(
        sim, registration, lambda topic, payload: messages.append((topic, payload))
    )
    await session.connect()
    return session


def new_session(
    sim: PlatformSimulator,
    registration: Registration,
    on_message: Callable[[str, bytes], None] = lambda topic, payload: None,
) -> MqttSession:
    """Return a session of the device, not yet connected."""
    return MqttSession(
        host="127.0.0.1",
        port=sim.mqtt_port,
        client_id=registration.client_id,
        username=f"{registration.hub_host}/{registration.client_id}/?api-version=2018-06-30",
        password=registration.sas,
        ssl_context=ssl.create_default_context(cafile=sim.ca_file),
        on_message=on_message,
    )


async def test_connection_fails_during_write(
    sim: PlatformSimulator, registration: Registration
) -> None:
    """A write that fails inside paho ends the session without blocking the event loop.

    paho reports the failure from within its callback lock; closing the socket from that
    callback would take the lock again and hang the loop for good.
    """
    session = await connect(sim, registration)
    sock = session._client.socket()
    assert isinstance(sock, ssl.SSLSocket)
    sock.shutdown(socket.SHUT_WR)  # the next write fails with a broken pipe
    topic = f"devices/{registration.client_id}/messages/events/batch-id=b&message-id=1"
    in_flight = session.publish(topic, b"x" * 100_000)
    async with asyncio.timeout(5):
        with pytest.raises(SpotflowConnectionError):
            await in_flight
        await session.closed
    assert session._client.socket() is None
    failed = session.publish(topic, b"after")
    with pytest.raises(SpotflowConnectionError):
        await failed
    await session.disconnect()
    assert sim.message_count == 0


async def test_disconnect_while_writing(sim: PlatformSimulator, registration: Registration) -> None:
    """paho reports its own DISCONNECT from within its callback lock, before closing the socket."""
    session = await connect(sim, registration)
    topic = f"devices/{registration.client_id}/messages/events/batch-id=b&message-id=1"
    in_flight = session.publish(topic, b"x" * 200_000)
    async with asyncio.timeout(5):
        await session.disconnect()
        with pytest.raises(SpotflowConnectionError):
            await in_flight
    assert session._client.socket() is None


async def test_cancelled_connect_leaves_no_connection(
    sim: PlatformSimulator, registration: Registration
) -> None:
    """Cancelling connect while the connect thread works ends the session and its socket."""
    session = new_session(sim, registration)
    started, proceed = threading.Event(), threading.Event()

    def hold(client: object, userdata: object) -> None:
        # paho's hook in the connect thread, just before it opens the socket.
        started.set()
        proceed.wait(5)

    session._client.on_pre_connect = hold
    connecting = asyncio.create_task(session.connect())
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    connecting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await connecting
    assert session.closed.done()
    proceed.set()
    with pytest.raises(TimeoutError):
        await sim.wait_for_connection("dev-1", timeout=1)
    assert session._client.socket() is None
