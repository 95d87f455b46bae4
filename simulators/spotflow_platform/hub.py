"""The IoT hub behind MQTT: an amqtt broker whose plugin authenticates devices with their SAS,
confines each device to its own topics, files stream messages and serves device twins."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
import json
import logging
from typing import Any
from urllib.parse import parse_qs, parse_qsl

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import ProtocolHandlerError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import OutgoingApplicationMessage, Session
import brotli

from .certs import TlsFiles
from .notify import Changes
from .store import DeadLetter, Store, StoredMessage
from .workspace import Workspace

_LOGGER = logging.getLogger(__name__)

# The platform takes at most 250,000 payload bytes (after compression) over MQTT; the hub closes
# the connection of a device that publishes more.
MAX_MESSAGE_BYTES = 250_000
_EVENTS = "devices/{}/messages/events/"
_TWIN_GET = "$iothub/twin/GET/"
_TWIN_REPORTED = "$iothub/twin/PATCH/properties/reported/"
_SUBSCRIBABLE = (
    "$iothub/twin/res/",
    "$iothub/twin/PATCH/properties/desired/",
    "$iothub/methods/POST/",
    "devices/{}/messages/devicebound/",
)


class HubPlugin(BaseAuthPlugin, BaseTopicPlugin):  # type: ignore[misc]
    """Connects amqtt's plugin hooks to the `Hub` named in the plugin's configuration."""

    @dataclass
    class Config:
        """The hub is handed over in the broker's configuration dictionary."""

        hub: Any = None

    async def authenticate(self, *, session: Session) -> bool:
        """Accept a device only with a valid, unexpired SAS for its own identity."""
        hub: Hub = self.config.hub
        return hub.authenticate(session)

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool:
        """Let a device subscribe to (and receive) only its own topics."""
        hub: Hub = self.config.hub
        return session is not None and topic is not None and hub.may_subscribe(session, topic)

    async def on_mqtt_packet_received(self, *, packet: Any, session: Session | None = None) -> None:
        """Handle a device's PUBLISH before amqtt acknowledges it.

        amqtt schedules this hook as a task just before the task that sends the PUBACK, and
        asyncio runs tasks in the order they were scheduled. Without an `await` in between, the
        message is committed (or the connection dropped) before the PUBACK can be written.
        """
        if session is not None and isinstance(packet, PublishPacket):
            hub: Hub = self.config.hub
            hub.on_publish(session, packet)

    async def on_broker_client_connected(self, *, client_id: str, client_session: Session) -> None:
        """Count the connection and arm the drop at SAS expiry."""
        hub: Hub = self.config.hub
        hub.on_connected(client_id)

    async def on_broker_client_disconnected(
        self, *, client_id: str, client_session: Session
    ) -> None:
        """Wake waiters on the connection state."""
        hub: Hub = self.config.hub
        hub.changes.notify()


