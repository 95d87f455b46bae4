"""Diagnostic entities of the Spotflow device that mirrors Home Assistant's states."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.spotflow import OutboxStats

from .supervisor import MirrorSupervisor

if TYPE_CHECKING:
    from . import MirrorConfigEntry


@dataclass(frozen=True, kw_only=True)
class MirrorSensorEntityDescription(SensorEntityDescription):
    """A sensor that reads one outbox counter."""

    value_fn: Callable[[OutboxStats], int | datetime | None]


SENSORS: tuple[MirrorSensorEntityDescription, ...] = (
    MirrorSensorEntityDescription(
        key="records_waiting",
        translation_key="spotflow_records_waiting",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda stats: stats.backlog_records,
    ),
    MirrorSensorEntityDescription(
        key="last_delivery",
        translation_key="spotflow_last_delivery",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda stats: stats.last_delivery,
    ),
    MirrorSensorEntityDescription(
        key="records_delivered",
        translation_key="spotflow_records_delivered",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda stats: stats.records_delivered,
    ),
    MirrorSensorEntityDescription(
        key="records_dropped",
        translation_key="spotflow_records_dropped",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda stats: stats.records_dropped,
    ),
)

CONNECTED = BinarySensorEntityDescription(
    key="connected",
    translation_key="spotflow_connected",
    device_class=BinarySensorDeviceClass.CONNECTIVITY,
)


def mirror_device_identifier(entry_id: str) -> tuple[str, str]:
    """Return the device registry identifier of the mirror's Spotflow device."""
    return (DOMAIN, f"{entry_id}_spotflow")


class MirrorEntity(Entity):
    """An entity of the mirror's Spotflow device, pushed by the supervisor."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_entity_category = EntityCategory.DIAGNOSTIC

    def __init__(self, supervisor: MirrorSupervisor, description: EntityDescription) -> None:
        """Initialize the entity."""
        self.supervisor = supervisor
        self.entity_description = description
        self._attr_unique_id = f"{supervisor.entry_id}_spotflow_{description.key}"
        self._attr_device_info = DeviceInfo(
            entry_type=DeviceEntryType.SERVICE,
            identifiers={mirror_device_identifier(supervisor.entry_id)},
            manufacturer="Spotflow",
            model="IoT Platform device",
            translation_key="spotflow_forwarder",
            translation_placeholders={"device_id": str(supervisor.settings.device_id)},
        )

    async def async_added_to_hass(self) -> None:
        """Follow the supervisor's updates."""
        await super().async_added_to_hass()
        self.async_on_remove(self.supervisor.async_add_listener(self.async_write_ha_state))


class MirrorSensor(MirrorEntity, SensorEntity):
    """A counter of the mirror's outbox."""

    entity_description: MirrorSensorEntityDescription

    @property
    def available(self) -> bool:
        """Return whether the outbox is open."""
        return self.supervisor.client is not None and self.supervisor.stats is not None

    @property
    def native_value(self) -> int | datetime | None:
        """Return the counter."""
        assert self.supervisor.stats is not None
        return self.entity_description.value_fn(self.supervisor.stats)


class MirrorConnectedSensor(MirrorEntity, BinarySensorEntity):
    """Whether the mirror is connected to the platform's broker."""

    @property
    def is_on(self) -> bool:
        """Return whether the client is connected."""
        return self.supervisor.client is not None and self.supervisor.client.connected


def async_add_mirror_sensors(
    entry: MirrorConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Add the outbox counters, when mirroring is on."""
    if (supervisor := entry.runtime_data.supervisor) is not None:
        async_add_entities(MirrorSensor(supervisor, description) for description in SENSORS)


def async_add_mirror_binary_sensors(
    entry: MirrorConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    """Add the connection sensor, when mirroring is on."""
    if (supervisor := entry.runtime_data.supervisor) is not None:
        async_add_entities([MirrorConnectedSensor(supervisor, CONNECTED)])
