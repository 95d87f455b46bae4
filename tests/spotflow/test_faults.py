"""Faults of the platform: malformed and failed HTTPS answers, timeouts, outages during
provisioning, twin failures, CONNACK refusals, and TLS without the platform's CA."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import json
import logging
from pathlib import Path
import signal
import ssl
import sys

import aiohttp
import pytest

from custom_components.crownstone_spotflow.spotflow import (
    DesiredProperties,
    DeviceClient,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    RegistrationTokenRevokedError,
    SpotflowCertificateError,
    SpotflowConnectionError,
    client as client_module,
)
from custom_components.crownstone_spotflow.spotflow.api import PlatformApi
from simulators.spotflow_platform import PlatformSimulator

from .conftest import FAST_OUTBOX, StartClient, wait_connected

INIT = "/provisioning-operations/init"
COMPLETE = "/provisioning-operations/complete"
REGISTER = "/devices/register"
REFRESH = "/devices/registration-tokens/refresh"


async def _until(condition: Callable[[], object], timeout: float = 10) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (client state has no public event)
            await asyncio.sleep(0.02)


def _start(sim: PlatformSimulator, db: Path, **options: object):  # type: ignore[no-untyped-def]
    options.setdefault("ca_file", sim.ca_file)
    return DeviceClient.start(
        "dev-1",
        sim.provisioning_token,
        db,
        instance=sim.instance,
        provisioning_poll_interval=0.05,
        retry_interval=0.1,
        outbox=FAST_OUTBOX,
        **options,  # type: ignore[arg-type]
    )


async def test_malformed_and_failed_answers_are_retried(
    start_client: StartClient, sim: PlatformSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage, incomplete JSON and 5xx from every call are transient: the device gets there."""
    sim.inject_api_fault(INIT, 200, "<html>not json</html>")
    sim.inject_api_fault(INIT, 503, {"title": "Service Unavailable"})
    sim.inject_api_fault(COMPLETE, 200, {"registrationToken": "no expiry"})
    sim.inject_api_fault(COMPLETE, 200, b"[1, 2]")
    sim.inject_api_fault(REGISTER, 200, {"connectionString": "garbage"})
    sim.inject_api_fault(REGISTER, 502, b"")
    client = await start_client()
    await wait_connected(client)
    warnings = caplog.text
    assert "Malformed provisioning response" in warnings
    assert "Provisioning failed with HTTP status 503" in warnings
    assert "Malformed registration response" in warnings
    assert "Registration failed with HTTP status 502" in warnings
    assert sim.device_ids() == ["dev-1"]


async def test_api_errors_and_timeouts(sim: PlatformSimulator) -> None:
    """Each call's answers map to the library's errors; a slow or absent platform times out."""
    context = ssl.create_default_context(cafile=sim.ca_file)
    async with aiohttp.ClientSession() as session:
        api = PlatformApi(session, sim.instance, context, request_timeout=0.2)
        sim.inject_api_fault(INIT, 200, {"provisioningOperationId": "x"}, delay=0.5)
        with pytest.raises(SpotflowConnectionError, match="TimeoutError"):
            await api.init_provisioning(sim.provisioning_token, "dev-1")
        operation = await api.init_provisioning(sim.provisioning_token, "dev-1")
        token = await api.complete_provisioning(sim.provisioning_token, operation.id)
        assert token is not None
        sim.inject_api_fault(REFRESH, 200, {"registrationToken": "t", "expirationTime": "never"})
        with pytest.raises(SpotflowConnectionError, match="Malformed registration token"):
            await api.refresh_token(sim.provisioning_token, token.token)
        for status in (403, 410, 412):
            sim.inject_api_fault(REFRESH, status, {"status": status})
            with pytest.raises(RegistrationTokenRevokedError):
                await api.refresh_token(sim.provisioning_token, token.token)
        with pytest.raises(ProvisioningTokenInvalidError):
            await api.refresh_token("not-the-token", token.token)
        sim.revoke_provisioning_token()
        with pytest.raises(ProvisioningTokenInvalidError):
            await api.complete_provisioning(sim.provisioning_token, operation.id)
        # Nothing listens on the port of a stopped platform.
        await sim.stop()
        with pytest.raises(SpotflowConnectionError, match="Cannot reach the Spotflow platform"):
            await api.register(token.token)


