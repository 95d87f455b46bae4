"""The mirror records states into the simulated platform: content, filters, outages, epochs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
import logging
from typing import Any

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.mirror import settings as mirror_settings
from custom_components.crownstone_spotflow.spotflow import OutboxConfig
from simulators.spotflow_platform import PlatformSimulator

from .conftest import records, wait_for, wait_for_records


def own_entity(
    hass: HomeAssistant, entry: MockConfigEntry | None, object_id: str, platform: str = "light"
) -> str:
    """Register an entity (of the config entry, when given); return its entity id."""
    return (
        er.async_get(hass)
        .async_get_or_create(
            platform, DOMAIN, object_id, config_entry=entry, suggested_object_id=object_id
        )
        .entity_id
    )


def set_filter(hass: HomeAssistant, entry: MockConfigEntry, **changes: Any) -> None:
    """Change the stored mirror options."""
    hass.config_entries.async_update_entry(entry, options={**entry.options, **changes})


async def test_snapshot_then_changes(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """At start every entity but the mirror's own is mirrored in full (like the recorder); then
    every change follows, numbered within the start's epoch."""
    lamp = own_entity(hass, None, "lamp")
    hass.states.async_set(lamp, "on", {"brightness": 128})
    hass.states.async_set("light.elsewhere", "on")

    forwarder = await start_forwarder()
    snapshot = await wait_for_records(platform, lambda found: len(found) >= 2)
    assert [record["entity_id"] for record in snapshot] == [lamp, "light.elsewhere"]
    first = snapshot[0]
    assert first["snapshot"] is True
    assert first["state"] == "on"
    assert first["attributes"] == {"brightness": 128}
    state = hass.states.get(lamp)
    assert state is not None
    assert first["last_changed"] == state.last_changed.isoformat()
    assert first["last_updated"] == state.last_updated.isoformat()

    hass.states.async_set(lamp, "off")
    hass.states.async_set("light.elsewhere", "off")
    hass.states.async_remove(lamp)
    found = await wait_for_records(platform, lambda found: len(found) >= 5)
    assert [(r["entity_id"], r.get("state"), r.get("removed")) for r in found] == [
        (lamp, "on", None),
        ("light.elsewhere", "on", None),
        (lamp, "off", None),
        ("light.elsewhere", "off", None),
        (lamp, None, True),
    ]
    assert [r["seq"] for r in found] == [1, 2, 3, 4, 5]
    assert {r["epoch"] for r in found} == {forwarder.listener.epoch}
    assert "snapshot" not in found[2]
    # The mirror's own diagnostic entities exist, and are never mirrored.
    own = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    assert len(own) == 5
    assert not {item.entity_id for item in own} & {r["entity_id"] for r in found}
    assert forwarder.client is not None
    assert forwarder.client.device_id == "ha-test"


