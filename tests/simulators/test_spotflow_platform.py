"""The Spotflow platform simulator over real HTTPS and MQTT over TLS, with plain clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import json
from pathlib import Path
import re
import signal
import ssl
import sys
from typing import Any

import aiohttp
import brotli
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
import pytest

from simulators.spotflow_platform import PlatformSimulator
from simulators.spotflow_platform.sas import create_sas, parse_sas
from simulators.spotflow_platform.workspace import merge_patch, timespan

TIMEOUT = 5.0
CANCELLED = "/problems/deviceProvisioning/provisioningOperationCancelled"


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[PlatformSimulator]:
    """A started simulator on ephemeral ports."""
    simulator = PlatformSimulator(tmp_path / "platform")
    await simulator.start()
    yield simulator
    await simulator.stop()


class Api:
    """The device HTTPS API, verified against the simulator's CA."""

    def __init__(self, http: aiohttp.ClientSession, sim: PlatformSimulator) -> None:
        self.http = http
        self.sim = sim
        self.ssl = ssl.create_default_context(cafile=sim.ca_file)

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"DeviceToken {token}"} if token else {}
        async with self.http.request(
            method, f"https://{self.sim.instance}{path}", json=body, headers=headers, ssl=self.ssl
        ) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def init(self, device_id: str | None = "dev-1", token: str | None = None) -> Any:
        body = {} if device_id is None else {"deviceId": device_id}
        return await self.call(
            "POST", "/provisioning-operations/init", token or self.sim.provisioning_token, body
        )

    async def complete(self, operation_id: str) -> tuple[int, Any]:
        return await self.call(
            "PUT",
            "/provisioning-operations/complete",
            self.sim.provisioning_token,
            {"provisioningOperationId": operation_id},
        )

    async def register(self, registration_token: str) -> tuple[int, Any]:
        return await self.call(
            "PUT",
            "/devices/register",
            registration_token,
            {"connectionStringType": "SharedAccessSignature"},
        )

    async def refresh(self, registration_token: str) -> tuple[int, Any]:
        return await self.call(
            "PUT",
            "/devices/registration-tokens/refresh",
            self.sim.provisioning_token,
            {"registrationToken": registration_token},
        )

    async def provision(self, device_id: str = "dev-1") -> str:
        """Provision with approval; return the registration token."""
        status, operation = await self.init(device_id)
        assert status == 200
        self.sim.approve(operation["provisioningOperationId"])
        status, body = await self.complete(operation["provisioningOperationId"])
        assert status == 200
        return str(body["registrationToken"])

    async def credentials(self, device_id: str = "dev-1") -> Credentials:
        """Provision and register; return what a device needs for MQTT."""
        registration_token = await self.provision(device_id)
        status, body = await self.register(registration_token)
        assert status == 200
        return Credentials.parse(body, registration_token)


class Credentials:
    """MQTT identity from a registration answer."""

    def __init__(self, hub: str, client_id: str, sas: str, registration_token: str) -> None:
        self.hub = hub
        self.client_id = client_id
        self.sas = sas
        self.registration_token = registration_token

    @classmethod
    def parse(cls, body: dict[str, Any], registration_token: str) -> Credentials:
        fields = dict(part.split("=", 1) for part in body["connectionString"].split(";"))
        assert fields["HostName"] == body["iotHubHostName"]
        return cls(
            body["iotHubHostName"],
            fields["DeviceId"],
            fields["SharedAccessSignature"],
            registration_token,
        )

    @property
    def username(self) -> str:
        return f"{self.hub}/{self.client_id}/?api-version=2018-06-30"


