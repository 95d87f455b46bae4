"""Desired and reported properties, repairs, entities, diagnostics and removal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, entity_registry as er, issue_registry as ir
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockEntityPlatform,
    async_fire_time_changed,
)

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.forwarder import (
    OPTIONS_KEY,
    REPORT_INTERVAL,
    STATS_INTERVAL,
    async_get_forwarder_diagnostics,
    async_remove_forwarder,
    async_setup_forwarder,
    async_unload_forwarder,
)
from custom_components.crownstone_spotflow.forwarder_entities import async_add_forwarder_entities
from custom_components.crownstone_spotflow.forwarder_repairs import ForwarderIssue, issue_id
from custom_components.crownstone_spotflow.spotflow import (
    OutboxConfig,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import DEVICE_ID, FAST_OUTBOX, records, wait_for, wait_for_records
from .test_forwarder import own_entity


def has_issue(hass: HomeAssistant, entry: MockConfigEntry, issue: ForwarderIssue) -> bool:
    """Return whether the entry has the issue open."""
    return ir.async_get(hass).async_get_issue(DOMAIN, issue_id(entry.entry_id, issue)) is not None


async def test_desired_pause_filter_and_reported(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """The platform pauses, resumes and filters; the forwarder reports back."""
    forwarder = await start_forwarder()
    await wait_for(lambda: forwarder.client.connected)
    platform.set_desired(DEVICE_ID, {"paused": True})
    await wait_for(lambda: forwarder.paused)
    # Mirrored by the options' filter, were it not paused.
    hass.states.async_set(own_entity(hass, entry, "ignored_while_paused"), "1")

    platform.set_desired(
        DEVICE_ID, {"paused": False, "entityFilter": {"include_entities": ["sensor.chosen"]}}
    )
    await wait_for(lambda: not forwarder.paused and forwarder.platform_filter is not None)
    hass.states.async_set("sensor.chosen", "2")
    hass.states.async_set("sensor.other", "3")
    found = await wait_for_records(platform, lambda found: len(found) >= 1)
    assert [(r["entity_id"], r["state"]) for r in found] == [("sensor.chosen", "2")]

    async_fire_time_changed(hass, dt_util.utcnow() + REPORT_INTERVAL)
    await wait_for(lambda: platform.reported(DEVICE_ID).get("mirroredEntities") == 1)
    reported = platform.reported(DEVICE_ID)
    assert reported["paused"] is False
    assert reported["mirroredEntities"] == 1
    assert reported["homeAssistantVersion"]
    assert reported["desiredVersion"] == platform.desired(DEVICE_ID)["$version"]

    # A malformed filter is ignored: back to the options' filter (this entry's entities).
    platform.set_desired(DEVICE_ID, {"entityFilter": {"include_entities": 5}})
    await wait_for(
        lambda: forwarder.desired.values["entityFilter"] == {"include_entities": 5}
        and forwarder.platform_filter is None
    )
    platform.set_desired(DEVICE_ID, {"entityFilter": ["sensor.chosen"]})
    await wait_for(lambda: forwarder.desired.values["entityFilter"] == ["sensor.chosen"])
    assert forwarder.platform_filter is None


async def test_backlog_over_bound_is_an_issue_until_delivered(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Dropping records for lack of room raises an issue; it clears when delivery resumes."""
    forwarder = await start_forwarder(
        OutboxConfig(max_backlog_records=10, commit_interval=0.01, pack_linger=0.01)
    )
    entry_options = entry.options[OPTIONS_KEY]
    assert entry_options["enabled"]
    await wait_for(lambda: forwarder.client.connected)
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    lamp = er.async_get(hass).async_get_or_create("light", DOMAIN, "l", config_entry=entry)
    for value in range(50):
        hass.states.async_set(lamp.entity_id, str(value))
    await wait_for(lambda: forwarder.client.stats.records_dropped > 0)
    async_fire_time_changed(hass, dt_util.utcnow() + STATS_INTERVAL)
    await wait_for(lambda: has_issue(hass, entry, ForwarderIssue.BACKLOG_DROPPING))

    await platform.start_broker()
    await wait_for(lambda: forwarder.client.connected)
    async_fire_time_changed(hass, dt_util.utcnow() + 2 * STATS_INTERVAL)
    await wait_for(lambda: not has_issue(hass, entry, ForwarderIssue.BACKLOG_DROPPING))
    found = await wait_for_records(platform, lambda found: found and found[-1]["state"] == "49")
    assert len(found) <= 10


