"""Tests for presence binary sensors."""

from __future__ import annotations

from homeassistant.const import STATE_OFF, STATE_ON, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from simulators.crownstone_cloud import DEMO_EMAIL, CloudSimulator

from . import async_poll


@pytest.fixture
def platforms() -> list[Platform]:
    """Set up the binary sensor platform only."""
    return [Platform.BINARY_SENSOR]


@pytest.mark.usefixtures("entity_registry_enabled_by_default")
async def test_entities(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    snapshot: SnapshotAssertion,
) -> None:
    """Spheres and rooms have occupancy; each person of a sphere has presence."""
    await snapshot_platform(hass, entity_registry, snapshot, init_integration.entry_id)


@pytest.mark.usefixtures("init_integration")
async def test_people_are_disabled_by_default(
    hass: HomeAssistant, entity_registry: er.EntityRegistry
) -> None:
    """Per-person presence is opt-in, and named after the person, never the e-mail."""
    entry = entity_registry.async_get("binary_sensor.home_ann_admin_present")
    assert entry is not None
    assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert hass.states.get("binary_sensor.home_ann_admin_present") is None


@pytest.mark.usefixtures("entity_registry_enabled_by_default", "init_integration")
async def test_presence_follows_the_cloud(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """Occupancy and presence follow people moving around, after a refresh."""
    ann = cloud.user_id(DEMO_EMAIL)
    home = cloud.sphere_id("Home")

    assert hass.states.get("binary_sensor.living_room_occupancy").state == STATE_ON
    assert hass.states.get("binary_sensor.kitchen_occupancy").state == STATE_OFF
    assert hass.states.get("binary_sensor.home_ann_admin_present").state == STATE_ON

    cloud.exit_location(ann, home, cloud.location_id("Living room"))
    cloud.enter_location(ann, home, cloud.location_id("Kitchen"))
    await async_poll(hass)
    assert hass.states.get("binary_sensor.living_room_occupancy").state == STATE_OFF
    assert hass.states.get("binary_sensor.kitchen_occupancy").state == STATE_ON

    cloud.exit_sphere(ann, home)
    await async_poll(hass)
    assert hass.states.get("binary_sensor.kitchen_occupancy").state == STATE_OFF
    assert hass.states.get("binary_sensor.home_ann_admin_present").state == STATE_OFF
    # Bob is still home, in no room in particular.
    assert hass.states.get("binary_sensor.home_occupancy").state == STATE_ON
