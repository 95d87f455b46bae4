"""Data update coordinator for the Crownstone cloud."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_EMAIL, EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import CALLBACK_TYPE, Event as HassEvent, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

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
from .crownstone import (
    Changes,
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
    SpherePerson,
    Spheres,
    StalePart,
    SwitchStateUpdateEvent,
)

type CrownstoneConfigEntry = ConfigEntry[CrownstoneDataUpdateCoordinator]

# What an entity listens to: the cloud id of its object, or a person's presence in a sphere.
type ObjectKey = str | SpherePerson

# The live updates entity stands for the account's connection, not for a cloud object.
ACCOUNT_OBJECT_ID = "cloud"


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

    An event, a command or a read writes only the entities of the objects it changed (the
    library says which): the cost of an event does not grow with the account. The
    coordinator's own listeners (every entity, the entity and device trackers) hear only what
    concerns them all: a refresh, a change of availability, objects that came, went or were
    renamed.
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
        # What reads changed, for the entities of those objects once the refresh is over.
        self._changes = Changes()
        self._object_listeners: dict[ObjectKey, list[CALLBACK_TYPE]] = {}
        # Stone id -> the platform of its power entity, for the life of the stone.
        self._power_platforms: dict[str, Platform] | None = None
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
        with _translated_errors():
            self._changes.update(await self.cloud.async_synchronize())
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
        self._async_publish(Changes(objects={ACCOUNT_OBJECT_ID}))

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
        changes = self.cloud.apply_event(event)
        if isinstance(event, SwitchStateUpdateEvent) and self._forget_pending(event.crownstone_id):
            # The stone's own report ends the wait for a command, whatever it says: the entity
            # shows it even when it is the state the stone had before the command.
            changes.objects.add(event.crownstone_id)
        self._async_publish(changes)
        if (part := self.cloud.stale_part(event)) is not None:
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
            changes = Changes()
            try:
                for part in stale:
                    changes.update(await self.cloud.async_read_part(part))
            except CrownstoneError as error:
                LOGGER.debug("Reading a change failed (%s); reading everything", error)
                # Shown with the refresh, with what it finds.
                self._changes.update(changes)
                await self.async_request_refresh()
                continue
            self._async_publish(changes)

    @callback
    def async_add_object_listener(self, key: ObjectKey, listener: CALLBACK_TYPE) -> CALLBACK_TYPE:
        """Call listener whenever the object (or person in a sphere) changes; returns the undo."""
        listeners = self._object_listeners.setdefault(key, [])
        listeners.append(listener)

        @callback
        def remove() -> None:
            listeners.remove(listener)
            if not listeners:
                del self._object_listeners[key]

        return remove

    @callback
    def async_update_listeners(self) -> None:
        """Update every listener (after a refresh, or on a change of availability)."""
        changes, self._changes = self._changes, Changes()
        self._async_publish(changes, everyone=True)

    @callback
    def _async_publish(self, changes: Changes, *, everyone: bool = False) -> None:
        """Show changes to the listeners of the objects they touched.

        Every listener hears about it too when objects came, went or were renamed: that is what
        adds and removes entities and renames devices.
        """
        self._forget_confirmed(self._pending.keys() if everyone else changes.objects)
        if everyone or changes.structure:
            super().async_update_listeners()
        keys: list[ObjectKey] = [*changes.objects, *changes.people]
        for key in keys:
            for listener in list(self._object_listeners.get(key, ())):
                listener()

    def _forget_confirmed(self, stone_ids: Iterable[str]) -> None:
        """Forget the commands the cloud confirmed, and those of stones that are gone."""
        for stone_id in [stone_id for stone_id in stone_ids if stone_id in self._pending]:
            stone = self.crownstone(stone_id)
            if stone is None or self._pending[stone_id].confirmed_by(stone.state):
                self._forget_pending(stone_id)

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
        self._async_publish(Changes(objects={stone.cloud_id}))

    def _forget_pending(self, stone_id: str) -> bool:
        """Forget a command; return whether there was one."""
        if (pending := self._pending.pop(stone_id, None)) is None:
            return False
        pending.cancel_expiry()
        return True

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
            self._async_publish(Changes(objects={stone_id}))

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

    def crownstone(self, stone_id: str, sphere_id: str | None = None) -> Crownstone | None:
        """Return a Crownstone by its cloud id (in its sphere, when given: a single lookup)."""
        if sphere_id is not None:
            sphere = self.sphere(sphere_id)
            return None if sphere is None else sphere.crownstones.find_by_id(stone_id)
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

    def power_platform(self, stone: Crownstone) -> Platform:
        """Return the platform of a Crownstone's power entity: chosen once, kept for life.

        Turning dimming off in the Crownstone app must not delete a light and create a switch:
        that breaks the dashboards and automations that use it. A Crownstone the entity
        registry knows keeps the platform it has there; a new one is a light if it can dim
        when first seen, else a switch.
        """
        if self._power_platforms is None:
            self._power_platforms = self._registered_power_platforms()
        if (platform := self._power_platforms.get(stone.cloud_id)) is None:
            platform = Platform.LIGHT if stone.dimming_enabled else Platform.SWITCH
            self._power_platforms[stone.cloud_id] = platform
        return platform

    def _registered_power_platforms(self) -> dict[str, Platform]:
        """Read the platform of every power entity of the account from the entity registry."""
        registry = er.async_get(self.hass)
        prefix = f"{self.account_id}_"
        return {
            # Unique ids are "<account>_<stone>_<key>" (entity.entity_unique_id); cloud ids and
            # the keys of power entities hold no underscore.
            entry.unique_id.removeprefix(prefix).rsplit("_", 1)[0]: Platform(entry.domain)
            for entry in er.async_entries_for_config_entry(registry, self.config_entry.entry_id)
            if entry.domain in (Platform.LIGHT, Platform.SWITCH)
            and entry.unique_id.startswith(prefix)
        }

    def _sphere_ids(self) -> set[str]:
        return {sphere.cloud_id for sphere in self.data}
