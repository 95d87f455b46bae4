"""The forwarder mirrors states into the simulated platform: content, filters, outages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.forwarder import OPTIONS_KEY
from simulators.spotflow_platform import PlatformSimulator

from .conftest import records, wait_for, wait_for_records


def own_entity(hass: HomeAssistant, entry: MockConfigEntry, object_id: str) -> str:
    """Register an entity of the config entry; return its entity id."""
    return (
        er.async_get(hass)
        .async_get_or_create(
            "light", DOMAIN, object_id, config_entry=entry, suggested_object_id=object_id
        )
        .entity_id
    )


def set_filter(hass: HomeAssistant, entry: MockConfigEntry, **changes: Any) -> None:
    """Change the stored forwarder options."""
    hass.config_entries.async_update_entry(
        entry, options={OPTIONS_KEY: {**entry.options[OPTIONS_KEY], **changes}}
    )


async def test_snapshot_then_changes(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """At start the own entities are mirrored in full; then every change follows."""
    lamp = own_entity(hass, entry, "lamp")
    hass.states.async_set(lamp, "on", {"brightness": 128})
    hass.states.async_set("light.elsewhere", "on")

    forwarder = await start_forwarder()
    snapshot = await wait_for_records(platform, lambda found: len(found) >= 1)
    assert [record["entity_id"] for record in snapshot] == [lamp]
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
    found = await wait_for_records(platform, lambda found: len(found) >= 3)
    assert [(r["entity_id"], r.get("state"), r.get("removed")) for r in found] == [
        (lamp, "on", None),
        (lamp, "off", None),
        (lamp, None, True),
    ]
    assert [r["seq"] for r in found] == [1, 2, 3]
    assert "snapshot" not in found[1]
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
    own_counter = (
        er.async_get(hass)
        .async_get_or_create("sensor", DOMAIN, f"{entry.entry_id}_spotflow_records_waiting")
        .entity_id
    )
    await start_forwarder()
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
    lamps = [own_entity(hass, entry, f"lamp_{index}") for index in range(5)]
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
    from custom_components.crownstone_spotflow.forwarder import async_unload_forwarder

    lamp = own_entity(hass, entry, "lamp")
    forwarder = await start_forwarder()
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    for value in range(300):
        hass.states.async_set(lamp, str(value))
    await async_unload_forwarder(hass, entry)
    assert records(platform) == []

    await platform.start_broker()
    restarted = await start_forwarder()
    found = await wait_for_records(platform, lambda found: len(found) >= 301)
    assert [r["state"] for r in found[:300]] == [str(value) for value in range(300)]
    # The restart mirrors a snapshot, numbered after the backlog.
    assert found[300]["snapshot"] is True
    assert found[300]["seq"] == 301
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
    Assistant stops the forwarder."""
    lamp = own_entity(hass, entry, "lamp")
    forwarder = await start_forwarder()
    hass.states.async_set(lamp, "on", {"odd": Odd(), "brightness": 3})
    hass.states.async_set("light.renamed", "on")  # not this entry's (yet): not mirrored
    hass.states.async_remove("light.renamed")
    er.async_get(hass).async_update_entity(lamp, new_entity_id="light.renamed")
    await hass.async_block_till_done()
    hass.states.async_set("light.renamed", "off")
    found = await wait_for_records(platform, lambda found: len(found) >= 2)
    assert [(r["entity_id"], r["state"]) for r in found] == [
        (lamp, "on"),
        ("light.renamed", "off"),
    ]
    assert found[0]["attributes"] == {"odd": "odd", "brightness": 3}

    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    assert forwarder.client is None
