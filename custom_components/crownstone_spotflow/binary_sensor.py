"""Presence in spheres and rooms, as binary sensors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .cloud import User
from .coordinator import CrownstoneConfigEntry, CrownstoneDataUpdateCoordinator
from .entity import CrownstonePlaceEntity
from .helpers import async_track_entities

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class CrownstoneBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes a presence binary sensor of a sphere or room."""

    is_on_fn: Callable[[list[str]], bool]


PLACE_DESCRIPTIONS = (
    CrownstoneBinarySensorEntityDescription(
        key="occupancy",
        device_class=BinarySensorDeviceClass.OCCUPANCY,
        is_on_fn=bool,
    ),
)


def _person_description(user: User) -> CrownstoneBinarySensorEntityDescription:
    """Describe whether one person of a sphere is present in it."""
    return CrownstoneBinarySensorEntityDescription(
        key=f"presence_{user.cloud_id}",
        translation_key="person_presence",
        translation_placeholders={"person": _person_name(user)},
        device_class=BinarySensorDeviceClass.PRESENCE,
        # One entity per person and sphere would crowd every dashboard; opt in per person.
        entity_registry_enabled_default=False,
        is_on_fn=lambda present_people: user.cloud_id in present_people,
    )


def _person_name(user: User) -> str:
    """Return a person's display name (never the e-mail address)."""
    return " ".join(part for part in (user.first_name, user.last_name) if part)


def _entities(
    coordinator: CrownstoneDataUpdateCoordinator,
) -> Iterator[CrownstonePresenceBinarySensorEntity]:
    for sphere in coordinator.data:
        for location in (None, *sphere.locations):
            for description in PLACE_DESCRIPTIONS:
                yield CrownstonePresenceBinarySensorEntity(
                    coordinator, description, sphere, location
                )
        for user in sphere.users:
            yield CrownstonePresenceBinarySensorEntity(
                coordinator, _person_description(user), sphere
            )


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CrownstoneConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up presence binary sensors."""
    coordinator = entry.runtime_data
    async_track_entities(
        coordinator, Platform.BINARY_SENSOR, async_add_entities, lambda: _entities(coordinator)
    )


class CrownstonePresenceBinarySensorEntity(CrownstonePlaceEntity, BinarySensorEntity):
    """Whether anyone, or one person, is present in a sphere or room."""

    entity_description: CrownstoneBinarySensorEntityDescription

    @property
    def is_on(self) -> bool:
        """Return whether the presence is detected."""
        return self.entity_description.is_on_fn(self.place.present_people)
