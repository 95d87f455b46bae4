"""Tests for presence binary sensors."""

from __future__ import annotations

from homeassistant.const import STATE_OFF, STATE_ON, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, snapshot_platform
from syrupy.assertion import SnapshotAssertion

from simulators.crownstone_cloud import DEMO_EMAIL, CloudSimulator

from . import async_poll, entity_id_of, place_entity


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
    hass: HomeAssistant, cloud: CloudSimulator, entity_registry: er.EntityRegistry
) -> None:
    """Per-person presence is opt-in, and named after the person, never the e-mail."""
    ann_in_home = _person_entity(hass, cloud, DEMO_EMAIL)
    entry = entity_registry.async_get(ann_in_home)
    assert entry is not None
    assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION
    assert hass.states.get(ann_in_home) is None


@pytest.mark.usefixtures("entity_registry_enabled_by_default", "init_integration")
async def test_presence_follows_the_cloud(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """Occupancy and presence follow people moving around, after a refresh."""
    ann = cloud.user_id(DEMO_EMAIL)
    home = cloud.sphere_id("Home")
    ann_in_home = _person_entity(hass, cloud, DEMO_EMAIL)

    assert hass.states.get(place_entity(hass, cloud, "Living room", "occupancy")).state == STATE_ON
    assert hass.states.get(place_entity(hass, cloud, "Kitchen", "occupancy")).state == STATE_OFF
    assert hass.states.get(ann_in_home).state == STATE_ON

    cloud.exit_location(ann, home, cloud.location_id("Living room"))
    cloud.enter_location(ann, home, cloud.location_id("Kitchen"))
    await async_poll(hass)
    assert hass.states.get(place_entity(hass, cloud, "Living room", "occupancy")).state == STATE_OFF
    assert hass.states.get(place_entity(hass, cloud, "Kitchen", "occupancy")).state == STATE_ON

    cloud.exit_sphere(ann, home)
    await async_poll(hass)
    assert hass.states.get(place_entity(hass, cloud, "Kitchen", "occupancy")).state == STATE_OFF
    assert hass.states.get(ann_in_home).state == STATE_OFF
    # Bob is still home, in no room in particular.
    assert hass.states.get(place_entity(hass, cloud, "Home", "occupancy")).state == STATE_ON


def _person_entity(hass: HomeAssistant, cloud: CloudSimulator, email: str) -> str:
    """Return the entity that shows whether a person is in Home."""
    return entity_id_of(hass, cloud.sphere_id("Home"), f"presence_{cloud.user_id(email)}")
