"""Done when: a real Home Assistant, killed five times while states change, then restarted
cleanly, leaves on the platform every change its recorder holds, exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
import contextlib
import itertools
import json
from pathlib import Path
import signal
import sqlite3

import aiohttp
from homeassistant.core import HomeAssistant
import pytest

from custom_components.crownstone_spotflow.mirror.settings import MirrorSettings
from simulators.spotflow_platform import PlatformSimulator

from .hass_process import HassProcess, free_port, write_config

DEVICE_ID = "ha-crash"
ENTITIES = 20
RATE = 300  # changes per second
POSTING = 1.5  # seconds of changes per run
KILLS = 5

Key = tuple[str, str]


async def _post_changes(
    session: aiohttp.ClientSession,
    hass: HassProcess,
    values: itertools.count[int],
    posted: set[Key],
) -> None:
    """Post distinct changes at RATE until cancelled; remember those Home Assistant accepted."""

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
) -> set[Key]:
    """Start Home Assistant, change states for a while, and end it with a signal."""
    posted: set[Key] = set()
    await hass.start(session)
    poster = asyncio.create_task(_post_changes(session, hass, values, posted))
    await asyncio.sleep(POSTING)  # the load runs for a while; nothing to wait for
    if stop is signal.SIGKILL:
        # Killed while changes arrive, as a crash would.
        await hass.stop(stop)
        poster.cancel()
    else:
        poster.cancel()
        await hass.stop(stop)
    with contextlib.suppress(asyncio.CancelledError):
        await poster
    return posted


def _recorded(db: Path) -> set[Key]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return set(
            connection.execute(
                "SELECT states_meta.entity_id, states.state FROM states"
                " JOIN states_meta ON states.metadata_id = states_meta.metadata_id"
                " WHERE states_meta.entity_id LIKE 'sensor.crash_%' AND states.state IS NOT NULL"
            )
        )


def _changes(platform: PlatformSimulator) -> set[Key]:
    return {
        (str(r["entity_id"]), str(r["state"]))
        for r in _mirrored(platform)
        if "entity_id" in r and "state" in r
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
    runs: list[set[Key]] = []
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(KILLS):
                runs.append(await _run(session, process, values, signal.SIGKILL))
            runs.append(await _run(session, process, values, signal.SIGTERM))
            # The last start delivers what waits on disk and what it catches up.
            await process.start(session)
            recorded = await hass.async_add_executor_job(_recorded, config / "home-assistant_v2.db")
            wanted = recorded | runs[-1]
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
    for index, posted in enumerate(runs):
        print(
            f"run {index + 1} ({'SIGKILL' if index < KILLS else 'SIGTERM'}): posted {len(posted)},"
            f" in recorder {len(posted & recorded)}, on platform {len(posted & changes.keys())}"
        )
    print(
        f"posted {sum(map(len, runs))}, in recorder {len(recorded)}, on platform"
        f" {len(changes)}, caught up {sum(1 for r in records if r.get('caught_up'))},"
        f" duplicates {duplicates}, resends the platform deduplicated {resent}"
    )
    assert recorded, process.tail()
    missing = sorted(recorded - changes.keys(), key=lambda key: int(key[1]))
    assert not missing, (missing[:20], len(missing), process.tail())
    assert runs[-1] <= changes.keys()
    assert duplicates == 0
    assert not [r for r in records if r.get("gap_possible")]
