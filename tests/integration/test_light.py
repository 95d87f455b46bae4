"""Tests for Crownstones that dim, as lights."""

from __future__ import annotations

from datetime import timedelta

from homeassistant.components.light import (
    ATTR_BRIGHTNESS,
    ATTR_SUPPORTED_COLOR_MODES,
    DOMAIN as LIGHT_DOMAIN,
    ColorMode,
)
from homeassistant.const import (
    ATTR_ENTITY_ID,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
    STATE_UNKNOWN,
    Platform,
)
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.helpers import (
    brightness_to_percentage,
    percentage_to_brightness,
)
from simulators.crownstone_cloud import CloudSimulator

from . import async_poll, async_wait_for_stone_state, entity_id_of


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
    ("service_data", "command", "sent", "brightness"),
    [
        ({ATTR_BRIGHTNESS: 128}, ("PERCENTAGE", 50), 50, 128),
        # The lowest slider positions become the lowest level the cloud accepts.
        ({ATTR_BRIGHTNESS: 3}, ("PERCENTAGE", 10), 10, 26),
        # Without a brightness the stone is turned on (TURN_ON, which the phone makes 100 %):
        # a dimmer may come back at its own level.
        ({}, ("TURN_ON", None), 100, 255),
    ],
)
async def test_turn_on(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    service_data: dict[str, int],
    command: tuple[str, int | None],
    sent: int,
    brightness: int,
) -> None:
    """Turning on reaches the stone, and the light shows it at once."""
    stone_id = cloud.stone_id("Cabin lamp")
    cloud.reset_counters()
    await hass.services.async_call(
        LIGHT_DOMAIN,
        SERVICE_TURN_ON,
        {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"), **service_data},
        blocking=True,
    )
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"))
    assert state is not None
    assert state.state == STATE_ON
    assert state.attributes[ATTR_BRIGHTNESS] == brightness
    assert cloud.commands == [(stone_id, *command)]

    await async_wait_for_stone_state(cloud, stone_id, sent)
    await async_poll(hass)
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"))
    assert state is not None
    assert state.state == STATE_ON
    assert state.attributes[ATTR_BRIGHTNESS] == brightness


@pytest.mark.usefixtures("init_integration")
async def test_turn_off(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """Turning off reaches the stone."""
    await hass.services.async_call(
        LIGHT_DOMAIN,
        SERVICE_TURN_OFF,
        {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")},
        blocking=True,
    )
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light"))
    assert state is not None
    assert state.state == STATE_OFF
    assert cloud.commands == [(cloud.stone_id("Desk lamp"), "TURN_OFF", None)]
    await async_wait_for_stone_state(cloud, cloud.stone_id("Desk lamp"), 0)


@pytest.fixture
def cabin_lamp_states(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> list[str]:
    """Record every state the cabin lamp takes."""
    states: list[str] = []

    @callback
    def _record(event: Event[EventStateChangedData]) -> None:
        if (state := event.data["new_state"]) is not None:
            states.append(state.state)

    async_track_state_change_event(
        hass, entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"), _record
    )
    return states


async def test_optimistic_until_confirmed_or_expired(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    cabin_lamp_states: list[str],
) -> None:
    """A stale poll does not undo a command; without a confirmation the truth returns."""
    cloud.set_phone(None)
    await hass.services.async_call(
        LIGHT_DOMAIN,
        SERVICE_TURN_ON,
        {
            ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"),
            ATTR_BRIGHTNESS: 128,
        },
        blocking=True,
    )
    # A poll within the window still reads the old state.
    await init_integration.runtime_data.async_refresh()
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"))
    assert state is not None
    assert state.state == STATE_ON

    # No phone ever executed it: once the window closes the light shows the truth.
    await async_poll(hass, timedelta(seconds=31))
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"))
    assert state is not None
    assert state.state == STATE_OFF
    assert cabin_lamp_states == [STATE_ON, STATE_OFF]


async def test_confirmed_only_by_the_read_after_the_window(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    cabin_lamp_states: list[str],
) -> None:
    """A command whose report was missed stays on through the window's end: no flicker."""
    coordinator = init_integration.runtime_data
    # No stream, so the stone's report is only found by reading.
    await coordinator.stream.stop()
    await hass.services.async_call(
        LIGHT_DOMAIN,
        SERVICE_TURN_ON,
        {
            ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"),
            ATTR_BRIGHTNESS: 128,
        },
        blocking=True,
    )
    await async_wait_for_stone_state(cloud, cloud.stone_id("Cabin lamp"), 50)

    await async_poll(hass, timedelta(seconds=31))
    assert not coordinator._pending
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"))
    assert state is not None
    assert state.state == STATE_ON
    assert state.attributes[ATTR_BRIGHTNESS] == 128
    assert cabin_lamp_states == [STATE_ON]


async def test_window_closing_after_a_confirmation(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """The expiry of a command confirmed meanwhile changes nothing and reads nothing."""
    coordinator = init_integration.runtime_data
    cloud.set_phone(None)
    stone = coordinator.crownstone(cloud.stone_id("Cabin lamp"))
    assert stone is not None
    coordinator.async_expect_switch(stone, on=True, percentage=None)
    pending = coordinator._pending[stone.cloud_id]
    # The report arrives while the expiry job is already queued.
    coordinator._forget_pending(stone.cloud_id)
    cloud.reset_counters()
    await coordinator._async_pending_expired(stone.cloud_id, dt_util.utcnow())
    assert cloud.request_count() == 0
    assert pending not in coordinator._pending.values()


async def test_refused_command(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """Dimming switched off unheard: a translated error, and the light loses its brightness."""
    stone_id = cloud.stone_id("Cabin lamp")
    entity_id = entity_id_of(hass, stone_id, "light")
    # Unheard: the stream would tell at once.
    await init_integration.runtime_data.stream.stop()
    cloud.set_ability(stone_id, "dimming", False)

    with pytest.raises(HomeAssistantError) as error:
        await hass.services.async_call(
            LIGHT_DOMAIN,
            SERVICE_TURN_ON,
            {ATTR_ENTITY_ID: entity_id, ATTR_BRIGHTNESS: 128},
            blocking=True,
        )
    assert error.value.translation_domain == DOMAIN
    assert error.value.translation_key == "dimming_disabled"
    assert error.value.translation_placeholders["name"] == "Cabin lamp"
    await hass.async_block_till_done(wait_background_tasks=True)

    # Read again after the refusal: the same light, now without brightness.
    assert entity_id_of(hass, stone_id, "light") == entity_id
    state = hass.states.get(entity_id)
    assert state is not None
    assert state.attributes[ATTR_SUPPORTED_COLOR_MODES] == [ColorMode.ONOFF]


@pytest.mark.usefixtures("init_integration")
async def test_state_never_reported(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A stone that never reported its state is unknown, not off."""
    stone_id = cloud.add_stone(cloud.sphere_id("Home"), "New lamp", dimming=True, switch_state=None)
    await async_poll(hass)
    state = hass.states.get(entity_id_of(hass, stone_id, "light"))
    assert state is not None
    assert state.state == STATE_UNKNOWN
