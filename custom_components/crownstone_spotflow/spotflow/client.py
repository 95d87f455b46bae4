"""The device client: provisioning, registration, the MQTT session and the device twin."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime, timedelta
import json
import logging
from pathlib import Path
import re
import ssl
from typing import Any

import aiohttp

from . import sealing, topics
from .api import PlatformApi, Registration, RegistrationToken
from .errors import (
    InvalidArgumentError,
    OutboxStorageError,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    RegistrationTokenRevokedError,
    SpotflowCertificateError,
    SpotflowConnectionError,
    SpotflowError,
    WorkspaceDisabledError,
)
from .models import (
    DEFAULT_INSTANCE,
    Compression,
    DesiredProperties,
    OutboxConfig,
    OutboxStats,
    ProvisioningOperation,
    Watermark,
)
from .mqtt import CredentialsRefusedError, MqttSession
from .outbox import Outbox
from .sender import StreamSender
from .store import Store

_LOGGER = logging.getLogger(__name__)
_DEVICE_ID = re.compile(r"^[0-9A-Za-z._-]{4,90}$")
_TWIN_TIMEOUT = 30.0
_DEFAULT_MQTT_PORT = 8883
_CREDENTIAL_KEYS = ("registration_token", "token_expiration", "token_refresh_at")


class _Outage:
    """Logs a failing job once when it starts failing and once when it works again.

    A retry every `retry_interval` must not repeat the warning for as long as the platform is away
    (Home Assistant's log-when-unavailable rule); the later failures go to the debug log.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._failing = False

    def failed(self, err: SpotflowError) -> None:
        if self._failing:
            _LOGGER.debug("%s still failing: %s", self._what, err)
            return
        self._failing = True
        _LOGGER.warning("%s failed, retrying until it works: %s", self._what, err)

    def worked(self) -> None:
        if self._failing:
            self._failing = False
            _LOGGER.info("%s works again", self._what)


def _refresh_time(expiration: datetime) -> datetime:
    """Refresh at min(expiry - 10 min, now + lifetime / 2); at half the lifetime if short."""
    now = datetime.now(UTC)
    lifetime = expiration - now
    if lifetime > timedelta(minutes=25):
        return min(expiration - timedelta(minutes=10), now + lifetime / 2)
    return now + lifetime / 2


def _renewal_time(registration: Registration) -> datetime:
    """Reconnect with a new SAS shortly before the current one expires.

    Computed once per registration: recomputed later, the shrinking lifetime would move the time
    on each check and the session would reconnect with the old SAS again and again.
    """
    lifetime = registration.sas_expiration - datetime.now(UTC)
    return registration.sas_expiration - min(timedelta(minutes=5), max(lifetime, timedelta()) / 10)


class _TwinTimeoutError(SpotflowConnectionError):
    """The hub did not answer a twin request in time."""


class _TwinBusyError(SpotflowConnectionError):
    """The hub answered a twin request with a temporary error (429 or 5xx)."""


def _ssl_context(ca_file: str | Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Apply a JSON merge patch (RFC 7386)."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge_patch(result[key], value)
        else:
            result[key] = value
    return result


def _desired(document: dict[str, Any]) -> DesiredProperties:
    return DesiredProperties(
        version=int(document.get("$version", 0)),
        values={key: value for key, value in document.items() if not key.startswith("$")},
    )


def _twin_desired(body: bytes) -> DesiredProperties | None:
    """Return the desired properties of a twin document, None when it is malformed."""
    try:
        return _desired(json.loads(body)["desired"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class DeviceClient:
    """A Spotflow device: durable stream messages, desired and reported properties."""

    def __init__(
        self,
        *,
        device_id: str,
        provisioning_token: str,
        store: Store,
        executor: ThreadPoolExecutor,
        outbox: Outbox,
        api: PlatformApi,
        ssl_context: ssl.SSLContext,
        session: aiohttp.ClientSession | None,
        desired_properties_updated_callback: Callable[[DesiredProperties], None] | None,
        retry_interval: float,
    ) -> None:
        """Use `DeviceClient.start`."""
        self._requested_device_id = device_id
        self._provisioning_token = provisioning_token
        self._store = store
        self._executor = executor
        self._outbox = outbox
        self._api = api
        self._ssl_context = ssl_context
        self._own_session = session
        self._desired_callback = desired_properties_updated_callback
        self._retry_interval = retry_interval
        self._loop = asyncio.get_running_loop()
        self._key = b""
        self._token: RegistrationToken | None = None
        self._refresh_at: datetime | None = None
        self._registration: Registration | None = None
        self._renew_at = datetime.min.replace(tzinfo=UTC)
        self._desired = DesiredProperties(version=0)
        self._pending_reported = 0
        self._twin_work = asyncio.Event()
        self._refetch_desired = False
        # What the database holds; differs from _desired until the twin loop has saved it.
        self._saved_desired = self._desired
        self._twin_requests: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._request_id = 0
        self._connected = False
        self._listeners: list[Callable[[bool], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.last_error: SpotflowError | None = None
        self.device_id = ""
        self.workspace_id = ""

    def __repr__(self) -> str:
        """Name the device, never its credentials."""
        return f"<DeviceClient {self.workspace_id}:{self.device_id} connected={self._connected}>"

    @classmethod
    async def start(
        cls,
        device_id: str,
        provisioning_token: str,
        db: str | Path,
        *,
        instance: str = DEFAULT_INSTANCE,
        display_provisioning_operation_callback: Callable[[ProvisioningOperation], None]
        | None = None,
        desired_properties_updated_callback: Callable[[DesiredProperties], None] | None = None,
        outbox_ready_callback: Callable[[DeviceClient], None] | None = None,
        websession: aiohttp.ClientSession | None = None,
        ca_file: str | Path | None = None,
        outbox: OutboxConfig | None = None,
        provisioning_poll_interval: float = 5.0,
        retry_interval: float = 30.0,
    ) -> DeviceClient:
        """Provision the device if needed, else start from the stored registration, even offline.

        Waiting for approval can be cancelled by cancelling the task. A corrupt database raises
        OutboxCorruptError after setting the file aside; starting again creates a new one.
        `outbox_ready_callback` gets the client as soon as its outbox accepts records, before
        provisioning or registering (which may wait for a person, or for the platform): what is
        enqueued from then on is kept on disk even if starting fails. The client is closed then.
        """
        if not _DEVICE_ID.match(device_id):
            raise InvalidArgumentError(
                "device_id must be 4 to 90 characters of 0-9, a-z, A-Z, '-', '_' and '.'"
            )
        if not provisioning_token:
            raise InvalidArgumentError("provisioning_token must not be empty")
        path = Path(db)
        if path.suffix != ".db":
            raise InvalidArgumentError("The database file name must end in .db")
        config = outbox or OutboxConfig()
        loop = asyncio.get_running_loop()
        # Before the store opens: a bad CA file then leaves no database, thread or session open.
        ssl_context = await loop.run_in_executor(None, _ssl_context, ca_file)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spotflow-outbox")
        opening = loop.run_in_executor(executor, Store.open, path, config)
        try:
            store = await asyncio.shield(opening)
        except BaseException:
            # Cancelled while the thread opens the database (a dialog closed): it goes on
            # opening, so close what it opens.
            with suppress(Exception):
                await loop.run_in_executor(executor, (await opening).close)
            await loop.run_in_executor(None, executor.shutdown)
            raise
        own_session = None if websession is not None else aiohttp.ClientSession()
        client = cls(
            device_id=device_id,
            provisioning_token=provisioning_token,
            store=store,
            executor=executor,
            outbox=Outbox(store, executor, config),
            api=PlatformApi(websession or own_session, instance, ssl_context),  # type: ignore[arg-type]
            ssl_context=ssl_context,
            session=own_session,
            desired_properties_updated_callback=desired_properties_updated_callback,
            retry_interval=retry_interval,
        )
        try:
            await client._set_up(
                instance,
                display_provisioning_operation_callback,
                outbox_ready_callback,
                provisioning_poll_interval,
            )
        except BaseException:
            await client.close()
            raise
        return client

    # Start-up

    async def _set_up(
        self,
        instance: str,
        display_operation: Callable[[ProvisioningOperation], None] | None,
        outbox_ready: Callable[[DeviceClient], None] | None,
        poll_interval: float,
    ) -> None:
        store = self._store
        self._key = await self._loop.run_in_executor(
            None, sealing.derive_key, self._provisioning_token, store.salt
        )
        settings = await self._run(store.load_settings)
        if "desired" in settings:
            self._desired = self._saved_desired = _desired(json.loads(settings["desired"]))
        self._pending_reported = len(await self._run(store.pending_reported))
        self._outbox.start()
        if outbox_ready is not None:
            outbox_ready(self)
        token = None
        if (
            settings.get("instance") == instance
            # The approver may have given the device another ID; starting under it is the same.
            and self._requested_device_id
            in (settings.get("requested_device_id"), settings.get("device_id"))
            and "registration_token" in settings
        ):
            # None when sealed under another provisioning token: then provision again.
            token = sealing.unseal(self._key, settings["registration_token"])
        if token is not None:
            self._token = RegistrationToken(
                token, datetime.fromisoformat(settings["token_expiration"])
            )
            self._refresh_at = datetime.fromisoformat(settings["token_refresh_at"])
            # Missing when the first registration never succeeded; registering fills them in.
            self.device_id = settings.get("device_id", "")
            self.workspace_id = settings.get("workspace_id", "")
            try:
                await self._register()
            except RegistrationTokenRevokedError:
                await self._save(dict.fromkeys(_CREDENTIAL_KEYS))
                raise
            except (SpotflowConnectionError, WorkspaceDisabledError) as err:
                _LOGGER.info("Starting offline; connecting when the platform allows: %s", err)
        else:
            # Saved with the token in one transaction, so that a start interrupted before the
            # first registration can resume from the stored token.
            await self._store_token(
                await self._provision(display_operation, poll_interval),
                instance=instance,
                requested_device_id=self._requested_device_id,
            )
            await self._retrying(self._register)
        self._tasks = [
            self._loop.create_task(self._maintain_connection(), name="spotflow connection"),
            self._loop.create_task(self._refresh_token_loop(), name="spotflow token refresh"),
        ]
        if self._desired_callback is not None:
            self._loop.call_soon(self._notify_desired)

    async def _provision(
        self,
        display_operation: Callable[[ProvisioningOperation], None] | None,
        poll_interval: float,
    ) -> RegistrationToken:
        operation = await self._retrying(
            lambda: self._api.init_provisioning(self._provisioning_token, self._requested_device_id)
        )
        _LOGGER.info(
            "Provisioning operation started; verification code %s", operation.verification_code
        )
        if display_operation is not None:
            display_operation(operation)
        while True:
            try:
                token = await self._api.complete_provisioning(
                    self._provisioning_token, operation.id
                )
            except SpotflowConnectionError as err:
                _LOGGER.debug("Provisioning not completed yet: %s", err)
                token = None
            if token is not None:
                return token
            if datetime.now(UTC) >= operation.expiration_time:
                raise ProvisioningOperationExpiredError("The provisioning operation expired")
            await asyncio.sleep(poll_interval)

    async def _retrying[T](self, call: Callable[[], Awaitable[T]]) -> T:
        """Retry a call while it fails transiently, every `retry_interval`."""
        outage = _Outage("Reaching the Spotflow platform")
        while True:
            try:
                result = await call()
            except SpotflowCertificateError:
                raise  # Retrying cannot help: a person must add the CA.
            except SpotflowConnectionError as err:
                outage.failed(err)
                await asyncio.sleep(self._retry_interval)
            else:
                outage.worked()
                return result

    # Credentials

    async def _run[T](self, function: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self._executor, function, *args)

    async def _save(self, values: dict[str, Any]) -> None:
        await self._run(self._store.save_settings, values)

    async def _store_token(self, token: RegistrationToken, **settings: str) -> None:
        """Save the token, and `settings` with it in the same transaction."""
        self._token = token
        self._refresh_at = _refresh_time(token.expiration_time)
        await self._save(
            {
                "registration_token": sealing.seal(self._key, token.token),
                "token_expiration": token.expiration_time.isoformat(),
                "token_refresh_at": self._refresh_at.isoformat(),
                **settings,
            }
        )

    async def _register(self) -> Registration:
        """Register for a fresh SAS; refresh the token once if the platform refuses it."""
        assert self._token is not None
        try:
            registration = await self._api.register(self._token.token)
        except RegistrationTokenRevokedError:
            await self._store_token(
                await self._api.refresh_token(self._provisioning_token, self._token.token)
            )
            registration = await self._api.register(self._token.token)
        self._registration = registration
        self._renew_at = _renewal_time(registration)
        if (self.device_id, self.workspace_id) != (
            registration.device_id,
            registration.workspace_id,
        ):
            self.device_id, self.workspace_id = registration.device_id, registration.workspace_id
            await self._save({"device_id": self.device_id, "workspace_id": self.workspace_id})
        return registration

    async def _refresh_token_loop(self) -> None:
        outage = _Outage("Refreshing the registration token")
        while True:
            assert self._refresh_at is not None
            assert self._token is not None
            delay = (self._refresh_at - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(delay, 0))
            try:
                token = await self._api.refresh_token(self._provisioning_token, self._token.token)
            except (SpotflowConnectionError, WorkspaceDisabledError) as err:
                # A disabled workspace can be enabled again: not a reason to stop for good.
                outage.failed(err)
                if isinstance(err, WorkspaceDisabledError):
                    self.last_error = err
                await asyncio.sleep(self._retry_interval)
                continue
            except SpotflowError as err:
                await self._fail(err)
                return
            outage.worked()
            if isinstance(self.last_error, WorkspaceDisabledError):
                self.last_error = None
            await self._store_token(token)
            _LOGGER.debug("Registration token refreshed")

    async def _fail(self, error: SpotflowError) -> None:
        """Stop connecting after a definitive error; credentials that cannot work are forgotten."""
        _LOGGER.error("Spotflow device stopped: %s", error)
        self.last_error = error
        if isinstance(error, RegistrationTokenRevokedError):
            await self._save(dict.fromkeys(_CREDENTIAL_KEYS))
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        # Usually already disconnected: listeners hear it again, now with `last_error` set.
        self._connected = True
        self._set_connected(False)

    # Connection

    async def _maintain_connection(self) -> None:
        delay = min(1.0, self._retry_interval)
        while True:
            try:
                registration = self._registration
                if registration is None or datetime.now(UTC) >= self._renew_at:
                    registration = await self._register()
                session = self._new_session(registration)
                try:
                    await session.connect()
                except CredentialsRefusedError:
                    self._registration = None
                    raise
                delay = min(1.0, self._retry_interval)
                if await self._run_session(session, registration):
                    continue
            except (RegistrationTokenRevokedError, ProvisioningTokenInvalidError) as err:
                await self._fail(err)
                return
            except SpotflowError as err:
                _LOGGER.debug("Spotflow connection attempt failed: %s", err)
                self.last_error = err
            self._set_connected(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_interval)

    def _new_session(self, registration: Registration) -> MqttSession:
        host, _, port = registration.hub_host.partition(":")
        client_id = registration.client_id
        return MqttSession(
            host=host,
            port=int(port) if port else _DEFAULT_MQTT_PORT,
            client_id=client_id,
            username=f"{registration.hub_host}/{client_id}/?api-version=2018-06-30",
            password=registration.sas,
            ssl_context=self._ssl_context,
            on_message=self._on_message,
        )

    async def _run_session(self, session: MqttSession, registration: Registration) -> bool:
        """Serve one session; True when it ended to renew the SAS, False when it was lost."""
        client_id = registration.client_id
        tasks: list[asyncio.Future[Any]] = []
        try:
            await session.subscribe(topics.subscriptions(client_id))
            self.last_error = None
            self._set_connected(True)
            self._refetch_desired = True
            self._twin_work.set()
            tasks = [
                self._loop.create_task(
                    self._outbox.send(
                        lambda message: session.publish(
                            topics.events_topic(client_id, message.properties), message.payload
                        )
                    )
                ),
                self._loop.create_task(self._twin_loop(session)),
            ]
            renewal = (self._renew_at - datetime.now(UTC)).total_seconds()
            done, _ = await asyncio.wait(
                [session.closed, *tasks],
                timeout=max(renewal, 0),
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                if task is not session.closed and (error := task.exception()) is not None:
                    if not isinstance(error, SpotflowError):
                        raise error
                    _LOGGER.debug("Spotflow session ended: %s", error)
            return not done
        finally:
            self._set_connected(False)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.disconnect()

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        _LOGGER.info("Spotflow device %s", "connected" if connected else "disconnected")
        for listener in list(self._listeners):
            listener(connected)

    # Twin

    async def _twin_loop(self, session: MqttSession) -> None:
        outage = _Outage("Synchronizing the device twin")
        while True:
            await self._twin_work.wait()
            self._twin_work.clear()
            try:
                await self._sync_twin(session)
            except (_TwinTimeoutError, _TwinBusyError, OutboxStorageError) as err:
                # Stream messages keep flowing meanwhile: neither the twin nor a full disk is a
                # reason to hold delivery back or to hang up. What was not done is tried later.
                outage.failed(err)
                self._twin_work.set()
                await asyncio.sleep(self._retry_interval)
            else:
                outage.worked()

    async def _sync_twin(self, session: MqttSession) -> None:
        if self._refetch_desired:
            self._refetch_desired = False
            before = self._desired
            try:
                status, body = await self._twin_request(session, topics.twin_get_topic, b"")
            except _TwinTimeoutError:
                self._refetch_desired = True
                raise
            if (desired := _twin_desired(body) if status == 200 else None) is None:
                # The stored properties stay; the next connection asks again.
                _LOGGER.warning("Twin request failed (status %d or malformed answer)", status)
            elif self._desired is before or desired.version >= self._desired.version:
                # Otherwise a newer patch arrived while the answer was on its way: keep that.
                self._apply_desired(desired)
        storage_error: OutboxStorageError | None = None
        if self._desired is not self._saved_desired:
            try:
                await self._save_desired()
            except OutboxStorageError as err:
                # Raised after the reported patches: sending them frees space on a full disk.
                storage_error = err
        for seq, patch in await self._run(self._store.pending_reported):
            status, _ = await self._twin_request(
                session, topics.twin_reported_topic, json.dumps(patch).encode()
            )
            if status == 429 or not 200 <= status < 500:
                # Temporary: keep this patch (and the later ones, in order) for another try.
                raise _TwinBusyError(f"Reported properties not accepted yet (status {status})")
            if status >= 300:
                # A patch the platform refuses (4xx) would be refused forever: log and drop it.
                _LOGGER.warning("Reported properties refused with status %d", status)
            await self._run(self._store.delete_reported, seq)
            self._pending_reported -= 1
        if storage_error is not None:
            raise storage_error

    async def _twin_request(
        self, session: MqttSession, topic: Callable[[int], str], payload: bytes
    ) -> tuple[int, bytes]:
        self._request_id += 1
        request_id = self._request_id
        response: asyncio.Future[tuple[int, bytes]] = self._loop.create_future()
        self._twin_requests[request_id] = response
        try:
            async with asyncio.timeout(_TWIN_TIMEOUT):
                await session.publish(topic(request_id), payload)
                return await response
        except TimeoutError as err:
            raise _TwinTimeoutError("The device twin did not answer") from err
        finally:
            self._twin_requests.pop(request_id, None)

    async def _save_desired(self) -> None:
        # Marked saved only once written: a save cut short by close() is done again there.
        desired = self._desired
        await self._save({"desired": json.dumps({"$version": desired.version, **desired.values})})
        self._saved_desired = desired

    def _on_message(self, topic: str, payload: bytes) -> None:
        if (response := topics.parse_twin_response(topic)) is not None:
            status, request_id = response
            future = self._twin_requests.get(request_id) if request_id is not None else None
            if future is not None and not future.done():
                future.set_result((status, payload))
            return
        if (version := topics.parse_desired_patch_version(topic)) is None:
            return
        if version == self._desired.version + 1:
            patch = json.loads(payload)
            self._apply_desired(
                DesiredProperties(
                    version, _merge_patch(self._desired.values, _desired(patch).values)
                )
            )
        else:
            self._refetch_desired = True
        self._twin_work.set()

    def _apply_desired(self, desired: DesiredProperties) -> None:
        if desired == self._desired:
            return
        self._desired = desired
        self._twin_work.set()
        if self._desired_callback is not None:
            self._notify_desired()

    def _notify_desired(self) -> None:
        assert self._desired_callback is not None
        try:
            self._desired_callback(self._desired)
        except Exception:
            _LOGGER.exception("Error in the desired properties callback")

    # Public API

    @property
    def connected(self) -> bool:
        """Return whether the MQTT session is up."""
        return self._connected

    def add_connection_listener(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call `listener(connected)` on every change; returns a function that removes it.

        When the device stops for good (see `last_error`), listeners hear `False` once more.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    @property
    def stats(self) -> OutboxStats:
        """Return the outbox counters."""
        return self._outbox.stats

    @property
    def storage_error(self) -> SpotflowError | None:
        """Return the error that keeps records from the disk, if the last commit failed."""
        return self._outbox.storage_error

    @property
    def watermark(self) -> Watermark | None:
        """Return the newest watermark on disk, stored with records by a stream sender."""
        return self._outbox.watermark

    @property
    def pending_messages_count(self) -> int:
        """Return how many messages and unpacked records await acknowledgement."""
        return self._outbox.pending_count

    async def wait_enqueued_messages_sent(self) -> None:
        """Wait until everything enqueued is acknowledged by the platform."""
        await self._outbox.wait_drained()

    def create_stream_sender(
        self,
        stream_group: str | None = None,
        stream: str | None = None,
        compression: Compression = Compression.UNCOMPRESSED,
    ) -> StreamSender:
        """Return a sender for a stream (None: the workspace's default group or stream)."""
        return StreamSender(self._outbox, stream_group, stream, Compression(compression))

    def get_desired_properties(self) -> DesiredProperties:
        """Return the latest desired properties known (stored ones while offline)."""
        return self._desired

    def get_desired_properties_if_newer(self, version: int) -> DesiredProperties | None:
        """Return the desired properties when their version is above `version`."""
        return self._desired if self._desired.version > version else None

    async def update_reported_properties(self, properties: dict[str, Any]) -> None:
        """Persist a reported-properties patch; it is sent when connected."""
        try:
            json.dumps(properties)
        except (TypeError, ValueError) as err:
            raise InvalidArgumentError("Reported properties must be JSON serializable") from err
        await self._run(self._store.add_reported, properties)
        self._pending_reported += 1
        self._twin_work.set()

    @property
    def any_pending_reported_properties_updates(self) -> bool:
        """Return whether reported-properties patches await the platform."""
        return self._pending_reported > 0

    async def close(self) -> None:
        """Commit what is enqueued, disconnect and close the database."""
        if self._closed:
            return
        self._closed = True
        await self._shut_down()

    async def _shut_down(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._desired is not self._saved_desired:
            # Applied, and so handed to the caller, but not saved by the twin loop yet: the next
            # start must begin from what this one last gave out.
            with suppress(OutboxStorageError):
                await self._save_desired()
        await self._outbox.close()
        with suppress(Exception):
            await self._run(self._store.close)
        await self._loop.run_in_executor(None, self._executor.shutdown)
        if self._own_session is not None:
            await self._own_session.close()
