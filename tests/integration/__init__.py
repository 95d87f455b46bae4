"""Tests of the Home Assistant integration, against the Crownstone cloud simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.crownstone_spotflow.const import DOMAIN, SCAN_INTERVAL
from custom_components.crownstone_spotflow.coordinator import CrownstoneDataUpdateCoordinator
from simulators.crownstone_cloud import CloudSimulator


async def async_poll(hass: HomeAssistant, after: timedelta = SCAN_INTERVAL) -> None:
    """Let the polling interval (or another delay) pass and the refresh finish."""
    async_fire_time_changed(hass, dt_util.utcnow() + after)
    await hass.async_block_till_done(wait_background_tasks=True)


async def async_wait_for_stone_state(cloud: CloudSimulator, stone_id: str, value: float) -> None:
    """Wait until the simulated phone has executed a switch command."""
    # Deadlines here only end a test that would hang: generous, for a loaded machine.
    async with asyncio.timeout(10):
        # The simulator offers no event to wait on.
        while _stone_state(cloud, stone_id) != value:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _stone_state(cloud: CloudSimulator, stone_id: str) -> float | None:
    state = cloud.stone(stone_id)[1].switch_state
    return None if state is None else state.value


async def async_wait_for_stream(coordinator: CrownstoneDataUpdateCoordinator) -> None:
    """Wait until the coordinator's event stream is connected."""
    connected = asyncio.Event()
    unsubscribe = coordinator.stream.add_connection_listener(
        lambda up: connected.set() if up else None
    )
    try:
        if not coordinator.stream.connected:
            async with asyncio.timeout(10):
                await connected.wait()
    finally:
        unsubscribe()


async def async_wait_until(hass: HomeAssistant, condition: Callable[[], bool]) -> None:
    """Wait until a pushed change made the condition true (it arrives over a socket)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)
            await hass.async_block_till_done()


def _account_entry(hass: HomeAssistant, account_id: str | None) -> ConfigEntry:
    """Return the config entry of an account (by default the only one)."""
    entries = hass.config_entries.async_entries(DOMAIN)
    if account_id is None:
        (entry,) = entries
        return entry
    return next(entry for entry in entries if entry.unique_id == account_id)


def get_device(
    hass: HomeAssistant, cloud_id: str, account_id: str | None = None
) -> dr.DeviceEntry | None:
    """Return the device of a cloud object as an account (by default the only one) sees it."""
    entry = _account_entry(hass, account_id)
    identifier = (DOMAIN, f"{entry.unique_id}_{cloud_id}")
    # Not `async_get_device(identifiers=...)`: from 2026.8 identifiers are unique per entry only.
    return next(
        (
            device
            for device in dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
            if identifier in device.identifiers
        ),
        None,
    )


# From Home Assistant 2026.8 a device belongs to one config entry (`config_entry_id`); before,
# accounts sharing a sphere share the devices of its Crownstones.
DEVICES_PER_ENTRY = hasattr(dr.DeviceEntry, "config_entry_id")


def device_entry_ids(device: dr.DeviceEntry) -> set[str]:
    """Return the config entries a device belongs to, without deprecated attributes."""
    if DEVICES_PER_ENTRY:
        return {device.config_entry_id}
    return set(device.config_entries)


def entity_id_of(
    hass: HomeAssistant, cloud_id: str, key: str, account_id: str | None = None
) -> str:
    """Return the entity id of a cloud object's entity, found by unique id in the registry.

    Entity ids depend on the Home Assistant version (from 2026 they carry the area), so tests
    never write them out.
    """
    entry = _account_entry(hass, account_id)
    unique_id = f"{entry.unique_id}_{cloud_id}_{key}"
    found = [
        entity.entity_id
        for entity in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if entity.unique_id == unique_id
    ]
    assert found, f"no entity with unique id {unique_id}"
    (entity_id,) = found
    return entity_id


def _only_entity(hass: HomeAssistant, account_id: str | None, prefix: str, domain: str) -> str:
    entry = _account_entry(hass, account_id)
    found = [
        entity.entity_id
        for entity in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
        if entity.unique_id.startswith(f"{entry.unique_id}_{prefix}")
        and (not domain or entity.domain == domain)
    ]
    assert len(found) == 1, f"entities of {prefix}: {found}"
    return found[0]


def stone_entity(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    name: str,
    domain: str = "",
    account_id: str | None = None,
) -> str:
    """Return the entity id of a Crownstone's light or switch, by the Crownstone's cloud name."""
    return _only_entity(hass, account_id, f"{cloud.stone_id(name)}_", domain)


def place_entity(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    name: str,
    key: str,
    account_id: str | None = None,
) -> str:
    """Return the entity id of a sphere's or room's entity, by the place's cloud name."""
    try:
        place_id = cloud.sphere_id(name)
    except KeyError:
        place_id = cloud.location_id(name)
    return entity_id_of(hass, place_id, key, account_id)


def live_updates_entity(hass: HomeAssistant, account_id: str | None = None) -> str:
    """Return the entity id of an account's Live updates entity."""
    return entity_id_of(hass, "cloud", "live_updates", account_id)
