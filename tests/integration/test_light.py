"""Tests for Crownstones that dim, as lights."""

from __future__ import annotations

from datetime import timedelta

from homeassistant.components.light import ATTR_BRIGHTNESS, DOMAIN as LIGHT_DOMAIN
from homeassistant.const import (
    ATTR_ENTITY_ID,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
    STATE_UNKNOWN,
    Platform,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.helpers import (
    brightness_to_percentage,
    percentage_to_brightness,
)
from simulators.crownstone_cloud import CloudSimulator

from . import async_poll, async_wait_for_stone_state


@pytest.fixture
def platforms() -> list[Platform]:
    """Set up the light platform only."""
    return [Platform.LIGHT]


async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Crownstones with dimming enabled are lights."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


def test_brightness_mapping() -> None:
    """Percentages survive the round trip; no slider position gives 1..9 %."""
    for percentage in range(10, 101):
        assert brightness_to_percentage(percentage_to_brightness(percentage)) == percentage
    assert brightness_to_percentage(0) == 0
    assert {brightness_to_percentage(brightness) for brightness in range(1, 26)} == {10}
    assert brightness_to_percentage(255) == 100
    assert percentage_to_brightness(100) == 255


@pytest.mark.usefixtures("init_integration")
@pytest.mark.parametrize(
    ("service_data", "sent", "brightness"),
    [
        ({ATTR_BRIGHTNESS: 128}, 50, 128),
        # The lowest slider positions become the lowest level the cloud accepts.
        ({ATTR_BRIGHTNESS: 3}, 10, 26),
        # Without a brightness the stone is turned on (TURN_ON, which the phone makes 100 %).
        ({}, 100, 255),
    ],
)
async def test_turn_on(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    service_data: dict[str, int],
    sent: int,
    brightness: int,
) -> None:
    """Turning on reaches the stone, and the light shows it at once."""
    stone_id = cloud.stone_id("Cabin lamp")
    await hass.services.async_call(
        LIGHT_DOMAIN,
        SERVICE_TURN_ON,
        {ATTR_ENTITY_ID: "light.cabin_lamp", **service_data},
        blocking=True,
    )
    state = hass.states.get("light.cabin_lamp")
    assert state is not None
    assert state.state == STATE_ON
    assert state.attributes[ATTR_BRIGHTNESS] == brightness

    await async_wait_for_stone_state(cloud, stone_id, sent)
    await async_poll(hass)
    state = hass.states.get("light.cabin_lamp")
    assert state is not None
    assert state.state == STATE_ON
    assert state.attributes[ATTR_BRIGHTNESS] == brightness


@pytest.mark.usefixtures("init_integration")
async def test_turn_off(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """Turning off reaches the stone."""
    await hass.services.async_call(
        LIGHT_DOMAIN, SERVICE_TURN_OFF, {ATTR_ENTITY_ID: "light.desk_lamp"}, blocking=True
    )
    state = hass.states.get("light.desk_lamp")
    assert state is not None
    assert state.state == STATE_OFF
    await async_wait_for_stone_state(cloud, cloud.stone_id("Desk lamp"), 0)


async def test_optimistic_until_confirmed_or_expired(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """A stale poll does not undo a command; without a confirmation the truth returns."""
    cloud.set_phone(None)
    await hass.services.async_call(
        LIGHT_DOMAIN,
        SERVICE_TURN_ON,
        {ATTR_ENTITY_ID: "light.cabin_lamp", ATTR_BRIGHTNESS: 128},
        blocking=True,
    )
    # A poll within the window still reads the old state.
    await init_integration.runtime_data.async_refresh()
    state = hass.states.get("light.cabin_lamp")
    assert state is not None
    assert state.state == STATE_ON

    # No phone ever executed it: once the window closes the light shows the truth.
    await async_poll(hass, timedelta(seconds=31))
    state = hass.states.get("light.cabin_lamp")
    assert state is not None
    assert state.state == STATE_OFF


@pytest.mark.usefixtures("init_integration")
async def test_refused_command(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """Dimming switched off elsewhere: a translated error, and the stone becomes a switch."""
    cloud.set_ability(cloud.stone_id("Cabin lamp"), "dimming", False)

    with pytest.raises(HomeAssistantError) as error:
        await hass.services.async_call(
            LIGHT_DOMAIN,
            SERVICE_TURN_ON,
            {ATTR_ENTITY_ID: "light.cabin_lamp", ATTR_BRIGHTNESS: 128},
            blocking=True,
        )
    assert error.value.translation_domain == DOMAIN
    assert error.value.translation_key == "command_failed"
    assert "Dimming is not enabled" in str(error.value)
    await hass.async_block_till_done()

    assert hass.states.get("light.cabin_lamp") is None
    assert er.async_get(hass).async_get("light.cabin_lamp") is None


@pytest.mark.usefixtures("init_integration")
async def test_state_never_reported(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A stone that never reported its state is unknown, not off."""
    cloud.add_stone(cloud.sphere_id("Home"), "New lamp", dimming=True, switch_state=None)
    await async_poll(hass)
    state = hass.states.get("light.new_lamp")
    assert state is not None
    assert state.state == STATE_UNKNOWN
