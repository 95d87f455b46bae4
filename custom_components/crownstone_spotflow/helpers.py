"""Helpers for the Crownstone + Spotflow integration."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, cast

from homeassistant.const import Platform
from homeassistant.core import callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .cloud import CrownstoneAuthenticationError, CrownstoneError
from .const import DOMAIN, MIN_DIM_PERCENTAGE
from .coordinator import CrownstoneDataUpdateCoordinator
from .entity import CrownstoneEntity


def crownstone_exception_handler[_FuncT: Callable[..., Coroutine[Any, Any, None]]](
    func: _FuncT,
) -> _FuncT:
    """Turn cloud errors of an entity action into translated Home Assistant errors."""

    # Typed through a cast: mypy's strict extra checks refuse Concatenate over methods whose
    # first parameter is named `self`.
    async def handler(self: CrownstoneEntity, /, *args: Any, **kwargs: Any) -> None:
        try:
            await func(self, *args, **kwargs)
        except CrownstoneAuthenticationError as error:
            self.coordinator.config_entry.async_start_reauth(self.hass)
            raise HomeAssistantError(
                translation_domain=DOMAIN, translation_key="authentication_error"
            ) from error
        except CrownstoneError as error:
            # Our copy of the stone may be out of date (its dimming switched off elsewhere,
            # say): read it again so the entity shows the truth, on the right platform.
            await self.coordinator.async_request_refresh()
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="command_failed",
                translation_placeholders={"error": str(error)},
            ) from error

    return cast("_FuncT", handler)


def brightness_to_percentage(brightness: int) -> int:
    """Map a brightness (0..255) to a percentage the cloud accepts (0 or 10..100)."""
    if brightness <= 0:
        return 0
    return max(MIN_DIM_PERCENTAGE, min(100, round(brightness * 100 / 255)))


def percentage_to_brightness(percentage: int) -> int:
    """Map a percentage (0..100) to a brightness (0..255); the inverse for 10..100."""
    return round(percentage * 255 / 100)


@callback
def async_track_entities(
    coordinator: CrownstoneDataUpdateCoordinator,
    platform: Platform,
    async_add_entities: AddConfigEntryEntitiesCallback,
    entities_fn: Callable[[], Iterable[CrownstoneEntity]],
) -> None:
    """Add the entities the cloud data calls for, and remove those it no longer does.

    Runs on every update, so new Crownstones, rooms and spheres appear without a restart, and
    a Crownstone whose dimming was switched on or off moves between the light and switch
    platforms.
    """
    known: set[str] = set()

    @callback
    def _async_update() -> None:
        # An unreachable cloud says nothing about what exists.
        if not coordinator.last_update_success:
            return
        wanted = {str(entity.unique_id): entity for entity in entities_fn()}
        registry = er.async_get(coordinator.hass)
        for unique_id in known - wanted.keys():
            if entity_id := registry.async_get_entity_id(platform, DOMAIN, unique_id):
                registry.async_remove(entity_id)
        new = [entity for unique_id, entity in wanted.items() if unique_id not in known]
        known.clear()
        known.update(wanted)
        if new:
            async_add_entities(new)

    _async_update()
    coordinator.config_entry.async_on_unload(coordinator.async_add_listener(_async_update))
