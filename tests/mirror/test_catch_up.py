"""After a restart the mirror catches up from the recorder what it could not hear."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from homeassistant.components.recorder import Recorder
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.recorder.common import (
    async_wait_recording_done,
)

from custom_components.crownstone_spotflow.mirror.catch_up import CatchUp
from simulators.spotflow_platform import PlatformSimulator

from .conftest import wait_for, wait_for_records
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
