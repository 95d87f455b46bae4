"""One MQTT 3.1.1 session over TLS, paho-mqtt driven by the asyncio event loop.

paho's socket callbacks register the socket with the loop (`add_reader`/`add_writer`), as Home
Assistant's own MQTT client does, so reads, writes and acknowledgements all happen on the loop;
only the blocking TCP connect and TLS handshake run in an executor thread. Each session uses a
fresh paho client: paho's in-memory queue is never the source of truth, the outbox database is.

paho runs its callbacks holding a non-reentrant lock that closing its socket takes as well, so a
paho callback here only records what happened and defers everything else (closing, the owner's
message handler) to the loop with `call_soon`, keeping their order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from functools import partial
import logging
import socket
import ssl
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from .errors import SpotflowConnectionError

_LOGGER = logging.getLogger(__name__)
# CONNACK 4 and 5 of MQTT 3.1.1, as paho maps them to MQTT 5 reason codes.
_REFUSED_CREDENTIALS = frozenset({134, 135})
_MISC_INTERVAL = 1.0


class CredentialsRefusedError(SpotflowConnectionError):
    """The broker refused the SAS (expired or revoked); register again for a new one."""


class MqttSession:
    """A single connection; create a new session to reconnect."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        ssl_context: ssl.SSLContext,
        on_message: Callable[[str, bytes], None],
        keepalive: int = 300,
        connect_timeout: float = 30.0,
    ) -> None:
        """Prepare a session; nothing touches the network before `connect`."""
        self._loop = asyncio.get_running_loop()
        self._host, self._port, self._keepalive = host, port, keepalive
        self._connect_timeout = connect_timeout
        self._on_message = on_message
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
        )
        client.username_pw_set(username, password)
        client.tls_set_context(ssl_context)
        client.connect_timeout = connect_timeout
        # The outbox bounds what is in flight; paho must not hold messages back on its own.
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_paho_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        self._client = client
        self._connack: asyncio.Future[ReasonCode] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._misc_timer: asyncio.TimerHandle | None = None

    async def connect(self) -> None:
        """Connect and wait for the broker's CONNACK."""
        try:
            await self._loop.run_in_executor(
                None, partial(self._client.connect, self._host, self._port, self._keepalive)
            )
            async with asyncio.timeout(self._connect_timeout):
                reason = await asyncio.shield(self._connack)
        except (OSError, ssl.SSLError, TimeoutError, ValueError) as err:
            error = SpotflowConnectionError(
                f"Cannot connect to the Spotflow broker: {type(err).__name__}"
            )
            self._finish(error)
            raise error from err
        except BaseException:
            # Cancelled: end the session, or the connection would live on without an owner.
            self._finish(SpotflowConnectionError("The connection attempt was cancelled"))
            raise
        if reason.is_failure:
            if reason.value in _REFUSED_CREDENTIALS:
                error = CredentialsRefusedError("The broker refused the device's credentials")
            else:
                error = SpotflowConnectionError(f"The broker refused the connection: {reason}")
            # The broker hangs up after a refusal; hanging up first would race its last write.
            with suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await asyncio.shield(self.closed)
            self._finish(error)
            raise error

    def publish(self, topic: str, payload: bytes) -> asyncio.Future[None]:
        """Publish with QoS 1; the future completes on PUBACK or fails when the session ends."""
        future: asyncio.Future[None] = self._loop.create_future()
        if self.closed.done():
            future.set_exception(SpotflowConnectionError("Not connected to the Spotflow broker"))
            return future
        info = self._client.publish(topic, payload, qos=1)
        self._pending[info.mid] = future
        return future

    async def subscribe(self, topics: list[str]) -> None:
        """Subscribe with QoS 1 and wait for the SUBACK."""
        future: asyncio.Future[None] = self._loop.create_future()
        result, mid = self._client.subscribe([(topic, 1) for topic in topics])
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise SpotflowConnectionError("Not connected to the Spotflow broker")
        self._pending[mid] = future
        await future

    async def disconnect(self) -> None:
        """Send DISCONNECT and close the socket."""
        if not self.closed.done():
            self._client.disconnect()
            # paho closes the socket right after queueing DISCONNECT when it can write at once.
            with suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.closed
        self._finish(SpotflowConnectionError("Disconnected from the Spotflow broker"))

    # paho callbacks, all on the event loop except socket open/register during connect

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if not self._connack.done():
            self._connack.set_result(reason)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        _LOGGER.debug("MQTT connection closed: %s", reason)
        self._loop.call_soon(self._connection_lost)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        if (future := self._pending.pop(mid, None)) is not None and not future.done():
            future.set_result(None)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        self._on_publish(client, userdata, mid, reasons, properties)

    def _on_paho_message(
        self, client: paho.Client, userdata: Any, message: paho.MQTTMessage
    ) -> None:
        self._loop.call_soon(self._deliver, message.topic, message.payload)

    def _deliver(self, topic: str, payload: bytes) -> None:
        try:
            self._on_message(topic, payload)
        except Exception:
            _LOGGER.exception("Error handling a message on %s", topic)

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.call_soon_threadsafe(self._watch_socket, sock)

    def _watch_socket(self, sock: socket.socket) -> None:
        if sock.fileno() == -1:
            return
        if self.closed.done():
            # The connect thread opened it after the session ended (its connect was cancelled).
            self._client._sock_close()
            return
        self._loop.add_reader(sock, self._read, sock)
        self._misc_timer = self._loop.call_later(_MISC_INTERVAL, self._misc)
        self._read(sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if sock.fileno() != -1:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        if self._misc_timer is not None:
            self._misc_timer.cancel()
            self._misc_timer = None

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.call_soon_threadsafe(self._watch_writes, sock)

    def _watch_writes(self, sock: socket.socket) -> None:
        if sock.fileno() != -1 and not self.closed.done():
            self._loop.add_writer(sock, self._write)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if sock.fileno() != -1:
            self._loop.remove_writer(sock)

    def _read(self, sock: socket.socket) -> None:
        # TLS may hold whole packets in its buffer that the socket will not signal again.
        while self._client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                return
        self._connection_lost()

    def _write(self) -> None:
        if self._client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._connection_lost()

    def _misc(self) -> None:
        if self._client.loop_misc() == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._misc_timer = self._loop.call_later(_MISC_INTERVAL, self._misc)

    def _connection_lost(self) -> None:
        # The session is over: fail what waits on it and close our side of the socket.
        self._finish(SpotflowConnectionError("The connection to the Spotflow broker was lost"))

    def _finish(self, error: SpotflowConnectionError) -> None:
        # Never called from within a paho callback: closing the socket takes paho's callback lock.
        if not self._connack.done():
            self._connack.set_exception(error)
            self._connack.exception()  # retrieved: connect() reports its own error
        if self._misc_timer is not None:
            self._misc_timer.cancel()
            self._misc_timer = None
        if sock := self._client.socket():
            with suppress(ValueError, OSError):
                self._loop.remove_reader(sock)
                self._loop.remove_writer(sock)
            # The session is over whatever the broker did; this client is never used again.
            self._client._sock_close()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)
