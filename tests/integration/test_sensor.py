"""Tests for people-present sensors."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from simulators.crownstone_cloud import CloudSimulator

from . import async_poll, place_entity


@pytest.fixture
def platforms() -> list[Platform]:
    """Set up the sensor platform only."""
    return [Platform.SENSOR]


async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Spheres and rooms count the people present."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


@pytest.mark.usefixtures("init_integration")
async def test_count_follows_the_cloud(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """The counts follow people arriving, after a refresh."""
    assert hass.states.get(place_entity(hass, cloud, "Home", "people")).state == "2"
    assert hass.states.get(place_entity(hass, cloud, "Bedroom", "people")).state == "0"

    cloud.enter_location(
        cloud.user_id("cleo@example.com"), cloud.sphere_id("Home"), cloud.location_id("Bedroom")
    )
    await async_poll(hass)

    assert hass.states.get(place_entity(hass, cloud, "Home", "people")).state == "3"
    bedroom = hass.states.get(place_entity(hass, cloud, "Bedroom", "people"))
    assert bedroom.state == "1"
    # A bare count, as core's zones show theirs: no "1 people".
    assert "unit_of_measurement" not in bedroom.attributes
