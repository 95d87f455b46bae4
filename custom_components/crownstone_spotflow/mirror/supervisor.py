"""The supervisor: keeps a Spotflow client running for the mirror entry, and says how it goes.

It starts the client (which may wait for the platform or for an approval), attaches the hot path
as soon as the outbox accepts records (before anything waits for the network), catches up from
the recorder what the outbox's watermark says the mirror did not hear, restarts after a revoked
registration, turns what keeps the client from the platform into repair issues, and keeps the
counters and reported properties current. It knows nothing of any Crownstone account.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime, timedelta
from typing import Any, Final

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event, HomeAssistant, callback
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.start import async_at_started

from custom_components.crownstone_spotflow.const import DOMAIN, LOGGER
from custom_components.crownstone_spotflow.spotflow import (
    DesiredProperties,
    DeviceClient,
    OutboxStats,
    ProvisioningOperation,
    RegistrationTokenRevokedError,
    SpotflowError,
)

from .catch_up import Coverage, async_catch_up
from .listener import StateListener
from .repairs import (
    CONNECTION_ISSUES,
    START_ISSUES,
    MirrorIssue,
    async_clear_issues,
    async_raise_issue,
    start_failure_issue,
)
from .reported import ReportedProperties
from .settings import MirrorSettings, async_start_client, outbox_path

# Entities read the outbox counters at this rate; every change of theirs is a recorder row.
STATS_INTERVAL: Final = timedelta(seconds=30)
# The platform hears about the mirror at this rate, and when the desired properties change.
REPORT_INTERVAL: Final = timedelta(minutes=5)


class MirrorSupervisor:
    """Run the mirror of one entry: the client, the hot path, counters, twin and repairs."""

    client: DeviceClient | None = None
    stats: OutboxStats | None = None
    desired: DesiredProperties | None = None

    def __init__(
        self,
        hass: HomeAssistant,
        entry_id: str,
        title: str,
        settings: MirrorSettings,
        *,
        created: float,
    ) -> None:
        """Initialize; nothing runs until async_start.

        `created` is when the entry was made: what changed since, the stream should hold.
        """
        assert settings.outbox is not None
        self.hass = hass
        self.entry_id = entry_id
        self.title = title
        self.settings = settings
        self.db = outbox_path(hass, settings.outbox)
        self.listener = StateListener(hass, entry_id, settings)
        self.reported = ReportedProperties(self)
        self.created = created
        self._dropped_seen = 0
        self._restart_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsub_stop: CALLBACK_TYPE | None = None
        # What attaching a client set up, undone when it detaches.
        self._unsubs: list[CALLBACK_TYPE] = []
        self._update_listeners: list[CALLBACK_TYPE] = []

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
        """Start the client in the background; mirroring begins once its outbox is open."""
        await self.reported.async_load_version()
        self._unsub_stop = self.hass.bus.async_listen_once(
            EVENT_HOMEASSISTANT_STOP, self._async_on_stop
        )
        self.async_create_task(self._async_connect(), "connect")

    @callback
    def async_create_task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a task that stops with the mirror."""
        task = self.hass.async_create_background_task(
            coro, f"{DOMAIN} mirror {name} {self.entry_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @callback
    def _async_raise(self, issue: MirrorIssue, **placeholders: str) -> None:
        async_raise_issue(self.hass, self.entry_id, self.title, issue, **placeholders)

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
            )
        except SpotflowError as err:
            await self._async_detach()
            LOGGER.error("Mirroring into Spotflow could not start: %s", err)
            if (issue := start_failure_issue(err)) is not None:
                async_clear_issues(self.hass, self.entry_id, START_ISSUES)
                self._async_raise(issue)
            if isinstance(err, RegistrationTokenRevokedError):
                # The client forgot the revoked credentials: starting again asks for approval.
                self._async_schedule_restart()
            return
        async_clear_issues(self.hass, self.entry_id, START_ISSUES)
        self._async_check_client()

    @callback
    def _async_attach(self, client: DeviceClient) -> None:
        self.client = client
        self.stats = client.stats
        self._dropped_seen = self.stats.records_dropped
        self.desired = client.get_desired_properties()
        self.listener.async_apply_desired(self.desired)
        self._unsubs.extend(
            (
                client.add_connection_listener(self._async_on_connection),
                async_track_time_interval(
                    self.hass, self._async_refresh_stats, STATS_INTERVAL, cancel_on_shutdown=True
                ),
                async_track_time_interval(
                    self.hass, self._async_report_tick, REPORT_INTERVAL, cancel_on_shutdown=True
                ),
                # Started before most entities exist: count them again once they do. (Unlike
                # async_listen_once, its cancel is safe after it ran.)
                async_at_started(self.hass, self._async_report_started),
            )
        )
        windows = self.listener.async_attach(
            client.create_stream_sender(
                stream_group=self.settings.stream_group,
                stream=self.settings.stream,
                compression=self.settings.compression,
            ),
            # An outbox that never stored a change (a new one, or one set aside as corrupt)
            # holds nothing since the entry was made.
            Coverage(self.created)
            if client.watermark is None
            else Coverage.from_watermark(client.watermark),
        )
        if windows:
            self.async_create_task(
                async_catch_up(self.hass, self.listener, windows, fresh=client.watermark is None),
                "catch-up",
            )
        self.reported.async_schedule()
        self._async_notify()

    @callback
    def _async_on_operation(self, operation: ProvisioningOperation) -> None:
        # The outbox holds no usable registration, so starting needs a person's approval.
        self._async_raise(
            MirrorIssue.PROVISIONING_REQUIRED,
            device_id=self.settings.device_id,
            verification_code=operation.verification_code,
        )

    @callback
    def _async_on_connection(self, connected: bool) -> None:
        self._async_notify()
        if connected:
            self.reported.async_schedule()
            # The counters and the reported properties are right once what waited is delivered,
            # not half a minute later.
            self.async_create_task(self._async_after_drained(), "drained")
        self._async_check_client()

    async def _async_after_drained(self) -> None:
        if (client := self.client) is None:
            return
        await client.wait_enqueued_messages_sent()
        self._async_refresh_stats()
        self.reported.async_schedule()

    @callback
    def _async_check_client(self) -> None:
        """Show what keeps the running client from the platform as the issue used at start."""
        if (client := self.client) is None:
            return
        if client.connected:
            async_clear_issues(self.hass, self.entry_id, CONNECTION_ISSUES)
        elif (issue := start_failure_issue(client.last_error)) is not None:
            self._async_raise(issue)
            if issue is MirrorIssue.REGISTRATION_REVOKED:
                # The client gave up and forgot its credentials; starting again asks for
                # approval (the outbox and its backlog stay).
                self._async_schedule_restart()

    @callback
    def _async_schedule_restart(self) -> None:
        if self._restart_task is None:
            self._restart_task = self.async_create_task(self._async_restart(), "restart")

    async def _async_restart(self) -> None:
        try:
            await self._async_detach()
        finally:
            self._restart_task = None
        await self._async_connect()

    @callback
    def _async_on_desired(self, desired: DesiredProperties) -> None:
        # Attaching the client applies the desired properties known at start itself.
        if self.client is None or desired == self.desired:
            return
        self.desired = desired
        if self.listener.async_apply_desired(desired):
            # Resumed, or other entities wanted: the stream gets the complete picture again.
            self.listener.async_snapshot()
        self.reported.async_schedule()

    @callback
    def _async_refresh_stats(self, _now: datetime | None = None) -> None:
        if self.client is None:
            return
        stats = self.client.stats
        if stats != self.stats:
            self.stats = stats
            self._async_notify()
        if stats.records_dropped > self._dropped_seen:
            self._async_raise(MirrorIssue.BACKLOG_DROPPING, dropped=str(stats.records_dropped))
        elif self.client.connected:
            # Delivering again and nothing dropped since the last look: the bound holds.
            async_clear_issues(self.hass, self.entry_id, frozenset({MirrorIssue.BACKLOG_DROPPING}))
        self._dropped_seen = stats.records_dropped
        if self.client.storage_error is not None:
            self._async_raise(MirrorIssue.OUTBOX_UNUSABLE)
        else:
            async_clear_issues(self.hass, self.entry_id, frozenset({MirrorIssue.OUTBOX_UNUSABLE}))
        # An offline start or a lost connection retries by itself; only its cause is shown.
        self._async_check_client()

    @callback
    def _async_report_started(self, _hass: HomeAssistant) -> None:
        self._async_report_tick()

    @callback
    def _async_report_tick(self, _now: datetime | None = None) -> None:
        self._async_refresh_stats()
        self.reported.async_schedule()

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
        self.listener.async_detach()
        while self._unsubs:
            self._unsubs.pop()()

    async def _async_detach(self) -> None:
        self._async_unsubscribe()
        self.reported.async_cancel()
        if (client := self.client) is not None:
            self.client = None
            await client.close()
        self._async_notify()
