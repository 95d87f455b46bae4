"""Helpers for the Crownstone + Spotflow integration."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from functools import partial
from typing import Any, cast

from homeassistant.const import Platform
from homeassistant.core import callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .coordinator import CrownstoneDataUpdateCoordinator
from .crownstone import (
    MIN_BRIGHTNESS,
    Crownstone,
    CrownstoneAbilityError,
    CrownstoneBrightnessError,
    CrownstoneConnectionError,
    CrownstoneCredentialsError,
    CrownstoneError,
    CrownstoneServerError,
    Location,
    Sphere,
)
from .entity import (
    CrownstoneEntity,
    CrownstonePlaceEntity,
    CrownstoneStoneEntity,
    CrownstoneStoneEntityDescription,
    entity_unique_id,
)

# Unique id of an entity, and how to create it should it be new.
type WantedEntities = Iterable[tuple[str, Callable[[], CrownstoneEntity]]]


def crownstone_exception_handler[_FuncT: Callable[..., Coroutine[Any, Any, None]]](
    func: _FuncT,
) -> _FuncT:
    """Turn cloud errors of an entity action into translated Home Assistant errors."""

    # Typed through a cast: mypy's strict extra checks refuse Concatenate over methods whose
    # first parameter is named `self`.
    async def handler(self: CrownstoneStoneEntity, /, *args: Any, **kwargs: Any) -> None:
        try:
            await func(self, *args, **kwargs)
        # Only refused credentials: any other authentication error is a refused command.
        except CrownstoneCredentialsError as error:
            self.coordinator.config_entry.async_start_reauth(self.hass)
            raise HomeAssistantError(
                translation_domain=DOMAIN, translation_key="authentication_error"
            ) from error
        except CrownstoneError as error:
            if not isinstance(error, CrownstoneConnectionError):
                # Our copy of the stone may be out of date (its dimming switched off elsewhere,
                # say): read it again so the entity shows the truth.
                # In the background: the caller learns of the refusal without waiting for it.
                self.coordinator.config_entry.async_create_background_task(
                    self.hass,
                    self.coordinator.async_request_refresh(),
                    "crownstone_spotflow read after a refused command",
                )
            raise _command_error(self.crownstone.name, error) from error

    return cast("_FuncT", handler)


def _command_error(name: str, error: CrownstoneError) -> HomeAssistantError:
    """Say why a command failed in the user's language; the library's words only as detail."""
    placeholders = {"name": name, "error": str(error)}
    if isinstance(error, CrownstoneServerError):
        # Reached, but in trouble: the network is fine, so do not send the user to check it.
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="cloud_server_error",
            translation_placeholders=placeholders,
        )
    if isinstance(error, CrownstoneConnectionError):
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="cannot_reach_cloud",
            translation_placeholders=placeholders,
        )
    if isinstance(error, CrownstoneAbilityError) and not isinstance(
        error, CrownstoneBrightnessError
    ):
        return HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="dimming_disabled",
            translation_placeholders=placeholders,
        )
    return HomeAssistantError(
        translation_domain=DOMAIN,
        translation_key="command_failed",
        translation_placeholders=placeholders,
    )


def brightness_to_percentage(brightness: int) -> int:
    """Map a brightness (0..255) to a percentage the cloud accepts (0 or 10..100)."""
    if brightness <= 0:
        return 0
    return max(MIN_BRIGHTNESS, min(100, round(brightness * 100 / 255)))


def percentage_to_brightness(percentage: int) -> int:
    """Map a percentage (0..100) to a brightness (0..255); the inverse for 10..100."""
    return round(percentage * 255 / 100)


@callback
def async_track_entities(
    coordinator: CrownstoneDataUpdateCoordinator,
    platform: Platform,
    async_add_entities: AddConfigEntryEntitiesCallback,
    wanted_fn: Callable[[], WantedEntities],
) -> None:
    """Add the entities the cloud data calls for, and remove those it no longer does.

    Runs on every update of the coordinator (a refresh, or objects that came or went), so new
    Crownstones, rooms and spheres appear without a restart. Only new entities are created.
    """
    entry = coordinator.config_entry
    registry = er.async_get(coordinator.hass)
    # What changed while Home Assistant was not running (dimming toggled, a person gone) left
    # registry entries no entity claims any more: the first update removes them. Entities of
    # the platform that are not the account's (the Spotflow forwarder's) are not ours to judge.
    stale = {
        registry_entry.unique_id
        for registry_entry in er.async_entries_for_config_entry(registry, entry.entry_id)
        if registry_entry.domain == platform
        and registry_entry.unique_id.startswith(f"{coordinator.account_id}_")
    }
    known: set[str] = set()

    @callback
    def _async_update() -> None:
        # An unreachable cloud says nothing about what exists.
        if not coordinator.last_update_success:
            return
        wanted = dict(wanted_fn())
        for unique_id in (known | stale) - wanted.keys():
            if entity_id := registry.async_get_entity_id(platform, DOMAIN, unique_id):
                registry.async_remove(entity_id)
        stale.clear()
        new = [create() for unique_id, create in wanted.items() if unique_id not in known]
        known.clear()
        known.update(wanted)
        if new:
            async_add_entities(new)

    _async_update()
    entry.async_on_unload(coordinator.async_add_listener(_async_update))


@callback
def async_track_stone_entities[DescriptionT: CrownstoneStoneEntityDescription](
    coordinator: CrownstoneDataUpdateCoordinator,
    platform: Platform,
    async_add_entities: AddConfigEntryEntitiesCallback,
    descriptions: Sequence[DescriptionT],
    entity_class: Callable[
        [CrownstoneDataUpdateCoordinator, DescriptionT, Crownstone], CrownstoneStoneEntity
    ],
) -> None:
    """Track one entity per Crownstone and description that exists for it on this platform."""
    async_track_entities(
        coordinator,
        platform,
        async_add_entities,
        lambda: (
            (
                entity_unique_id(coordinator, stone.cloud_id, description),
                partial(entity_class, coordinator, description, stone),
            )
            for sphere in coordinator.data
            for stone in sphere.crownstones
            for description in descriptions
            if description.exists_fn(stone) and coordinator.power_platform(stone) == platform
        ),
    )


def wanted_place_entities[DescriptionT: EntityDescription](
    coordinator: CrownstoneDataUpdateCoordinator,
    descriptions: Sequence[DescriptionT],
    entity_class: Callable[
        [CrownstoneDataUpdateCoordinator, DescriptionT, Sphere, Location | None],
        CrownstonePlaceEntity,
    ],
) -> WantedEntities:
    """List one entity per sphere and room, and description, for async_track_entities."""
    for sphere in coordinator.data:
        for location in (None, *sphere.locations):
            for description in descriptions:
                yield (
                    entity_unique_id(coordinator, (location or sphere).cloud_id, description),
                    partial(entity_class, coordinator, description, sphere, location),
                )
