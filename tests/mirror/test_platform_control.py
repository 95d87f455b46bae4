"""Desired and reported properties, repairs, entities, diagnostics and removal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.diagnostics import (
    async_get_config_entry_diagnostics,
)
from custom_components.crownstone_spotflow.mirror import settings as mirror_settings
from custom_components.crownstone_spotflow.mirror.repairs import MirrorIssue, issue_id
from custom_components.crownstone_spotflow.mirror.supervisor import REPORT_INTERVAL, STATS_INTERVAL
from custom_components.crownstone_spotflow.spotflow import OutboxConfig
from simulators.spotflow_platform import PlatformSimulator

from .conftest import DEVICE_ID, wait_for, wait_for_records


def has_issue(hass: HomeAssistant, entry: MockConfigEntry, issue: MirrorIssue) -> bool:
    """Return whether the entry has the issue open."""
    return ir.async_get(hass).async_get_issue(DOMAIN, issue_id(entry.entry_id, issue)) is not None


async def test_desired_pause_filter_and_reported(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """The platform pauses, resumes and filters; the mirror reports back."""
    forwarder = await start_forwarder()
    await wait_for(lambda: forwarder.client.connected)
    platform.set_desired(DEVICE_ID, {"paused": True})
    await wait_for(lambda: forwarder.listener.paused)
    # Mirrored by the options' filter, were it not paused.
    hass.states.async_set("light.ignored_while_paused", "1")

    platform.set_desired(
        DEVICE_ID, {"paused": False, "entityFilter": {"include_entities": ["sensor.chosen"]}}
    )
    await wait_for(
        lambda: not forwarder.listener.paused and forwarder.listener.platform_filter is not None
    )
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

    # A malformed filter is ignored: back to the options' filter (every entity).
    platform.set_desired(DEVICE_ID, {"entityFilter": {"include_entities": 5}})
    await wait_for(
        lambda: forwarder.desired.values["entityFilter"] == {"include_entities": 5}
        and forwarder.listener.platform_filter is None
    )
    platform.set_desired(DEVICE_ID, {"entityFilter": ["sensor.chosen"]})
    await wait_for(lambda: forwarder.desired.values["entityFilter"] == ["sensor.chosen"])
    assert forwarder.listener.platform_filter is None


async def test_backlog_over_bound_is_an_issue_until_delivered(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dropping records for lack of room raises an issue; it clears when delivery resumes."""
    monkeypatch.setattr(
        mirror_settings,
        "OUTBOX_CONFIG",
        OutboxConfig(max_backlog_records=10, commit_interval=0.01, pack_linger=0.01),
    )
    forwarder = await start_forwarder()
    await wait_for(lambda: forwarder.client.connected)
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    for value in range(50):
        hass.states.async_set("light.l", str(value))
    await wait_for(lambda: forwarder.client.stats.records_dropped > 0)
    async_fire_time_changed(hass, dt_util.utcnow() + STATS_INTERVAL)
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.BACKLOG_DROPPING))

    await platform.start_broker()
    await wait_for(lambda: forwarder.client.connected)
    async_fire_time_changed(hass, dt_util.utcnow() + 2 * STATS_INTERVAL)
    await wait_for(lambda: not has_issue(hass, entry, MirrorIssue.BACKLOG_DROPPING))
    found = await wait_for_records(platform, lambda found: found and found[-1]["state"] == "49")
    assert len(found) <= 10


async def test_diagnostics_redact_and_removal_deletes_outbox(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Diagnostics never show the token; removing the entry deletes its outbox."""
    forwarder = await start_forwarder()
    await wait_for(lambda: forwarder.client.connected)
    diagnostics = await async_get_config_entry_diagnostics(hass, entry)
    assert diagnostics["settings"]["provisioning_token"] == "**REDACTED**"
    assert platform.provisioning_token not in repr(diagnostics)
    assert diagnostics["mirror"]["device_id"] == DEVICE_ID
    assert diagnostics["mirror"]["connected"] is True
    assert diagnostics["mirror"]["epoch"] == forwarder.listener.epoch

    storage = Path(hass.config.path(".storage"))
    assert list(storage.glob("*.spotflow.db"))
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert list(storage.glob("*.spotflow.*")) == []


async def test_removal_deletes_corrupt_outboxes_set_aside(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A corrupt outbox is an issue; removing the entry deletes the copy set aside too."""
    storage = Path(hass.config.path(".storage"))
    (storage / entry.options["outbox"]).write_bytes(b"not a database" * 1000)
    await start_forwarder(wait=False)
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.OUTBOX_UNUSABLE))
    assert list(storage.glob("*.corrupt-*"))
    await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert list(storage.glob(f"*{entry.entry_id}*")) == []
    assert not has_issue(hass, entry, MirrorIssue.OUTBOX_UNUSABLE)
