"""After a restart the mirror catches up from the recorder what it could not hear."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import threading
import time
from typing import Any

from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.crownstone_spotflow.mirror.catch_up import (
    CatchUp,
    Window,
    async_recorded_states,
    async_recorder_ready,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import records, wait_for, wait_for_records
from .test_forwarder import set_filter


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(
    recorder_mock: Recorder, enable_custom_integrations: None
) -> None:
    """Start the recorder before `hass` is set up (as the recorder's test fixture requires)."""


@pytest.fixture(autouse=True)
def config_dir(recorder_mock: Recorder, hass: HomeAssistant, tmp_path: Path) -> Path:
    """Keep outbox files in the test's folder; the recorder must start before `hass`."""
    hass.config.config_dir = str(tmp_path / "config")
    (tmp_path / "config" / ".storage").mkdir(parents=True)
    return tmp_path / "config"


async def test_restart_catches_up_from_the_recorder(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """What changed while the mirror was stopped arrives after its start, marked as caught up,
    in order, through the filter, once each; live changes go on meanwhile."""
    set_filter(hass, entry, entity_filter={"exclude_entities": ["light.hidden"]})
    await start_forwarder()
    hass.states.async_set("light.a", "0")
    await wait_for_records(platform, lambda found: [r.get("state") for r in found] == ["0"])
    assert await hass.config_entries.async_unload(entry.entry_id)

    for value in ("1", "2", "3"):
        for entity_id in ("light.a", "light.b", "light.hidden"):
            hass.states.async_set(entity_id, value, {"step": value})
    await async_wait_recording_done(hass)

    restarted = await start_forwarder()
    hass.states.async_set("light.a", "live")
    found = await wait_for_records(
        platform,
        lambda found: sum(1 for r in found if r.get("caught_up")) >= 6
        and any(r.get("state") == "live" for r in found),
    )
    await wait_for(lambda: restarted.listener.catch_up is CatchUp.DONE)
    caught = [r for r in found if r.get("caught_up")]
    assert [(r["entity_id"], r["state"], r["attributes"]) for r in caught] == [
        (entity_id, value, {"step": value})
        for value in ("1", "2", "3")
        for entity_id in ("light.a", "light.b")
    ]
    assert {r["epoch"] for r in caught} == {restarted.listener.epoch}
    assert not any("gap_possible" in r for r in found)
    changes = [(r["entity_id"], r["last_updated"]) for r in found if not r.get("snapshot")]
    assert len(changes) == len(set(changes))
    assert ("light.a", "live") in [(r["entity_id"], r["state"]) for r in found]
    seqs = [r["seq"] for r in found if r["epoch"] == restarted.listener.epoch]
    assert sorted(seqs) == list(range(1, len(seqs) + 1))


class _HeldAttribute:
    """An attribute whose first encoding holds the recorder's thread until the test lets go."""

    def __init__(self) -> None:
        self.encoding = threading.Event()
        self.release = threading.Event()

    def as_dict(self) -> dict[str, str]:
        # The recorder encodes attributes in its own thread, once it took the change from its
        # queue and before the change is in its session. (The mirror encodes it later.)
        if not self.encoding.is_set():
            self.encoding.set()
            self.release.wait(30)
        return {}


async def test_catch_up_waits_for_the_change_the_recorder_is_writing(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    """A change the recorder's thread is still writing (its queue empty, its session clean) is
    in what the catch-up reads; the recorder's own wait returns at once there."""
    await async_wait_recording_done(hass)
    start = time.time()
    held = _HeldAttribute()
    hass.states.async_set("sensor.written", "1", {"held": held})
    await hass.async_add_executor_job(held.encoding.wait, 10)
    assert held.encoding.is_set()

    # Started eagerly: it runs until it waits for the recorder, if it does.
    ready = hass.async_create_task(async_recorder_ready(hass))
    if not ready.done():
        held.release.set()
    await ready
    states = await async_recorded_states(
        hass, Window(start, time.time()), ["sensor.written"], attributes=False
    )
    held.release.set()
    assert [state.state for state in states] == ["1"]


async def test_stop_before_the_catch_up_ends_leaves_only_its_window(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A start that ends (as a crash ends it) while it still waits for the recorder leaves the
    next start its window to catch up, and not the changes it heard live: each arrives once."""
    await start_forwarder()
    hass.states.async_set("light.a", "0")
    await wait_for_records(platform, lambda found: any(r.get("state") == "0" for r in found))
    assert await hass.config_entries.async_unload(entry.entry_id)
    hass.states.async_set("light.a", "missed")
    await async_wait_recording_done(hass)
    held = _HeldAttribute()
    hass.states.async_set("light.b", "missed", {"held": held})
    await hass.async_add_executor_job(held.encoding.wait, 10)

    # The recorder's thread is held: the catch-up waits for it while changes are heard live.
    started = await start_forwarder()
    for value in ("live 1", "live 2"):
        hass.states.async_set("light.a", value)
    await wait_for_records(platform, lambda found: any(r.get("state") == "live 2" for r in found))
    assert started.listener.catch_up is CatchUp.PENDING
    assert await hass.config_entries.async_unload(entry.entry_id)
    held.release.set()
    await async_wait_recording_done(hass)

    restarted = await start_forwarder()
    await wait_for(lambda: restarted.listener.catch_up is CatchUp.DONE)
    assert restarted.client is not None
    await restarted.client.wait_enqueued_messages_sent()
    found = records(platform)
    changes = [(r["entity_id"], r["state"]) for r in found if not r.get("snapshot")]
    assert sorted(changes) == [
        ("light.a", "0"),
        ("light.a", "live 1"),
        ("light.a", "live 2"),
        ("light.a", "missed"),
        ("light.b", "missed"),
    ]
    assert [(r["entity_id"], r["state"], r["epoch"]) for r in found if r.get("caught_up")] == [
        ("light.a", "missed", restarted.listener.epoch),
        ("light.b", "missed", restarted.listener.epoch),
    ]


async def test_window_edges_are_exact_below_a_microsecond(
    recorder_mock: Recorder, hass: HomeAssistant
) -> None:
    """A change just under a window's end is in it, one just past its start is too, whatever the
    rounding of the recorder's datetimes (a read from the window's end on has neither)."""
    second = float(int(time.time()))
    # Rounded to the microsecond, the first rounds down, the second up.
    first, last = second + 0.5000002, second + 0.6999998
    hass.states.async_set("sensor.edge", "first", timestamp=first)
    hass.states.async_set("sensor.edge", "last", timestamp=last)
    await async_wait_recording_done(hass)

    def read(window: Window) -> Any:
        return async_recorded_states(hass, window, ["sensor.edge"], attributes=False)

    assert [state.state for state in await read(Window(second, first))] == ["first"]
    assert [state.state for state in await read(Window(first - 5e-7, last))] == ["first", "last"]
    assert [state.state for state in await read(Window(first, last + 5e-7))] == ["last"]
    assert await read(Window(last, last + 1)) == []
