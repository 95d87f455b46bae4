"""Data update coordinator for the Crownstone cloud."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_EMAIL, EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event as HassEvent, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .cloud import (
    Crownstone,
    CrownstoneCloud,
    CrownstoneConnectionError,
    CrownstoneCredentialsError,
    CrownstoneError,
    CrownstoneEventStream,
    DataChangeSubType,
    Event,
    Location,
    Sphere,
    Spheres,
    SwitchStateUpdateEvent,
)
from .const import (
    CONF_CLOUD_URL,
    CONF_PASSWORD_SHA1,
    CONF_SSE_URL,
    DOMAIN,
    LOGGER,
    OPTIMISTIC_WINDOW,
    SCAN_INTERVAL,
    SCAN_INTERVAL_WITHOUT_STREAM,
)
from .push import StalePart, apply_event, stale_part

type CrownstoneConfigEntry = ConfigEntry[CrownstoneDataUpdateCoordinator]


@dataclass(frozen=True, kw_only=True)
class PendingSwitch:
    """A switch command the cloud accepted but the stone has not reported back yet."""

    on: bool
    # None when the stone picks the level itself (TURN_ON).
    percentage: int | None
    cancel_expiry: CALLBACK_TYPE

    def confirmed_by(self, state: int) -> bool:
        """Return whether a reported state is what was asked for."""
        if self.percentage is not None:
            return state == self.percentage
        return (state > 0) == self.on


@contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn cloud errors into the errors the coordinator understands."""
    try:
        yield
    # Not every authentication error: a token refused right after a successful login means the
    # account lost access to something, and signing in again would not change that.
    except CrownstoneCredentialsError as error:
        raise ConfigEntryAuthFailed(
            translation_domain=DOMAIN, translation_key="authentication_error"
        ) from error
    except CrownstoneConnectionError as error:
        raise UpdateFailed(
            translation_domain=DOMAIN,
            translation_key="communication_error",
            translation_placeholders={"error": str(error)},
        ) from error
    except CrownstoneError as error:
        raise UpdateFailed(
            translation_domain=DOMAIN,
            translation_key="unknown_error",
            translation_placeholders={"error": str(error)},
        ) from error


