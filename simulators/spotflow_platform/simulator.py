"""`PlatformSimulator`: the Spotflow platform on loopback, for tests, benchmarks and the demo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import time
from typing import Any

from aiohttp import web

from .api import ApiFaults, create_api
from .certs import TlsFiles, ensure_tls_files
from .hub import Hub
from .notify import Changes
from .store import DeadLetter, Store, StoredMessage
from .workspace import Operation, Workspace

# The real hub listens on the MQTT-over-TLS port; other ports are named in `iotHubHostName`.
DEFAULT_MQTT_PORT = 8883


class PlatformSimulator:
    """HTTPS device API, MQTT-over-TLS broker with the hub's logic, and SQLite storage.

    Everything runs on the caller's event loop. Intervals and lifetimes are parameters so tests
    can exercise expiry in seconds.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        auto_approve: bool = False,
        auto_approve_delay: float = 0.0,
        host: str = "127.0.0.1",
        api_port: int = 0,
        mqtt_port: int = 0,
        control_port: int | None = None,
        workspace_id: str = "ws-sim",
        provisioning_token: str | None = None,
        registration_token_ttl: float = 7 * 86400,
        sas_ttl: float = 86400,
        operation_ttl: float = 900,
        default_stream_group: str = "default-group",
        default_stream: str = "default-stream",
    ) -> None:
        self._data_dir = data_dir
        self._host = host
        self._api_port = api_port
        self._mqtt_port = mqtt_port
        self._control_port = control_port
        self._options: dict[str, Any] = {
            "workspace_id": workspace_id,
            "provisioning_token": provisioning_token,
            "registration_token_ttl": registration_token_ttl,
            "sas_ttl": sas_ttl,
            "operation_ttl": operation_ttl,
            "auto_approve": auto_approve,
            "auto_approve_delay": auto_approve_delay,
        }
        self._streams = {
            "default_stream_group": default_stream_group,
            "default_stream": default_stream,
        }
        self._changes = Changes()
        self._api_faults = ApiFaults()
        self._store: Store | None = None
        self._workspace: Workspace | None = None
        self._hub: Hub | None = None
        self._tls: TlsFiles | None = None
        self._runners: list[web.AppRunner] = []
        self.control_url: str | None = None

    # --- life cycle

    async def start(self) -> None:
        """Create the CA and certificates, open the database, start the API and the broker."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._tls = ensure_tls_files(self._data_dir, self._host)
        self._store = Store(self._data_dir / "platform.db")
        self._workspace = Workspace(self._store, self._changes, clock=time.time, **self._options)
        self._hub = Hub(
            self._workspace, self._store, self._changes, clock=time.time, **self._streams
        )
        try:
            self._api_port = await self._serve(
                create_api(self._workspace, self._api_faults),
                self._api_port,
                self._tls.server_context(),
            )
            await self.start_broker()
            if self._control_port is not None:
                from .control import create_control  # only the runner needs it

                self._control_port = await self._serve(
                    create_control(self), self._control_port, None
                )
                self.control_url = f"http://{self._host}:{self._control_port}"
        except BaseException:
            await self.stop()
            raise

    async def _serve(self, app: web.Application, port: int, ssl_context: Any) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self._host, port, ssl_context=ssl_context).start()
        return int(runner.addresses[-1][1])

    async def stop(self) -> None:
        """Stop every server and close the database."""
        if self._hub is not None:
            await self._hub.stop()
        for runner in reversed(self._runners):
            try:
                await runner.cleanup()
            except OSError:
                # Python 3.14's TLS transport raises from close() when the client has already
                # hung up (BrokenPipeError); the connection is gone either way. Clean up the
                # rest of the server as usual.
                await runner.cleanup()
        self._runners.clear()
        if self._store is not None:
            self._store.close()
            self._store = None

    async def start_broker(self) -> None:
        """(Re)start the broker on its port; stored data and device state are kept."""
        port = await self._running_hub.start(self._host, self._mqtt_port, self._ready_tls)
        self._mqtt_port = port
        self._ready_workspace.hub_host = (
            self._host if port == DEFAULT_MQTT_PORT else f"{self._host}:{port}"
        )

    async def stop_broker(self) -> None:
        """Stop the broker: every device is disconnected and further connections are refused."""
        await self._running_hub.stop()

    @property
    def _running_hub(self) -> Hub:
        if self._hub is None:
            raise RuntimeError("the simulator is not started")
        return self._hub

    @property
    def _ready_workspace(self) -> Workspace:
        if self._workspace is None:
            raise RuntimeError("the simulator is not started")
        return self._workspace

    @property
    def _ready_store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the simulator is not started")
        return self._store

    @property
    def _ready_tls(self) -> TlsFiles:
        if self._tls is None:
            raise RuntimeError("the simulator is not started")
        return self._tls

    # --- connection details

    @property
    def instance(self) -> str:
        """Return `host:port` of the HTTPS API, the device library's `instance`."""
        return f"{self._host}:{self._api_port}"

    @property
    def ca_file(self) -> Path:
        """Return the PEM file of the CA that signed both TLS endpoints."""
        return self._ready_tls.ca_file

    @property
    def provisioning_token(self) -> str:
        """Return the workspace's provisioning token."""
        return self._ready_workspace.provisioning_token

    @property
    def workspace_id(self) -> str:
        """Return the workspace ID."""
        return self._ready_workspace.workspace_id

    @property
    def hub_host(self) -> str:
        """Return `iotHubHostName` as registration answers it."""
        return self._ready_workspace.hub_host

    @property
    def mqtt_port(self) -> int:
        """Return the broker's port."""
        return self._mqtt_port

    @property
    def broker_running(self) -> bool:
        """Return whether the broker accepts connections."""
        return self._running_hub.running

    # --- provisioning

    def pending_operations(self) -> list[Operation]:
        """Return the provisioning operations waiting for approval, oldest first."""
        return self._ready_workspace.pending_operations()

    async def wait_for_operation(self, timeout: float = 5.0) -> Operation:  # noqa: ASYNC109 (the documented API)
        """Wait until an operation is pending and return the oldest."""

        def oldest() -> Operation | None:
            return next(iter(self.pending_operations()), None)

        return await self._changes.wait_for(oldest, timeout, "a provisioning operation")

    def approve(self, operation_id: str, device_id: str | None = None) -> None:
        """Approve an operation (optionally under another device ID)."""
        self._ready_workspace.approve(operation_id, device_id)

    def cancel(self, operation_id: str) -> None:
        """Cancel an operation."""
        self._ready_workspace.cancel(operation_id)

    def expire_operation(self, operation_id: str) -> None:
        """Let an operation expire now."""
        self._ready_workspace.expire_operation(operation_id)

    def revoke_registration(self, device_id: str) -> None:
        """Revoke the device's registration tokens and SAS and drop its MQTT connection."""
        self._ready_workspace.revoke_registration(device_id)
        self._running_hub.drop(device_id)

    def expire_sas(self, device_id: str) -> None:
        """Expire the device's SAS now: its connection drops and the SAS is refused."""
        self._ready_workspace.expire_sas(device_id)
        self._running_hub.drop(device_id)

    def drop_connection(self, device_id: str) -> None:
        """Cut the device's MQTT connection (a network fault); it may reconnect."""
        self._running_hub.drop(device_id)

    def set_workspace_disabled(self, disabled: bool) -> None:
        """Disable or enable the workspace (device API calls answer 423 while disabled)."""
        self._ready_workspace.disabled = disabled

    def revoke_provisioning_token(self) -> None:
        """Revoke the provisioning token (provisioning and refresh answer 401)."""
        self._ready_workspace.provisioning_token_revoked = True

    # --- faults

    def inject_api_fault(
        self,
        path: str,
        status: int,
        body: bytes | str | dict[str, Any] | None = None,
        *,
        count: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `count` calls of `path` with `status` and `body` after `delay` s."""
        self._api_faults.add(path, status, body, count, delay)

    def refuse_connections(self, code: int, count: int = 1) -> None:
        """Answer the next `count` MQTT CONNECTs with CONNACK return code `code`."""
        self._running_hub.refuse_connections(code, count)

    def inject_twin_faults(self, status: int | None, count: int = 1, body: bytes = b"") -> None:
        """Answer the next `count` twin requests with `status` and `body`; None: no answer."""
        self._running_hub.inject_twin_faults(status, count, body)

    def send_to_device(self, device_id: str, payload: bytes) -> None:
        """Send a cloud-to-device message to a connected device."""
        self._running_hub.send_to_device(device_id, payload)

    def device_ids(self) -> list[str]:
        """Return every registered device's ID."""
        return self._ready_workspace.device_ids()

    # --- received data

    def messages(
        self,
        device_id: str | None = None,
        stream_group: str | None = None,
        stream: str | None = None,
        *,
        limit: int | None = None,
    ) -> list[StoredMessage]:
        """Return the stored (deduplicated) messages in arrival order (only the latest `limit`)."""
        return self._ready_store.messages(device_id, stream_group, stream, limit=limit)

    @property
    def message_count(self) -> int:
        """Return how many distinct messages were stored."""
        return self._ready_store.message_count()

    @property
    def duplicate_count(self) -> int:
        """Return how many messages arrived again with IDs already stored."""
        return self._ready_store.duplicate_count

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """Return messages that could not be filed (no batch or message ID, bad encoding)."""
        return self._ready_store.dead_letters()

    @property
    def completions(self) -> list[tuple[str, ...]]:
        """Return batch and message completions, each recorded once."""
        return self._ready_store.completions()

    async def wait_for_messages(
        self,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109
        device_id: str | None = None,
    ) -> None:
        """Wait until at least `count` distinct messages are stored (from `device_id`)."""
        store = self._ready_store
        await self._changes.wait_for(
            lambda: store.message_count(device_id) >= count, timeout, f"{count} messages"
        )

    async def wait_until[T](
        self,
        condition: Callable[[], T | None],
        timeout: float = 10.0,  # noqa: ASYNC109
        what: str = "a condition",
    ) -> T:
        """Return the first truthy `condition()`, re-checked whenever the platform's state changes
        (messages, completions, twins, connections); TimeoutError naming `what` if none."""
        return await self._changes.wait_for(condition, timeout, what)

    def stats(self) -> dict[str, Any]:
        """Return message, duplicate and byte totals and per device/stream counts."""
        return {
            **self._ready_store.stats(),
            "connected": sorted(self.connected_devices()),
            "connections": dict(self._running_hub.connections),
        }

    # --- twins and connections

    def set_desired(self, device_id: str, patch: dict[str, Any]) -> int:
        """Merge into the desired properties and push the patch if connected; return `$version`."""
        sent = self._ready_workspace.set_desired(device_id, patch)
        self._running_hub.send_desired(device_id, sent)
        return int(sent["$version"])

    def desired(self, device_id: str) -> dict[str, Any]:
        """Return the desired properties (with `$version`)."""
        return dict(self._ready_workspace.device(device_id).desired)

    def reported(self, device_id: str) -> dict[str, Any]:
        """Return the reported properties (with `$version`)."""
        return dict(self._ready_workspace.device(device_id).reported)

    def connected_devices(self) -> set[str]:
        """Return the devices connected to the broker now."""
        return self._running_hub.connected_devices()

    def connection_count(self, device_id: str) -> int:
        """Return how many MQTT connections the device has opened successfully."""
        return self._running_hub.connections[device_id]

    async def wait_for_connection(
        self,
        device_id: str,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until the device is connected and has connected at least `count` times."""

        def connected() -> bool:
            return (
                device_id in self.connected_devices() and self.connection_count(device_id) >= count
            )

        await self._changes.wait_for(connected, timeout, f"connection {count} of {device_id}")

    async def wait_for_disconnection(
        self,
        device_id: str,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until the device is not connected."""
        await self._changes.wait_for(
            lambda: device_id not in self.connected_devices(), timeout, f"{device_id} to go"
        )
