"""Mirror Home Assistant entity states into a Spotflow stream, durably.

The state listener runs on the event loop for every state change in Home Assistant, so it does
as little as it can: one cached filter decision, one orjson call, one append to the outbox's
in-memory buffer. The Spotflow library commits records to SQLite in groups, packs them into
stream messages and delivers them with deterministic ids, so outages and restarts lose nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
import re
import secrets
from typing import Any, Final

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import (
    EVENT_HOMEASSISTANT_STOP,
    EVENT_STATE_CHANGED,
    __version__ as HA_VERSION,
)
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.entityfilter import (
    BASE_FILTER_SCHEMA,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_ENTITY_GLOBS,
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_ENTITY_GLOBS,
    EntityFilter,
    convert_filter,
)
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.json import json_bytes, json_encoder_default
from homeassistant.helpers.storage import STORAGE_DIR
from homeassistant.loader import async_get_integration
from homeassistant.util.hass_dict import HassKey
import orjson
import voluptuous as vol

from .const import DOMAIN, LOGGER
from .forwarder_repairs import (
    START_ISSUES,
    ForwarderIssue,
    async_clear_issues,
    async_raise_issue,
)
from .spotflow import (
    DEFAULT_INSTANCE,
    Compression,
    DesiredProperties,
    DeviceClient,
    OutboxConfig,
    OutboxCorruptError,
    OutboxStats,
    OutboxStorageError,
    PayloadTooLargeError,
    ProvisioningOperation,
    ProvisioningOperationCancelledError,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    RegistrationTokenRevokedError,
    SpotflowError,
    StreamSender,
    WorkspaceDisabledError,
)

# The forwarder's settings live under this key of the config entry's options.
OPTIONS_KEY: Final = "spotflow"

FILTER_KEYS: Final = (
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_ENTITY_GLOBS,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_ENTITY_GLOBS,
)
INCLUDE_KEYS: Final = (CONF_INCLUDE_DOMAINS, CONF_INCLUDE_ENTITIES, CONF_INCLUDE_ENTITY_GLOBS)
DEVICE_ID_PATTERN: Final = re.compile(r"[0-9A-Za-z._-]{4,90}")

# Entities read the outbox counters at this rate; every change of theirs is a recorder row.
STATS_INTERVAL: Final = timedelta(seconds=30)
# The platform hears about the forwarder at this rate, and when the desired properties change.
REPORT_INTERVAL: Final = timedelta(minutes=5)

# How often the client asks whether provisioning was approved, and retries the platform.
PROVISIONING_POLL_INTERVAL = 5.0
RETRY_INTERVAL = 30.0

DESIRED_PAUSED: Final = "paused"
DESIRED_ENTITY_FILTER: Final = "entityFilter"


FORWARDERS: HassKey[dict[str, Forwarder]] = HassKey(f"{DOMAIN}_spotflow_forwarders")
TO_REDACT: Final = {"provisioning_token"}


@dataclass(frozen=True, kw_only=True)
class ForwarderSettings:
    """What the options flow stored about mirroring into Spotflow."""

    enabled: bool = False
    provisioning_token: str = ""
    device_id: str = ""
    instance: str = DEFAULT_INSTANCE
    stream_group: str | None = None
    stream: str | None = None
    compression: Compression = Compression.UNCOMPRESSED
    include_attributes: bool = True
    entity_filter: Mapping[str, list[str]] = field(default_factory=dict)
    ca_certificate: str | None = None
    # The outbox file in .storage; set once a device was provisioned into it.
    outbox: str | None = None

    @classmethod
    def from_entry(cls, entry: ConfigEntry) -> ForwarderSettings:
        """Read the settings from a config entry's options."""
        stored: Mapping[str, Any] = entry.options.get(OPTIONS_KEY, {})
        settings = cls(**{key: stored[key] for key in cls.__dataclass_fields__ if key in stored})
        return replace(settings, compression=Compression(settings.compression))

    def as_options(self) -> dict[str, Any]:
        """Return the settings as stored in the options."""
        options = asdict(self)
        options["compression"] = str(self.compression)
        options["entity_filter"] = dict(self.entity_filter)
        return options

    def same_registration(self, other: ForwarderSettings) -> bool:
        """Return whether `other` can start from the registration stored in this outbox.

        Another CA only changes whom the client trusts; the registration stays valid.
        """
        return self.outbox is not None and (
            self.provisioning_token,
            self.device_id,
            self.instance,
        ) == (other.provisioning_token, other.device_id, other.instance)


