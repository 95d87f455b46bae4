"""Crownstones that could dim when first seen, as lights (for life: see power_platform)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeassistant.components.light import (
    ATTR_BRIGHTNESS,
    LightEntity,
    LightEntityDescription,
)
from homeassistant.components.light.const import ColorMode
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import CrownstoneConfigEntry
from .entity import CrownstoneStoneEntity, CrownstoneStoneEntityDescription
from .helpers import (
    async_track_stone_entities,
    brightness_to_percentage,
    crownstone_exception_handler,
    percentage_to_brightness,
)

PARALLEL_UPDATES = 1


@dataclass(frozen=True, kw_only=True)
class CrownstoneLightEntityDescription(LightEntityDescription, CrownstoneStoneEntityDescription):
    """Describes a Crownstone light."""


DESCRIPTIONS = (
    CrownstoneLightEntityDescription(
        key="light",
        name=None,
        exists_fn=lambda stone: stone.switches_power,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: CrownstoneConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Set up Crownstone lights."""
    async_track_stone_entities(
        entry.runtime_data, Platform.LIGHT, async_add_entities, DESCRIPTIONS, CrownstoneLightEntity
    )


class CrownstoneLightEntity(CrownstoneStoneEntity, LightEntity):
    """A Crownstone as a light: with brightness while its dimming is enabled, on/off without."""

    entity_description: CrownstoneLightEntityDescription

    @property
    def color_mode(self) -> ColorMode:
        """Return BRIGHTNESS while dimming is enabled, else ONOFF."""
        return ColorMode.BRIGHTNESS if self.crownstone.dimming_enabled else ColorMode.ONOFF

    @property
    def supported_color_modes(self) -> set[ColorMode]:
        """Return the one color mode the light has now."""
        return {self.color_mode}

    @property
    def brightness(self) -> int | None:
        """Return the brightness (0..255) while dimming is enabled; read only while on."""
        if self.color_mode is ColorMode.ONOFF:
            return None
        return percentage_to_brightness(self.coordinator.switch_state(self.crownstone) or 0)

    @crownstone_exception_handler
    async def async_turn_on(self, **kwargs: Any) -> None:
        """Turn on, at a brightness when one is given."""
        stone = self.crownstone
        if ATTR_BRIGHTNESS in kwargs:
            percentage = brightness_to_percentage(kwargs[ATTR_BRIGHTNESS])
            await stone.async_set_brightness(percentage)
            self.coordinator.async_expect_switch(stone, on=percentage > 0, percentage=percentage)
        else:
            await stone.async_turn_on()
            self.coordinator.async_expect_switch(stone, on=True, percentage=None)

    @crownstone_exception_handler
    async def async_turn_off(self, **kwargs: Any) -> None:
        """Turn off."""
        stone = self.crownstone
        await stone.async_turn_off()
        self.coordinator.async_expect_switch(stone, on=False, percentage=None)