async def test_entities_and_device(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """The Spotflow device has diagnostic entities that follow the outbox."""
    forwarder = await start_forwarder()
    await wait_for(lambda: forwarder.client.connected)
    for domain, platform_type in (
        ("sensor", Platform.SENSOR),
        ("binary_sensor", Platform.BINARY_SENSOR),
    ):
        entity_platform = MockEntityPlatform(hass, domain=domain, platform_name=DOMAIN)
        entity_platform.config_entry = entry
        added: list[Any] = []
        async_add_forwarder_entities(
            hass, entry, lambda new, *_, to=added: to.extend(new), platform_type
        )
        await entity_platform.async_add_entities(added)

    registry = er.async_get(hass)
    entities = {
        item.unique_id.removeprefix(f"{entry.entry_id}_spotflow_"): item
        for item in er.async_entries_for_config_entry(registry, entry.entry_id)
    }
    assert set(entities) == {
        "connected",
        "records_waiting",
        "last_delivery",
        "records_delivered",
        "records_dropped",
    }
    assert all(item.entity_category == "diagnostic" for item in entities.values())
    assert hass.states.get(entities["connected"].entity_id).state == "on"

    hass.states.async_set(
        er.async_get(hass).async_get_or_create("light", DOMAIN, "l", config_entry=entry).entity_id,
        "on",
    )
    await wait_for_records(platform, lambda found: len(found) >= 1)
    await wait_for(lambda: forwarder.client.stats.records_delivered >= 1)
    async_fire_time_changed(hass, dt_util.utcnow() + STATS_INTERVAL)
    await hass.async_block_till_done()
    assert hass.states.get(entities["records_delivered"].entity_id).state == "1"
    assert hass.states.get(entities["last_delivery"].entity_id).state not in (
        "unknown",
        "unavailable",
    )

    device = dr.async_get(hass).async_get(entities["connected"].device_id)
    assert device is not None
    assert device.manufacturer == "Spotflow"

    await platform.stop_broker()
    await wait_for(lambda: hass.states.get(entities["connected"].entity_id).state == "off")
    await platform.start_broker()

    # Disabling the forwarder removes its device.
    await async_unload_forwarder(hass, entry)
    assert hass.states.get(entities["records_delivered"].entity_id).state == "unavailable"
    hass.config_entries.async_update_entry(
        entry, options={OPTIONS_KEY: {**entry.options[OPTIONS_KEY], "enabled": False}}
    )
    assert await async_setup_forwarder(hass, entry) is None
    assert dr.async_get(hass).async_get(device.id) is None


async def test_diagnostics_redact_and_removal_deletes_outbox(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Diagnostics never show the token; removing the entry deletes its outbox."""
    forwarder = await start_forwarder(FAST_OUTBOX)
    await wait_for(lambda: forwarder.client.connected)
    diagnostics = await async_get_forwarder_diagnostics(hass, entry)
    assert diagnostics["settings"]["provisioning_token"] == "**REDACTED**"
    assert platform.provisioning_token not in repr(diagnostics)
    assert diagnostics["forwarder"]["device_id"] == DEVICE_ID
    assert diagnostics["forwarder"]["connected"] is True

    await async_unload_forwarder(hass, entry)
    storage = Path(hass.config.path(".storage"))
    assert list(storage.glob("*.spotflow.db"))
    await async_remove_forwarder(hass, entry)
    assert list(storage.glob("*.spotflow.*")) == []
    assert records(platform) == []


async def test_removal_deletes_corrupt_outboxes_set_aside(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A corrupt outbox is an issue; removing the entry deletes the copy set aside too."""
    storage = Path(hass.config.path(".storage"))
    (storage / entry.options[OPTIONS_KEY]["outbox"]).write_bytes(b"not a database" * 1000)
    await start_forwarder(wait=False)
    await wait_for(lambda: has_issue(hass, entry, ForwarderIssue.OUTBOX_UNUSABLE))
    assert list(storage.glob("*.corrupt-*"))
    await async_unload_forwarder(hass, entry)
    await async_remove_forwarder(hass, entry)
    assert list(storage.glob(f"*{entry.entry_id}*")) == []
