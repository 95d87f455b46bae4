"""Done when: a real Home Assistant, killed five times while states change, then restarted
cleanly, leaves on the platform every change its recorder holds, exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
import itertools
import json
from pathlib import Path
import signal
import sqlite3
import time

import aiohttp
from homeassistant.core import HomeAssistant
import pytest

from custom_components.crownstone_spotflow.mirror.catch_up import Coverage
from custom_components.crownstone_spotflow.mirror.settings import MirrorSettings
from simulators.spotflow_platform import PlatformSimulator

from .conftest import peers_may_abandon_connections
from .hass_process import HassProcess, free_port, write_config

DEVICE_ID = "ha-crash"
ENTITIES = 20
RATE = 300  # changes per second
POSTING = 1.5  # seconds of changes per run
KILLS = 5

Key = tuple[str, str]


@dataclass(slots=True)
class Run:
    """One start of Home Assistant: what was posted, and how the run ended."""

    stop: signal.Signals
    posted: set[Key] = field(default_factory=set)
    # The values handed out in this run (posted or not).
    values: range = range(0)
    started: float = 0.0  # Home Assistant ran
    stopped: float = 0.0  # the signal was sent
    coverage: Coverage | None = None  # what the outbox held once the process had ended


async def _post_changes(
    session: aiohttp.ClientSession,
    hass: HassProcess,
    values: itertools.count[int],
    run: Run,
) -> None:
    """Post distinct changes at RATE until cancelled; remember those Home Assistant accepted."""
    posted = run.posted

    async def post(entity_id: str, value: str) -> None:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.post(
                f"{hass.url}/api/states/{entity_id}", headers=hass.headers, json={"state": value}
            ) as response:
                if response.status in (200, 201):
                    posted.add((entity_id, value))

    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            for _ in range(RATE // 100):
                value = next(values)
                run.values = range(run.values.start if run.values else value, value + 1)
                task = asyncio.create_task(post(f"sensor.crash_{value % ENTITIES}", str(value)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.01)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _run(
    session: aiohttp.ClientSession,
    hass: HassProcess,
    values: itertools.count[int],
    stop: signal.Signals,
) -> Run:
    """Start Home Assistant, change states for a while, and end it with a signal."""
    run = Run(stop)
    await hass.start(session)
    run.started = time.time()
    poster = asyncio.create_task(_post_changes(session, hass, values, run))
    await asyncio.sleep(POSTING)  # the load runs for a while; nothing to wait for
    if stop is signal.SIGKILL:
        # Killed while changes arrive, as a crash would.
        run.stopped = time.time()
        await hass.stop(stop)
        poster.cancel()
    else:
        poster.cancel()
        run.stopped = time.time()
        await hass.stop(stop)
    with contextlib.suppress(asyncio.CancelledError):
        await poster
    run.coverage = await asyncio.get_running_loop().run_in_executor(
        None, _outbox_coverage, hass.config
    )
    return run


def _outbox_coverage(config: Path) -> Coverage | None:
    """Return what the outbox's watermark says it holds (read while Home Assistant is not
    running)."""
    (outbox,) = (config / ".storage").glob("*.spotflow.db")
    with contextlib.closing(sqlite3.connect(outbox)) as connection:
        row = connection.execute("SELECT value FROM settings WHERE key = 'watermark'").fetchone()
    return None if row is None else Coverage.from_watermark(row[0])


def _recorded(db: Path) -> dict[Key, float]:
    """Return the changes the recorder holds, with their last_updated."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return {
            (entity_id, state): last_updated
            for entity_id, state, last_updated in connection.execute(
                "SELECT states_meta.entity_id, states.state, states.last_updated_ts FROM states"
                " JOIN states_meta ON states.metadata_id = states_meta.metadata_id"
                " WHERE states_meta.entity_id LIKE 'sensor.crash_%' AND states.state IS NOT NULL"
            )
        }


def _changes(platform: PlatformSimulator) -> set[Key]:
    """Return the changes on the platform (a snapshot record stands for no change)."""
    return {
        (str(r["entity_id"]), str(r["state"]))
        for r in _mirrored(platform)
        if "entity_id" in r and "state" in r and not r.get("snapshot")
    }


def _mirrored(platform: PlatformSimulator) -> list[dict[str, object]]:
    return [
        record
        for message in platform.messages(DEVICE_ID)
        for line in message.payload.splitlines()
        if line and (record := json.loads(line))
    ]


@pytest.mark.real_hass
@pytest.mark.timeout(240)
async def test_crashes_lose_nothing_the_recorder_holds(
    hass: HomeAssistant, tmp_path: Path, socket_enabled: None
) -> None:
    """Five SIGKILLs under 300 changes/s, one SIGTERM: every change in the recorder's database
    reaches the platform exactly once, and the clean stop loses none at all."""
    # Each kill abandons the process's connections to the platform, some mid-handshake.
    with peers_may_abandon_connections(hass.loop):
        await _kill_restart_and_compare(hass, tmp_path)


