"""Tests for setting up and unloading the integration."""

from __future__ import annotations

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import CONF_EMAIL, CONF_PASSWORD, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar, device_registry as dr, entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow import async_remove_config_entry_device
from custom_components.crownstone_spotflow.const import (
    CONF_CLOUD_URL,
    CONF_PASSWORD_SHA1,
    CONF_SSE_URL,
    DOMAIN,
)
from custom_components.crownstone_spotflow.crownstone import hash_password
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

from . import (
    DEVICES_PER_ENTRY,
    async_poll,
    async_wait_for_stream,
    device_entry_ids,
    entity_id_of,
    get_device,
    stone_entity,
)


async def test_load_unload(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """The entry loads against the cloud and unloads cleanly."""
    assert init_integration.state is ConfigEntryState.LOADED
    assert hass.states.get(stone_entity(hass, cloud, "Desk lamp")) is not None

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
    # No device is put in an area its name already starts with: from 2026 entity ids start with
    # the area ("Kitchen spots" in Kitchen would be switch.kitchen_kitchen_spots).
    areas = ar.async_get(hass)
    area_names = {
        str(device.name): areas.async_get_area(device.area_id).name if device.area_id else None
        for device in dr.async_entries_for_config_entry(device_registry, init_integration.entry_id)
    }
    assert area_names["Desk lamp"] == "Living room"
    assert area_names["Coffee machine"] == "Kitchen"
    assert area_names["Kitchen spots"] is None
    assert area_names["Hallway plug"] is None
    assert area_names["Kitchen"] is None
    assert desk_lamp.via_device_id is None
    address = cloud.stone(cloud.stone_id("Desk lamp"))[1].address
    assert desk_lamp.connections == {(dr.CONNECTION_BLUETOOTH, address.upper())}


async def test_stone_without_address(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """A Crownstone the cloud knows no address of still gets its device, without connection."""
    cloud.stone(cloud.stone_id("Desk lamp"))[1].address = ""
    mock_config_entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    desk_lamp = get_device(hass, cloud.stone_id("Desk lamp"))
    assert desk_lamp is not None
    assert not desk_lamp.connections


@pytest.fixture
async def bob(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> MockConfigEntry:
    """Set up Bob's account next to Ann's (the demo account): both have Home, only Ann the Cabin."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Crownstone (bob@example.com)",
        unique_id=cloud.user_id("bob@example.com"),
        data={
            CONF_EMAIL: "bob@example.com",
            CONF_PASSWORD_SHA1: hash_password("bob-password"),
            CONF_CLOUD_URL: cloud.url,
            CONF_SSE_URL: cloud.sse_url,
        },
        minor_version=2,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    await async_wait_for_stream(entry.runtime_data)
    return entry


HOME_STONES = {"Desk lamp", "Ceiling light", "Coffee machine", "Kitchen spots", "Hallway plug"}
HOME_PLACES = {"Home", "Living room", "Kitchen", "Bedroom", "Hallway"}


def _entities(hass: HomeAssistant, entry: MockConfigEntry) -> list[er.RegistryEntry]:
    return er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)


def _devices(hass: HomeAssistant, entry: MockConfigEntry) -> dict[str, dr.DeviceEntry]:
    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    return {str(device.name): device for device in devices}


def _ids(entries: list[er.RegistryEntry]) -> set[str]:
    return {entry.entity_id for entry in entries}


async def test_two_accounts_sharing_a_sphere(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    bob: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ann and Bob both have Home: each gets every entity of it, on one device per Crownstone.

    Home Assistant 2025.4 merges devices that share a connection (the Crownstone's MAC) across
    config entries; 2026.8 and later keep one per entry. Either way no entity is lost."""
    ann = init_integration
    assert "does not generate unique IDs" not in caplog.text
    ann_entities = _entities(hass, ann)
    bob_entities = _entities(hass, bob)
    # Bob has no access to the Cabin: two presence entities of Home and each of its 4 rooms,
    # 5 Crownstones, 3 people, and the live updates entity.
    assert len(bob_entities) == 2 * 5 + 5 + 3 + 1
    assert len(ann_entities) > len(bob_entities)
    assert not _ids(ann_entities) & _ids(bob_entities)
    assert all(entity.unique_id.startswith(f"{bob.unique_id}_") for entity in bob_entities)

    ann_devices = _devices(hass, ann)
    bob_devices = _devices(hass, bob)
    assert set(bob_devices) == HOME_PLACES | HOME_STONES | {"Crownstone cloud"}
    shared = {name for name in bob_devices if ann_devices[name].id == bob_devices[name].id}
    assert shared == (set() if DEVICES_PER_ENTRY else HOME_STONES)
    desk_lamp_id = cloud.stone_id("Desk lamp")
    address = cloud.stone(desk_lamp_id)[1].address
    lamp_devices = [get_device(hass, desk_lamp_id, account.unique_id) for account in (ann, bob)]
    for desk_lamp in lamp_devices:
        assert desk_lamp is not None
        assert desk_lamp.connections == {(dr.CONNECTION_BLUETOOTH, address)}
    if not DEVICES_PER_ENTRY:
        assert lamp_devices[0] == lamp_devices[1]
        assert device_entry_ids(lamp_devices[0]) == {ann.entry_id, bob.entry_id}
    # Each account's light of the lamp lives on the (or its) device, and both work.
    lamps = [
        lamp
        for desk_lamp in {device.id: device for device in lamp_devices if device}.values()
        for lamp in er.async_entries_for_device(er.async_get(hass), desk_lamp.id)
    ]
    assert {lamp.config_entry_id for lamp in lamps} == {ann.entry_id, bob.entry_id}
    assert all(hass.states.get(lamp.entity_id).state == STATE_ON for lamp in lamps)

    # The lamp is still in the cloud for both: neither may remove it by hand.
    for account, desk_lamp in zip((ann, bob), lamp_devices, strict=True):
        assert desk_lamp is not None
        assert not await async_remove_config_entry_device(hass, account, desk_lamp)


async def test_account_leaving_a_shared_sphere(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    bob: MockConfigEntry,
) -> None:
    """Bob taken out of Home lets go of its devices; Ann keeps them, as they were.

    Ann only loses the entity that showed whether Bob was in Home.
    """
    ann = init_integration
    bob_in_home = entity_id_of(
        hass, cloud.sphere_id("Home"), f"presence_{bob.unique_id}", ann.unique_id
    )
    ann_before = [entity for entity in _entities(hass, ann) if entity.entity_id != bob_in_home]
    assert er.async_get(hass).async_get(bob_in_home).config_entry_id == ann.entry_id
    ann_devices_before = _devices(hass, ann)

    cloud.remove_user(cloud.sphere_id("Home"), bob.unique_id)
    await async_poll(hass)

    # Only the account's cloud service, with its live updates entity, is left to Bob.
    assert set(_devices(hass, bob)) == {"Crownstone cloud"}
    assert len(_entities(hass, bob)) == 1
    assert _entities(hass, ann) == ann_before
    assert _devices(hass, ann).keys() == ann_devices_before.keys()
    desk_lamp = _devices(hass, ann)["Desk lamp"]
    assert desk_lamp.id == ann_devices_before["Desk lamp"].id
    assert device_entry_ids(desk_lamp) == {ann.entry_id}
    assert desk_lamp.name == "Desk lamp"
    assert (
        hass.states.get(stone_entity(hass, cloud, "Desk lamp", account_id=ann.unique_id)).state
        == STATE_ON
    )
    # Bob's identifier stays on Ann's device: Bob no longer sees the lamp, Ann still does.
    assert await async_remove_config_entry_device(hass, bob, desk_lamp)
    assert not await async_remove_config_entry_device(hass, ann, desk_lamp)


async def test_removing_one_of_two_accounts(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    bob: MockConfigEntry,
) -> None:
    """Unloading or removing Bob's account leaves Ann's devices and entities intact."""
    ann = init_integration
    ann_entities = _entities(hass, ann)
    ann_devices = {device.id for device in _devices(hass, ann).values()}

    assert await hass.config_entries.async_unload(bob.entry_id)
    await hass.async_block_till_done()
    assert _entities(hass, ann) == ann_entities
    assert all(
        hass.states.get(entity.entity_id).state != STATE_UNAVAILABLE
        for entity in ann_entities
        if not entity.disabled
    )

    assert await hass.config_entries.async_remove(bob.entry_id)
    await hass.async_block_till_done()
    assert not _entities(hass, bob)
    assert _entities(hass, ann) == ann_entities
    assert {device.id for device in _devices(hass, ann).values()} == ann_devices
    assert all(
        device_entry_ids(device) == {ann.entry_id} for device in _devices(hass, ann).values()
    )
    assert (
        hass.states.get(stone_entity(hass, cloud, "Desk lamp", account_id=ann.unique_id)).state
        == STATE_ON
    )


async def test_migrating_the_clear_password(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """An entry of version 1.1 kept the clear password: only its sha1 is left, and it logs in."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=mock_config_entry.unique_id,
        data={
            **{k: v for k, v in mock_config_entry.data.items() if k != CONF_PASSWORD_SHA1},
            CONF_PASSWORD: DEMO_PASSWORD,
        },
        minor_version=1,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.LOADED
    assert (entry.version, entry.minor_version) == (1, 3)
    assert entry.data == mock_config_entry.data
    assert DEMO_PASSWORD not in str(entry.as_dict())
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_entry_of_a_newer_release(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry
) -> None:
    """An entry written by a newer major version is left alone, not misread."""
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=mock_config_entry.unique_id, data=mock_config_entry.data, version=2
    )
    entry.add_to_hass(hass)
    assert not await hass.config_entries.async_setup(entry.entry_id)
    assert entry.state is ConfigEntryState.MIGRATION_ERROR
