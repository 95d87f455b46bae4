"""Crownstones that could not dim when first seen, as switches (for life: see power_platform)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeassistant.components.switch import (
    SwitchDeviceClass,
    SwitchEntity,
    SwitchEntityDescription,
)
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import CrownstoneConfigEntry
from .entity import CrownstoneStoneEntity, CrownstoneStoneEntityDescription
from .helpers import async_track_stone_entities, crownstone_exception_handler

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class CrownstoneSwitchEntityDescription(SwitchEntityDescription, CrownstoneStoneEntityDescription):
    """Describes a Crownstone switch."""


DESCRIPTIONS = (
    CrownstoneSwitchEntityDescription(
        key="outlet",
        name=None,
        device_class=SwitchDeviceClass.OUTLET,
        exists_fn=lambda stone: stone.type == "PLUG" and stone.switches_power,
    ),
    CrownstoneSwitchEntityDescription(
        key="switch",
        name=None,
        device_class=SwitchDeviceClass.SWITCH,
        exists_fn=lambda stone: stone.type != "PLUG" and stone.switches_power,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CrownstoneConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up Crownstone switches."""
    async_track_stone_entities(
        entry.runtime_data,
        Platform.SWITCH,
        async_add_entities,
        DESCRIPTIONS,
        CrownstoneSwitchEntity,
    )


class CrownstoneSwitchEntity(CrownstoneStoneEntity, SwitchEntity):
    """A Crownstone that switches (turning its dimming on later makes no dimmer of it)."""

    entity_description: CrownstoneSwitchEntityDescription

    @crownstone_exception_handler
    async def async_turn_on(self, **kwargs: Any) -> None:
        """Switch the power on."""
        await self.crownstone.async_turn_on()
        self.coordinator.async_expect_switch(self.crownstone, on=True, percentage=None)

    @crownstone_exception_handler
    async def async_turn_off(self, **kwargs: Any) -> None:
        """Switch the power off."""
        await self.crownstone.async_turn_off()
        self.coordinator.async_expect_switch(self.crownstone, on=False, percentage=None)
