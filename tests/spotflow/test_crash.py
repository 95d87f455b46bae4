"""Kill a process using the outbox with SIGKILL again and again: nothing it accepted is lost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import random
import signal
import sys

from simulators.spotflow_platform import PlatformSimulator

ROOT = Path(__file__).parents[2]
KILLS = 22


async def _worker(sim: PlatformSimulator, db: Path, run: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.spotflow.crash_worker",
        sim.instance,
        str(sim.ca_file),
        sim.provisioning_token,
        str(db),
        run,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )


async def test_sigkill_loses_nothing(sim: PlatformSimulator, tmp_path: Path) -> None:
    """Every record whose enqueue returned is stored once after deduplication."""
    db = tmp_path / "crash.db"
    rng = random.Random(7)
    acknowledged: set[str] = set()
    for run in range(KILLS):
        process = await _worker(sim, db, str(run))
        assert process.stdout is not None
        async with asyncio.timeout(30):
            await process.stdout.readline()  # enqueueing has begun
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        process.send_signal(signal.SIGKILL)
        output, _ = await process.communicate()
        assert process.returncode == -signal.SIGKILL
        # A line cut by the kill is not a returned enqueue.
        acknowledged.update(line for line in output.decode().split("\n")[:-1])
    process = await _worker(sim, db, "drain")
    async with asyncio.timeout(30):
        output, _ = await process.communicate()
    assert output == b"drained\n"

    stored = [
        json.loads(line)["id"]
        for message in sim.messages("crash-dev")
        for line in message.payload.split(b"\n")
    ]
    assert len(stored) == len(set(stored)), "a record was stored twice"
    assert acknowledged <= set(stored), f"{len(acknowledged - set(stored))} records lost"
    print(
        f"{KILLS} kills, {len(acknowledged)} records acknowledged, {len(stored)} stored, "
        f"{sim.duplicate_count} duplicate messages before deduplication"
    )
