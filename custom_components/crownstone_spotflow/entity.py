"""Base entities for the Crownstone + Spotflow integration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.core import callback
from homeassistant.helpers.device_registry import CONNECTION_BLUETOOTH, DeviceInfo, format_mac
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import MANUFACTURER, STONE_MODELS
from .coordinator import CrownstoneDataUpdateCoordinator, ObjectKey
from .crownstone import Crownstone, Location, Sphere


def entity_unique_id(
    coordinator: CrownstoneDataUpdateCoordinator, object_id: str, description: EntityDescription
) -> str:
    """Return the unique id of an entity of a cloud object, as this account sees it."""
    return f"{coordinator.account_id}_{object_id}_{description.key}"


@dataclass(frozen=True, kw_only=True)
class CrownstoneStoneEntityDescription(EntityDescription):
    """Describes an entity of a Crownstone."""

    exists_fn: Callable[[Crownstone], bool]


class CrownstoneEntity(CoordinatorEntity[CrownstoneDataUpdateCoordinator]):
    """An entity of one cloud object (a Crownstone, a sphere or a room).

    It writes its state when its object changes, not on every update of the coordinator: an
    event then costs one write, not one per entity of the account. The coordinator's own
    updates reach every entity, which shows what they can change for all: availability.
    """

    _attr_has_entity_name = True
    # What the entity shows changes with this object (or person in a sphere).
    _object_key: ObjectKey

    def __init__(
        self,
        coordinator: CrownstoneDataUpdateCoordinator,
        description: EntityDescription,
        *,
        object_id: str,
        device_info: DeviceInfo,
    ) -> None:
        """Initialize the entity."""
        super().__init__(coordinator)
        self.entity_description = description
        self._attr_unique_id = entity_unique_id(coordinator, object_id, description)
        self._attr_device_info = device_info
        self._object_key = object_id
        self._available_shown: bool | None = None

    async def async_added_to_hass(self) -> None:
        """Follow the changes of the entity's object."""
        await super().async_added_to_hass()
        self.async_on_remove(
            self.coordinator.async_add_object_listener(self._object_key, self.async_write_ha_state)
        )
        # Home Assistant writes the first state right after this.
        self._available_shown = self.available

    @callback
    def _handle_coordinator_update(self) -> None:
        """Write the state only if availability changed; data changes come per object."""
        if (available := self.available) != self._available_shown:
            self._available_shown = available
            self.async_write_ha_state()


class CrownstoneStoneEntity(CrownstoneEntity):
    """An entity of a Crownstone."""

    def __init__(
        self,
        coordinator: CrownstoneDataUpdateCoordinator,
        description: CrownstoneStoneEntityDescription,
        stone: Crownstone,
    ) -> None:
        """Initialize the entity."""
        location = coordinator.location(stone.sphere_id, stone.location_id)
        super().__init__(
            coordinator,
            description,
            object_id=stone.cloud_id,
            # Up to Home Assistant 2026.7 the device registry merges devices that share a
            # connection: two accounts sharing a sphere then share each Crownstone's device, each
            # with its own identifier and entities. Newer releases keep a device per account.
            device_info=DeviceInfo(
                connections=(
                    {(CONNECTION_BLUETOOTH, _bluetooth_address(stone.mac_address))}
                    if stone.mac_address
                    else set()
                ),
                hw_version=stone.hardware_version,
                identifiers={coordinator.device_identifier(stone.cloud_id)},
                manufacturer=MANUFACTURER,
                model=STONE_MODELS.get(stone.type, stone.type),
                name=str(stone.name),
                suggested_area=_suggested_area(str(stone.name), location),
                sw_version=stone.sw_version,
            ),
        )
        self._crownstone = stone

    def _lookup(self) -> Crownstone | None:
        return self.coordinator.crownstone(self._crownstone.cloud_id, self._crownstone.sphere_id)

    @property
    def crownstone(self) -> Crownstone:
        """Return the Crownstone as last seen."""
        if (stone := self._lookup()) is not None:
            self._crownstone = stone
        return self._crownstone

    @property
    def available(self) -> bool:
        """Return whether the cloud is reachable and the Crownstone still exists."""
        return super().available and self._lookup() is not None

    @property
    def is_on(self) -> bool | None:
        """Return whether the power is on (None until the stone reported a state)."""
        if (state := self.coordinator.switch_state(self.crownstone)) is None:
            return None
        return state > 0


def _suggested_area(device_name: str, location: Location | None) -> str | None:
    """Return the room to put a Crownstone's device in, unless its name already says it.

    From Home Assistant 2026 entity ids start with the area: "Kitchen spots" in the area Kitchen
    would read switch.kitchen_kitchen_spots. Such a device stays out of the area (the person can
    put it there; the ids, once made, stay).
    """
    if location is None:
        return None
    room = str(location.name)
    words = device_name.casefold().split()
    if words[: len(room.split())] == room.casefold().split():
        return None
    return room


def _bluetooth_address(mac: str) -> str:
    """Return a MAC the way Home Assistant's Bluetooth integration writes it (AA:BB:...)."""
    return format_mac(mac).upper()


class CrownstonePlaceEntity(CrownstoneEntity):
    """An entity of a sphere or of a room in a sphere."""

    def __init__(
        self,
        coordinator: CrownstoneDataUpdateCoordinator,
        description: EntityDescription,
        sphere: Sphere,
        location: Location | None = None,
    ) -> None:
        """Initialize the entity; without a location it belongs to the sphere itself."""
        place = location or sphere
        super().__init__(
            coordinator,
            description,
            object_id=place.cloud_id,
            device_info=DeviceInfo(
                identifiers={coordinator.device_identifier(place.cloud_id)},
                manufacturer=MANUFACTURER,
                model="Room" if location else "Sphere",
                # No suggested area, although a room is one: from 2026 entity ids start with the
                # area's name, and a room device named like its area would read
                # binary_sensor.bedroom_bedroom_occupancy.
                name=str(place.name),
            ),
        )
        self._sphere_id = sphere.cloud_id
        self._location_id = location.cloud_id if location else None
        self._place = place

    def _lookup(self) -> Sphere | Location | None:
        sphere = self.coordinator.sphere(self._sphere_id)
        if sphere is None or self._location_id is None:
            return sphere
        return sphere.locations.find_by_id(self._location_id)

    @property
    def place(self) -> Sphere | Location:
        """Return the sphere or room as last seen."""
        if (place := self._lookup()) is not None:
            self._place = place
        return self._place

    @property
    def available(self) -> bool:
        """Return whether the cloud is reachable and the place still exists."""
        return super().available and self._lookup() is not None
