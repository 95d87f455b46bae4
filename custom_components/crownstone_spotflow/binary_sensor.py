"""Presence in spheres and rooms, and whether live updates arrive, as binary sensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import MANUFACTURER
from .coordinator import ACCOUNT_OBJECT_ID, CrownstoneDataUpdateCoordinator
from .crownstone import Sphere, User
from .entity import CrownstoneEntity, CrownstonePlaceEntity, entity_unique_id
from .helpers import WantedEntities, async_track_entities, wanted_place_entities
from .mirror import is_mirror_entry
from .mirror.entities import async_add_mirror_binary_sensors

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


LIVE_UPDATES_DESCRIPTION = BinarySensorEntityDescription(
    key="live_updates",
    translation_key="live_updates",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
)


def _person_description(user_id: str) -> BinarySensorEntityDescription:
    """Describe whether one person of a sphere is present in it."""
    return BinarySensorEntityDescription(
        key=f"presence_{user_id}",
        translation_key="person_presence",
        device_class=BinarySensorDeviceClass.PRESENCE,
        # One entity per person and sphere would crowd every dashboard; opt in per person.
        entity_registry_enabled_default=False,
    )


def _wanted_entities(coordinator: CrownstoneDataUpdateCoordinator) -> WantedEntities:
    # Always there, but listed so that it is not taken for a leftover of an earlier run.
    yield (
        entity_unique_id(coordinator, ACCOUNT_OBJECT_ID, LIVE_UPDATES_DESCRIPTION),
        partial(CrownstoneLiveUpdatesBinarySensorEntity, coordinator),
    )
    yield from wanted_place_entities(
        coordinator, PLACE_DESCRIPTIONS, CrownstonePresenceBinarySensorEntity
    )
    for sphere in coordinator.data:
        for user in sphere.users:
            description = _person_description(user.cloud_id)
            yield (
                entity_unique_id(coordinator, sphere.cloud_id, description),
                partial(CrownstonePersonBinarySensorEntity, coordinator, description, sphere, user),
            )


async def async_setup_entry(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up presence binary sensors, and the live updates sensor of the account."""
    if is_mirror_entry(entry):
        async_add_mirror_binary_sensors(entry, async_add_entities)
        return
    coordinator = entry.runtime_data
    async_track_entities(
        coordinator,
        Platform.BINARY_SENSOR,
        async_add_entities,
        lambda: _wanted_entities(coordinator),
    )


class CrownstonePresenceBinarySensorEntity(CrownstonePlaceEntity, BinarySensorEntity):
    """Whether anyone is present in a sphere or room."""

    entity_description: CrownstoneBinarySensorEntityDescription

    @property
    def is_on(self) -> bool:
        """Return whether the presence is detected."""
        return self.entity_description.is_on_fn(self.place.present_people)


class CrownstonePersonBinarySensorEntity(CrownstonePlaceEntity, BinarySensorEntity):
    """Whether one person is present in a sphere; named after the person."""

    def __init__(
        self,
        coordinator: CrownstoneDataUpdateCoordinator,
        description: BinarySensorEntityDescription,
        sphere: Sphere,
        user: User,
    ) -> None:
        """Initialize the entity."""
        super().__init__(coordinator, description, sphere)
        self._user_id = user.cloud_id
        self._object_key = (sphere.cloud_id, user.cloud_id)
        self._attr_translation_placeholders = {"person": user.full_name}

    @property
    def is_on(self) -> bool:
        """Return whether the person is present."""
        return self._user_id in self.place.present_people

    @callback
    def _handle_coordinator_update(self) -> None:
        """Follow a person renamed in the Crownstone app."""
        sphere = self.coordinator.sphere(self._sphere_id)
        user = sphere.users.find_by_id(self._user_id) if sphere else None
        if user is not None and user.full_name != self._attr_translation_placeholders["person"]:
            self._attr_translation_placeholders = {"person": user.full_name}
            # The name is cached, and made from the placeholders.
            self.__dict__.pop("name", None)
        super()._handle_coordinator_update()


class CrownstoneLiveUpdatesBinarySensorEntity(CrownstoneEntity, BinarySensorEntity):
    """Whether the cloud's event stream is connected, so changes show up within a second.

    The stream belongs to the account, not to a sphere: the entity sits on one service device
    of the account.
    """

    def __init__(self, coordinator: CrownstoneDataUpdateCoordinator) -> None:
        """Initialize the entity."""
        super().__init__(
            coordinator,
            LIVE_UPDATES_DESCRIPTION,
            object_id=ACCOUNT_OBJECT_ID,
            device_info=DeviceInfo(
                entry_type=DeviceEntryType.SERVICE,
                identifiers={coordinator.device_identifier(ACCOUNT_OBJECT_ID)},
                manufacturer=MANUFACTURER,
                model="Cloud account",
                name="Crownstone cloud",
            ),
        )

    @property
    def available(self) -> bool:
        """Return True: the entity reports the connection itself, up or down."""
        return True

    @property
    def is_on(self) -> bool:
        """Return whether the event stream is connected."""
        return self.coordinator.stream.connected
