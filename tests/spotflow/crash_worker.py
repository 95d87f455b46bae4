"""Run by test_crash.py: enqueue records under load and print each ID once its enqueue returned.

Usage: python -m tests.spotflow.crash_worker INSTANCE CA_FILE TOKEN DB RUN
RUN "drain" enqueues nothing, waits until everything is delivered and prints "drained".
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
import sys
import types

# The library stands alone: load it without the integration package around it, whose Home
# Assistant imports would add a second to each of the many restarts.
_INTEGRATION = "custom_components.crownstone_spotflow"
_integration = types.ModuleType(_INTEGRATION)
_integration.__path__ = [
    str(Path(__file__).parents[2] / "custom_components" / "crownstone_spotflow")
]
sys.modules.setdefault(_INTEGRATION, _integration)

from custom_components.crownstone_spotflow.spotflow import (  # noqa: E402
    Compression,
    DeviceClient,
    OutboxConfig,
)


async def main(instance: str, ca_file: str, token: str, db: str, run: str) -> None:
    """Enqueue until killed (or drain)."""
    client = await DeviceClient.start(
        "crash-dev",
        token,
        db,
        instance=instance,
        ca_file=ca_file,
        provisioning_poll_interval=0.05,
        retry_interval=0.2,
        outbox=OutboxConfig(
            synchronous="NORMAL",
            commit_interval=0.005,
            pack_linger=0.01,
            max_records_per_message=300,
        ),
    )
    sender = client.create_stream_sender("ha", "states", Compression.FASTEST)
    if run == "drain":
        await client.wait_enqueued_messages_sent()
        print("drained", flush=True)
        await client.close()
        return
    number = 0
    while True:
        batch = [f"{run}-{number + offset}" for offset in range(1 + number % 50)]
        records = [
            json.dumps({"id": record_id, "state": "on" * 40}).encode() for record_id in batch
        ]
        if len(records) == 1:
            await sender.enqueue_record(records[0])
        else:
            await sender.enqueue_records(records)
        sys.stdout.write("".join(f"{record_id}\n" for record_id in batch))
        sys.stdout.flush()
        number += len(batch)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