def entity_filter_config(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Return a complete entity filter configuration; raise vol.Invalid when malformed."""
    try:
        validated: dict[str, list[str]] = BASE_FILTER_SCHEMA(
            {key: config[key] for key in FILTER_KEYS if key in config}
        )
    except (TypeError, AttributeError) as err:
        # Config validation assumes strings; the platform may send any JSON.
        raise vol.Invalid(f"not a list of strings: {err}") from err
    return validated


def _json_default(value: Any) -> Any:
    """Encode what orjson refused like Home Assistant does, else as text."""
    try:
        return json_encoder_default(value)
    except TypeError:
        return str(value)


def outbox_path(hass: HomeAssistant, name: str) -> Path:
    """Return where an outbox file lives: Home Assistant's .storage folder."""
    return Path(hass.config.path(STORAGE_DIR, name))


def new_outbox_name(entry_id: str) -> str:
    """Return a fresh outbox file name; every provisioning gets its own file."""
    return f"{DOMAIN}.{entry_id}.{secrets.token_hex(4)}.spotflow.db"


def _ca_file(db: Path) -> Path:
    return db.with_name(db.name.removesuffix(".db") + ".ca.pem")


def remove_outbox_files(db: Path) -> None:
    """Delete an outbox with its SQLite side files and CA file (blocking)."""
    for path in (
        *(db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm")),
        _ca_file(db),
    ):
        path.unlink(missing_ok=True)


async def async_start_client(
    hass: HomeAssistant,
    settings: ForwarderSettings,
    db: Path,
    *,
    on_operation: Callable[[ProvisioningOperation], None] | None = None,
    on_desired: Callable[[DesiredProperties], None] | None = None,
    on_outbox_ready: Callable[[DeviceClient], None] | None = None,
    outbox: OutboxConfig | None = None,
) -> DeviceClient:
    """Start a Spotflow device client on an outbox; provision first if it holds no device."""
    ca_file: str | None = None
    if settings.ca_certificate:
        ca_path = _ca_file(db)
        await hass.async_add_executor_job(ca_path.write_text, settings.ca_certificate)
        ca_file = str(ca_path)
    return await DeviceClient.start(
        settings.device_id,
        settings.provisioning_token,
        str(db),
        instance=settings.instance,
        display_provisioning_operation_callback=on_operation,
        desired_properties_updated_callback=on_desired,
        outbox_ready_callback=on_outbox_ready,
        websession=async_get_clientsession(hass),
        ca_file=ca_file,
        outbox=outbox,
        provisioning_poll_interval=PROVISIONING_POLL_INTERVAL,
        retry_interval=RETRY_INTERVAL,
    )


# Start failures the person must resolve, as the issue that tells them how.
_START_FAILURES: Final[tuple[tuple[type[SpotflowError], ForwarderIssue], ...]] = (
    (ProvisioningTokenInvalidError, ForwarderIssue.PROVISIONING_TOKEN_INVALID),
    (ProvisioningOperationCancelledError, ForwarderIssue.PROVISIONING_CANCELLED),
    (ProvisioningOperationExpiredError, ForwarderIssue.PROVISIONING_EXPIRED),
    (RegistrationTokenRevokedError, ForwarderIssue.REGISTRATION_REVOKED),
    (WorkspaceDisabledError, ForwarderIssue.WORKSPACE_DISABLED),
    (OutboxStorageError, ForwarderIssue.OUTBOX_UNUSABLE),
    (OutboxCorruptError, ForwarderIssue.OUTBOX_UNUSABLE),
)
# Issues that a working connection to the platform resolves.
_CONNECTION_ISSUES: Final = START_ISSUES - {ForwarderIssue.OUTBOX_UNUSABLE}


def _start_failure_issue(error: SpotflowError | None) -> ForwarderIssue | None:
    for error_type, issue in _START_FAILURES:
        if isinstance(error, error_type):
            return issue
    return None


class Forwarder:
    """Mirror the states of a filtered set of entities into one Spotflow stream."""

    client: DeviceClient | None = None
    stats: OutboxStats | None = None

    def __init__(
        self,
        hass: HomeAssistant,
        entry: ConfigEntry,
        settings: ForwarderSettings,
        outbox: OutboxConfig | None = None,
    ) -> None:
        """Initialize the forwarder; nothing runs until async_start."""
        assert settings.outbox is not None
        self.hass = hass
        self.outbox_config = outbox
        self.entry = entry
        self.settings = settings
        self.db = outbox_path(hass, settings.outbox)
        self.paused = False
        self.desired: DesiredProperties | None = None
        self.platform_filter: EntityFilter | None = None
        self._entity_filter = convert_filter(entity_filter_config(settings.entity_filter))
        self._entity_registry = er.async_get(hass)
        self._decisions: dict[str, bool] = {}
        self._sender: StreamSender | None = None
        self._sequence = 0
        self._too_large: set[str] = set()
        self._dropped_seen: int | None = None
        self._reported: dict[str, Any] | None = None
        self._report_task: asyncio.Task[None] | None = None
        self._report_again = False
        self._restart_task: asyncio.Task[None] | None = None
        self._integration_version = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsub_stop: CALLBACK_TYPE | None = None
        # What attaching a client set up, undone when it detaches.
        self._unsubs: list[CALLBACK_TYPE] = []
        self._update_listeners: list[CALLBACK_TYPE] = []

    @property
    def unique_id_prefix(self) -> str:
        """Return the prefix of the unique ids of the forwarder's own entities."""
        return f"{self.entry.entry_id}_spotflow_"

    @callback
    def async_add_listener(self, update: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call `update` whenever the connection or the counters change."""
        self._update_listeners.append(update)
        return lambda: self._update_listeners.remove(update)

    @callback
    def _async_notify(self) -> None:
        for update in list(self._update_listeners):
            update()

    async def async_start(self) -> None:
        """Start the client in the background; mirroring begins once it runs."""
        self._integration_version = str((await async_get_integration(self.hass, DOMAIN)).version)
        self._unsub_stop = self.hass.bus.async_listen_once(
            EVENT_HOMEASSISTANT_STOP, self._async_on_stop
        )
        self._async_create_task(self._async_connect(), "connect")

    @callback
    def _async_create_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = self.hass.async_create_background_task(
            coro, f"{DOMAIN} spotflow {name} {self.entry.entry_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _async_connect(self) -> None:
        try:
            await async_start_client(
                self.hass,
                self.settings,
                self.db,
                on_operation=self._async_on_operation,
                on_desired=self._async_on_desired,
                # Records are kept from here on, also while registering or waiting for approval.
                on_outbox_ready=self._async_attach,
                outbox=self.outbox_config,
            )
        except SpotflowError as err:
            await self._async_detach()
            LOGGER.error("Mirroring into Spotflow could not start: %s", err)
            if (issue := _start_failure_issue(err)) is not None:
                async_clear_issues(self.hass, self.entry.entry_id, START_ISSUES)
                async_raise_issue(self.hass, self.entry, issue)
            if isinstance(err, RegistrationTokenRevokedError):
                # The client forgot the revoked credentials: starting again asks for approval.
                self._async_schedule_restart()
            return
        async_clear_issues(self.hass, self.entry.entry_id, START_ISSUES)
        self._async_check_client()

    @callback
    def _async_attach(self, client: DeviceClient) -> None:
        self.client = client
        self.stats = client.stats
        self._dropped_seen = self.stats.records_dropped
        # Continue the sequence of the outbox's earlier runs, so consumers see no jumps back.
        self._sequence = (
            self.stats.records_delivered + self.stats.records_dropped + self.stats.backlog_records
        )
        self._sender = client.create_stream_sender(
            stream_group=self.settings.stream_group,
            stream=self.settings.stream,
            compression=self.settings.compression,
        )
        self._unsubs.extend(
            (
                client.add_connection_listener(self._async_on_connection),
                self.hass.bus.async_listen(
                    EVENT_STATE_CHANGED, self._async_on_state_changed, self._async_filter
                ),
                self.hass.bus.async_listen(
                    er.EVENT_ENTITY_REGISTRY_UPDATED, self._async_on_registry_updated
                ),
                async_track_time_interval(
                    self.hass, self._async_refresh_stats, STATS_INTERVAL, cancel_on_shutdown=True
                ),
                async_track_time_interval(
                    self.hass, self._async_report_tick, REPORT_INTERVAL, cancel_on_shutdown=True
                ),
            )
        )
        self._async_apply_desired(client.get_desired_properties())
        self._async_snapshot()
        self._async_schedule_report()
        self._async_notify()

    @callback
    def _async_on_operation(self, operation: ProvisioningOperation) -> None:
        # The outbox holds no usable registration, so starting needs a person's approval.
        async_raise_issue(
            self.hass,
            self.entry,
            ForwarderIssue.PROVISIONING_REQUIRED,
            device_id=self.settings.device_id,
            verification_code=operation.verification_code,
        )

    @callback
    def _async_on_connection(self, connected: bool) -> None:
        self._async_notify()
        if connected:
            self._async_schedule_report()
        self._async_check_client()

    @callback
    def _async_check_client(self) -> None:
        """Show what keeps the running client from the platform as the issue used at start."""
        if (client := self.client) is None:
            return
        if client.connected:
            async_clear_issues(self.hass, self.entry.entry_id, _CONNECTION_ISSUES)
        elif (issue := _start_failure_issue(client.last_error)) is not None:
            async_raise_issue(self.hass, self.entry, issue)
            if issue is ForwarderIssue.REGISTRATION_REVOKED:
                # The client gave up and forgot its credentials; starting again asks for
                # approval (the outbox and its backlog stay).
                self._async_schedule_restart()

    @callback
    def _async_schedule_restart(self) -> None:
        if self._restart_task is None:
            self._restart_task = self._async_create_task(self._async_restart(), "restart")

    async def _async_restart(self) -> None:
        try:
            await self._async_detach()
        finally:
            self._restart_task = None
        await self._async_connect()

    @callback
    def _async_filter(self, data: EventStateChangedData) -> bool:
        """Decide whether to mirror a state change; runs on the loop for every change."""
        if self.paused:
            return False
        entity_id = data["entity_id"]
        try:
            return self._decisions[entity_id]
        except KeyError:
            wanted = self._decisions[entity_id] = self._decide(entity_id)
            return wanted

    @callback
    def _async_on_state_changed(self, event: Event[EventStateChangedData]) -> None:
        """Hand one state change to the outbox; runs on the loop for every mirrored change."""
        data = event.data
        self._async_enqueue(data["entity_id"], data["new_state"])

    @callback
    def _async_enqueue(
        self, entity_id: str, state: State | None, *, snapshot: bool = False
    ) -> None:
        assert self._sender is not None
        try:
            self._sender.enqueue_record_nowait(self._record(entity_id, state, snapshot=snapshot))
        except PayloadTooLargeError as err:
            if entity_id not in self._too_large:
                self._too_large.add(entity_id)
                LOGGER.warning("Not mirroring states of %s into Spotflow: %s", entity_id, err)
            return
        self._sequence += 1

    def _decide(self, entity_id: str) -> bool:
        entry = self._entity_registry.async_get(entity_id)
        if entry is not None and entry.unique_id.startswith(self.unique_id_prefix):
            # Mirroring the forwarder's own counters would feed back on itself.
            return False
        entity_filter = (
            self._entity_filter if self.platform_filter is None else self.platform_filter
        )
        if not any(entity_filter.config[key] for key in INCLUDE_KEYS) and (
            entry is None or entry.config_entry_id != self.entry.entry_id
        ):
            # Without include rules the own entities are the ones to choose from.
            return False
        return entity_filter(entity_id)

    def _record(self, entity_id: str, state: State | None, *, snapshot: bool) -> bytes:
        record: dict[str, Any] = {"seq": self._sequence + 1, "entity_id": entity_id}
        if state is None:
            record["removed"] = True
        else:
            record["state"] = state.state
            if self.settings.include_attributes:
                record["attributes"] = state.attributes
            record["last_changed"] = state.last_changed
            record["last_updated"] = state.last_updated
        if snapshot:
            record["snapshot"] = True
        try:
            return json_bytes(record)
        except TypeError:
            # An attribute Home Assistant cannot encode must not cost the whole state.
            return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=_json_default)

    @callback
    def _async_snapshot(self) -> None:
        """Mirror every wanted state, so the stream holds the complete picture."""
        if self._sender is None or self.paused:
            return
        for state in self.hass.states.async_all():
            if self._async_filter_entity(state.entity_id):
                self._async_enqueue(state.entity_id, state, snapshot=True)

    @callback
    def _async_filter_entity(self, entity_id: str) -> bool:
        return self._async_filter({"entity_id": entity_id, "old_state": None, "new_state": None})

    @callback
    def _async_on_registry_updated(self, event: Event[er.EventEntityRegistryUpdatedData]) -> None:
        data = event.data
        self._decisions.pop(data["entity_id"], None)
        if data["action"] == "update" and "old_entity_id" in data:
            self._decisions.pop(data["old_entity_id"], None)

    @callback
    def _async_on_desired(self, desired: DesiredProperties) -> None:
        # Attaching the client applies the desired properties known at start itself.
        if self.client is None or desired == self.desired:
            return
        before = (self.paused, self.platform_filter and self.platform_filter.config)
        self._async_apply_desired(desired)
        if (self.paused, self.platform_filter and self.platform_filter.config) != before:
            # Resumed, or other entities wanted: the stream gets the complete picture again.
            self._async_snapshot()
        self._async_schedule_report()

    @callback
    def _async_apply_desired(self, desired: DesiredProperties) -> None:
        """Apply what the platform asks: pause or resume, and an entity filter."""
        self.desired = desired
        self.paused = desired.values.get(DESIRED_PAUSED) is True
        platform_filter = desired.values.get(DESIRED_ENTITY_FILTER)
        self.platform_filter = None
        if isinstance(platform_filter, Mapping):
            try:
                self.platform_filter = convert_filter(entity_filter_config(platform_filter))
            except vol.Invalid as err:
                LOGGER.warning("Ignoring the entity filter the Spotflow platform set: %s", err)
        elif platform_filter is not None:
            LOGGER.warning("Ignoring the entity filter the Spotflow platform set: not an object")
        self._decisions.clear()

    @callback
    def _async_refresh_stats(self, _now: datetime | None = None) -> None:
        if self.client is None:
            return
        stats = self.client.stats
        if stats != self.stats:
            self.stats = stats
            self._async_notify()
        assert self._dropped_seen is not None
        if stats.records_dropped > self._dropped_seen:
            async_raise_issue(
                self.hass,
                self.entry,
                ForwarderIssue.BACKLOG_DROPPING,
                dropped=str(stats.records_dropped),
            )
        elif self.client.connected:
            # Delivering again and nothing dropped since the last look: the bound holds.
            async_clear_issues(
                self.hass, self.entry.entry_id, frozenset({ForwarderIssue.BACKLOG_DROPPING})
            )
        self._dropped_seen = stats.records_dropped
        if self.client.storage_error is not None:
            async_raise_issue(self.hass, self.entry, ForwarderIssue.OUTBOX_UNUSABLE)
        else:
            async_clear_issues(
                self.hass, self.entry.entry_id, frozenset({ForwarderIssue.OUTBOX_UNUSABLE})
            )
        # An offline start or a lost connection retries by itself; only its cause is shown.
        self._async_check_client()

    @callback
    def _async_report_tick(self, _now: datetime) -> None:
        self._async_schedule_report()

    @callback
    def _async_schedule_report(self) -> None:
        if self._report_task is not None and not self._report_task.done():
            self._report_again = True
            return
        self._report_task = self._async_create_task(self._async_report(), "report")

    def reported_properties(self) -> dict[str, Any]:
        """Return what the platform should know about this forwarder."""
        assert self.client is not None
        stats = self.client.stats
        return {
            "homeAssistantVersion": HA_VERSION,
            "integrationVersion": self._integration_version,
            "mirroredEntities": sum(
                1 for entity_id in self.hass.states.async_entity_ids() if self._decide(entity_id)
            ),
            "backlogRecords": stats.backlog_records,
            "lastDelivery": stats.last_delivery.isoformat() if stats.last_delivery else None,
            "paused": self.paused,
            "entityFilter": "platform" if self.platform_filter is not None else "options",
            "desiredVersion": self.desired.version if self.desired else None,
        }

    async def _async_report(self) -> None:
        assert self.client is not None
        self._report_again = True
        while self._report_again:
            self._report_again = False
            reported = self.reported_properties()
            if reported == self._reported:
                continue
            try:
                await self.client.update_reported_properties(reported)
            except SpotflowError as err:
                LOGGER.warning("Could not store the reported properties: %s", err)
                return
            self._reported = reported

    async def _async_on_stop(self, _event: Event) -> None:
        self._unsub_stop = None
        await self.async_stop()

    async def async_stop(self) -> None:
        """Stop mirroring and close the client; buffered records reach the disk first."""
        if self._unsub_stop is not None:
            self._unsub_stop()
            self._unsub_stop = None
        # No record may reach an outbox that a cancelled start is closing.
        self._async_unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._async_detach()

    @callback
    def _async_unsubscribe(self) -> None:
        while self._unsubs:
            self._unsubs.pop()()

    async def _async_detach(self) -> None:
        self._async_unsubscribe()
        if self._report_task is not None and self._report_task is not asyncio.current_task():
            self._report_task.cancel()
        if (client := self.client) is not None:
            self.client = None
            self._sender = None
            await client.close()
        self._async_notify()

    def diagnostics(self) -> dict[str, Any]:
        """Return the forwarder's state for diagnostics (nothing secret in it)."""
        client = self.client
        return {
            "running": client is not None,
            "device_id": client.device_id if client else None,
            "workspace_id": client.workspace_id if client else None,
            "connected": client.connected if client else False,
            "paused": self.paused,
            "desired": asdict(self.desired) if self.desired else None,
            "platform_filter": self.platform_filter.config if self.platform_filter else None,
            "stats": asdict(client.stats) if client else None,
            "pending_reported_properties": (
                client.any_pending_reported_properties_updates if client else False
            ),
        }


async def async_setup_forwarder(
    hass: HomeAssistant, entry: ConfigEntry, *, outbox: OutboxConfig | None = None
) -> Forwarder | None:
    """Start mirroring for a config entry, when its options enable it."""
    settings = ForwarderSettings.from_entry(entry)
    if not settings.enabled or settings.outbox is None:
        async_clear_issues(hass, entry.entry_id)
        _async_remove_forwarder_device(hass, entry)
        return None
    forwarder = Forwarder(hass, entry, settings, outbox)
    hass.data.setdefault(FORWARDERS, {})[entry.entry_id] = forwarder
    await forwarder.async_start()
    return forwarder


async def async_unload_forwarder(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Stop mirroring for a config entry; its outbox stays for the next start."""
    if (forwarder := hass.data.get(FORWARDERS, {}).pop(entry.entry_id, None)) is None:
        return
    await forwarder.async_stop()
    # Issues about delivery mean nothing while the forwarder does not run.
    async_clear_issues(
        hass,
        entry.entry_id,
        frozenset({ForwarderIssue.PROVISIONING_REQUIRED, ForwarderIssue.BACKLOG_DROPPING}),
    )


async def async_remove_forwarder(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Delete every outbox file of a config entry that is being removed."""

    def remove_files() -> None:
        # Outboxes with their side files, CA files and the copies of corrupt ones set aside.
        for path in Path(hass.config.path(STORAGE_DIR)).glob(f"{DOMAIN}.{entry.entry_id}.*"):
            path.unlink()

    await hass.async_add_executor_job(remove_files)
    async_clear_issues(hass, entry.entry_id)


@callback
def async_get_forwarder(hass: HomeAssistant, entry_id: str) -> Forwarder | None:
    """Return the running forwarder of a config entry."""
    return hass.data.get(FORWARDERS, {}).get(entry_id)


@callback
def _async_remove_forwarder_device(hass: HomeAssistant, entry: ConfigEntry) -> None:
    device_registry = dr.async_get(hass)
    identifier = forwarder_device_identifier(entry.entry_id)
    for device in dr.async_entries_for_config_entry(device_registry, entry.entry_id):
        if identifier in device.identifiers:
            device_registry.async_update_device(device.id, remove_config_entry_id=entry.entry_id)


def forwarder_device_identifier(entry_id: str) -> tuple[str, str]:
    """Return the device registry identifier of a config entry's Spotflow device."""
    return (DOMAIN, f"{entry_id}_spotflow")


async def async_get_forwarder_diagnostics(
    hass: HomeAssistant, entry: ConfigEntry
) -> dict[str, Any]:
    """Return the forwarder's settings and state for the entry's diagnostics, redacted."""
    forwarder = async_get_forwarder(hass, entry.entry_id)
    return {
        "settings": async_redact_data(ForwarderSettings.from_entry(entry).as_options(), TO_REDACT),
        "forwarder": forwarder.diagnostics() if forwarder else None,
    }
