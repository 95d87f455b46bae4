"""Presence in spheres and rooms, and whether live updates arrive, as binary sensors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .cloud import User
from .const import DOMAIN, MANUFACTURER
from .coordinator import CrownstoneConfigEntry, CrownstoneDataUpdateCoordinator
from .entity import CrownstoneEntity, CrownstonePlaceEntity
from .forwarder_entities import async_add_forwarder_entities
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


LIVE_UPDATES_DESCRIPTION = BinarySensorEntityDescription(
    key="live_updates",
    translation_key="live_updates",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
    entity_category=EntityCategory.DIAGNOSTIC,
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
    """Set up presence binary sensors, and the live updates sensor of the account."""
    coordinator = entry.runtime_data
    async_add_entities([CrownstoneLiveUpdatesBinarySensorEntity(coordinator)])
    async_track_entities(
        coordinator, Platform.BINARY_SENSOR, async_add_entities, lambda: _entities(coordinator)
    )
    async_add_forwarder_entities(hass, entry, async_add_entities, Platform.BINARY_SENSOR)


class CrownstonePresenceBinarySensorEntity(CrownstonePlaceEntity, BinarySensorEntity):
    """Whether anyone, or one person, is present in a sphere or room."""

    entity_description: CrownstoneBinarySensorEntityDescription

    @property
    def is_on(self) -> bool:
        """Return whether the presence is detected."""
        return self.entity_description.is_on_fn(self.place.present_people)


class CrownstoneLiveUpdatesBinarySensorEntity(CrownstoneEntity, BinarySensorEntity):
    """Whether the cloud's event stream is connected, so changes show up within a second.

    The stream belongs to the account, not to a sphere: the entity sits on one service device
    of the account.
    """

    def __init__(self, coordinator: CrownstoneDataUpdateCoordinator) -> None:
        """Initialize the entity."""
        entry = coordinator.config_entry
        # The entry's unique id is the account's user id.
        account_id = f"{entry.unique_id or entry.entry_id}_cloud"
        super().__init__(
            coordinator,
            LIVE_UPDATES_DESCRIPTION,
            object_id=account_id,
            device_info=DeviceInfo(
                entry_type=DeviceEntryType.SERVICE,
                identifiers={(DOMAIN, account_id)},
                manufacturer=MANUFACTURER,
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
