"""Tests for keeping Home Assistant in step with the cloud: changes, outages, removals."""

from __future__ import annotations

import logging

from homeassistant.components.automation import DOMAIN as AUTOMATION_DOMAIN
from homeassistant.components.light import (
    ATTR_BRIGHTNESS,
    ATTR_COLOR_MODE,
    ATTR_SUPPORTED_COLOR_MODES,
    ColorMode,
)
from homeassistant.config_entries import SOURCE_REAUTH
from homeassistant.const import STATE_OFF, STATE_ON, STATE_UNAVAILABLE, Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow import async_remove_config_entry_device
from custom_components.crownstone_spotflow.const import DOMAIN
from simulators.crownstone_cloud import DEMO_EMAIL, CloudSimulator

from . import async_poll, async_wait_until, entity_id_of, get_device


def _device(hass: HomeAssistant, cloud_id: str) -> dr.DeviceEntry | None:
    return get_device(hass, cloud_id)


@pytest.mark.usefixtures("init_integration")
async def test_dimming_toggled(
    hass: HomeAssistant, cloud: CloudSimulator, entity_registry: er.EntityRegistry
) -> None:
    """Dimming turned off elsewhere leaves the light a light: ids and automations stay."""
    stone_id = cloud.stone_id("Cabin lamp")
    entity_id = entity_id_of(hass, stone_id, "light")
    registered = entity_registry.async_get(entity_id)
    assert registered is not None
    assert await async_setup_component(
        hass,
        AUTOMATION_DOMAIN,
        {
            AUTOMATION_DOMAIN: {
                "trigger": {"platform": "event", "event_type": "lamp_please"},
                "action": {"action": "light.turn_on", "target": {"entity_id": entity_id}},
            }
        },
    )

    def color_modes() -> tuple[object, object]:
        attributes = hass.states.get(entity_id).attributes
        return attributes[ATTR_COLOR_MODE], attributes[ATTR_SUPPORTED_COLOR_MODES]

    cloud.set_switch_state(stone_id, 50)
    await async_wait_until(hass, lambda: color_modes()[0] == ColorMode.BRIGHTNESS)
    cloud.set_ability(stone_id, "dimming", False)
    await async_wait_until(hass, lambda: color_modes() == (ColorMode.ONOFF, [ColorMode.ONOFF]))
    assert hass.states.get(entity_id).attributes.get(ATTR_BRIGHTNESS) is None
    # A poll agrees with the event.
    await async_poll(hass)
    assert color_modes() == (ColorMode.ONOFF, [ColorMode.ONOFF])
    assert entity_id_of(hass, stone_id, "light") == entity_id
    assert len(er.async_entries_for_device(entity_registry, _device(hass, stone_id).id)) == 1

    cloud.reset_counters()
    hass.bus.async_fire("lamp_please")
    await hass.async_block_till_done()
    assert cloud.commands == [(stone_id, "TURN_ON", None)]

    cloud.set_ability(stone_id, "dimming", True)
    await async_wait_until(
        hass, lambda: color_modes() == (ColorMode.BRIGHTNESS, [ColorMode.BRIGHTNESS])
    )
    await async_wait_until(
        hass, lambda: hass.states.get(entity_id).attributes.get(ATTR_BRIGHTNESS) == 255
    )
    after = entity_registry.async_get(entity_id)
    assert after is not None
    assert (after.id, after.unique_id, after.platform, after.device_id) == (
        registered.id,
        registered.unique_id,
        registered.platform,
        registered.device_id,
    )
    assert len(er.async_entries_for_device(entity_registry, _device(hass, stone_id).id)) == 1


