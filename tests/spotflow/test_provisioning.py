"""Provisioning, registration, token refresh, SAS renewal, revocation and offline starts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Coroutine
from pathlib import Path
from typing import Any

import pytest

from custom_components.crownstone_spotflow.spotflow import (
    DeviceClient,
    ProvisioningOperation,
    ProvisioningOperationCancelledError,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    WorkspaceDisabledError,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import FAST_OUTBOX, StartClient, wait_connected


@pytest.fixture
async def manual_sim(tmp_path: Path, socket_enabled: None) -> AsyncGenerator[PlatformSimulator]:
    """Run a simulator where a person approves provisioning."""
    simulator = PlatformSimulator(tmp_path / "manual", operation_ttl=30)
    await simulator.start()
    yield simulator
    await simulator.stop()


def _start(
    sim: PlatformSimulator, db: Path, device_id: str = "dev-1", **options: object
) -> Coroutine[Any, Any, DeviceClient]:
    return DeviceClient.start(
        device_id,
        sim.provisioning_token,
        db,
        instance=sim.instance,
        ca_file=sim.ca_file,
        provisioning_poll_interval=0.05,
        retry_interval=0.2,
        outbox=FAST_OUTBOX,
        **options,  # type: ignore[arg-type]
    )


async def test_approved_with_device_id_override(
    manual_sim: PlatformSimulator, db_path: Path
) -> None:
    """The operation is shown, approved under another ID, and the final ID comes back."""
    shown: list[ProvisioningOperation] = []
    task = asyncio.create_task(
        _start(manual_sim, db_path, display_provisioning_operation_callback=shown.append)
    )
    operation = await manual_sim.wait_for_operation()
    manual_sim.approve(operation.id, device_id="kitchen-hub")
    client = await task
    assert shown == [
        ProvisioningOperation(operation.id, operation.verification_code, shown[0].expiration_time)
    ]
    try:
        assert (client.workspace_id, client.device_id) == ("ws-sim", "kitchen-hub")
        await wait_connected(client)
        assert manual_sim.connected_devices() == {"kitchen-hub"}
    finally:
        await client.close()
    # Later starts use the stored registration, under the requested or the approved ID.
    for count, device_id in enumerate(("dev-1", "kitchen-hub"), start=2):
        client = await _start(manual_sim, db_path, device_id)
        try:
            assert client.device_id == "kitchen-hub"
            assert manual_sim.pending_operations() == []
            await wait_connected(client)
            assert manual_sim.connection_count("kitchen-hub") == count
        finally:
            await client.close()


async def test_records_kept_while_waiting_for_approval(
    manual_sim: PlatformSimulator, db_path: Path
) -> None:
    """The outbox takes records before the device is approved; a cancel keeps them on disk."""
    ready: list[DeviceClient] = []
    task = asyncio.create_task(_start(manual_sim, db_path, outbox_ready_callback=ready.append))
    operation = await manual_sim.wait_for_operation()
    assert len(ready) == 1
    ready[0].create_stream_sender().enqueue_record_nowait(b'{"n":1}')
    manual_sim.cancel(operation.id)
    with pytest.raises(ProvisioningOperationCancelledError):
        await task

    task = asyncio.create_task(_start(manual_sim, db_path))
    manual_sim.approve((await manual_sim.wait_for_operation()).id)
    client = await task
    try:
        await client.wait_enqueued_messages_sent()
        assert [message.payload for message in manual_sim.messages("dev-1")] == [b'{"n":1}']
    finally:
        await client.close()


async def test_cancelled(manual_sim: PlatformSimulator, db_path: Path) -> None:
    """A cancelled operation is a distinct error."""
    task = asyncio.create_task(_start(manual_sim, db_path))
    manual_sim.cancel((await manual_sim.wait_for_operation()).id)
    with pytest.raises(ProvisioningOperationCancelledError):
        await task


async def test_expired(manual_sim: PlatformSimulator, db_path: Path) -> None:
    """An expired operation is a distinct error."""
    task = asyncio.create_task(_start(manual_sim, db_path))
    manual_sim.expire_operation((await manual_sim.wait_for_operation()).id)
    with pytest.raises(ProvisioningOperationExpiredError):
        await task


async def test_waiting_is_cancellable(manual_sim: PlatformSimulator, db_path: Path) -> None:
    """Cancelling the task stops waiting for approval at once."""
    task = asyncio.create_task(_start(manual_sim, db_path))
    await manual_sim.wait_for_operation()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_bad_provisioning_token(start_client: StartClient) -> None:
    """A rejected provisioning token is a distinct error."""
    with pytest.raises(ProvisioningTokenInvalidError):
        await start_client(provisioning_token="not-the-token")


async def test_workspace_disabled(start_client: StartClient, sim: PlatformSimulator) -> None:
    """A disabled workspace is a distinct error."""
    sim.set_workspace_disabled(True)
    with pytest.raises(WorkspaceDisabledError):
        await start_client()


async def test_offline_start_delivers_when_the_platform_returns(
    tmp_path: Path, socket_enabled: None, db_path: Path
) -> None:
    """A provisioned device starts without the platform and delivers once it is back."""
    first = PlatformSimulator(tmp_path / "platform", auto_approve=True)
    await first.start()
    client = await _start(first, db_path)
    instance, mqtt_port, token = first.instance, first.mqtt_port, first.provisioning_token
    api_port = int(instance.rpartition(":")[2])
    await client.close()
    await first.stop()

    client = await DeviceClient.start(
        "dev-1",
        token,
        db_path,
        instance=instance,
        ca_file=tmp_path / "platform" / "ca.pem",
        retry_interval=0.2,
        outbox=FAST_OUTBOX,
    )
    second: PlatformSimulator | None = None
    try:
        assert (client.device_id, client.workspace_id, client.connected) == (
            "dev-1",
            "ws-sim",
            False,
        )
        sender = client.create_stream_sender("g", "s")
        await sender.enqueue_records([b'{"n": %d}' % n for n in range(100)])
        assert client.pending_messages_count == 100
        second = PlatformSimulator(
            tmp_path / "platform", auto_approve=True, api_port=api_port, mqtt_port=mqtt_port
        )
        await second.start()
        async with asyncio.timeout(10):
            await client.wait_enqueued_messages_sent()
        lines = [line for m in second.messages("dev-1") for line in m.payload.split(b"\n")]
        assert lines == [b'{"n": %d}' % n for n in range(100)]
    finally:
        await client.close()
        if second is not None:
            await second.stop()
