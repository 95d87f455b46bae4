"""Data update coordinator for the Crownstone cloud."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_EMAIL, CONF_PASSWORD
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.event import async_call_later
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .cloud import (
    Crownstone,
    CrownstoneAuthenticationError,
    CrownstoneCloud,
    CrownstoneConnectionError,
    CrownstoneError,
    Location,
    Sphere,
    Spheres,
)
from .const import CONF_CLOUD_URL, DOMAIN, LOGGER, OPTIMISTIC_WINDOW, SCAN_INTERVAL

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
    except CrownstoneAuthenticationError as error:
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
    """Keeps the spheres of one Crownstone account up to date.

    The cloud client updates its objects in place, so entities look their object up by id on
    every update instead of holding on to it.
    """

    config_entry: CrownstoneConfigEntry

    def __init__(self, hass: HomeAssistant, entry: CrownstoneConfigEntry) -> None:
        """Initialize the coordinator."""
        self.cloud = CrownstoneCloud(
            entry.data[CONF_EMAIL],
            entry.data[CONF_PASSWORD],
            async_get_clientsession(hass),
            base_url=entry.data[CONF_CLOUD_URL],
        )
        self._pending: dict[str, PendingSwitch] = {}
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=DOMAIN,
            update_interval=SCAN_INTERVAL,
        )

    async def _async_setup(self) -> None:
        """Log in once; the client logs in again by itself when its token expires."""
        with _translated_errors():
            await self.cloud.async_login()

    async def _async_update_data(self) -> Spheres:
        """Fetch spheres, stones, rooms, presence and users."""
        with _translated_errors():
            await self.cloud.async_synchronize(users=True)
        return self.cloud.cloud_data

    @callback
    def async_update_listeners(self) -> None:
        """Forget the commands the cloud confirmed, then update the entities."""
        for stone_id, pending in list(self._pending.items()):
            stone = self.crownstone(stone_id)
            if stone is None or pending.confirmed_by(stone.state):
                self._forget_pending(stone_id)
        super().async_update_listeners()

    async def async_shutdown(self) -> None:
        """Cancel the expiry timers of pending commands."""
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
        """Show the last known state again, and read the true one, once the window closed."""
        del self._pending[stone_id]
        self.async_update_listeners()
        await self.async_request_refresh()

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

    def cloud_ids(self) -> set[str]:
        """Return the ids of every sphere, room and Crownstone the account can see."""
        ids: set[str] = set()
        for sphere in self.data:
            ids.add(sphere.cloud_id)
            ids.update(location.cloud_id for location in sphere.locations)
            ids.update(stone.cloud_id for stone in sphere.crownstones)
        return ids
