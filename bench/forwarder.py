"""Benchmark: Home Assistant mirroring 100,000 state changes into the simulated platform.

Prints the event-loop time the mirror's listener spends per state change (median, p99),
end-to-end states per second, time until the simulator stored everything, and peak memory.
Last line: JSON.  Run: PYTHONPATH=. .venv/bin/python bench/forwarder.py [--changes N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
import resource
import statistics
import tempfile
import time
from typing import Any
from unittest.mock import patch

from aiohttp import ThreadedResolver
from homeassistant import loader
from homeassistant.core import callback
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_test_home_assistant,
)

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.mirror import settings as mirror_settings
from custom_components.crownstone_spotflow.mirror.listener import StateListener
from custom_components.crownstone_spotflow.mirror.settings import (
    MIRROR_DATA,
    MIRROR_UNIQUE_ID,
    MirrorSettings,
    new_outbox_name,
)
from simulators.spotflow_platform import PlatformSimulator

ENTITIES = 100


def _timed(samples: list[int], method: Any) -> Any:
    @callback
    def timed(self: StateListener, arg: Any) -> Any:
        start = time.perf_counter_ns()
        result = method(self, arg)
        # Only the changes the filter lets through reach the listener: pair those.
        if result is not False:
            samples.append(time.perf_counter_ns() - start)
        return result

    return timed


async def run(changes: int) -> dict[str, Any]:
    filter_ns: list[int] = []
    listener_ns: list[int] = []
    StateListener._async_filter = _timed(filter_ns, StateListener._async_filter)  # type: ignore[method-assign]
    StateListener._async_on_state_changed = _timed(  # type: ignore[method-assign]
        listener_ns, StateListener._async_on_state_changed
    )
    mirror_settings.PROVISIONING_POLL_INTERVAL = 0.05
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "config" / ".storage").mkdir(parents=True)
        # Home Assistant resolves through zeroconf, which a bare test instance lacks; the
        # simulator is addressed by IP anyway (the test plugin does the same).
        with patch(
            "homeassistant.helpers.aiohttp_client._async_make_resolver",
            return_value=ThreadedResolver(),
        ):
            return await _run_in_hass(root, changes, filter_ns, listener_ns)


async def _run_in_hass(
    root: Path, changes: int, filter_ns: list[int], listener_ns: list[int]
) -> dict[str, Any]:
    async with async_test_home_assistant(config_dir=str(root / "config")) as hass:
        # What the test plugin's enable_custom_integrations fixture does.
        hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)
        platform = PlatformSimulator(root / "platform", auto_approve=True)
        await platform.start()
        entry = MockConfigEntry(
            domain=DOMAIN, data=MIRROR_DATA, unique_id=MIRROR_UNIQUE_ID, minor_version=3
        )
        entry.add_to_hass(hass)
        settings = MirrorSettings(
            enabled=True,
            provisioning_token=platform.provisioning_token,
            device_id="ha-bench",
            instance=platform.instance,
            ca_certificate=platform.ca_file.read_text(),
            entity_filter={"include_domains": ["sensor"]},
            outbox=new_outbox_name(entry.entry_id),
        )
        hass.config_entries.async_update_entry(entry, options=settings.as_options())
        assert await hass.config_entries.async_setup(entry.entry_id)
        forwarder = entry.runtime_data.supervisor
        assert forwarder is not None
        while forwarder.client is None or not forwarder.client.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        filter_ns.clear()
        listener_ns.clear()

        started = time.perf_counter()
        for index in range(changes):
            hass.states.async_set(f"sensor.bench_{index % ENTITIES}", str(index))
            if index % 1000 == 999:
                # Real state changes arrive spread over loop iterations, not in one burst.
                await asyncio.sleep(0)
        fired = time.perf_counter() - started
        client = forwarder.client
        while client.stats.records_delivered < changes:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        delivered = time.perf_counter() - started
        stored = sum(
            message.payload.count(b"\n") + (not message.payload.endswith(b"\n"))
            for message in platform.messages("ha-bench")
        )
        await hass.config_entries.async_unload(entry.entry_id)
        await platform.stop()
        await hass.async_stop(force=True)

    per_change = sorted(f + s for f, s in zip(filter_ns, listener_ns, strict=True))
    return {
        "changes": changes,
        "stored_records": stored,
        "listener_median_us": round(statistics.median(per_change) / 1000, 2),
        "listener_p99_us": round(per_change[int(len(per_change) * 0.99)] / 1000, 2),
        "fire_seconds": round(fired, 3),
        "until_stored_seconds": round(delivered, 3),
        "states_per_second": round(changes / delivered),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=100_000)
    result = asyncio.run(run(parser.parse_args().changes))
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
