"""Presence in spheres and rooms, as people counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.sensor import (
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import CrownstonePlaceEntity
from .helpers import async_track_entities, wanted_place_entities
from .mirror import is_mirror_entry
from .mirror.entities import async_add_mirror_sensors

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class CrownstoneSensorEntityDescription(SensorEntityDescription):
    """Describes a presence sensor of a sphere or room."""

    value_fn: Callable[[list[str]], int]


DESCRIPTIONS = (
    CrownstoneSensorEntityDescription(
        key="people",
        translation_key="people",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=len,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up presence sensors."""
    if is_mirror_entry(entry):
        async_add_mirror_sensors(entry, async_add_entities)
        return
    coordinator = entry.runtime_data
    async_track_entities(
        coordinator,
        Platform.SENSOR,
        async_add_entities,
        lambda: wanted_place_entities(coordinator, DESCRIPTIONS, CrownstoneSensorEntity),
    )


class CrownstoneSensorEntity(CrownstonePlaceEntity, SensorEntity):
    """How many people are present in a sphere or room."""

    entity_description: CrownstoneSensorEntityDescription

    @property
    def native_value(self) -> int:
        """Return the number of people present."""
        return self.entity_description.value_fn(self.place.present_people)
