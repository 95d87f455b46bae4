"""The forwarder inside the integration's config entry, with its real platforms."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.crownstone_spotflow.forwarder import (
    OPTIONS_KEY,
    STATS_INTERVAL,
    async_get_forwarder,
    forwarder_device_identifier,
)
from simulators.crownstone_cloud import CloudSimulator
from simulators.spotflow_platform import PlatformSimulator

from .conftest import (
    DEVICE_ID,
    demo_account_entry,
    forwarder_options,
    records,
    wait_for,
    wait_for_records,
)

ENTITIES = 3
CHANGES = 100


@pytest.fixture
async def entry(
    hass: HomeAssistant, cloud: CloudSimulator, platform: PlatformSimulator
) -> AsyncGenerator[MockConfigEntry]:
    """Return the demo account's entry mirroring into the simulator; unloaded at the end."""
    entry = demo_account_entry(cloud)
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(
        entry, options=forwarder_options(platform, entry.entry_id)
    )
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def set_up(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Set the entry up, as Home Assistant does at start."""
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    forwarder = async_get_forwarder(hass, entry.entry_id)
    assert forwarder is not None
    await wait_for(lambda: forwarder.client is not None and forwarder.client.connected)


def mirror_only_test_sensors(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    """Mirror only the sensors a test sets, so the stream holds exactly what it checks."""
    options: dict[str, Any] = dict(entry.options[OPTIONS_KEY])
    options["entity_filter"] = {"include_entity_globs": ["sensor.mirror_test_*"]}
    hass.config_entries.async_update_entry(entry, options={OPTIONS_KEY: options})


async def test_home_assistant_stopped_with_a_backlog(
    hass: HomeAssistant, entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """Changes made while the platform is down wait on disk across a stop and start of Home
    Assistant; then each arrives exactly once, in order per entity, before the new snapshot."""
    mirror_only_test_sensors(hass, entry)
    await set_up(hass, entry)
    forwarder = async_get_forwarder(hass, entry.entry_id)
    assert forwarder is not None
    await wait_for(lambda: forwarder.client.connected)
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    for value in range(CHANGES):
        for index in range(ENTITIES):
            hass.states.async_set(f"sensor.mirror_test_{index}", str(value))

    # Home Assistant stopping unloads the entry: whatever is buffered is committed to disk.
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert records(platform) == []

    await platform.start_broker()
    await set_up(hass, entry)
    total = ENTITIES * CHANGES + ENTITIES  # the backlog, then a snapshot of each entity
    found = await wait_for_records(platform, lambda found: len(found) >= total)
    assert len(found) == total
    assert [record["seq"] for record in found] == list(range(1, total + 1))
    backlog, snapshot = found[: ENTITIES * CHANGES], found[ENTITIES * CHANGES :]
    for index in range(ENTITIES):
        entity_id = f"sensor.mirror_test_{index}"
        states = [record["state"] for record in backlog if record["entity_id"] == entity_id]
        assert states == [str(value) for value in range(CHANGES)]
    assert all(record["snapshot"] and record["state"] == str(CHANGES - 1) for record in snapshot)


async def test_spotflow_device_and_its_entities(
    hass: HomeAssistant, entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """The Spotflow device shows the forwarder through the sensor and binary sensor platforms,
    and goes away with its entities when mirroring is turned off."""
    await set_up(hass, entry)
    forwarder = async_get_forwarder(hass, entry.entry_id)
    assert forwarder is not None
    await wait_for(lambda: forwarder.client.connected)

    device = dr.async_get(hass).async_get_device({forwarder_device_identifier(entry.entry_id)})
    assert device is not None
    assert (device.name, device.manufacturer) == (f"Spotflow {DEVICE_ID}", "Spotflow")
    assert device.entry_type is dr.DeviceEntryType.SERVICE
    registry = er.async_get(hass)
    entities = {item.unique_id: item for item in er.async_entries_for_device(registry, device.id)}
    prefix = f"{entry.entry_id}_spotflow_"
    assert {unique_id.removeprefix(prefix) for unique_id in entities} == {
        "connected",
        "records_waiting",
        "last_delivery",
        "records_delivered",
        "records_dropped",
    }
    assert all(item.entity_category is er.EntityCategory.DIAGNOSTIC for item in entities.values())

    def state(key: str) -> Any:
        found = hass.states.get(entities[prefix + key].entity_id)
        assert found is not None
        return found

    names = {key: state(key).name for key in ("connected", "records_waiting", "last_delivery")}
    assert names == {
        "connected": f"Spotflow {DEVICE_ID} Platform connection",
        "records_waiting": f"Spotflow {DEVICE_ID} Records waiting",
        "last_delivery": f"Spotflow {DEVICE_ID} Last delivery",
    }
    assert state("records_delivered").name == f"Spotflow {DEVICE_ID} Records delivered"
    assert state("records_dropped").name == f"Spotflow {DEVICE_ID} Records dropped"
    assert state("records_waiting").attributes["unit_of_measurement"] == "records"
    assert state("connected").state == "on"

    # The demo home's own entities are mirrored (the default filter): the counters follow.
    await wait_for(lambda: forwarder.client.stats.records_delivered > 0)
    async_fire_time_changed(hass, dt_util.utcnow() + STATS_INTERVAL)
    await hass.async_block_till_done()
    delivered = forwarder.client.stats.records_delivered
    assert state("records_delivered").state == str(delivered)
    assert len(records(platform)) == delivered
    assert state("records_waiting").state == "0"
    assert state("records_dropped").state == "0"
    assert state("last_delivery").state not in ("unknown", "unavailable")

    await platform.stop_broker()
    await wait_for(lambda: state("connected").state == "off")
    hass.states.async_set(next(iter(hass.states.async_entity_ids("light"))), "off")
    await wait_for(lambda: forwarder.client.stats.backlog_records == 1)
    async_fire_time_changed(hass, dt_util.utcnow() + 2 * STATS_INTERVAL)
    await hass.async_block_till_done()
    assert state("records_waiting").state == "1"
    await platform.start_broker()

    # Turning mirroring off (the options flow reloads the entry) removes the device.
    options = {**entry.options[OPTIONS_KEY], "enabled": False}
    hass.config_entries.async_update_entry(entry, options={OPTIONS_KEY: options})
    assert await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert dr.async_get(hass).async_get(device.id) is None
    assert not any(registry.async_get(item.entity_id) for item in entities.values())
    assert all(hass.states.get(item.entity_id) is None for item in entities.values())
