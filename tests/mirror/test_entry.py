"""The mirror as its own config entry: its platforms, and a lifecycle no account shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from simulators.crownstone_cloud import DEMO_EMAIL, CloudSimulator
from simulators.spotflow_platform import PlatformSimulator

from .conftest import (
    DEVICE_ID,
    demo_account_entry,
    mirror_entity_id,
    records,
    supervisor_of,
    wait_for,
    wait_for_records,
)

ENTITIES = 3
CHANGES = 100


def mirror_only_test_sensors(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Mirror only the sensors a test sets, so the stream holds exactly what it checks."""
    hass.config_entries.async_update_entry(
        entry,
        options={**entry.options, "entity_filter": {"include_entity_globs": ["sensor.test_*"]}},
    )


async def test_home_assistant_stopped_with_a_backlog(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Changes made while the platform is down wait on disk across a stop and start of Home
    Assistant; then each arrives exactly once, in order per entity, before the new snapshot."""
    mirror_only_test_sensors(hass, entry)
    supervisor = await start_forwarder()
    await platform.stop_broker()
    await wait_for(lambda: not supervisor.client.connected)
    for value in range(CHANGES):
        for index in range(ENTITIES):
            hass.states.async_set(f"sensor.test_{index}", str(value))

    # Home Assistant stopping unloads the entry: whatever is buffered is committed to disk.
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert records(platform) == []

    await platform.start_broker()
    await start_forwarder()
    # The backlog, a snapshot of each entity, and (no recorder here) a record that says the
    # changes between the stop and the start could not be caught up.
    total = ENTITIES * CHANGES + ENTITIES + 1
    found = await wait_for_records(platform, lambda found: len(found) >= total)
    assert len(found) == total
    backlog, snapshot = found[: ENTITIES * CHANGES], found[ENTITIES * CHANGES : -1]
    assert [record["seq"] for record in backlog] == list(range(1, ENTITIES * CHANGES + 1))
    assert [record["seq"] for record in snapshot] == list(range(1, ENTITIES + 1))
    gap = found[-1]
    assert (gap["seq"], gap["gap_possible"], gap["reason"]) == (ENTITIES + 1, True, "no_recorder")
    assert gap["gap_from"] < gap["gap_to"]
    for index in range(ENTITIES):
        entity_id = f"sensor.test_{index}"
        states = [record["state"] for record in backlog if record["entity_id"] == entity_id]
        assert states == [str(value) for value in range(CHANGES)]
    assert all(record["snapshot"] and record["state"] == str(CHANGES - 1) for record in snapshot)


async def test_spotflow_device_counters_and_reported_right_after_start(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """The Spotflow device shows the mirror through the sensor and binary sensor platforms;
    right after a start its counters and the reported properties already say that the snapshot
    was delivered (no interval to wait for, no null in the patch); turning mirroring off removes
    the device."""
    hass.states.async_set("light.lamp", "on")
    supervisor = await start_forwarder()
    await wait_for_records(platform, lambda found: len(found) >= 1)

    def state(key: str) -> Any:
        found = hass.states.get(mirror_entity_id(hass, entry, key))
        assert found is not None
        return found

    await wait_for(lambda: state("last_delivery").state not in ("unknown", "unavailable"))
    assert state("records_delivered").state == "1"
    assert state("records_waiting").state == "0"
    assert state("records_dropped").state == "0"
    assert state("connected").state == "on"
    await wait_for(lambda: platform.reported(DEVICE_ID).get("backlogRecords") == 0)
    await wait_for(lambda: "lastDelivery" in platform.reported(DEVICE_ID))
    reported = platform.reported(DEVICE_ID)
    assert reported["mirroredEntities"] == 1
    assert reported["epoch"] == supervisor.listener.epoch
    assert None not in reported.values()

    registry = er.async_get(hass)
    own = er.async_entries_for_config_entry(registry, entry.entry_id)
    assert {item.unique_id.removeprefix(f"{entry.entry_id}_spotflow_") for item in own} == {
        "connected",
        "records_waiting",
        "last_delivery",
        "records_delivered",
        "records_dropped",
    }
    assert all(item.entity_category is er.EntityCategory.DIAGNOSTIC for item in own)
    assert state("records_waiting").name == f"Spotflow {DEVICE_ID} Records waiting"
    assert state("records_waiting").attributes["unit_of_measurement"] == "records"
    device = dr.async_get(hass).async_get(own[0].device_id or "")
    assert device is not None
    assert (device.name, device.manufacturer) == (f"Spotflow {DEVICE_ID}", "Spotflow")
    assert device.entry_type is dr.DeviceEntryType.SERVICE

    await platform.stop_broker()
    await wait_for(lambda: state("connected").state == "off")
    await platform.start_broker()

    # Turning mirroring off (the options flow reloads the entry) removes the device.
    hass.config_entries.async_update_entry(entry, options={**entry.options, "enabled": False})
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.runtime_data.supervisor is None
    assert dr.async_get(hass).async_get(device.id) is None
    assert er.async_entries_for_config_entry(registry, entry.entry_id) == []


async def test_crownstone_accounts_never_pause_the_mirror(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    cloud: CloudSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """With the Crownstone cloud down at start, with its credentials refused, and while an
    account is reloaded and removed, every change of other entities lands, once, in order."""
    mirror_only_test_sensors(hass, entry)
    await start_forwarder()
    sent = 0

    def change() -> None:
        nonlocal sent
        for _ in range(20):
            hass.states.async_set("sensor.test_counter", str(sent))
            sent += 1

    cloud.inject_fault("http_503")
    account = demo_account_entry(cloud)
    account.add_to_hass(hass)
    change()
    await hass.config_entries.async_setup(account.entry_id)
    change()
    assert account.state is ConfigEntryState.SETUP_RETRY
    cloud.clear_faults()
    await hass.config_entries.async_reload(account.entry_id)
    change()
    assert account.state is ConfigEntryState.LOADED
    change()
    await hass.config_entries.async_reload(account.entry_id)
    change()

    cloud.change_password(DEMO_EMAIL, "something-else")
    await hass.config_entries.async_reload(account.entry_id)
    change()
    assert account.state is ConfigEntryState.SETUP_ERROR
    await hass.config_entries.async_remove(account.entry_id)
    change()

    found = await wait_for_records(
        platform, lambda found: len(found) >= sent and found[-1]["state"] == str(sent - 1)
    )
    changes = [record for record in found if not record.get("snapshot")]
    assert [record["state"] for record in changes] == [str(value) for value in range(sent)]
    assert supervisor_of(entry).client is not None
