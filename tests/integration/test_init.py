"""Tests for setting up and unloading the integration."""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_EMAIL, CONF_PASSWORD
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import CONF_CLOUD_URL, CONF_SSE_URL, DOMAIN
from simulators.crownstone_cloud import DEMO_EMAIL, CloudSimulator

from . import async_wait_for_stream, get_device


async def test_load_unload(hass: HomeAssistant, init_integration: MockConfigEntry) -> None:
    """The entry loads against the cloud and unloads cleanly."""
    assert init_integration.state is ConfigEntryState.LOADED
    assert hass.states.get("light.desk_lamp") is not None

    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.NOT_LOADED


async def test_cloud_down_then_retry(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """An unreachable cloud postpones the setup; the retry succeeds once it answers."""
    cloud.inject_fault("http_503")
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY

    cloud.clear_faults()
    await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.LOADED


async def test_bad_credentials_start_reauth(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """A password changed elsewhere fails the setup and asks the user to sign in again."""
    cloud.change_password(DEMO_EMAIL, "something-else")
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert mock_config_entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    assert flows[0]["context"]["entry_id"] == mock_config_entry.entry_id


async def test_devices(
    hass: HomeAssistant, init_integration: MockConfigEntry, cloud: CloudSimulator
) -> None:
    """Each switching Crownstone, sphere and room is a device, and the account's cloud service.

    Dongles are not."""
    device_registry = dr.async_get(hass)
    names = {
        device.name
        for device in dr.async_entries_for_config_entry(device_registry, init_integration.entry_id)
    }
    assert names == {
        "Home",
        "Living room",
        "Kitchen",
        "Bedroom",
        "Hallway",
        "Desk lamp",
        "Ceiling light",
        "Coffee machine",
        "Kitchen spots",
        "Hallway plug",
        "Cabin",
        "Cabin room",
        "Cabin lamp",
        "Porch light",
        "Crownstone cloud",
    }
    desk_lamp = get_device(hass, cloud.stone_id("Desk lamp"))
    assert desk_lamp is not None
    assert desk_lamp.manufacturer == "Crownstone"
    assert desk_lamp.model == "Crownstone Plug"
    assert desk_lamp.suggested_area == "Living room"
    assert desk_lamp.via_device_id is None
    # A connection would merge the devices of two accounts sharing the sphere.
    assert not desk_lamp.connections


async def test_two_accounts_sharing_a_sphere(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ann and Bob both have Home: each gets every entity and device of it, of their own."""
    bob = MockConfigEntry(
        domain=DOMAIN,
        title="Crownstone (bob@example.com)",
        unique_id=cloud.user_id("bob@example.com"),
        data={
            CONF_EMAIL: "bob@example.com",
            CONF_PASSWORD: "bob-password",
            CONF_CLOUD_URL: cloud.url,
            CONF_SSE_URL: cloud.sse_url,
        },
    )
    bob.add_to_hass(hass)
    assert await hass.config_entries.async_setup(bob.entry_id)
    await hass.async_block_till_done()
    await async_wait_for_stream(bob.runtime_data)

    assert "does not generate unique IDs" not in caplog.text
    entity_registry = er.async_get(hass)
    device_registry = dr.async_get(hass)
    ann_entities = er.async_entries_for_config_entry(entity_registry, init_integration.entry_id)
    bob_entities = er.async_entries_for_config_entry(entity_registry, bob.entry_id)
    # Bob has no access to the Cabin: two presence entities of Home and each of its 4 rooms,
    # 5 Crownstones, 3 people, and the live updates entity.
    assert len(bob_entities) == 2 * 5 + 5 + 3 + 1
    assert len(ann_entities) > len(bob_entities)
    home_stone = cloud.stone_id("Desk lamp")
    for entry in (init_integration, bob):
        device = get_device(hass, home_stone, entry.unique_id)
        assert device is not None
        assert device.config_entries == {entry.entry_id}
    bob_devices = dr.async_entries_for_config_entry(device_registry, bob.entry_id)
    assert {device.name for device in bob_devices} == {
        "Home",
        "Living room",
        "Kitchen",
        "Bedroom",
        "Hallway",
        "Desk lamp",
        "Ceiling light",
        "Coffee machine",
        "Kitchen spots",
        "Hallway plug",
        "Crownstone cloud",
    }
    ann_devices = dr.async_entries_for_config_entry(device_registry, init_integration.entry_id)
    assert not {device.id for device in ann_devices} & {device.id for device in bob_devices}