async def test_filter_rules(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Include and exclude rules decide; attributes can be left out; own counters never go."""
    set_filter(
        hass,
        entry,
        include_attributes=False,
        entity_filter={
            "include_domains": ["sensor"],
            "include_entities": ["switch.kettle"],
            "exclude_entity_globs": ["sensor.secret_*"],
        },
    )
    await start_forwarder()
    own_counter = own_entity(hass, entry, "records_waiting", "sensor")
    for entity_id in (
        "sensor.power",
        "sensor.secret_code",
        "switch.kettle",
        "switch.other",
        own_counter,
    ):
        hass.states.async_set(entity_id, "1", {"unit": "W"})
    found = await wait_for_records(platform, lambda found: len(found) >= 2)
    assert sorted(record["entity_id"] for record in found) == ["sensor.power", "switch.kettle"]
    assert all("attributes" not in record for record in found)


async def test_outage_loses_nothing_and_keeps_order(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Records made while the broker is down arrive after it returns, in order, once each."""
    lamps = [f"light.lamp_{index}" for index in range(5)]
    forwarder = await start_forwarder()
    await wait_for(lambda: forwarder.client is not None and forwarder.client.connected)
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    for value in range(200):
        for lamp in lamps:
            hass.states.async_set(lamp, str(value))
    await platform.start_broker()
    found = await wait_for_records(platform, lambda found: len(found) >= 1000, timeout=30)
    assert len(found) == 1000
    assert len({record["seq"] for record in found}) == 1000
    for lamp in lamps:
        assert [int(r["state"]) for r in found if r["entity_id"] == lamp] == list(range(200))


async def test_restart_with_backlog(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A backlog on disk when Home Assistant stops is delivered after it starts again."""
    lamp = "light.lamp"
    forwarder = await start_forwarder()
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    for value in range(300):
        hass.states.async_set(lamp, str(value))
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert records(platform) == []

    await platform.start_broker()
    restarted = await start_forwarder()
    found = await wait_for_records(platform, lambda found: len(found) >= 301)
    assert [r["state"] for r in found[:300]] == [str(value) for value in range(300)]
    assert [r["seq"] for r in found[:300]] == list(range(1, 301))
    # The restart starts a new epoch: its snapshot is number 1 of it, never a number reused.
    assert found[300]["snapshot"] is True
    assert (found[300]["epoch"], found[300]["seq"]) == (restarted.listener.epoch, 1)
    assert found[300]["epoch"] > found[0]["epoch"]
    assert restarted.stats is not None


class Odd:
    """An attribute value orjson cannot encode."""

    def __str__(self) -> str:
        return "odd"


async def test_odd_attributes_renames_and_stop(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """An odd attribute costs only itself; a renamed entity is decided again; stopping Home
    Assistant stops the mirror."""
    lamp = "light.lamp"
    forwarder = await start_forwarder()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    hass.states.async_set(
        lamp,
        "on",
        {"odd": Odd(), "brightness": 3, "when": when, "nan": float("nan"), "keys": {1: "one"}},
    )
    hass.states.async_set("light.renamed", "on")  # not the mirror's own (yet): mirrored
    hass.states.async_remove("light.renamed")
    own = own_entity(hass, entry, "own")
    er.async_get(hass).async_update_entity(own, new_entity_id="light.renamed")
    await hass.async_block_till_done()
    hass.states.async_set("light.renamed", "off")
    hass.states.async_set("light.after", "on")
    found = await wait_for_records(platform, lambda found: len(found) >= 4)
    assert [(r["entity_id"], r.get("state")) for r in found] == [
        (lamp, "on"),
        ("light.renamed", "on"),
        ("light.renamed", None),
        ("light.after", "on"),
    ]
    # The rest is encoded as Home Assistant does: ISO times, NaN as null, keys as text.
    assert found[0]["attributes"] == {
        "odd": "odd",
        "brightness": 3,
        "when": "2026-01-02T03:04:05+00:00",
        "nan": None,
        "keys": {"1": "one"},
    }

    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert forwarder.client is None


async def test_attributes_nothing_encodes_cost_only_themselves(
    hass: HomeAssistant,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An integer beyond 64 bits or a cycle in the attributes: the state still lands, marked,
    with one warning per entity, and the changes heard with it land too."""
    await start_forwarder()
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    hass.states.async_set("sensor.huge", "1", {"count": 2**70})
    hass.states.async_set("sensor.huge", "2", {"count": 2**71})
    hass.states.async_set("sensor.cycle", "1", {"cycle": cycle})
    hass.states.async_set("sensor.plain", "1", {"unit_of_measurement": "W"})
    found = await wait_for_records(platform, lambda found: len(found) >= 4)
    assert [
        (r["entity_id"], r["state"], r.get("attributes"), r.get("attributes_unencodable"))
        for r in found
    ] == [
        ("sensor.huge", "1", None, True),
        ("sensor.huge", "2", None, True),
        ("sensor.cycle", "1", None, True),
        ("sensor.plain", "1", {"unit_of_measurement": "W"}, None),
    ]
    assert [r["seq"] for r in found] == [1, 2, 3, 4]
    warnings = [m for m in caplog.messages if "without their attributes" in m]
    assert len(warnings) == 2


async def test_changes_while_registering_at_start_are_kept(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Changes made while a slow platform keeps the start registering are kept on disk and
    delivered once it answers."""
    lamp = "light.lamp"
    await start_forwarder()
    assert await hass.config_entries.async_unload(entry.entry_id)

    platform.inject_api_fault("/devices/register", 503, delay=3.0)
    forwarder = await start_forwarder(wait=False)
    await wait_for(lambda: forwarder.client is not None, timeout=2.0)
    for value in range(10):
        hass.states.async_set(lamp, str(value))
    # And a record saying that (without a recorder) the time since the unload is not caught up.
    await wait_for(lambda: forwarder.client.stats.backlog_records == 11, timeout=2.0)
    assert not forwarder.client.connected
    assert platform.message_count == 0

    found = await wait_for_records(platform, lambda found: len(found) >= 11)
    assert [r["state"] for r in found if "state" in r] == [str(value) for value in range(10)]


async def test_home_assistant_stop_commits_the_buffer(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopping Home Assistant as it does (background tasks cancelled, then the stop event)
    writes what is buffered; the next start delivers everything exactly once."""
    lamp = "light.lamp"
    # Nothing reaches the disk by itself during the test: only the stop writes it.
    monkeypatch.setattr(
        mirror_settings, "OUTBOX_CONFIG", OutboxConfig(commit_interval=60, pack_linger=0.01)
    )
    forwarder = await start_forwarder()
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    for value in range(50):
        hass.states.async_set(lamp, str(value))
    await wait_for(lambda: forwarder.client.stats.backlog_records == 50)

    # What Home Assistant's stop does: cancel every background task, then fire the event.
    for task in list(hass._background_tasks):
        task.cancel()
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert forwarder.client is None

    await platform.start_broker()
    await hass.config_entries.async_reload(entry.entry_id)
    found = await wait_for_records(platform, lambda found: len(found) >= 52)
    assert [r.get("state") for r in found] == [*(str(value) for value in range(50)), "49", None]
    # Without a recorder, the time between stop and start is a possible gap, and says so.
    assert found[-1]["gap_possible"] is True
    assert [r["seq"] for r in found] == [*range(1, 51), 1, 2]


async def test_record_too_large_costs_only_itself(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A state too large for one message is left out with one warning; the others go on,
    numbered without gaps."""
    huge = "light.a_huge"
    lamp = "light.b_lamp"
    hass.states.async_set(huge, "on", {"blob": "x" * 300_000})
    hass.states.async_set(lamp, "on")
    await start_forwarder()
    hass.states.async_set(huge, "off", {"blob": "y" * 300_000})
    hass.states.async_set(lamp, "off")
    found = await wait_for_records(platform, lambda found: len(found) >= 2)
    assert [(r["seq"], r["entity_id"], r["state"]) for r in found] == [
        (1, lamp, "on"),
        (2, lamp, "off"),
    ]
    warnings = [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and huge in record.getMessage()
    ]
    assert len(warnings) == 1
    assert "x" * 100 not in warnings[0].getMessage()


async def test_excludes_alone_and_an_empty_platform_filter(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Only excludes remove from every entity; an empty filter from the platform means every
    entity again (never the mirror's own)."""
    hidden = "light.hidden"
    set_filter(hass, entry, entity_filter={"exclude_entities": [hidden]})
    forwarder = await start_forwarder()
    hass.states.async_set(hidden, "on")
    hass.states.async_set("light.lamp", "on")
    found = await wait_for_records(platform, lambda found: len(found) >= 1)
    assert [(r["entity_id"], r["state"]) for r in found] == [("light.lamp", "on")]

    platform.set_desired("ha-test", {"entityFilter": {}})
    await wait_for(lambda: forwarder.listener.platform_filter is not None)
    hass.states.async_set("light.lamp", "off")
    found = await wait_for_records(platform, lambda found: found[-1]["state"] == "off")
    # The new filter's snapshot has both entities, and no entity of the mirror's own.
    assert sorted((r["entity_id"], r["state"]) for r in found[1:]) == [
        (hidden, "on"),
        ("light.lamp", "off"),
        ("light.lamp", "on"),
    ]