async def test_an_outage_is_logged_once_and_its_end_once(
    start_client: StartClient, sim: PlatformSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Five failed retries make one warning, not five; the recovery one line more."""
    caplog.set_level(logging.INFO, logger=client_module.__name__)
    sim.inject_api_fault(REGISTER, 503, {"title": "Service Unavailable"}, count=5)
    client = await start_client()
    await wait_connected(client)
    ours = [r for r in caplog.records if r.name == client_module.__name__]
    warnings = [r.getMessage() for r in ours if r.levelno >= logging.WARNING]
    assert warnings == [
        "Reaching the Spotflow platform failed, retrying until it works: "
        "Registration failed with HTTP status 503"
    ]
    assert sum(r.getMessage() == "Reaching the Spotflow platform works again" for r in ours) == 1


async def test_provisioning_survives_platform_restarts(
    tmp_path: Path, socket_enabled: None, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Down at start, down again while waiting for approval: the approval still completes."""
    data_dir = tmp_path / "platform"
    first = PlatformSimulator(data_dir, operation_ttl=60)
    await first.start()
    api_port, mqtt_port = int(first.instance.rpartition(":")[2]), first.mqtt_port
    await first.stop()

    task = asyncio.create_task(_start(first, db_path))
    await _until(lambda: "Reaching the Spotflow platform failed, retrying" in caplog.text)
    second = PlatformSimulator(data_dir, operation_ttl=60, api_port=api_port, mqtt_port=mqtt_port)
    await second.start()
    operation = await second.wait_for_operation()
    await second.stop()
    caplog.clear()
    await _until(lambda: "Provisioning not completed yet" in caplog.text)
    assert not task.done()
    third = PlatformSimulator(data_dir, operation_ttl=60, api_port=api_port, mqtt_port=mqtt_port)
    await third.start()
    try:
        assert third.pending_operations() == [operation]
        third.approve(operation.id, device_id="after-restarts")
        async with asyncio.timeout(10):
            client = await task
        try:
            assert client.device_id == "after-restarts"
            await wait_connected(client)
        finally:
            await client.close()
    finally:
        await third.stop()


async def test_operation_expires_while_the_platform_fails(
    tmp_path: Path, socket_enabled: None, db_path: Path
) -> None:
    """The device gives up on its own once the operation's expiry passed."""
    sim = PlatformSimulator(tmp_path / "platform", operation_ttl=0.5)
    await sim.start()
    try:
        sim.inject_api_fault(COMPLETE, 503, count=1000)
        with pytest.raises(ProvisioningOperationExpiredError):
            await _start(sim, db_path)
    finally:
        await sim.stop()


async def test_refused_registration_is_refreshed_and_retried(
    client: DeviceClient, sim: PlatformSimulator
) -> None:
    """Register 401 with a still valid token: refresh it once, register again, reconnect."""
    assert client._token is not None
    old_token = client._token.token
    sim.inject_api_fault(REGISTER, 401, {"status": 401})
    sim.expire_sas("dev-1")
    await sim.wait_for_connection("dev-1", count=2)
    assert client._token.token != old_token
    await client.create_stream_sender().send_message(b"x", batch_id="b", message_id="1")


async def test_refresh_loop_retries_then_stops_when_revoked(
    tmp_path: Path, socket_enabled: None, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed refresh is retried; a revoked token stops the device and forgets it."""
    sim = PlatformSimulator(tmp_path / "platform", auto_approve=True, registration_token_ttl=1)
    await sim.start()
    try:
        sim.inject_api_fault(REFRESH, 503)
        sim.inject_api_fault(REFRESH, 412, {"status": 412})
        client = await _start(sim, db_path)
        try:
            await wait_connected(client)
            await _until(lambda: isinstance(client.last_error, RegistrationTokenRevokedError))
            assert "Refreshing the registration token failed, retrying" in caplog.text
            await wait_connected(client, connected=False)
        finally:
            await client.close()
        # The dead credentials were forgotten: the next start provisions again.
        client = await _start(sim, db_path)
        await client.close()
        assert len(sim.device_ids()) == 1
    finally:
        await sim.stop()


async def test_twin_failures(
    start_client: StartClient,
    sim: PlatformSimulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Non-200, malformed and missing twin answers: stored values stay, the device recovers."""
    monkeypatch.setattr(client_module, "_TWIN_TIMEOUT", 0.3)
    client = await start_client()
    await wait_connected(client)
    version = sim.set_desired("dev-1", {"mode": "eco"})
    await _until(lambda: client.get_desired_properties().version == version)
    await client.close()

    sim.inject_twin_faults(None)  # unanswered: asked again later, delivery goes on meanwhile
    sim.inject_twin_faults(500)  # answered with an error: the session goes on
    client = await start_client()
    await client.create_stream_sender().enqueue_record(b'{"during": "twin timeout"}')
    await sim.wait_for_messages(1)
    await _until(lambda: "Twin request failed (status 500" in caplog.text)
    assert "The device twin did not answer" in caplog.text
    assert sim.connection_count("dev-1") == 2
    sim.inject_twin_faults(200, body=b"{not json")
    sim.drop_connection("dev-1")
    await sim.wait_for_connection("dev-1", count=3)
    await _until(lambda: "Twin request failed (status 200" in caplog.text)
    assert client.connected
    assert client.get_desired_properties() == DesiredProperties(version, {"mode": "eco"})
    # Reported properties the hub refuses are dropped, not retried forever.
    sim.inject_twin_faults(400)
    await client.update_reported_properties({"refused": True})
    await _until(lambda: not client.any_pending_reported_properties_updates)
    assert "Reported properties refused with status 400" in caplog.text
    assert "refused" not in sim.reported("dev-1")
    await client.update_reported_properties({"accepted": True})
    await _until(lambda: sim.reported("dev-1").get("accepted"))


async def test_callback_errors_and_cloud_messages_are_contained(
    start_client: StartClient, sim: PlatformSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing callback is logged; a cloud-to-device message does not upset the session."""
    calls: list[DesiredProperties] = []

    def failing(desired: DesiredProperties) -> None:
        calls.append(desired)
        raise RuntimeError("callback bug")

    client = await start_client(desired_properties_updated_callback=failing)
    await wait_connected(client)
    sim.send_to_device("dev-1", b"hello device")
    version = sim.set_desired("dev-1", {"a": 1})
    await _until(lambda: calls and calls[-1].version == version)
    assert "Error in the desired properties callback" in caplog.text
    assert client.connected
    assert sim.connection_count("dev-1") == 1


async def test_connack_refusals_are_retried_without_registering(
    start_client: StartClient, sim: PlatformSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """CONNACK 3 (server unavailable) is retried with the same SAS."""
    caplog.set_level(logging.DEBUG, "custom_components.crownstone_spotflow.spotflow")
    sim.refuse_connections(3, count=2)
    client = await start_client()
    await wait_connected(client)
    assert caplog.text.count("The broker refused the connection") == 2
    assert "refused the device's credentials" not in caplog.text
    assert sim.connection_count("dev-1") == 1


async def test_tls_needs_the_platform_ca(
    tmp_path: Path, socket_enabled: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the extra CA the platform's certificate is refused at once: verification stays on.

    The platform runs in its own process: an in-process server would report each refused
    handshake to this test's event loop.
    """
    platform = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.spotflow_platform",
        "--mqtt-port",
        "0",
        "--data-dir",
        str(tmp_path / "platform"),
        cwd=Path(__file__).parents[2],
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert platform.stdout is not None
        ready = json.loads(await asyncio.wait_for(platform.stdout.readline(), 20))
        # Retrying cannot help: provisioning stops at once, so a form can say what to do.
        with pytest.raises(SpotflowCertificateError):
            await DeviceClient.start(
                "dev-1",
                ready["provisioning_token"],
                tmp_path / "device.db",
                instance=ready["instance"],
                retry_interval=0.1,
                outbox=FAST_OUTBOX,
            )
    finally:
        platform.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(platform.wait(), 20) == 0


async def test_callers_websession_is_left_open(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """A websession passed in is used and not closed by the client."""
    async with aiohttp.ClientSession() as session:
        client = await start_client(websession=session)
        await wait_connected(client)
        await client.close()
        assert not session.closed