class CrownstoneDataUpdateCoordinator(DataUpdateCoordinator[Spheres]):
    """Keeps the spheres of one Crownstone account up to date, live through the event stream.

    The cloud client updates its objects in place, so entities look their object up by id on
    every update instead of holding on to it. Pushed events change those objects and notify
    the entities at once; polling is the safety net, and takes over while the stream is down.
    """

    config_entry: CrownstoneConfigEntry

    def __init__(self, hass: HomeAssistant, entry: CrownstoneConfigEntry) -> None:
        """Initialize the coordinator."""
        # The entry's unique id is the account's user id. Accounts sharing a sphere see the
        # same cloud ids: the account id keeps their entities and devices apart.
        self.account_id = entry.unique_id or entry.entry_id
        self.cloud = CrownstoneCloud(
            entry.data[CONF_EMAIL],
            websession=async_get_clientsession(hass),
            password_sha1=entry.data[CONF_PASSWORD_SHA1],
            base_url=entry.data[CONF_CLOUD_URL],
        )
        # It shares the cloud's session and login.
        self.stream = CrownstoneEventStream(self.cloud, entry.data[CONF_SSE_URL])
        self._pending: dict[str, PendingSwitch] = {}
        # Events reach a stream only for the spheres the account had when it opened.
        self._streamed_spheres: set[str] = set()
        self._stream_was_up = False
        self._stale: set[StalePart] = set()
        self._stale_reader: asyncio.Task[None] | None = None
        # A read may answer with what the cloud knew before the events heard meanwhile.
        self._reads = 0
        self._heard_while_reading: list[Event] = []
        self._unsub_hass_stop: CALLBACK_TYPE | None = None
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=DOMAIN,
            update_interval=SCAN_INTERVAL_WITHOUT_STREAM,
        )

    async def _async_update_data(self) -> Spheres:
        """Fetch spheres, stones, rooms and presence; logs in when needed.

        Users are read with a sphere new to the account, and again when presence names a
        stranger or the stream says they changed, not on every poll.
        """
        with _translated_errors(), self._events_replayed_after_read():
            await self.cloud.async_synchronize()
        # The cloud answers: a stream that is down tries again now, not after its backoff.
        self.stream.reconnect_now()
        if self.stream.connected and not self._sphere_ids() <= self._streamed_spheres:
            LOGGER.debug("New sphere: reopening the event stream to hear its events")
            self.config_entry.async_create_background_task(
                self.hass, self._async_reopen_stream(), "crownstone_spotflow reopen stream"
            )
        return self.cloud.cloud_data

    async def async_start_push(self) -> None:
        """Start listening to the event stream; stopped on unload and when Home Assistant stops."""
        self.config_entry.async_on_unload(self.stream.add_event_listener(self._async_handle_event))
        self.config_entry.async_on_unload(
            self.stream.add_connection_listener(self._async_stream_connection_changed)
        )
        self.config_entry.async_on_unload(
            self.stream.add_error_listener(self._async_stream_refused)
        )
        self._unsub_hass_stop = self.hass.bus.async_listen_once(
            EVENT_HOMEASSISTANT_STOP, self._async_hass_stopping
        )
        await self.stream.start()

    async def _async_hass_stopping(self, _event: HassEvent) -> None:
        self._unsub_hass_stop = None
        await self.stream.stop()

    async def _async_reopen_stream(self) -> None:
        # What happens meanwhile is read again once the stream says it is back.
        await self.stream.stop()
        # A stopped stream tells no listener: poll as without a stream until it is back.
        self._async_stream_connection_changed(False)
        await self.stream.start()

    @callback
    def _async_stream_connection_changed(self, connected: bool) -> None:
        """Relax polling while the stream is up; read everything again after a reconnect."""
        self.update_interval = SCAN_INTERVAL if connected else SCAN_INTERVAL_WITHOUT_STREAM
        self._schedule_refresh()
        if connected:
            self._streamed_spheres = self._sphere_ids()
            if self._stream_was_up:
                # The stream replays nothing: whatever happened while it was down is lost.
                self.config_entry.async_create_background_task(
                    self.hass, self.async_request_refresh(), "crownstone_spotflow resync"
                )
            self._stream_was_up = True
        # The live updates entity shows the connection.
        self.async_update_listeners()

    @callback
    def _async_stream_refused(self, _error: CrownstoneError) -> None:
        """The cloud refused to log in again: ask the user to sign in."""
        self.config_entry.async_start_reauth(self.hass)
        # Makes the entities unavailable; the client does not ask the cloud again for this.
        self.config_entry.async_create_background_task(
            self.hass, self.async_request_refresh(), "crownstone_spotflow refused"
        )

    @callback
    def _async_handle_event(self, event: Event) -> None:
        """Apply a pushed change at once; read again what an event says is out of date."""
        if isinstance(event, SwitchStateUpdateEvent):
            # The stone's own report ends the wait for a command, whatever it says.
            self._forget_pending(event.crownstone_id)
        if self._reads:
            self._heard_while_reading.append(event)
        if apply_event(self.data, event):
            self.async_update_listeners()
        if (part := stale_part(self.data, event)) is not None:
            self._stale.add(part)
            if self._stale_reader is None or self._stale_reader.done():
                self._stale_reader = self.config_entry.async_create_background_task(
                    self.hass, self._async_read_stale(), "crownstone_spotflow read changes"
                )

    async def _async_read_stale(self) -> None:
        """Read what changed in the cloud, coalescing the changes that come in meanwhile."""
        while self._stale:
            stale, self._stale = self._stale, set()
            if any(sub_type == DataChangeSubType.SPHERES for _, sub_type in stale):
                await self.async_request_refresh()
                continue
            try:
                for sphere_id, sub_type in stale:
                    await self._async_read_part(sphere_id, sub_type)
            except CrownstoneError as error:
                LOGGER.debug("Reading a change failed (%s); reading everything", error)
                await self.async_request_refresh()
                continue
            self.async_update_listeners()

    async def _async_read_part(self, sphere_id: str, sub_type: DataChangeSubType) -> None:
        """Read one kind of item of a sphere (changes of spheres cause a full refresh instead)."""
        if (sphere := self.sphere(sphere_id)) is None:
            return
        with self._events_replayed_after_read():
            if sub_type is DataChangeSubType.STONES:
                await sphere.crownstones.async_update_crownstone_data()
            elif sub_type is DataChangeSubType.LOCATIONS:
                await sphere.locations.async_update_location_data()
                # A new room's people, and those of a removed one.
                await sphere.async_update_sphere_presence()
            else:
                await sphere.users.async_update_user_data()

    @contextmanager
    def _events_replayed_after_read(self) -> Iterator[None]:
        """Apply the events heard during a read again once it is over.

        The cloud may have answered before those events happened: without this, a lamp switched
        during a poll would show its old state until the next poll.
        """
        self._reads += 1
        try:
            yield
        finally:
            self._reads -= 1
            if not self._reads:
                heard, self._heard_while_reading = self._heard_while_reading, []
                for event in heard:
                    apply_event(self.cloud.cloud_data, event)

    @callback
    def async_update_listeners(self) -> None:
        """Forget the commands the cloud confirmed, then update the entities."""
        for stone_id, pending in list(self._pending.items()):
            stone = self.crownstone(stone_id)
            if stone is None or pending.confirmed_by(stone.state):
                self._forget_pending(stone_id)
        super().async_update_listeners()

    async def async_shutdown(self) -> None:
        """Close the event stream and cancel the expiry timers of pending commands."""
        if self._unsub_hass_stop is not None:
            self._unsub_hass_stop()
            self._unsub_hass_stop = None
        await self.stream.stop()
        await super().async_shutdown()
        for stone_id in list(self._pending):
            self._forget_pending(stone_id)

    @callback
    def async_expect_switch(self, stone: Crownstone, *, on: bool, percentage: int | None) -> None:
        """Show a command's outcome at once, until the cloud confirms it or the window ends."""
        self._forget_pending(stone.cloud_id)
        self._pending[stone.cloud_id] = PendingSwitch(
            on=on,
            percentage=percentage,
            cancel_expiry=async_call_later(
                self.hass, OPTIMISTIC_WINDOW, partial(self._async_pending_expired, stone.cloud_id)
            ),
        )
        self.async_update_listeners()

    def _forget_pending(self, stone_id: str) -> None:
        if (pending := self._pending.pop(stone_id, None)) is not None:
            pending.cancel_expiry()

    async def _async_pending_expired(self, stone_id: str, _now: datetime) -> None:
        """Read the true state once the window closed, then show it.

        The command stays shown while the state is read: dropping it first would show the
        stale state for a moment even when the stone did carry the command out.
        """
        if (pending := self._pending.get(stone_id)) is None:
            # Confirmed while this job was queued.
            return
        await self.async_refresh()
        # Unless the refresh confirmed it, or a new command replaced it meanwhile.
        if self._pending.get(stone_id) is pending:
            del self._pending[stone_id]
            self.async_update_listeners()

    def switch_state(self, stone: Crownstone) -> int | None:
        """Return the switch state (0..100) to show; a pending command wins over the cloud.

        None when the stone never reported a state.
        """
        if (pending := self._pending.get(stone.cloud_id)) is None:
            return stone.state if stone.state_known else None
        if not pending.on:
            return 0
        if pending.percentage is not None:
            return pending.percentage
        return stone.state or 100

    def device_identifier(self, object_id: str) -> tuple[str, str]:
        """Return the device registry identifier of a cloud object, as this account sees it."""
        return (DOMAIN, f"{self.account_id}_{object_id}")

    def sphere(self, sphere_id: str) -> Sphere | None:
        """Return a sphere by its cloud id."""
        return self.data.find_by_id(sphere_id)

    def crownstone(self, stone_id: str) -> Crownstone | None:
        """Return a Crownstone by its cloud id, whichever sphere it is in."""
        for sphere in self.data:
            if (stone := sphere.crownstones.find_by_id(stone_id)) is not None:
                return stone
        return None

    def location(self, sphere_id: str, location_id: str | None) -> Location | None:
        """Return a room by its cloud id."""
        if location_id is None or (sphere := self.sphere(sphere_id)) is None:
            return None
        return sphere.locations.find_by_id(location_id)

    def cloud_names(self) -> dict[str, str]:
        """Return the name of every sphere, room and Crownstone the account can see, by id."""
        names: dict[str, str] = {}
        for sphere in self.data:
            names[sphere.cloud_id] = sphere.name
            names.update((location.cloud_id, location.name) for location in sphere.locations)
            names.update((stone.cloud_id, stone.name) for stone in sphere.crownstones)
        return names

    def _sphere_ids(self) -> set[str]:
        return {sphere.cloud_id for sphere in self.data}