class Device:
    """A plain paho-mqtt client (its network loop in a thread) with awaitable acks."""

    def __init__(
        self,
        sim: PlatformSimulator,
        client_id: str,
        username: str,
        password: str,
    ) -> None:
        self.sim = sim
        self.client_id = client_id
        self.loop = asyncio.get_running_loop()
        # None when no CONNACK came (connection refused or closed)
        self.connack: asyncio.Future[ReasonCode | None] = self.loop.create_future()
        self.disconnected = asyncio.Event()
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.acks: dict[int, asyncio.Future[Any]] = {}
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.username_pw_set(username, password)
        client.tls_set_context(ssl.create_default_context(cafile=sim.ca_file))
        client.on_connect = lambda _c, _u, _f, code, _p: self._soon(self._on_connack, code)
        client.on_connect_fail = lambda *_: self._soon(self._on_connack, None)
        client.on_disconnect = lambda *_: self._soon(self._on_disconnect)
        client.on_message = lambda _c, _u, message: self._soon(
            self.messages.put_nowait, (message.topic, message.payload)
        )
        client.on_publish = lambda _c, _u, mid, _r, _p: self._soon(self._ack, mid, None)
        client.on_subscribe = lambda _c, _u, mid, codes, _p: self._soon(self._ack, mid, codes)
        self.client = client

    def _soon(self, callback: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(callback, *args)

    def _on_connack(self, code: ReasonCode | None) -> None:
        if not self.connack.done():
            self.connack.set_result(code)

    def _on_disconnect(self) -> None:
        self._on_connack(None)
        self.disconnected.set()

    def _ack(self, mid: int, result: Any) -> None:
        self.acks.setdefault(mid, self.loop.create_future()).set_result(result)

    async def connect(self) -> ReasonCode | None:
        host, port = self.sim.hub_host.split(":")
        self.client.connect_async(host, int(port), keepalive=300)
        self.client.loop_start()
        return await asyncio.wait_for(self.connack, TIMEOUT)

    def _pending(self, mid: int) -> asyncio.Future[Any]:
        return self.acks.setdefault(mid, self.loop.create_future())

    def publish_nowait(self, topic: str, payload: bytes = b"") -> asyncio.Future[Any]:
        """Publish at QoS 1; the future resolves on PUBACK."""
        return self._pending(self.client.publish(topic, payload, qos=1).mid)

    async def publish(self, topic: str, payload: bytes = b"") -> None:
        await asyncio.wait_for(self.publish_nowait(topic, payload), TIMEOUT)

    async def subscribe(self, *topics: str) -> list[ReasonCode]:
        _, mid = self.client.subscribe([(topic, 1) for topic in topics])
        assert mid is not None
        codes: list[ReasonCode] = await asyncio.wait_for(self._pending(mid), TIMEOUT)
        return codes

    async def receive(self) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)

    def events_topic(self, bag: str) -> str:
        return f"devices/{self.client_id}/messages/events/{bag}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def api(sim: PlatformSimulator, http: aiohttp.ClientSession) -> Api:
    """The device API client."""
    return Api(http, sim)


@pytest.fixture
async def devices(sim: PlatformSimulator) -> AsyncIterator[list[Device]]:
    """Every MQTT client a test opens, closed (threads joined) at the end."""
    opened: list[Device] = []
    yield opened
    for device in opened:
        device.close()


