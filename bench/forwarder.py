"""Benchmark: Home Assistant mirroring state changes into the simulated platform.

Prints the event-loop time the mirror's listener spends per state change (median, p99, p99.9,
max), the event loop's CPU per state change including the work deferred to the loop (packing,
publishing, acknowledgements; commits run in a thread), end-to-end states per second, and the same
loop figures for a minimal listener shaped like Home Assistant's `azure_event_hub` (a queue put per
change, JSON at send time, nothing durable) with the ratio. The simulator runs in its own process,
so its work is not counted. Last line: JSON.
Run: PYTHONPATH=. .venv/bin/python bench/forwarder.py [--changes N]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
import gc
import json
import os
from pathlib import Path
import resource
import signal
import statistics
import sys
import tempfile
import time
from typing import Any
from unittest.mock import patch

from aiohttp import ThreadedResolver
from homeassistant import loader
from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, State, callback
from homeassistant.helpers.json import JSONEncoder
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

ENTITIES = 100
# azure_event_hub sends every 5 s by default; shorter here so the run does not wait for it.
AZURE_SEND_INTERVAL = 0.1


# Garbage collections so far: a listener call during which one ran paid for it.
_collections = [0]


def _count_collection(phase: str, _info: dict[str, Any]) -> None:
    if phase == "start":
        _collections[0] += 1


def _timed(samples: list[int], method: Any, collected: list[bool] | None = None) -> Any:
    @callback
    def timed(self: StateListener, arg: Any) -> Any:
        before = _collections[0]
        start = time.perf_counter_ns()
        result = method(self, arg)
        # Only the changes the filter lets through reach the listener: pair those.
        if result is not False:
            samples.append(time.perf_counter_ns() - start)
            if collected is not None:
                collected.append(_collections[0] != before)
        return result

    return timed


class _Simulator:
    """The platform simulator in a process of its own: its work (a Python MQTT broker) must not
    compete with the bench's event loop for the interpreter, as a remote platform would not. For
    the same reason it runs at a lower CPU priority: on a machine with few cores it would
    otherwise take the loop's core for whole scheduler ticks (4 ms), in the middle of a listener
    call."""

    def __init__(self, process: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.process = process
        self.instance: str = ready["instance"]
        self.ca_certificate = Path(ready["ca_file"]).read_text()
        self.provisioning_token: str = ready["provisioning_token"]

    @classmethod
    async def start(cls, data_dir: Path) -> _Simulator:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "simulators.spotflow_platform",
            "--auto-approve",
            "--mqtt-port",
            "0",
            "--data-dir",
            str(data_dir),
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        os.setpriority(os.PRIO_PROCESS, process.pid, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        return cls(process, json.loads(await asyncio.wait_for(process.stdout.readline(), 30)))

    async def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        await self.process.wait()


async def _fire(hass: HomeAssistant, changes: int, prefix: str) -> None:
    for index in range(changes):
        hass.states.async_set(f"{prefix}_{index % ENTITIES}", str(index))
        if index % 100 == 99:
            # Real state changes arrive spread over loop iterations, not in one burst.
            await asyncio.sleep(0)


async def _loop_cpu(run: Callable[[], Coroutine[Any, Any, None]]) -> float:
    """Return the CPU seconds of the loop's thread while `run` runs (idle waits cost nothing).

    A full garbage collection first: each run pays for the collections its own garbage causes,
    not for a full one that objects left by the run before (or a setup) made due.
    """
    gc.collect()
    start = time.thread_time()
    await run()
    return time.thread_time() - start


def _tail(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": round(statistics.median(ordered) / 1000, 2),
        "p99_us": round(ordered[int(len(ordered) * 0.99)] / 1000, 2),
        "p999_us": round(ordered[int(len(ordered) * 0.999)] / 1000, 2),
        "max_us": round(ordered[-1] / 1000, 2),
    }


async def run(changes: int) -> dict[str, Any]:
    filter_ns: list[int] = []
    listener_ns: list[int] = []
    listener_gc: list[bool] = []
    StateListener._async_filter = _timed(filter_ns, StateListener._async_filter)  # type: ignore[method-assign]
    StateListener._async_on_state_changed = _timed(  # type: ignore[method-assign]
        listener_ns, StateListener._async_on_state_changed, listener_gc
    )
    gc.callbacks.append(_count_collection)
    mirror_settings.PROVISIONING_POLL_INTERVAL = 0.05
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "config" / ".storage").mkdir(parents=True)
        simulator = await _Simulator.start(root / "platform")
        try:
            # Home Assistant resolves through zeroconf, which a bare test instance lacks; the
            # simulator is addressed by IP anyway (the test plugin does the same).
            with patch(
                "homeassistant.helpers.aiohttp_client._async_make_resolver",
                return_value=ThreadedResolver(),
            ):
                result = await _run_in_hass(
                    root, changes, simulator, filter_ns, listener_ns, listener_gc
                )
        finally:
            await simulator.stop()
    # The listener's own tail, without the calls a garbage collection (started by any
    # allocation, anywhere) happened to run in.
    per_change = [f + s for f, s in zip(filter_ns, listener_ns, strict=True)]
    own = [ns for ns, collected in zip(per_change, listener_gc, strict=True) if not collected]
    result["listener_calls_with_gc"] = len(per_change) - len(own)
    result["listener_max_us_without_gc"] = _tail(own)["max_us"]
    return result


async def _run_in_hass(
    root: Path,
    changes: int,
    simulator: _Simulator,
    filter_ns: list[int],
    listener_ns: list[int],
    listener_gc: list[bool],
) -> dict[str, Any]:
    platform = simulator
    async with async_test_home_assistant(config_dir=str(root / "config")) as hass:
        # What the test plugin's enable_custom_integrations fixture does.
        hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)

        # Home Assistant alone: what setting states costs without any listener.
        baseline = await _loop_cpu(lambda: _fire(hass, changes, "sensor.base"))
        azure = await _azure_like(hass, changes)

        entry = MockConfigEntry(
            domain=DOMAIN, data=MIRROR_DATA, unique_id=MIRROR_UNIQUE_ID, minor_version=3
        )
        entry.add_to_hass(hass)
        settings = MirrorSettings(
            provisioning_token=platform.provisioning_token,
            device_id="ha-bench",
            instance=platform.instance,
            ca_certificate=platform.ca_certificate,
            entity_filter={"include_entity_globs": ["sensor.bench_*"]},
            outbox=new_outbox_name(entry.entry_id),
        )
        hass.config_entries.async_update_entry(entry, options=settings.as_options())
        assert await hass.config_entries.async_setup(entry.entry_id)
        supervisor = entry.runtime_data.supervisor
        assert supervisor is not None
        while supervisor.client is None or not supervisor.client.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        client = supervisor.client
        filter_ns.clear()
        listener_ns.clear()
        listener_gc.clear()
        fired = delivered = 0.0

        async def mirror() -> None:
            nonlocal fired, delivered
            started = time.perf_counter()
            await _fire(hass, changes, "sensor.bench")
            fired = time.perf_counter() - started
            while client.stats.records_delivered < changes:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            delivered = time.perf_counter() - started

        mirror_cpu = await _loop_cpu(mirror)
        # Acknowledged by the broker, which stores before it acknowledges.
        stored = client.stats.records_delivered
        await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_stop(force=True)

    per_change = [f + s for f, s in zip(filter_ns, listener_ns, strict=True)]
    tail = _tail(per_change)
    mirror_loop_us = (mirror_cpu - baseline) / changes * 1e6
    azure_loop_us = azure["loop_cpu_s"] / changes * 1e6 - baseline / changes * 1e6
    return {
        "changes": changes,
        "stored_records": stored,
        "listener_median_us": tail["median_us"],
        "listener_p99_us": tail["p99_us"],
        "listener_p999_us": tail["p999_us"],
        "listener_max_us": tail["max_us"],
        "loop_cpu_per_change_us": round(mirror_loop_us, 2),
        "azure_like_listener_p999_us": azure["tail"]["p999_us"],
        "azure_like_listener_max_us": azure["tail"]["max_us"],
        "azure_like_loop_cpu_per_change_us": round(azure_loop_us, 2),
        "loop_cpu_ratio_to_azure_like": round(mirror_loop_us / azure_loop_us, 2),
        "fire_seconds": round(fired, 3),
        "until_stored_seconds": round(delivered, 3),
        "states_per_second": round(changes / delivered),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def _azure_like(hass: HomeAssistant, changes: int) -> dict[str, Any]:
    """A listener shaped like azure_event_hub's: a queue put per change, JSON at send time."""
    queue: asyncio.Queue[State] = asyncio.Queue()
    samples: list[int] = []
    sent = 0

    @callback
    def listen(event: Event[EventStateChangedData]) -> None:
        start = time.perf_counter_ns()
        if (state := event.data["new_state"]) is not None:
            queue.put_nowait(state)
        samples.append(time.perf_counter_ns() - start)

    async def send() -> None:
        nonlocal sent
        while True:
            await asyncio.sleep(AZURE_SEND_INTERVAL)
            while not queue.empty():
                state = queue.get_nowait()
                json.dumps(state, cls=JSONEncoder).encode("utf-8")
                sent += 1

    unsubscribe = hass.bus.async_listen(EVENT_STATE_CHANGED, listen)
    sender = hass.async_create_background_task(send(), "azure-like sender")

    async def azure() -> None:
        await _fire(hass, changes, "sensor.azure")
        while sent < changes:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    cpu = await _loop_cpu(azure)
    unsubscribe()
    sender.cancel()
    return {"loop_cpu_s": cpu, "tail": _tail(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=100_000)
    result = asyncio.run(run(parser.parse_args().changes))
    for key, value in result.items():
        print(f"{key:>36}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