class _HubBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with the two behaviours where Azure IoT Hub differs from a plain broker."""

    hub: Hub
    # One task per TCP connection, from accept to hang-up.
    connection_tasks: set[asyncio.Task[Any]]

    async def stream_connected(self, reader: Any, writer: Any, listener_name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connection_tasks.add(task)
        try:
            await super().stream_connected(reader, writer, listener_name)
        except ConnectionError as err:
            # A device that hangs up (or is cut off by the hub) mid-packet is no fault of ours.
            _LOGGER.debug("Connection ended: %r", err)
        finally:
            self.connection_tasks.discard(task)

    async def _handle_client_session(
        self, reader: Any, writer: Any, client_session: Session, *args: Any
    ) -> None:
        # amqtt hangs up on refused credentials; the hub answers CONNACK 5 (not authorized),
        # which tells a device to fetch a new SAS rather than just retry.
        if (refusal := self.hub.connack_refusal(client_session)) is not None:
            # A device hangs up as soon as it reads the refusal; its reset is no fault of ours.
            with suppress(ConnectionError):
                await ConnackPacket.build(0, refusal).to_stream(writer)
                await writer.close()
            return
        _cancel_quietly(args[0])
        await super()._handle_client_session(reader, writer, client_session, *args)

    async def _handle_message_delivery(
        self, session: Session, handler: Any, delivered: Any
    ) -> bool:
        # Every PUBLISH was already filed or answered by `Hub.on_publish`; a hub forwards nothing
        # between devices (and amqtt would hang up on the `$iothub/...` request topics).
        delivered.result()
        return True


def _cancel_quietly(handler: Any) -> None:
    """Let a packet's handling end as cancelled when its connection goes.

    amqtt cancels the handling of every packet of a connection that ends, and turns the
    cancellation of a reply still waiting to be written into a ProtocolHandlerError that nobody
    retrieves: asyncio then logs it as an error of a task nobody awaited. A hub's reply written
    after the connection ended also leaves no keep-alive timer behind.
    """
    send_packet = handler._send_packet

    async def send_packet_or_be_cancelled(packet: Any) -> None:
        try:
            await send_packet(packet)
        except ProtocolHandlerError as err:
            if isinstance(err.__cause__, asyncio.CancelledError):
                raise asyncio.CancelledError from None
            raise
        finally:
            # Every write re-arms amqtt's keep-alive timer, also a write that ends after the
            # connection's handling stopped (and cancelled that timer): the timer would then
            # outlive the connection, and the broker.
            if handler._reader_stopped.is_set() and handler._keepalive_task is not None:
                handler._keepalive_task.cancel()

    handler._send_packet = send_packet_or_be_cancelled


class Hub:
    """The MQTT half of the platform. Restartable: the broker comes and goes, data stays."""

    def __init__(
        self,
        workspace: Workspace,
        store: Store,
        changes: Changes,
        *,
        default_stream_group: str,
        default_stream: str,
        clock: Callable[[], float],
    ) -> None:
        self._workspace = workspace
        self._store = store
        self.changes = changes
        self._default_stream_group = default_stream_group
        self._default_stream = default_stream
        self._clock = clock
        self._broker: Any = None
        self._sas_expiry: dict[str, int] = {}
        self._expiry_timers: dict[str, asyncio.TimerHandle] = {}
        self._replies: set[asyncio.Task[Any]] = set()
        self.connections: Counter[str] = Counter()
        # Faults injected by tests: CONNACK return codes, twin answers (None: no answer).
        self._refusals: deque[int] = deque()
        self._twin_faults: deque[tuple[int, bytes] | None] = deque()

    async def start(self, host: str, port: int, tls: TlsFiles) -> int:
        """Start the broker on `host:port` (0 = any free port); return the port."""
        listener = {
            "type": "tcp",
            "bind": f"{host}:{port}",
            "ssl": True,
            "certfile": str(tls.cert_file),
            "keyfile": str(tls.key_file),
        }
        broker = _HubBroker(
            {"listeners": {"default": listener}, "plugins": {_PLUGIN_PATH: {"hub": self}}}
        )
        broker.hub = self
        broker.connection_tasks = set()
        # Set first: a device may connect as soon as the listener is bound.
        self._broker = broker
        try:
            await broker.start()
        except BaseException:
            self._broker = None
            raise
        # amqtt has no public accessor for the bound port.
        return int(broker._servers["default"].instance.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Disconnect every device and close the listener."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        for timer in self._expiry_timers.values():
            timer.cancel()
        self._expiry_timers.clear()
        for task in self._replies:
            task.cancel()
        # A stopped hub accepts nothing more and cuts every connection at once, then lets amqtt
        # finish each connection's handling before it shuts down. amqtt's own shutdown only ends
        # the sessions it has registered, and waits forever on a session whose reader task was
        # created but had not run yet; a device still in its handshake would keep the
        # listener's `wait_closed` waiting until the device hangs up.
        for server in broker._servers.values():
            server.instance.close()
            server.instance.abort_clients()
        if broker.connection_tasks:
            await asyncio.wait(broker.connection_tasks)
        await broker.shutdown()
        if self._replies:
            await asyncio.wait(self._replies)
        self.changes.notify()

    @property
    def running(self) -> bool:
        """Return whether the broker is accepting connections."""
        return self._broker is not None

    # --- connections

    def refuse_connections(self, code: int, count: int = 1) -> None:
        """Answer the next `count` CONNECTs with CONNACK `code` (3: server unavailable, ...)."""
        self._refusals.extend([code] * count)

    def connack_refusal(self, session: Session) -> int | None:
        """Return the CONNACK return code refusing this CONNECT, None to accept it."""
        if self._refusals:
            return self._refusals.popleft()
        return None if self.authenticate(session) else NOT_AUTHORIZED

    def inject_twin_faults(self, status: int | None, count: int = 1, body: bytes = b"") -> None:
        """Answer the next `count` twin requests with `status` and `body` (None: no answer)."""
        self._twin_faults.extend([None if status is None else (status, body)] * count)

    def authenticate(self, session: Session) -> bool:
        """Check a CONNECT's client ID, username and SAS password."""
        client_id = session.client_id or ""
        expiry = self._workspace.sas_expiry(client_id, session.username, session.password)
        if expiry is None:
            _LOGGER.info("Refused MQTT credentials of client %r", client_id)
            return False
        self._sas_expiry[client_id] = expiry
        return True

    def on_connected(self, client_id: str) -> None:
        """Count a connection and drop it when its SAS expires, as the real hub does."""
        if self._broker is None:
            # amqtt reports connections from tasks of their own, even after the hub stopped.
            return
        self.connections[client_id.partition(":")[2]] += 1
        if timer := self._expiry_timers.pop(client_id, None):
            timer.cancel()
        delay = max(0.0, self._sas_expiry[client_id] - self._clock())
        self._expiry_timers[client_id] = asyncio.get_running_loop().call_later(
            delay, self._drop_if_expired, client_id
        )
        self.changes.notify()

    def _drop_if_expired(self, client_id: str) -> None:
        self._expiry_timers.pop(client_id, None)
        if self._sas_expiry.get(client_id, 0) <= self._clock():
            self.drop(client_id.partition(":")[2])

    def _connection(self, device_id: str) -> tuple[Session, Any] | None:
        if self._broker is None:
            return None
        entry = self._broker.sessions.get(f"{self._workspace.workspace_id}:{device_id}")
        if entry is None or entry[0].transitions.state != "connected":
            return None
        return entry  # type: ignore[no-any-return]

    def connected_devices(self) -> set[str]:
        """Return the IDs of the devices connected now."""
        if self._broker is None:
            return set()
        return {
            client_id.partition(":")[2]
            for client_id, (session, _) in self._broker.sessions.items()
            if session.transitions.state == "connected"
        }

    def drop(self, device_id: str) -> None:
        """Cut a device's connection at once, without sending anything more on it."""
        if connection := self._connection(device_id):
            writer = connection[1].writer
            writer.is_closed = True  # amqtt writes nothing more, not even a pending PUBACK
            writer._writer.transport.abort()

    def may_subscribe(self, session: Session, topic_filter: str) -> bool:
        """Allow the hub's own topics and the device's cloud-to-device topic."""
        return topic_filter.startswith(
            tuple(prefix.format(session.client_id) for prefix in _SUBSCRIBABLE)
        )

    # --- messages from devices

    def on_publish(self, session: Session, packet: PublishPacket) -> None:
        """File or answer a PUBLISH; on any failure drop the connection so it is never acked."""
        client_id: str = session.client_id
        device_id = client_id.partition(":")[2]
        topic: str = packet.topic_name
        payload = bytes(packet.data or b"")
        try:
            events = _EVENTS.format(client_id)
            if len(payload) > MAX_MESSAGE_BYTES:
                _LOGGER.warning("Device %s sent %d bytes, over the limit", device_id, len(payload))
                self.drop(device_id)
            elif topic.startswith(events):
                self._file(device_id, topic, topic.removeprefix(events), payload)
            elif topic.startswith((_TWIN_GET, _TWIN_REPORTED)) and self._twin_faults:
                if (fault := self._twin_faults.popleft()) is not None:
                    status, body = fault
                    self._send(
                        device_id, f"$iothub/twin/res/{status}/?$rid={_request_id(topic)}", body
                    )
            elif topic.startswith(_TWIN_GET):
                self._twin_get(device_id, _request_id(topic))
            elif topic.startswith(_TWIN_REPORTED):
                self._twin_reported(device_id, _request_id(topic), payload)
            else:
                # The real hub closes the connection of a device publishing outside its topics.
                _LOGGER.warning("Device %s may not publish to %r", device_id, topic)
                self.drop(device_id)
        except Exception:
            _LOGGER.exception("Could not handle a message of device %s", device_id)
            self.drop(device_id)

    def _file(self, device_id: str, topic: str, bag: str, payload: bytes) -> None:
        properties = dict(parse_qsl(bag, keep_blank_values=True))
        group = properties.get("stream-group-name") or self._default_stream_group
        stream = properties.get("stream-name") or self._default_stream
        batch_id = properties.get("batch-id")
        message_id = properties.get("message-id")
        now = self._clock()

        def dead_letter(reason: str) -> None:
            self._store.add_dead_letter(DeadLetter(device_id, topic, reason, payload, now))
            self.changes.notify()

        if properties.get("complete-batch") == "true":
            if not batch_id:
                return dead_letter("batch completion without batch-id")
            self._store.add_completion(("batch", device_id, group, stream, batch_id), now)
            return self.changes.notify()
        if properties.get("complete-message") == "true":
            if not batch_id or not message_id:
                return dead_letter("message completion without batch-id and message-id")
            completion = ("message", device_id, group, stream, batch_id, message_id)
            self._store.add_completion(completion, now)
            return self.changes.notify()
        if not batch_id or not message_id:
            # As on the real platform when the stream has no autofill pattern for the IDs.
            return dead_letter("no batch-id or message-id and no autofill pattern")
        encoding = properties.get("content-encoding")
        if encoding == "br":
            try:
                payload = brotli.decompress(payload)
            except brotli.error:
                return dead_letter("content-encoding=br but the payload is not Brotli")
        elif encoding:
            return dead_letter(f"unsupported content-encoding {encoding!r}")
        self._store.add_message(
            StoredMessage(
                device_id,
                group,
                stream,
                batch_id,
                message_id,
                properties.get("batch-slice-id"),
                properties.get("chunk-id"),
                payload,
                encoding == "br",
                now,
            )
        )
        return self.changes.notify()

    # --- twins

    def _twin_get(self, device_id: str, request_id: str) -> None:
        device = self._workspace.device(device_id)
        twin = {"desired": device.desired, "reported": device.reported}
        self._send(device_id, f"$iothub/twin/res/200/?$rid={request_id}", json.dumps(twin).encode())

    def _twin_reported(self, device_id: str, request_id: str, payload: bytes) -> None:
        try:
            patch = json.loads(payload)
        except ValueError:
            patch = None
        if not isinstance(patch, dict):
            self._send(device_id, f"$iothub/twin/res/400/?$rid={request_id}", b"")
            return
        version = self._workspace.merge_reported(device_id, patch)
        self._send(device_id, f"$iothub/twin/res/204/?$rid={request_id}&$version={version}", b"")
        self.changes.notify()

    def send_to_device(self, device_id: str, payload: bytes) -> None:
        """Send a cloud-to-device message (devices receive these, the platform sends none)."""
        client_id = f"{self._workspace.workspace_id}:{device_id}"
        self._send(device_id, f"devices/{client_id}/messages/devicebound/", payload)

    def send_desired(self, device_id: str, patch: dict[str, Any]) -> None:
        """Deliver a desired-properties patch (carrying its `$version`) if the device is online."""
        topic = f"$iothub/twin/PATCH/properties/desired/?$version={patch['$version']}"
        self._send(device_id, topic, json.dumps(patch).encode())

    def _send(self, device_id: str, topic: str, payload: bytes) -> None:
        """Publish to one device, at the QoS it subscribed with; not at all if not subscribed."""
        connection = self._connection(device_id)
        if connection is None:
            return
        session, handler = connection
        qos = max(
            (
                qos
                for topic_filter, subscribers in self._broker.subscriptions.items()
                if self._broker._matches(topic, topic_filter)
                for subscriber, qos in subscribers
                if subscriber is session
            ),
            default=None,
        )
        if qos is None:
            return
        if qos == QOS_1:
            publishing = _publish_at_least_once(handler, topic, payload)
        else:
            publishing = handler.mqtt_publish(topic, payload, qos, retain=False)
        task = asyncio.ensure_future(publishing)
        self._replies.add(task)
        task.add_done_callback(self._reply_done)

    def _reply_done(self, task: asyncio.Task[Any]) -> None:
        self._replies.discard(task)
        if not task.cancelled() and (error := task.exception()):
            _LOGGER.debug("A message to a device was not acknowledged: %r", error)


