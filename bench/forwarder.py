"""Benchmark: Home Assistant mirroring state changes into the simulated platform.

Prints the event-loop time the mirror's listener spends per state change (median, p99, p99.9,
max), the event loop's CPU per state change including the work deferred to the loop (packing,
publishing, acknowledgements; commits run in a thread), end-to-end states per second, and the same
loop figures for a minimal listener shaped like Home Assistant's `azure_event_hub` (a queue put per
change, JSON at send time, nothing durable) with the ratio. The simulator runs in its own process,
so its work is not counted. Last line: JSON.
Run: PYTHONPATH=. .venv/bin/python bench/forwarder.py [--changes N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from functools import partial
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
from custom_components.crownstone_spotflow.mirror.catch_up import CatchUp
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


class _ListenerCalls:
    """The mirror's listener calls of a round, timed: the filter's and the listener's time,
    paired, and whether a garbage collection ran during the call."""

    def __init__(self) -> None:
        self.filter_ns: list[int] = []
        self.listener_ns: list[int] = []
        self.collected: list[bool] = []

    @contextmanager
    def timing(self) -> Iterator[None]:
        """Time the calls of listeners set up meanwhile (a listener binds its methods then)."""
        originals = StateListener._async_filter, StateListener._async_on_state_changed
        StateListener._async_filter = self._timed(self.filter_ns, originals[0])  # type: ignore[method-assign]
        StateListener._async_on_state_changed = self._timed(self.listener_ns, originals[1], True)  # type: ignore[method-assign]
        gc.callbacks.append(_count_collection)
        try:
            yield
        finally:
            gc.callbacks.remove(_count_collection)
            StateListener._async_filter, StateListener._async_on_state_changed = originals  # type: ignore[method-assign]

    def forget_filter_calls(self) -> None:
        """Drop the filter calls without a listener call (a set-up's snapshot asks the filter)."""
        del self.filter_ns[len(self.listener_ns) :]

    def per_change(self) -> list[int]:
        return [f + s for f, s in zip(self.filter_ns, self.listener_ns, strict=True)]

    def _timed(self, samples: list[int], method: Any, pair_collections: bool = False) -> Any:
        collected = self.collected

        @callback
        def timed(listener: StateListener, arg: Any) -> Any:
            before = _collections[0]
            start = time.perf_counter_ns()
            result = method(listener, arg)
            # Only the changes the filter lets through reach the listener: pair those.
            if result is not False:
                samples.append(time.perf_counter_ns() - start)
                if pair_collections:
                    collected.append(_collections[0] != before)
            return result

        return timed


class _Simulator:
    """The platform simulator in a process of its own: its work (a Python MQTT broker) must not
    compete with the bench's event loop for the interpreter, as a remote platform would not. For
    the same reason it runs at a lower CPU priority, and on a CPU of its own where there are two
    or more: sharing the loop's, it took it for whole scheduler ticks (4 ms) in the middle of a
    listener call, and made the loop's CPU per change vary by half from round to round."""

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
        if len(cpus := os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(process.pid, {max(cpus)})
        return cls(process, json.loads(await asyncio.wait_for(process.stdout.readline(), 30)))

    async def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        await self.process.wait()


async def _cpu(run: Callable[[], Coroutine[Any, Any, None]]) -> tuple[float, float]:
    """Return the CPU seconds of the loop's thread, and of the whole process, while `run` runs
    (idle waits cost nothing; the process's figure adds the outbox's writer thread).

    A full garbage collection first: each run pays for the collections its own garbage causes,
    not for a full one that objects left by the run before (or a setup) made due.
    """
    gc.collect()
    loop, process = time.thread_time(), time.process_time()
    await run()
    return time.thread_time() - loop, time.process_time() - process


def _tail(samples: list[int]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_us": round(statistics.median(ordered) / 1000, 2),
        "p99_us": round(ordered[int(len(ordered) * 0.99)] / 1000, 2),
        "p999_us": round(ordered[int(len(ordered) * 0.999)] / 1000, 2),
        "max_us": round(ordered[-1] / 1000, 2),
    }


async def run(changes: int, rounds: int) -> dict[str, Any]:
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
                async with async_test_home_assistant(config_dir=str(root / "config")) as hass:
                    # What the test plugin's enable_custom_integrations fixture does.
                    hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)
                    result = await _Bench(hass, simulator, changes).run(rounds)
                    await hass.async_stop(force=True)
        finally:
            await simulator.stop()
    return result


class _Bench:
    """Home Assistant alone, the azure-like listener and the mirror, in rounds."""

    def __init__(self, hass: HomeAssistant, platform: _Simulator, changes: int) -> None:
        self.hass = hass
        self.changes = changes
        self.entry = MockConfigEntry(
            domain=DOMAIN, data=MIRROR_DATA, unique_id=MIRROR_UNIQUE_ID, minor_version=3
        )
        self.entry.add_to_hass(hass)
        settings = MirrorSettings(
            provisioning_token=platform.provisioning_token,
            device_id="ha-bench",
            instance=platform.instance,
            ca_certificate=platform.ca_certificate,
            entity_filter={"include_entity_globs": ["sensor.bench_*"]},
            outbox=new_outbox_name(self.entry.entry_id),
        )
        hass.config_entries.async_update_entry(self.entry, options=settings.as_options())
        self.rounds = 0
        self.until_stored: list[float] = []

    async def run(self, rounds: int) -> dict[str, Any]:
        cpu: dict[str, list[tuple[float, float]]] = {
            "base": [],
            "any": [],
            "azure": [],
            "mirror": [],
        }
        # They take turns, so a slower stretch of a shared machine slows each of them.
        for _ in range(rounds):
            cpu["base"].append(await self.base())
            cpu["any"].append(await self.any_listener())
            cpu["azure"].append(await self.azure())
            cpu["mirror"].append(await self.mirror())
        # Timing every call costs the loop too: one more round of each gives the tails, and no
        # CPU figure.
        azure_ns: list[int] = []
        await self.azure(azure_ns)
        calls = _ListenerCalls()
        with calls.timing():
            await self.mirror(calls)

        def per_change_us(name: str, which: int = 0) -> list[float]:
            # Less what Home Assistant alone took in the same round.
            return [
                (spent[which] - alone[which]) / self.changes * 1e6
                for spent, alone in zip(cpu[name], cpu["base"], strict=True)
            ]

        def median_us(name: str, which: int = 0) -> float:
            return round(statistics.median(per_change_us(name, which)), 2)

        # Each round's own ratio, of runs seconds apart: a shared machine's other work slows a
        # few seconds at a time (by up to a third), so the median of these is the figure.
        ratios = [
            mirror / azure
            for mirror, azure in zip(per_change_us("mirror"), per_change_us("azure"), strict=True)
        ]
        tail, azure_tail = _tail(calls.per_change()), _tail(azure_ns)
        # The listener's own tail, without the calls a garbage collection (started by any
        # allocation, anywhere) happened to run in.
        own = [
            ns
            for ns, collected in zip(calls.per_change(), calls.collected, strict=True)
            if not collected
        ]
        return {
            "changes": self.changes,
            "rounds": rounds,
            "listener_median_us": tail["median_us"],
            "listener_p99_us": tail["p99_us"],
            "listener_p999_us": tail["p999_us"],
            "listener_max_us": tail["max_us"],
            "listener_calls_with_gc": len(calls.collected) - len(own),
            "listener_max_us_without_gc": _tail(own)["max_us"],
            "loop_cpu_per_change_us": median_us("mirror"),
            "any_listener_loop_cpu_per_change_us": median_us("any"),
            "process_cpu_per_change_us": median_us("mirror", 1),
            "azure_like_listener_p999_us": azure_tail["p999_us"],
            "azure_like_listener_max_us": azure_tail["max_us"],
            "azure_like_loop_cpu_per_change_us": median_us("azure"),
            "loop_cpu_ratio_to_azure_like": round(statistics.median(ratios), 2),
            "loop_cpu_ratio_rounds": [round(ratio, 2) for ratio in ratios],
            "until_stored_seconds": round(statistics.median(self.until_stored), 3),
            "states_per_second": round(self.changes / statistics.median(self.until_stored)),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }

    async def fire(self, prefix: str) -> None:
        # Values never repeat across rounds: an unchanged state is not a state change.
        first_value = self.rounds * self.changes
        self.rounds += 1
        for index in range(self.changes):
            self.hass.states.async_set(f"{prefix}_{index % ENTITIES}", str(first_value + index))
            if index % 100 == 99:
                # Real state changes arrive spread over loop iterations, not in one burst.
                await asyncio.sleep(0)

    async def base(self) -> tuple[float, float]:
        """Home Assistant alone: what setting states costs without any listener."""
        return await _cpu(partial(self.fire, "sensor.base"))

    async def any_listener(self) -> tuple[float, float]:
        """A listener that does nothing: what Home Assistant spends on any listener (the event,
        and collecting its reference cycle)."""
        unsubscribe = self.hass.bus.async_listen(EVENT_STATE_CHANGED, callback(lambda _: None))
        try:
            return await _cpu(partial(self.fire, "sensor.any"))
        finally:
            unsubscribe()

    async def azure(self, samples: list[int] | None = None) -> tuple[float, float]:
        """A listener shaped like azure_event_hub's: a queue put per change, JSON at send time.

        With `samples`, the listener's time per call goes there.
        """
        queue: asyncio.Queue[State] = asyncio.Queue()
        sent = 0

        @callback
        def listen(event: Event[EventStateChangedData]) -> None:
            if (state := event.data["new_state"]) is not None:
                queue.put_nowait(state)

        @callback
        def timed(event: Event[EventStateChangedData]) -> None:
            start = time.perf_counter_ns()
            if (state := event.data["new_state"]) is not None:
                queue.put_nowait(state)
            samples.append(time.perf_counter_ns() - start)  # type: ignore[union-attr]

        async def send() -> None:
            nonlocal sent
            while True:
                await asyncio.sleep(AZURE_SEND_INTERVAL)
                while not queue.empty():
                    state = queue.get_nowait()
                    json.dumps(state, cls=JSONEncoder).encode("utf-8")
                    sent += 1

        async def run() -> None:
            await self.fire("sensor.azure")
            while sent < self.changes:  # noqa: ASYNC110
                await asyncio.sleep(0.005)

        unsubscribe = self.hass.bus.async_listen(
            EVENT_STATE_CHANGED, listen if samples is None else timed
        )
        sender = self.hass.async_create_background_task(send(), "azure-like sender")
        try:
            return await _cpu(run)
        finally:
            unsubscribe()
            sender.cancel()

    async def mirror(self, calls: _ListenerCalls | None = None) -> tuple[float, float]:
        """The mirror, set up for its turn alone (no other run pays for its filter)."""
        hass, entry = self.hass, self.entry
        assert await hass.config_entries.async_setup(entry.entry_id)
        supervisor = entry.runtime_data.supervisor
        assert supervisor is not None
        while supervisor.client is None or not supervisor.client.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        client = supervisor.client
        # The set-up's snapshot, and its record that (without a recorder) nothing is caught up.
        while supervisor.listener.catch_up is CatchUp.PENDING:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await client.wait_enqueued_messages_sent()
        if calls is not None:
            calls.forget_filter_calls()
        already = client.stats.records_delivered

        async def run() -> None:
            started = time.perf_counter()
            await self.fire("sensor.bench")
            # Acknowledged by the broker, which stores before it acknowledges.
            while client.stats.records_delivered < already + self.changes:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            self.until_stored.append(time.perf_counter() - started)

        spent = await _cpu(run)
        assert client.stats.records_delivered - already == self.changes
        assert await hass.config_entries.async_unload(entry.entry_id)
        return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=50_000, help="per round")
    parser.add_argument("--rounds", type=int, default=9)
    arguments = parser.parse_args()
    result = asyncio.run(run(arguments.changes, arguments.rounds))
    for key, value in result.items():
        print(f"{key:>36}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
