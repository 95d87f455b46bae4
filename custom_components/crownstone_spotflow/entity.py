"""Base entities for the Crownstone + Spotflow integration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.helpers.device_registry import CONNECTION_BLUETOOTH, DeviceInfo, format_mac
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import MANUFACTURER, STONE_MODELS
from .coordinator import CrownstoneDataUpdateCoordinator
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
    """An entity of one cloud object (a Crownstone, a sphere or a room)."""

    _attr_has_entity_name = True

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
                suggested_area=str(location.name) if location else None,
                sw_version=stone.sw_version,
            ),
        )
        self._crownstone = stone

    @property
    def crownstone(self) -> Crownstone:
        """Return the Crownstone as last seen."""
        if (stone := self.coordinator.crownstone(self._crownstone.cloud_id)) is not None:
            self._crownstone = stone
        return self._crownstone

    @property
    def available(self) -> bool:
        """Return whether the cloud is reachable and the Crownstone still exists."""
        return (
            super().available and self.coordinator.crownstone(self._crownstone.cloud_id) is not None
        )

    @property
    def is_on(self) -> bool | None:
        """Return whether the power is on (None until the stone reported a state)."""
        if (state := self.coordinator.switch_state(self.crownstone)) is None:
            return None
        return state > 0


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
                name=str(place.name),
                # A room's entities land in the matching area without the user's help.
                suggested_area=str(location.name) if location else None,
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