async def _kill_restart_and_compare(hass: HomeAssistant, tmp_path: Path) -> None:
    platform = PlatformSimulator(tmp_path / "platform", auto_approve=True)
    await platform.start()
    config, port = tmp_path / "hass", free_port()
    settings = MirrorSettings(
        provisioning_token=platform.provisioning_token,
        device_id=DEVICE_ID,
        instance=platform.instance,
        ca_certificate=platform.ca_file.read_text(),
    )
    process = HassProcess(config, port, write_config(config, port, settings))
    values = itertools.count()
    runs: list[Run] = []
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(KILLS):
                runs.append(await _run(session, process, values, signal.SIGKILL))
            runs.append(await _run(session, process, values, signal.SIGTERM))
            # The last start delivers what waits on disk and what it catches up.
            await process.start(session)
            recorded = await hass.async_add_executor_job(_recorded, config / "home-assistant_v2.db")
            wanted = recorded.keys() | runs[-1].posted
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    while not wanted <= _changes(platform):  # noqa: ASYNC110 (another process)
                        await asyncio.sleep(0.5)
            await process.stop(signal.SIGTERM)
        records = _mirrored(platform)
        resent = platform.duplicate_count
    finally:
        if process.process is not None:
            process.process.kill()
            process.process.wait()
        await platform.stop()

    changes = Counter(
        (str(r["entity_id"]), str(r["state"]))
        for r in records
        if str(r.get("entity_id", "")).startswith("sensor.crash_") and not r.get("snapshot")
    )
    duplicates = sum(count - 1 for count in changes.values())
    for index, run in enumerate(runs):
        print(
            f"run {index + 1} ({run.stop.name}): posted {len(run.posted)}, in recorder"
            f" {len(run.posted & recorded.keys())}, on platform"
            f" {len(run.posted & changes.keys())}, holds after it {_coverage(run.coverage)}"
        )
    print(
        f"posted {sum(len(run.posted) for run in runs)}, in recorder {len(recorded)}, on"
        f" platform {len(changes)}, caught up {sum(1 for r in records if r.get('caught_up'))},"
        f" duplicates {duplicates}, resends the platform deduplicated {resent}"
    )
    assert recorded, process.tail()
    missing = sorted(recorded.keys() - changes.keys(), key=lambda key: int(key[1]))
    assert not missing, _explain(missing, recorded, runs, records, process)
    assert runs[-1].posted <= changes.keys()
    assert duplicates == 0, [key for key, count in changes.items() if count > 1][:20]
    assert not [r for r in records if r.get("gap_possible")]


def _time(timestamp: float | None) -> str:
    if timestamp is None:
        return "none"
    return f"{datetime.fromtimestamp(timestamp, UTC):%H:%M:%S.%f} ({timestamp!r})"


def _coverage(coverage: Coverage | None) -> str:
    if coverage is None:
        return "nothing"
    gaps = ", ".join(f"({_time(gap.start)}, {_time(gap.end)}]" for gap in coverage.gaps)
    return f"up to {_time(coverage.held_to)}" + (f" except {gaps}" if gaps else "")


def _explain(
    missing: list[Key],
    recorded: dict[Key, float],
    runs: list[Run],
    records: list[dict[str, object]],
    process: HassProcess,
) -> str:
    """Say what is known of the changes the platform lacks: when, in which run, what was around.

    A start catches up the outbox's gaps and (the newest change it holds, the epoch]; the runs'
    times and the epochs' records show whether a change fell in one, was heard live, or was in a
    snapshot.
    """
    lines = [f"{len(missing)} changes the recorder holds are not on the platform:"]
    for entity_id, value in missing[:10]:
        index = next((i for i, run in enumerate(runs) if int(value) in run.values), None)
        updated = recorded[entity_id, value]
        lines.append(
            f"  {entity_id} = {value}: last_updated {_time(updated)}, handed out in run"
            f" {None if index is None else index + 1}, acknowledged"
            f" {index is not None and (entity_id, value) in runs[index].posted}"
        )
        neighbours = sorted(
            (r for r in records if r.get("entity_id") == entity_id and "state" in r),
            key=lambda r: abs(int(str(r["state"])) - int(value)),
        )[:2]
        lines.extend(f"    same entity on the platform: {r}" for r in neighbours)
    for index, run in enumerate(runs):
        lines.append(
            f"  run {index + 1} ({run.stop.name}): ran {_time(run.started)}, signal"
            f" {_time(run.stopped)}, values {run.values.start}..{run.values.stop - 1},"
            f" outbox holds after it {_coverage(run.coverage)}"
        )
    epochs: dict[object, list[dict[str, object]]] = {}
    for record in records:
        epochs.setdefault(record.get("epoch"), []).append(record)
    for epoch, of_epoch in epochs.items():
        caught_up = [r for r in of_epoch if r.get("caught_up")]
        lines.append(
            f"  epoch {_time(int(str(epoch)) / 1000)}: {len(of_epoch)} records, snapshot"
            f" {sum(1 for r in of_epoch if r.get('snapshot'))}, caught up {len(caught_up)}"
            + (
                f" ({caught_up[0].get('last_updated')} .. {caught_up[-1].get('last_updated')})"
                if caught_up
                else ""
            )
        )
    lines.extend(f"  log: {line}" for line in process.log_lines("catch"))
    return "\n".join([*lines, process.tail()])
