"""After a restart the mirror catches up from the recorder what it could not hear."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
import threading
import time
from typing import Any
from unittest.mock import patch

from homeassistant.components.recorder import Recorder, get_instance
from homeassistant.core import HomeAssistant, State
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)
from sqlalchemy.exc import SQLAlchemyError

from custom_components.crownstone_spotflow.mirror import catch_up
from custom_components.crownstone_spotflow.mirror.catch_up import (
    CatchUp,
    Window,
    async_recorded_states,
    async_recorder_ready,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import DEVICE_ID, records, wait_for, wait_for_records
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


async def test_a_recorder_failure_midway_leaves_a_gap_record_for_the_rest(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What was read before the recorder failed is stored; a record says a gap is possible from
    there to the end, and the mirror says so."""
    started = await start_forwarder()
    await wait_for(lambda: started.listener.catch_up is not CatchUp.PENDING)
    start = time.time()
    hass.states.async_set("light.a", "read")
    middle = time.time()
    hass.states.async_set("light.b", "not read")
    end = time.time()
    await async_wait_recording_done(hass)
    reads = 0

    async def second_read_fails(*args: Any, **kwargs: Any) -> list[State]:
        nonlocal reads
        reads += 1
        if reads == 2:
            raise SQLAlchemyError("database disk image is malformed")
        return await async_recorded_states(*args, **kwargs)

    with patch.object(catch_up, "async_recorded_states", second_read_fails):
        await catch_up.async_catch_up(
            hass, started.listener, [Window(start, middle), Window(middle, end)], fresh=False
        )

    found = await wait_for_records(platform, lambda found: any("gap_possible" in r for r in found))
    assert [(r["entity_id"], r["state"]) for r in found if r.get("caught_up")] == [
        ("light.a", "read")
    ]
    gap = next(r for r in found if "gap_possible" in r)
    assert (gap["reason"], gap["gap_from"], gap["gap_to"]) == (
        "recorder_failed",
        catch_up.iso(middle),
        catch_up.iso(end),
    )
    assert started.listener.catch_up is CatchUp.RECORDER_FAILED
    assert "Could not read the recorder's history" in caplog.text


async def test_a_long_window_is_read_in_parts_and_its_purged_start_is_a_gap(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A window longer than one read is read in parts, in order; the part before what the
    recorder keeps is a gap record, even where a state of it is still in the database."""
    started = await start_forwarder()
    await wait_for(lambda: started.listener.catch_up is not CatchUp.PENDING)
    recorder = get_instance(hass)
    recorder.keep_days = 1
    kept_from = time.time() - 86400
    start, end = kept_from - 300, kept_from + 1500
    for value, offset in (("purged", -120), ("first", 60), ("second", 720), ("third", 1440)):
        hass.states.async_set("light.old", value, timestamp=kept_from + offset)
    await async_wait_recording_done(hass)
    reads: list[Window] = []

    async def read(hass: HomeAssistant, window: Window, *args: Any, **kwargs: Any) -> list[State]:
        reads.append(window)
        return await async_recorded_states(hass, window, *args, **kwargs)

    with patch.object(catch_up, "async_recorded_states", read):
        await catch_up.async_catch_up(hass, started.listener, [Window(start, end)], fresh=False)

    found = await wait_for_records(
        platform, lambda found: sum(1 for r in found if r.get("caught_up")) >= 3
    )
    assert [r["state"] for r in found if r.get("caught_up")] == ["first", "second", "third"]
    (gap,) = [r for r in found if "gap_possible" in r]
    assert (gap["reason"], gap["gap_from"]) == ("purged", catch_up.iso(start))
    # The recorder keeps from a day before the catch-up read it.
    assert kept_from <= datetime.fromisoformat(gap["gap_to"]).timestamp() < kept_from + 60
    assert len(reads) == 3
    assert reads[-1].end == end
    assert started.listener.catch_up is CatchUp.DONE


async def test_paused_by_the_platform_a_start_catches_nothing_up(
    recorder_mock: Recorder,
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Paused by the platform, a start catches nothing up (the platform asked for nothing);
    resuming sends the complete picture instead."""
    started = await start_forwarder()
    platform.set_desired(DEVICE_ID, {"paused": True})
    await wait_for(lambda: started.listener.paused)
    assert await hass.config_entries.async_unload(entry.entry_id)
    hass.states.async_set("light.a", "missed")
    await async_wait_recording_done(hass)

    restarted = await start_forwarder()
    await wait_for(lambda: restarted.listener.catch_up is CatchUp.PAUSED)
    platform.set_desired(DEVICE_ID, {"paused": False})
    found = await wait_for_records(platform, lambda found: any(r.get("snapshot") for r in found))
    assert [(r["entity_id"], r["state"]) for r in found if r.get("snapshot")] == [
        ("light.a", "missed")
    ]
    assert not [r for r in found if r.get("caught_up") or "gap_possible" in r]