async def test_platform_kept_from_the_registry(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """A Crownstone the registry knows keeps its platform, whatever its dimming says now."""
    stone_id = cloud.stone_id("Coffee machine")
    cloud.set_ability(stone_id, "dimming", True)
    mock_config_entry.add_to_hass(hass)
    entry = entity_registry.async_get_or_create(
        Platform.SWITCH,
        DOMAIN,
        f"{mock_config_entry.unique_id}_{stone_id}_outlet",
        config_entry=mock_config_entry,
        suggested_object_id="my_coffee",
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert entity_id_of(hass, stone_id, "outlet") == entry.entity_id == "switch.my_coffee"
    assert hass.states.get(entry.entity_id) is not None
    assert not [
        registered
        for registered in er.async_entries_for_config_entry(
            entity_registry, mock_config_entry.entry_id
        )
        if registered.unique_id.endswith(f"{stone_id}_light")
    ]


@pytest.mark.usefixtures("init_integration")
async def test_new_stone_room_and_sphere(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """What is added in the cloud appears without a restart."""
    sphere_id = cloud.add_sphere("Office", DEMO_EMAIL)
    location_id = cloud.add_location(sphere_id, "Meeting room")
    stone_id = cloud.add_stone(
        sphere_id, "Beamer", location_id=location_id, dimming=False, switch_state=100
    )
    await async_poll(hass)

    assert hass.states.get(entity_id_of(hass, stone_id, "outlet")).state == STATE_ON
    assert hass.states.get(entity_id_of(hass, location_id, "occupancy")).state == STATE_OFF
    assert hass.states.get(entity_id_of(hass, sphere_id, "people")).state == "0"
    device = _device(hass, stone_id)
    assert device is not None
    assert device.suggested_area == "Meeting room"


async def test_removed_stone_room_and_sphere(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """What is removed in the cloud leaves the device registry, and can't be removed twice."""
    stone_id = cloud.stone_id("Coffee machine")
    location_id = cloud.location_id("Bedroom")
    sphere_id = cloud.sphere_id("Cabin")
    cabin_devices = [
        _device(hass, cloud_id)
        for cloud_id in (
            sphere_id,
            cloud.location_id("Cabin room"),
            cloud.stone_id("Cabin lamp"),
            cloud.stone_id("Porch light"),
        )
    ]
    assert all(cabin_devices)
    desk_lamp = _device(hass, cloud.stone_id("Desk lamp"))
    assert desk_lamp is not None
    assert not await async_remove_config_entry_device(hass, init_integration, desk_lamp)
    removed = [
        entity_id_of(hass, stone_id, "outlet"),
        entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"),
        entity_id_of(hass, location_id, "occupancy"),
    ]

    cloud.remove_stone(stone_id)
    cloud.remove_location(location_id)
    cloud.remove_sphere(sphere_id)
    await async_poll(hass)

    assert _device(hass, stone_id) is None
    assert _device(hass, location_id) is None
    assert all(
        dr.async_get(hass).async_get(device.id) is None for device in cabin_devices if device
    )
    assert all(hass.states.get(entity_id) is None for entity_id in removed)
    assert _device(hass, cloud.stone_id("Desk lamp")) is not None


async def test_manual_removal_of_a_device_the_cloud_lost(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A device the cloud no longer knows may be removed by hand."""
    device = dr.async_get(hass).async_get_or_create(
        config_entry_id=init_integration.entry_id, identifiers={(DOMAIN, "long-gone")}
    )
    assert await async_remove_config_entry_device(hass, init_integration, device)


@pytest.mark.usefixtures("init_integration")
async def test_unreachable_cloud(
    hass: HomeAssistant, cloud: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Entities go unavailable while the cloud is down, logged once, and come back."""
    caplog.set_level(logging.INFO)
    cloud.inject_fault("http_503")
    await async_poll(hass)
    await async_poll(hass)

    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")).state
        == STATE_UNAVAILABLE
    )
    assert (
        hass.states.get(entity_id_of(hass, cloud.sphere_id("Home"), "people")).state
        == STATE_UNAVAILABLE
    )
    failures = [r for r in caplog.records if "Error fetching" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is None
    assert "Traceback" not in caplog.text
    # An outage does not make devices stale.
    assert _device(hass, cloud.stone_id("Desk lamp")) is not None

    cloud.clear_faults()
    await async_poll(hass)
    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")).state == STATE_ON
    )
    assert sum("recovered" in record.getMessage() for record in caplog.records) == 1


@pytest.mark.usefixtures("init_integration")
async def test_expired_token(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """An expired token is renewed without the user noticing."""
    cloud.expire_tokens()
    await async_poll(hass)
    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")).state == STATE_ON
    )


async def test_password_changed_while_running(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """A password changed elsewhere makes entities unavailable and starts reauthentication."""
    cloud.change_password(DEMO_EMAIL, "changed-elsewhere")
    cloud.expire_tokens()
    await async_poll(hass)

    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")).state
        == STATE_UNAVAILABLE
    )
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    assert flows[0]["context"]["entry_id"] == init_integration.entry_id


@pytest.mark.usefixtures("init_integration")
async def test_malformed_answer(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A cloud answering nonsense is an update failure, not a crash."""
    cloud.inject_fault("malformed_json")
    await async_poll(hass)
    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")).state
        == STATE_UNAVAILABLE
    )


async def test_pending_command_on_a_removed_stone(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """A command still waiting for its stone is forgotten when the stone goes."""
    cloud.set_phone(None)
    coffee = entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")
    await hass.services.async_call("switch", "turn_on", {"entity_id": coffee}, blocking=True)
    assert hass.states.get(coffee).state == STATE_ON

    cloud.remove_stone(cloud.stone_id("Coffee machine"))
    # Within the optimistic window.
    await init_integration.runtime_data.async_refresh()
    await hass.async_block_till_done()
    assert hass.states.get(coffee) is None


@pytest.mark.usefixtures("init_integration")
async def test_no_access_is_a_failed_update(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A read refused though the login works makes entities unavailable, without reauth."""
    cloud.inject_fault("unauthorized", path="/presentPeople")
    await async_poll(hass)

    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")).state
        == STATE_UNAVAILABLE
    )
    assert not hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    cloud.clear_faults()
    await async_poll(hass)
    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")).state == STATE_ON
    )


@pytest.mark.usefixtures("init_integration")
async def test_requests_per_poll(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A poll reads the spheres and each sphere's presence; users only when a stranger shows."""
    cloud.reset_counters()
    await async_poll(hass)
    assert cloud.request_count() == 1 + 2, cloud.requests
    assert cloud.request_count(path_contains="/users") == 1  # /users/{id}/spheres

    home = cloud.sphere_id("Home")
    cloud.add_user(home, "Dave", "New", "dave@example.com", "dave-password")
    cloud.enter_sphere(cloud.user_id("dave@example.com"), home)
    await async_wait_until(
        hass,
        lambda: hass.states.get(entity_id_of(hass, cloud.sphere_id("Home"), "people")).state == "3",
    )
    # The stranger's name is read in the background; that read is not part of the poll.
    await hass.async_block_till_done(wait_background_tasks=True)
    cloud.reset_counters()
    await async_poll(hass)
    assert cloud.request_count() == 1 + 2, cloud.requests


async def test_changes_while_not_running(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """What changed while the entry was unloaded leaves no orphan, and no light a switch."""
    stone_id = cloud.stone_id("Cabin lamp")
    lamp = entity_id_of(hass, stone_id, "light")
    bedroom = cloud.location_id("Bedroom")
    assert _registered(entity_registry, init_integration, bedroom, "people")
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    cloud.set_ability(stone_id, "dimming", False)
    cloud.remove_location(bedroom)

    assert await hass.config_entries.async_setup(init_integration.entry_id)
    await hass.async_block_till_done()

    assert entity_id_of(hass, stone_id, "light") == lamp
    assert hass.states.get(lamp).attributes[ATTR_SUPPORTED_COLOR_MODES] == [ColorMode.ONOFF]
    assert not _registered(entity_registry, init_integration, stone_id, "outlet")
    assert not _registered(entity_registry, init_integration, bedroom, "people")
    assert not _registered(entity_registry, init_integration, bedroom, "occupancy")
    # The account's own entities stay, the live updates entity too.
    assert hass.states.get(entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")).state == (
        STATE_ON
    )
    assert entity_id_of(hass, "cloud", "live_updates")


def _registered(
    registry: er.EntityRegistry, entry: MockConfigEntry, cloud_id: str, key: str
) -> bool:
    unique_id = f"{entry.unique_id}_{cloud_id}_{key}"
    return any(
        registered.unique_id == unique_id
        for registered in er.async_entries_for_config_entry(registry, entry.entry_id)
    )