@pytest.fixture
def open_device(sim: PlatformSimulator, devices: list[Device]) -> Any:
    """Create an MQTT client for credentials, optionally with a changed username or password."""

    def create(
        credentials: Credentials,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> Device:
        device = Device(
            sim,
            client_id or credentials.client_id,
            username or credentials.username,
            password or credentials.sas,
        )
        devices.append(device)
        return device

    return create


async def connected(open_device: Any, credentials: Credentials) -> Device:
    device: Device = open_device(credentials)
    assert str(await device.connect()) == "Success"
    await device.subscribe("$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#")
    return device


# --- HTTPS: provisioning, registration, refresh


async def test_provisioning_waits_for_approval_with_device_id_override(
    sim: PlatformSimulator, api: Api
) -> None:
    status, operation = await api.init("asked-for")
    assert status == 200
    assert set(operation) == {"provisioningOperationId", "verificationCode", "expirationTime"}
    pending = await sim.wait_for_operation()
    assert pending.id == operation["provisioningOperationId"]
    assert pending.verification_code == operation["verificationCode"]
    assert pending.device_id == "asked-for"

    assert (await api.complete(pending.id))[0] == 202
    sim.approve(pending.id, device_id="overridden")
    status, completed = await api.complete(pending.id)
    assert status == 200
    assert set(completed) == {"registrationToken", "expirationTime"}
    assert sim.pending_operations() == []

    status, registration = await api.register(completed["registrationToken"])
    assert status == 200
    assert registration["iotHubHostName"] == sim.hub_host == f"127.0.0.1:{sim.mqtt_port}"
    assert registration["connectionStringType"] == "SharedAccessSignature"
    assert "DeviceId=ws-sim:overridden;SharedAccessSignature=" in registration["connectionString"]
    assert re.fullmatch(r"6\.23:59:5\d\.\d{7}", registration["tokenRemainingLifetime"])
    assert registration["connectionStringExpiration"].endswith("Z")


async def test_provisioning_cancelled_expired_and_unknown(sim: PlatformSimulator, api: Api) -> None:
    _, first = await api.init()
    sim.cancel(first["provisioningOperationId"])
    status, problem = await api.complete(first["provisioningOperationId"])
    assert status == 410
    assert problem["type"] == CANCELLED
    assert problem["instance"] == "/provisioning-operations/complete"

    _, second = await api.init()
    sim.expire_operation(second["provisioningOperationId"])
    status, problem = await api.complete(second["provisioningOperationId"])
    assert status == 410
    assert problem["type"] != CANCELLED
    with pytest.raises(ValueError, match="expired"):
        sim.approve(second["provisioningOperationId"])

    assert (await api.complete("no-such-operation"))[0] == 404


async def test_provisioning_operation_lifetime(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = PlatformSimulator(tmp_path, operation_ttl=0)
    await sim.start()
    try:
        api = Api(http, sim)
        _, operation = await api.init()
        status, problem = await api.complete(operation["provisioningOperationId"])
        assert (status, problem["status"]) == (410, 410)
        assert sim.pending_operations() == []
    finally:
        await sim.stop()


async def test_provisioning_refusals(sim: PlatformSimulator, api: Api) -> None:
    status, problem = await api.init(token="wrong")
    assert status == 401
    assert set(problem) == {"type", "title", "status", "detail", "instance"}
    assert "wrong" not in json.dumps(problem)
    assert (await api.call("POST", "/provisioning-operations/init", None, {}))[0] == 401
    assert (await api.init("no"))[0] == 400  # device IDs have 4 to 90 characters

    sim.set_workspace_disabled(True)
    assert (await api.init())[0] == 423
    sim.set_workspace_disabled(False)
    assert (await api.init())[0] == 200

    sim.revoke_provisioning_token()
    assert (await api.init())[0] == 401


async def test_auto_approve_names_a_device(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = PlatformSimulator(tmp_path, auto_approve=True, provisioning_token="given")
    await sim.start()
    try:
        assert sim.provisioning_token == "given"
        api = Api(http, sim)
        _, operation = await api.init(device_id=None)
        status, body = await api.complete(operation["provisioningOperationId"])
        assert status == 200
        assert (await api.register(body["registrationToken"]))[0] == 200
        assert sim.device_ids()[0].startswith("device-")
    finally:
        await sim.stop()


async def test_auto_approve_after_a_delay(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """A delayed approval leaves the verification code on screen for a while, as in real life."""
    sim = PlatformSimulator(tmp_path, auto_approve=True, auto_approve_delay=1.0)
    await sim.start()
    try:
        api = Api(http, sim)
        _, operation = await api.init()
        operation_id = operation["provisioningOperationId"]
        assert (await api.complete(operation_id))[0] == 202
        assert [pending.id for pending in sim.pending_operations()] == [operation_id]
        async with asyncio.timeout(TIMEOUT):
            while sim.pending_operations():  # noqa: ASYNC110 (approved on the simulator's timer)
                await asyncio.sleep(0.01)
        assert (await api.complete(operation_id))[0] == 200
    finally:
        await sim.stop()


async def test_refresh_and_its_refusals(sim: PlatformSimulator, api: Api) -> None:
    token = await api.provision()
    status, refreshed = await api.refresh(token)
    assert status in (200, 201)
    assert refreshed["registrationToken"] != token
    assert (await api.register(refreshed["registrationToken"]))[0] == 200

    assert (await api.refresh("unknown"))[0] == 403
    assert (await api.register("unknown"))[0] == 401

    sim.revoke_registration("dev-1")
    assert (await api.refresh(refreshed["registrationToken"]))[0] == 412
    assert (await api.register(refreshed["registrationToken"]))[0] == 401


async def test_expired_registration_token(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = PlatformSimulator(tmp_path, registration_token_ttl=0)
    await sim.start()
    try:
        api = Api(http, sim)
        token = await api.provision()
        assert (await api.refresh(token))[0] == 410
        assert (await api.register(token))[0] == 401
    finally:
        await sim.stop()


# --- MQTT: authentication


async def test_mqtt_accepts_valid_sas_and_refuses_the_rest(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    credentials = await api.credentials()
    other = await api.credentials("dev-2")
    tampered = credentials.sas.replace("sig=", "sig=A")
    refusals = [
        {"password": tampered},
        {"password": other.sas},
        {"username": credentials.username.replace("2018-06-30", "2016-11-14")},
        {"client_id": other.client_id},
        {"password": "not a SAS"},
    ]
    for change in refusals:
        code = await open_device(credentials, **change).connect()
        assert str(code) == "Not authorized", change

    assert str(await open_device(credentials).connect()) == "Success"
    await sim.wait_for_connection("dev-1")
    assert sim.connected_devices() == {"dev-1"}
    assert sim.connection_count("dev-1") == 1


async def test_expire_sas_drops_and_refuses_until_registered_again(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    credentials = await api.credentials()
    device = await connected(open_device, credentials)
    sim.expire_sas("dev-1")
    await asyncio.wait_for(device.disconnected.wait(), TIMEOUT)
    await sim.wait_for_disconnection("dev-1")
    assert str(await open_device(credentials).connect()) == "Not authorized"

    _, registration = await api.register(credentials.registration_token)
    fresh = Credentials.parse(registration, credentials.registration_token)
    await connected(open_device, fresh)
    assert sim.connection_count("dev-1") == 2


async def test_revoked_registration_drops_the_connection(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    credentials = await api.credentials()
    device = await connected(open_device, credentials)
    sim.revoke_registration("dev-1")
    await asyncio.wait_for(device.disconnected.wait(), TIMEOUT)
    assert str(await open_device(credentials).connect()) == "Not authorized"


async def test_connection_dropped_when_sas_expires(
    tmp_path: Path, http: aiohttp.ClientSession, open_device: Any
) -> None:
    sim = PlatformSimulator(tmp_path, sas_ttl=1)
    await sim.start()
    try:
        credentials = await Api(http, sim).credentials()
        device = Device(sim, credentials.client_id, credentials.username, credentials.sas)
        try:
            assert str(await device.connect()) == "Success"
            await asyncio.wait_for(device.disconnected.wait(), 3)
        finally:
            device.close()
    finally:
        await sim.stop()


# --- MQTT: stream messages


async def test_stream_messages_are_stored_decoded_and_deduplicated(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    device = await connected(open_device, await api.credentials())
    records = b'{"entity_id": "light.a", "state": "on"}\n' * 50
    bag = "stream-group-name=home&stream-name=states&batch-id=2026-11-22&message-id=e%2F1"
    await device.publish(
        device.events_topic(f"{bag}&content-encoding=br"), brotli.compress(records)
    )
    await device.publish(
        device.events_topic(f"{bag}&content-encoding=br"), brotli.compress(records)
    )
    await device.publish(
        device.events_topic("batch-id=b&batch-slice-id=s1&message-id=m&chunk-id=0"), b"plain"
    )

    stored = sim.messages(stream="states")
    assert len(stored) == 1
    assert stored[0].payload == records
    assert stored[0].compressed
    assert (stored[0].stream_group, stored[0].batch_id, stored[0].message_id) == (
        "home",
        "2026-11-22",
        "e/1",
    )
    assert sim.duplicate_count == 1
    assert sim.message_count == 2
    defaulted = sim.messages("dev-1", "default-group", "default-stream")
    assert [(m.batch_slice_id, m.chunk_id, m.payload) for m in defaulted] == [("s1", "0", b"plain")]
    await sim.wait_for_messages(2, device_id="dev-1")
    stats = sim.stats()
    assert (stats["messages"], stats["duplicates"], stats["bytes"]) == (2, 1, len(records) + 5)
    assert stats["devices"] == {"dev-1": 2}


async def test_completions_and_dead_letters(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    device = await connected(open_device, await api.credentials())
    await device.publish(device.events_topic("batch-id=b1&complete-batch=true&ignore-payload=true"))
    await device.publish(
        device.events_topic(
            "stream-name=s&batch-id=b1&message-id=m1&complete-message=true&ignore-payload=true"
        )
    )
    await device.publish(device.events_topic("stream-name=s"), b"no ids")
    await device.publish(device.events_topic("batch-id=b&message-id=m&content-encoding=br"), b"x")

    assert sim.completions == [
        ("batch", "dev-1", "default-group", "default-stream", "b1"),
        ("message", "dev-1", "default-group", "s", "b1", "m1"),
    ]
    letters = sim.dead_letters
    assert [letter.payload for letter in letters] == [b"no ids", b"x"]
    assert sim.message_count == 0


async def test_message_to_another_device_is_refused_unacknowledged(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    await api.credentials("dev-2")
    device = await connected(open_device, await api.credentials())
    assert [code.is_failure for code in await device.subscribe("devices/ws-sim:dev-2/#")] == [True]
    assert [code.is_failure for code in await device.subscribe("#")] == [True]

    ack = device.publish_nowait(
        "devices/ws-sim:dev-2/messages/events/batch-id=b&message-id=m", b"x"
    )
    await asyncio.wait_for(device.disconnected.wait(), TIMEOUT)
    assert not ack.done()
    assert sim.message_count == 0


async def test_oversized_message_is_not_acknowledged(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    device = await connected(open_device, await api.credentials())
    await device.publish(device.events_topic("batch-id=b&message-id=1"), bytes(250_000))
    ack = device.publish_nowait(device.events_topic("batch-id=b&message-id=2"), bytes(250_001))
    await asyncio.wait_for(device.disconnected.wait(), TIMEOUT)
    assert not ack.done()
    assert sim.message_count == 1


# --- MQTT: twin


async def test_twin_get_reported_patch_and_desired_patch(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    device = await connected(open_device, await api.credentials())
    await device.publish("$iothub/twin/GET/?$rid=1")
    topic, body = await device.receive()
    assert topic == "$iothub/twin/res/200/?$rid=1"
    assert json.loads(body) == {"desired": {"$version": 1}, "reported": {"$version": 1}}

    await device.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=2", b'{"state": {"a": 1, "b": 2}}'
    )
    assert await device.receive() == ("$iothub/twin/res/204/?$rid=2&$version=2", b"")
    await device.publish(
        "$iothub/twin/PATCH/properties/reported/?$rid=3", b'{"state": {"a": null}}'
    )
    assert await device.receive() == ("$iothub/twin/res/204/?$rid=3&$version=3", b"")
    assert sim.reported("dev-1") == {"state": {"b": 2}, "$version": 3}

    await device.publish("$iothub/twin/PATCH/properties/reported/?$rid=4", b"[not json")
    assert (await device.receive())[0] == "$iothub/twin/res/400/?$rid=4"

    assert sim.set_desired("dev-1", {"interval": 5, "filter": {"domains": ["light"]}}) == 2
    topic, body = await device.receive()
    assert topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert json.loads(body) == {"interval": 5, "filter": {"domains": ["light"]}, "$version": 2}
    assert sim.desired("dev-1") == {"interval": 5, "filter": {"domains": ["light"]}, "$version": 2}


async def test_desired_patch_goes_only_to_its_device(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    first = await connected(open_device, await api.credentials())
    second = await connected(open_device, await api.credentials("dev-2"))
    sim.set_desired("dev-2", {"x": 1})
    assert (await second.receive())[0].endswith("?$version=2")
    await first.publish("$iothub/twin/GET/?$rid=9")
    assert (await first.receive())[0] == "$iothub/twin/res/200/?$rid=9"


# --- broker restart and persistence


async def test_broker_restart_keeps_port_and_data(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    credentials = await api.credentials()
    device = await connected(open_device, credentials)
    await device.publish(device.events_topic("batch-id=b&message-id=1"), b"before")
    port = sim.mqtt_port

    await sim.stop_broker()
    await asyncio.wait_for(device.disconnected.wait(), TIMEOUT)
    assert sim.connected_devices() == set()
    assert await open_device(credentials).connect() is None

    await sim.start_broker()
    assert sim.mqtt_port == port
    again = await connected(open_device, credentials)
    await again.publish(again.events_topic("batch-id=b&message-id=1"), b"before")
    await again.publish(again.events_topic("batch-id=b&message-id=2"), b"after")
    assert [m.payload for m in sim.messages()] == [b"before", b"after"]
    assert sim.duplicate_count == 1


async def test_broker_stop_cuts_connections_not_yet_established(
    sim: PlatformSimulator,
) -> None:
    """Neither a device in its TLS handshake nor one yet to send CONNECT holds the stop up."""
    _, in_handshake = await asyncio.open_connection("127.0.0.1", sim.mqtt_port)
    tls = ssl.create_default_context(cafile=sim.ca_file)
    reader, before_connect = await asyncio.open_connection("127.0.0.1", sim.mqtt_port, ssl=tls)
    async with asyncio.timeout(TIMEOUT):
        await sim.stop_broker()
        with contextlib.suppress(ConnectionResetError):  # the hub cuts, it does not hang up
            assert await reader.read() == b""
    for writer in (in_handshake, before_connect):
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def test_data_dir_survives_a_restart(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    first = PlatformSimulator(tmp_path)
    await first.start()
    api = Api(http, first)
    credentials = await api.credentials()
    first.set_desired("dev-1", {"a": 1})
    token, ca = first.provisioning_token, first.ca_file.read_bytes()
    await first.stop()

    second = PlatformSimulator(tmp_path)
    await second.start()
    try:
        assert second.provisioning_token == token
        assert second.ca_file.read_bytes() == ca
        assert second.desired("dev-1") == {"a": 1, "$version": 2}
        api.sim = second
        assert (await api.register(credentials.registration_token))[0] == 200
    finally:
        await second.stop()


# --- control server and standalone runner


async def test_control_endpoints(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    sim = PlatformSimulator(tmp_path, control_port=0)
    await sim.start()
    try:
        api = Api(http, sim)
        _, operation = await api.init()
        control = f"{sim.control_url}/_control"
        async with http.get(f"{control}/operations") as response:
            assert [op["id"] for op in await response.json()] == [
                operation["provisioningOperationId"]
            ]
        approve = f"{control}/operations/{operation['provisioningOperationId']}/approve"
        async with http.post(approve, json={"deviceId": "from-portal"}) as response:
            assert response.status == 200
        async with http.post(approve) as response:
            assert response.status == 400
        async with http.post(f"{control}/devices/from-portal/desired", json={"a": 1}) as response:
            assert await response.json() == {"version": 2}
        async with http.post(f"{control}/devices/nobody/desired", json={}) as response:
            assert response.status == 404
        async with http.get(f"{control}/devices") as response:
            assert (await response.json())[0]["desired"] == {"a": 1, "$version": 2}
        async with http.post(f"{control}/broker/stop") as response:
            assert await response.json() == {"running": False}
        async with http.post(f"{control}/broker/start") as response:
            assert await response.json() == {"running": True}
        async with http.get(f"{control}/stats") as response:
            assert (await response.json())["messages"] == 0
        async with http.get(f"{control}/messages?limit=5") as response:
            assert await response.json() == []
        async with http.get(f"{sim.control_url}/") as response:
            assert "from-portal" in await response.text()
        for action, status in (("cancel", 200), ("expire", 200), ("bogus", 404)):
            _, other = await api.init(f"dev-{action}")
            url = f"{control}/operations/{other['provisioningOperationId']}/{action}"
            async with http.post(url) as response:
                assert response.status == status, action
        async with http.post(f"{control}/devices/from-portal/desired", data=b"[1]") as response:
            assert response.status == 400
        for action, status in (("drop", 200), ("expire-sas", 200), ("revoke", 200), ("x", 404)):
            async with http.post(f"{control}/devices/from-portal/{action}") as response:
                assert response.status == status, action
        async with http.post(f"{control}/broker/restart") as response:
            assert response.status == 404
        device = Device(sim, *_identity(await api.credentials("dev-data")))
        try:
            assert str(await device.connect()) == "Success"
            await device.publish(device.events_topic("batch-id=b&message-id=1"), b"text")
            await device.publish(device.events_topic("batch-id=b&message-id=2"), b"\xff\xfe")
            await device.publish(device.events_topic("batch-id=b&complete-batch=true"))
            await device.publish(device.events_topic("stream-name=s"), b"no ids")
        finally:
            device.close()
        async with http.get(f"{control}/messages?device_id=dev-data") as response:
            messages = await response.json()
        assert [m.get("payload") or m["payload_base64"] for m in messages] == ["text", "//4="]
        async with http.get(f"{control}/dead-letters") as response:
            assert [letter["payload"] for letter in await response.json()] == ["bm8gaWRz"]
        async with http.get(f"{control}/completions") as response:
            assert len(await response.json()) == 1
        body = {"disabled": True, "revoke_provisioning_token": True}
        async with http.post(f"{control}/workspace", json=body) as response:
            assert response.status == 200
        assert (await api.init())[0] == 423
    finally:
        await sim.stop()


async def test_standalone_prints_its_json_line_and_stops_cleanly(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.spotflow_platform",
        "--mqtt-port",
        "0",
        "--data-dir",
        str(tmp_path),
        "--provisioning-token",
        "demo",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 20))
        assert ready["provisioning_token"] == "demo"
        assert Path(ready["ca_file"]).exists()
        assert ready["hub_host"].startswith("127.0.0.1:")
        context = ssl.create_default_context(cafile=ready["ca_file"])
        async with http.post(
            f"https://{ready['instance']}/provisioning-operations/init",
            json={},
            headers={"Authorization": "DeviceToken demo"},
            ssl=context,
        ) as response:
            assert response.status == 200
        async with http.get(f"{ready['control_url']}/_control/operations") as response:
            assert len(await response.json()) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0


# --- fault injection


async def test_injected_api_faults(sim: PlatformSimulator, api: Api) -> None:
    sim.inject_api_fault("/devices/register", 503, "not json", count=2, delay=0.05)
    sim.inject_api_fault("/provisioning-operations/init", 200, {"unexpected": True})
    assert await api.init() == (200, {"unexpected": True})
    registration_token = await api.provision()
    for _ in range(2):
        async with api.http.put(
            f"https://{sim.instance}/devices/register",
            json={},
            headers={"Authorization": f"DeviceToken {registration_token}"},
            ssl=api.ssl,
        ) as response:
            assert (response.status, await response.text()) == (503, "not json")
    assert (await api.register(registration_token))[0] == 200


async def test_injected_connack_refusals_and_twin_faults(
    sim: PlatformSimulator, api: Api, open_device: Any
) -> None:
    credentials = await api.credentials()
    sim.refuse_connections(3)
    assert str(await open_device(credentials).connect()) == "Server unavailable"
    device = await connected(open_device, credentials)
    await device.subscribe(f"devices/{credentials.client_id}/messages/devicebound/#")
    sim.inject_twin_faults(None)
    sim.inject_twin_faults(500, body=b"oops")
    await device.publish("$iothub/twin/GET/?$rid=1")  # acknowledged, never answered
    await device.publish("$iothub/twin/PATCH/properties/reported/?$rid=2", b"{}")
    assert await device.receive() == ("$iothub/twin/res/500/?$rid=2", b"oops")
    await device.publish("$iothub/twin/GET/?$rid=3")
    assert (await device.receive())[0] == "$iothub/twin/res/200/?$rid=3"
    sim.send_to_device("dev-1", b"to the device")
    assert await device.receive() == (
        f"devices/{credentials.client_id}/messages/devicebound/",
        b"to the device",
    )


async def test_operations_survive_a_restart(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    first = PlatformSimulator(tmp_path)
    await first.start()
    _, operation = await Api(http, first).init()
    port = int(first.instance.rpartition(":")[2])
    await first.stop()
    second = PlatformSimulator(tmp_path, api_port=port)
    await second.start()
    try:
        api = Api(http, second)
        assert [op.id for op in second.pending_operations()] == [
            operation["provisioningOperationId"]
        ]
        second.approve(operation["provisioningOperationId"])
        status, body = await api.complete(operation["provisioningOperationId"])
        assert status == 200
        assert (await api.register(body["registrationToken"]))[0] == 200
    finally:
        await second.stop()


def _identity(credentials: Credentials) -> tuple[str, str, str]:
    return credentials.client_id, credentials.username, credentials.sas


# --- pure helpers


def test_timespan_format() -> None:
    assert timespan(8 * 86400 + 11 * 3600 + 55 * 60 + 36.3296177) == "8.11:55:36.3296177"
    assert timespan(59) == "00:00:59"
    assert timespan(-1.5) == "-00:00:01.5000000"


def test_merge_patch() -> None:
    target: dict[str, Any] = {"a": {"b": 1, "c": 2}, "d": 3, "$version": 4}
    merge_patch(target, {"a": {"b": None, "e": [1]}, "d": None, "f": {"g": 1}, "$version": 9})
    assert target == {"a": {"c": 2, "e": [1]}, "f": {"g": 1}, "$version": 4}


def test_sas_round_trip() -> None:
    sas = create_sas(b"key", "127.0.0.1:1/devices/ws:dev", 1_800_000_000)
    token = parse_sas(sas)
    assert token is not None
    assert (token.resource, token.expiry) == ("127.0.0.1:1/devices/ws:dev", 1_800_000_000)
    assert parse_sas("SharedAccessSignature sr=x&se=notanumber&sig=y") is None
