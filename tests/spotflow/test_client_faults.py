"""Client faults: interrupted first starts, SAS renewal, temporary twin and refresh errors, a
full disk in the twin code, a bad CA file and a late twin answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
import contextlib
from pathlib import Path
import threading
from typing import Any

import pytest

from custom_components.crownstone_spotflow.spotflow import (
    DesiredProperties,
    DeviceClient,
    OutboxConfig,
    OutboxStorageError,
    WorkspaceDisabledError,
    topics,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import FAST_OUTBOX, StartClient, wait_connected

REGISTER = "/devices/register"


async def _until(condition: Callable[[], object], timeout: float = 10) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (client state has no public event)
            await asyncio.sleep(0.02)


@pytest.fixture
async def short_sim(
    tmp_path: Path, socket_enabled: None, request: pytest.FixtureRequest
) -> AsyncGenerator[PlatformSimulator]:
    """Run a simulator with the lifetimes the test passes as the fixture's parameter."""
    simulator = PlatformSimulator(tmp_path / "short", auto_approve=True, **request.param)
    await simulator.start()
    yield simulator
    await simulator.stop()


def _start(sim: PlatformSimulator, db: Path, **options: Any) -> Any:
    return DeviceClient.start(
        "dev-1",
        sim.provisioning_token,
        db,
        instance=sim.instance,
        ca_file=sim.ca_file,
        retry_interval=0.2,
        outbox=FAST_OUTBOX,
        **options,
    )


async def test_start_resumes_after_the_first_registration_failed(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """A start that ended between provisioning and the first registration is resumed from the
    stored token, offline first, without provisioning again."""
    sim.inject_api_fault(REGISTER, 423, {"status": 423})
    with pytest.raises(WorkspaceDisabledError):
        await start_client()
    sim.revoke_provisioning_token()  # provisioning again would fail now
    sim.inject_api_fault(REGISTER, 503, count=3)
    client = await start_client()
    assert (client.device_id, client.connected) == ("", False)
    await wait_connected(client)
    assert (client.workspace_id, client.device_id) == ("ws-sim", "dev-1")


@pytest.mark.parametrize("short_sim", [{"sas_ttl": 2}], indirect=True)
async def test_sas_renewal_registers_once_per_reconnect(
    short_sim: PlatformSimulator, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each renewal is one registration and one reconnect, never a reconnect with the old SAS."""
    client = await _start(short_sim, db_path)
    try:
        registrations = 0
        register = client._api.register

        async def counting(token: str) -> Any:
            nonlocal registrations
            registrations += 1
            return await register(token)

        monkeypatch.setattr(client._api, "register", counting)
        await short_sim.wait_for_connection("dev-1", count=3)
        assert registrations == 2
    finally:
        await client.close()


@pytest.mark.parametrize("short_sim", [{"registration_token_ttl": 3}], indirect=True)
async def test_disabled_workspace_during_refresh_is_retried(
    short_sim: PlatformSimulator, db_path: Path
) -> None:
    """A refresh refused by a disabled workspace is shown and retried; the device goes on."""
    client = await _start(short_sim, db_path)
    try:
        await wait_connected(client)
        assert client._token is not None
        token = client._token.token
        short_sim.set_workspace_disabled(True)
        await _until(lambda: isinstance(client.last_error, WorkspaceDisabledError))
        short_sim.set_workspace_disabled(False)
        await _until(lambda: client._token is not None and client._token.token != token)
        await _until(lambda: client.last_error is None)
        assert client.connected
        await client.create_stream_sender().send_message(b"x", batch_id="b", message_id="1")
    finally:
        await client.close()


async def test_reported_patch_kept_on_temporary_errors(
    client: DeviceClient, sim: PlatformSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """429 and 5xx answers keep the patch and its successors, in order, for another try."""
    await client.update_reported_properties({"warm": 1})  # the twin GET is answered by now
    await _until(lambda: not client.any_pending_reported_properties_updates)
    sim.inject_twin_faults(503)
    sim.inject_twin_faults(429)
    await client.update_reported_properties({"mode": "eco"})
    await client.update_reported_properties({"mode": "away"})
    await _until(lambda: not client.any_pending_reported_properties_updates)
    assert sim.reported("dev-1")["mode"] == "away"
    assert "not accepted yet (status 503)" in caplog.text
    assert "not accepted yet (status 429)" in caplog.text
    assert sim.connection_count("dev-1") == 1


async def test_desired_properties_saved_once_the_disk_has_room(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """Desired properties that do not fit on a full disk are saved once sending the reported
    patches frees space; the session stays up."""
    await sim.stop_broker()
    config = OutboxConfig(
        max_database_bytes=96 * 1024, commit_interval=0, pack_linger=0.01, synchronous="NORMAL"
    )
    client = await start_client(outbox=config)
    version = sim.set_desired("dev-1", {"pad": "x" * 20_000})
    for size in (8192, 512, 64):  # fill every page with reported patches
        with contextlib.suppress(OutboxStorageError):
            while True:
                await client.update_reported_properties({"pad": "y" * size})
    await sim.start_broker()
    await _until(lambda: client.get_desired_properties().version == version)
    await _until(lambda: not client.any_pending_reported_properties_updates)
    await _until(lambda: client._saved_desired is client._desired)
    assert sim.connection_count("dev-1") == 1
    await client.close()
    await sim.stop_broker()
    offline = await start_client(outbox=config)
    assert offline.get_desired_properties() == DesiredProperties(version, {"pad": "x" * 20_000})
    await sim.start_broker()


async def test_bad_ca_file_leaves_nothing_open(tmp_path: Path, db_path: Path) -> None:
    """A CA file that cannot be read fails the start before the database is opened."""
    with pytest.raises(FileNotFoundError):
        await DeviceClient.start(
            "dev-1", "token", db_path, instance="127.0.0.1:1", ca_file=tmp_path / "missing.pem"
        )
    assert not db_path.exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("spotflow-outbox")]


async def test_late_twin_answer_does_not_roll_back_desired_properties(
    client: DeviceClient, sim: PlatformSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A patch applied while the twin GET answer was on its way is kept."""
    first = sim.set_desired("dev-1", {"mode": "eco"})
    await _until(lambda: client.get_desired_properties().version == first)
    request = client._twin_request
    patched: list[int] = []

    async def patch_in_flight(session: Any, topic: Any, payload: bytes) -> tuple[int, bytes]:
        answer = await request(session, topic, payload)
        if not patched and topic is topics.twin_get_topic:
            # The hub answered with `first`; a newer patch overtakes the answer.
            patched.append(sim.set_desired("dev-1", {"mode": "away"}))
            await _until(lambda: client.get_desired_properties().version == patched[0])
        return answer

    monkeypatch.setattr(client, "_twin_request", patch_in_flight)
    sim.drop_connection("dev-1")
    await _until(lambda: bool(patched))
    await _until(lambda: not client._refetch_desired and client._saved_desired is client._desired)
    await client.update_reported_properties({"synced": True})  # after the GET was handled
    await _until(lambda: not client.any_pending_reported_properties_updates)
    assert client.get_desired_properties() == DesiredProperties(patched[0], {"mode": "away"})
