"""Push latency: a Crownstone switched in the cloud until Home Assistant's state changed.

Home Assistant (the test harness) runs the integration against the cloud simulator on
127.0.0.1 with production settings. The simulator reports switch-state changes made by hand
(alternating off and on), one at a time; each delay runs from the simulator's report to the
state-changed event of the entity, both timed with perf_counter. The simulator counts the REST
requests made meanwhile: the push path should make none.

Run: .venv/bin/python -m bench.push_latency [--changes 1000] [--stones-per-sphere N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from homeassistant.const import CONF_EMAIL
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
)

from bench.home_assistant import home_assistant
from custom_components.crownstone_spotflow.const import (
    CONF_CLOUD_URL,
    CONF_PASSWORD_SHA1,
    CONF_SSE_URL,
    DOMAIN,
)
from custom_components.crownstone_spotflow.crownstone import hash_password
from simulators.crownstone_cloud import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    CloudSimulator,
    demo_home,
    generated_home,
)


async def run(changes: int, stones_per_sphere: int | None) -> dict[str, Any]:
    """Set everything up, make the changes and return the figures."""
    scenario = (
        demo_home()
        if stones_per_sphere is None
        else generated_home(
            spheres=1, stones_per_sphere=stones_per_sphere, rooms_per_sphere=6, users_per_sphere=4
        )
    )
    sim = CloudSimulator(scenario, phone_delay=None)
    await sim.start(host="127.0.0.1", port=0)
    try:
        async with home_assistant() as hass:
            return await _measure(hass, sim, changes)
    finally:
        await sim.stop()


async def _measure(hass: HomeAssistant, sim: CloudSimulator, changes: int) -> dict[str, Any]:
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=sim.user_id(DEMO_EMAIL),
        data={
            CONF_EMAIL: DEMO_EMAIL,
            CONF_PASSWORD_SHA1: hash_password(DEMO_PASSWORD),
            CONF_CLOUD_URL: sim.url,
            CONF_SSE_URL: sim.sse_url,
        },
        minor_version=2,
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    coordinator = entry.runtime_data
    async with asyncio.timeout(10):
        while not coordinator.stream.connected:  # noqa: ASYNC110 (a bench, not a test)
            await asyncio.sleep(0.01)

    # A dimmable stone: its light entity.
    stone = next(
        stone
        for sphere in coordinator.data
        for stone in sphere.crownstones
        if stone.switches_power and stone.dimming_enabled
    )
    entity_id = er.async_get(hass).async_get_entity_id(
        "light", DOMAIN, f"{coordinator.account_id}_{stone.cloud_id}_light"
    )
    assert entity_id is not None

    changed = asyncio.Event()
    changed_at = 0.0

    @callback
    def _on_change(event: Event[EventStateChangedData]) -> None:
        nonlocal changed_at
        changed_at = time.perf_counter()
        changed.set()

    unsubscribe = async_track_state_change_event(hass, [entity_id], _on_change)
    sim.reset_counters()
    delays_ms: list[float] = []
    started = time.perf_counter()
    for index in range(changes):
        percentage = 0 if stone.state else 100
        changed.clear()
        reported_at = time.perf_counter()
        sim.set_switch_state(stone.cloud_id, percentage)
        async with asyncio.timeout(5):
            await changed.wait()
        delays_ms.append((changed_at - reported_at) * 1000)
        assert hass.states.get(entity_id).state == ("on" if percentage else "off"), index
    elapsed = time.perf_counter() - started
    rest_requests = sim.request_count()
    unsubscribe()
    await hass.config_entries.async_unload(entry.entry_id)

    delays_ms.sort()
    return {
        "changes": changes,
        "entities": len(hass.states.async_entity_ids()),
        "p50_ms": round(_percentile(delays_ms, 0.50), 3),
        "p95_ms": round(_percentile(delays_ms, 0.95), 3),
        "p99_ms": round(_percentile(delays_ms, 0.99), 3),
        "max_ms": round(delays_ms[-1], 3),
        "mean_ms": round(statistics.fmean(delays_ms), 3),
        "changes_per_second": round(changes / elapsed),
        "rest_requests": rest_requests,
    }


def _percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def main() -> None:
    """Parse the arguments, run, print the figures and then one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument(
        "--stones-per-sphere",
        type=int,
        default=None,
        help="a generated one-sphere home of this size instead of the demo home",
    )
    arguments = parser.parse_args()
    result = asyncio.run(run(arguments.changes, arguments.stones_per_sphere))
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