async def _publish_at_least_once(handler: Any, topic: str, payload: bytes) -> None:
    """Publish at QoS 1 and wait for the device's PUBACK for as long as the connection lasts.

    amqtt's `mqtt_publish` gives up after 5 s (a warning, then another one for the late PUBACK)
    and registers its PUBACK waiter only once the PUBLISH is written, so a quick PUBACK can
    arrive first and be taken for unknown. The published Spotflow SDK acknowledges by hand,
    through the same 10-request queue its stream messages wait in, so during a burst its PUBACK
    of a twin answer comes seconds late; the real hub just waits for it.
    """
    session = handler.session
    if session is None:
        return  # the connection ended since the reply was decided
    packet_id = session.next_packet_id
    message = OutgoingApplicationMessage(packet_id, topic, QOS_1, payload, False)
    session.inflight_out[packet_id] = message
    acknowledged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    handler._puback_waiters[packet_id] = acknowledged
    try:
        message.publish_packet = message.build_publish_packet()
        await handler._send_packet(message.publish_packet)
        # Cancelled by amqtt when the connection ends.
        message.puback_packet = await acknowledged
    finally:
        handler._puback_waiters.pop(packet_id, None)
        session.inflight_out.pop(packet_id, None)


def _request_id(topic: str) -> str:
    return parse_qs(topic.partition("?")[2]).get("$rid", [""])[0]


_PLUGIN_PATH = f"{__name__}.{HubPlugin.__name__}"
