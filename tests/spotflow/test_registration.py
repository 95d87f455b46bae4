"""Registration lifecycle: token refresh, SAS renewal and expiry, revocation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from custom_components.crownstone_spotflow.spotflow import (
    DeviceClient,
    RegistrationTokenRevokedError,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import FAST_OUTBOX, StartClient, wait_connected


@pytest.fixture
async def short_sim(tmp_path: Path, socket_enabled: None) -> AsyncGenerator[PlatformSimulator]:
    """Run a simulator whose registration tokens and SAS live two seconds."""
    simulator = PlatformSimulator(
        tmp_path / "short", auto_approve=True, registration_token_ttl=2, sas_ttl=2
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


async def test_token_refresh_and_sas_renewal(short_sim: PlatformSimulator, db_path: Path) -> None:
    """The token is refreshed before expiry and stored; the SAS is renewed by reconnecting."""
    client = await DeviceClient.start(
        "dev-1",
        short_sim.provisioning_token,
        db_path,
        instance=short_sim.instance,
        ca_file=short_sim.ca_file,
        retry_interval=0.2,
        outbox=FAST_OUTBOX,
    )
    try:
        sender = client.create_stream_sender("g", "s")
        await short_sim.wait_for_connection("dev-1", count=3, timeout=10)
        await sender.send_message(b"after renewals", batch_id="b", message_id="1")
    finally:
        await client.close()
    # Only a refreshed (stored) token can still register: the first one expired long ago.
    client = await DeviceClient.start(
        "dev-1",
        short_sim.provisioning_token,
        db_path,
        instance=short_sim.instance,
        ca_file=short_sim.ca_file,
        outbox=FAST_OUTBOX,
    )
    try:
        await wait_connected(client)
    finally:
        await client.close()


async def test_expired_sas_re_registers(client: DeviceClient, sim: PlatformSimulator) -> None:
    """A SAS the broker refuses makes the device register again and reconnect."""
    sim.expire_sas("dev-1")
    await sim.wait_for_connection("dev-1", count=2)
    await client.create_stream_sender().send_message(b"x", batch_id="b", message_id="1")
    assert sim.message_count == 1


async def test_revoked_registration(
    client: DeviceClient, sim: PlatformSimulator, start_client: StartClient
) -> None:
    """Revocation stops the device with a distinct error, and tells the connection listeners;
    the next start provisions again."""
    stopped = asyncio.Event()

    def on_connection(connected: bool) -> None:
        if isinstance(client.last_error, RegistrationTokenRevokedError):
            assert not connected
            stopped.set()

    client.add_connection_listener(on_connection)
    sim.revoke_registration("dev-1")
    async with asyncio.timeout(10):
        await stopped.wait()
    assert not client.connected
    await client.close()
    again = await start_client()
    await wait_connected(again)


async def test_revoked_at_start(
    client: DeviceClient, sim: PlatformSimulator, start_client: StartClient
) -> None:
    """Starting with a revoked registration raises, and forgets the dead credentials."""
    await client.close()
    sim.revoke_registration("dev-1")
    with pytest.raises(RegistrationTokenRevokedError):
        await start_client()
    again = await start_client()
    await wait_connected(again)
