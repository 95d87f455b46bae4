"""Tests for Crownstones that do not dim, as switches."""

from __future__ import annotations

from homeassistant.components.switch import DOMAIN as SWITCH_DOMAIN
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import (
    ATTR_ENTITY_ID,
    SERVICE_TURN_OFF,
    SERVICE_TURN_ON,
    STATE_OFF,
    STATE_ON,
    Platform,
)
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from custom_components.crownstone_spotflow.const import DOMAIN
from simulators.crownstone_cloud import DEMO_EMAIL, CloudSimulator

from . import async_wait_for_stone_state, entity_id_of


@pytest.fixture
def platforms() -> list[Platform]:
    """Set up the switch platform only."""
    return [Platform.SWITCH]


async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Switching Crownstones without dimming are switches; plugs are outlets."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


@pytest.mark.usefixtures("init_integration")
async def test_turn_on_off(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """Commands reach the stone, and the switch shows them at once."""
    stone_id = cloud.stone_id("Coffee machine")
    await hass.services.async_call(
        SWITCH_DOMAIN,
        SERVICE_TURN_ON,
        {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")},
        blocking=True,
    )
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet"))
    assert state is not None
    assert state.state == STATE_ON
    await async_wait_for_stone_state(cloud, stone_id, 100)

    await hass.services.async_call(
        SWITCH_DOMAIN,
        SERVICE_TURN_OFF,
        {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")},
        blocking=True,
    )
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet"))
    assert state is not None
    assert state.state == STATE_OFF
    await async_wait_for_stone_state(cloud, stone_id, 0)
    assert cloud.commands == [(stone_id, "TURN_ON", None), (stone_id, "TURN_OFF", None)]


@pytest.mark.usefixtures("init_integration")
@pytest.mark.parametrize(
    ("fault", "translation_key"),
    [
        ("http_503", "cloud_server_error"),
        ("html", "cloud_server_error"),
        ("reset", "cannot_reach_cloud"),
    ],
)
async def test_cloud_error(
    hass: HomeAssistant, cloud: CloudSimulator, fault: str, translation_key: str
) -> None:
    """A failed command raises a translated error and the switch keeps its true state."""
    cloud.inject_fault(fault, path="/switch")  # type: ignore[arg-type]
    with pytest.raises(HomeAssistantError) as error:
        await hass.services.async_call(
            SWITCH_DOMAIN,
            SERVICE_TURN_ON,
            {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")},
            blocking=True,
        )
    assert error.value.translation_domain == DOMAIN
    assert error.value.translation_key == translation_key
    assert error.value.translation_placeholders["name"] == "Coffee machine"
    state = hass.states.get(entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet"))
    assert state is not None
    assert state.state == STATE_OFF


async def test_rejected_credentials_start_reauth(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """A password changed elsewhere fails the command and asks the user to sign in again."""
    cloud.change_password(DEMO_EMAIL, "changed-elsewhere")
    cloud.expire_tokens()
    with pytest.raises(HomeAssistantError) as error:
        await hass.services.async_call(
            SWITCH_DOMAIN,
            SERVICE_TURN_ON,
            {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")},
            blocking=True,
        )
    assert error.value.translation_key == "authentication_error"
    await hass.async_block_till_done()
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["entry_id"] for flow in flows] == [init_integration.entry_id]


async def test_no_access_does_not_start_reauth(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """A command refused though the login works is a failed command, not bad credentials."""
    cloud.inject_fault("unauthorized", path="/switch")
    with pytest.raises(HomeAssistantError) as error:
        await hass.services.async_call(
            SWITCH_DOMAIN,
            SERVICE_TURN_ON,
            {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")},
            blocking=True,
        )
    assert error.value.translation_key == "command_failed"
    await hass.async_block_till_done()
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert init_integration.state is ConfigEntryState.LOADED
