"""Diagnostic entities of the Spotflow device that mirrors Home Assistant's states."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

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
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity import Entity, EntityDescription
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .forwarder import Forwarder, async_get_forwarder, forwarder_device_identifier
from .spotflow import OutboxStats


@dataclass(frozen=True, kw_only=True)
class ForwarderSensorEntityDescription(SensorEntityDescription):
    """A sensor that reads one outbox counter."""

    value_fn: Callable[[OutboxStats], int | datetime | None]


SENSORS: tuple[ForwarderSensorEntityDescription, ...] = (
    ForwarderSensorEntityDescription(
        key="records_waiting",
        translation_key="spotflow_records_waiting",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda stats: stats.backlog_records,
    ),
    ForwarderSensorEntityDescription(
        key="last_delivery",
        translation_key="spotflow_last_delivery",
        device_class=SensorDeviceClass.TIMESTAMP,
        value_fn=lambda stats: stats.last_delivery,
    ),
    ForwarderSensorEntityDescription(
        key="records_delivered",
        translation_key="spotflow_records_delivered",
        state_class=SensorStateClass.TOTAL_INCREASING,
        value_fn=lambda stats: stats.records_delivered,
    ),
    ForwarderSensorEntityDescription(
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


class ForwarderEntity(Entity):
    """An entity of the forwarder's Spotflow device, pushed by the forwarder."""

    _attr_has_entity_name = True
    _attr_should_poll = False
    _attr_entity_category = EntityCategory.DIAGNOSTIC

    def __init__(self, forwarder: Forwarder, description: EntityDescription) -> None:
        """Initialize the entity."""
        self.forwarder = forwarder
        self.entity_description = description
        self._attr_unique_id = f"{forwarder.unique_id_prefix}{description.key}"
        self._attr_device_info = DeviceInfo(
            entry_type=DeviceEntryType.SERVICE,
            identifiers={forwarder_device_identifier(forwarder.entry.entry_id)},
            manufacturer="Spotflow",
            model="IoT Platform device",
            translation_key="spotflow_forwarder",
            translation_placeholders={"device_id": forwarder.settings.device_id},
        )

    async def async_added_to_hass(self) -> None:
        """Follow the forwarder's updates."""
        await super().async_added_to_hass()
        self.async_on_remove(self.forwarder.async_add_listener(self.async_write_ha_state))


class ForwarderSensor(ForwarderEntity, SensorEntity):
    """A counter of the forwarder's outbox."""

    entity_description: ForwarderSensorEntityDescription

    @property
    def available(self) -> bool:
        """Return whether the outbox is open."""
        return self.forwarder.client is not None and self.forwarder.stats is not None

    @property
    def native_value(self) -> int | datetime | None:
        """Return the counter."""
        assert self.forwarder.stats is not None
        return self.entity_description.value_fn(self.forwarder.stats)


class ForwarderConnectedSensor(ForwarderEntity, BinarySensorEntity):
    """Whether the forwarder is connected to the platform's broker."""

    @property
    def is_on(self) -> bool:
        """Return whether the client is connected."""
        return self.forwarder.client is not None and self.forwarder.client.connected


def async_add_forwarder_entities(
    hass: HomeAssistant,
    entry: ConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    platform: Platform,
) -> None:
    """Add the forwarder's entities of one platform, when the entry mirrors into Spotflow."""
    if (forwarder := async_get_forwarder(hass, entry.entry_id)) is None:
        return
    if platform is Platform.SENSOR:
        async_add_entities(ForwarderSensor(forwarder, description) for description in SENSORS)
    elif platform is Platform.BINARY_SENSOR:
        async_add_entities([ForwarderConnectedSensor(forwarder, CONNECTED)])
