"""Benchmark of the Spotflow outbox through the platform simulator over MQTT/TLS on loopback,
with the published `spotflow-device` SDK as the peer, against the same simulator in the same run.

Run: .venv/bin/python -m bench.spotflow_outbox [--records 100000] [--backlog 200000] [--sdk 5000]
Prints each figure, then one JSON line. The simulator runs in the same process (and so shares
the two cores and the peak RSS); the SDK runs, unchanged, in a child process
(`tests/contract/spotflow_sdk_worker.py`) the way its users use it: one `enqueue_message` per
record, then `wait_enqueued_messages_sent()`. Its broker is on 8883 of a loopback address of its
own, because the SDK connects to no other port (see `platform_for_published_sdk`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
from pathlib import Path
import resource
import sys
import tempfile
import time
from typing import Any

from custom_components.crownstone_spotflow.spotflow import Compression, DeviceClient, OutboxConfig
from simulators.spotflow_platform import PlatformSimulator, platform_for_published_sdk


def _records(count: int, prefix: str) -> list[bytes]:
    """Home-Assistant-like state records of about 200 bytes."""
    return [
        json.dumps(
            {
                "entity_id": f"sensor.{prefix}_power_{n % 50}",
                "state": f"{n % 3000 / 10:.1f}",
                "attributes": {
                    "unit_of_measurement": "W",
                    "device_class": "power",
                    "friendly_name": "Kitchen power",
                },
                "last_changed": "2026-11-22T10:00:00.123456+00:00",
                "n": n,
            },
            separators=(",", ":"),
        ).encode()
        for n in range(count)
    ]


async def _start(
    sim: PlatformSimulator, db: Path, device: str, config: OutboxConfig
) -> DeviceClient:
    client = await DeviceClient.start(
        device,
        sim.provisioning_token,
        db,
        instance=sim.instance,
        ca_file=sim.ca_file,
        provisioning_poll_interval=0.05,
        outbox=config,
    )
    connected = asyncio.Event()
    remove = client.add_connection_listener(lambda state: connected.set() if state else None)
    if not client.connected:
        await connected.wait()
    remove()
    return client


async def main(records: int, backlog: int, sdk: int) -> dict[str, Any]:
    """Measure and return the figures."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        async with platform_for_published_sdk(root / "platform", auto_approve=True) as sim:
            config = OutboxConfig()  # synchronous=FULL, the default
            client = await _start(sim, root / "e2e.db", "bench-e2e", config)
            sender = client.create_stream_sender("ha", "states", Compression.FASTEST)
            data = _records(records, "e2e")
            results["record_bytes_avg"] = sum(map(len, data)) / len(data)
            start = time.perf_counter()
            for offset in range(0, records, 200):
                await sender.enqueue_records(data[offset : offset + 200])
            enqueued = time.perf_counter()
            await client.wait_enqueued_messages_sent()
            done = time.perf_counter()
            results["enqueue_records_per_s"] = records / (enqueued - start)
            results["end_to_end_records_per_s"] = records / (done - start)
            results["messages_for_e2e"] = client.stats.messages_delivered
            await client.close()

            client = await _start(sim, root / "drain.db", "bench-drain", config)
            sender = client.create_stream_sender("ha", "states", Compression.FASTEST)
            await sim.stop_broker()
            data = _records(backlog, "drain")
            for offset in range(0, backlog, 1000):
                await sender.enqueue_records(data[offset : offset + 1000])
            start = time.perf_counter()
            await sim.start_broker()
            await client.wait_enqueued_messages_sent()
            results["backlog_drain_seconds"] = time.perf_counter() - start
            results["backlog_drain_records_per_s"] = backlog / results["backlog_drain_seconds"]
            await client.close()

            if sdk:
                results.update(await _published_sdk(sim, root / "sdk.db", _records(sdk, "sdk")))
                if "sdk_records_per_s" in results:
                    results["ours_vs_sdk"] = (
                        results["end_to_end_records_per_s"] / results["sdk_records_per_s"]
                    )
            results["duplicates"] = sim.duplicate_count
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


async def _published_sdk(sim: PlatformSimulator, db: Path, data: list[bytes]) -> dict[str, Any]:
    """The SDK's own way: one message per record (one in flight), timed from the first enqueue
    to the moment it reports everything sent."""
    if importlib.util.find_spec("spotflow_device") is None:
        return {"sdk_skipped": "spotflow-device is not installed for this interpreter"}
    if sys.version_info >= (3, 14):
        return {"sdk_skipped": "spotflow-device 2.1.1 crashes in DeviceClient.start() on 3.14"}
    from tests.contract.spotflow_sdk import SdkDevice

    async with await SdkDevice.start(sim, db, device_id="bench-sdk") as device:
        await device.event("started")
        await sim.wait_for_connection("bench-sdk")
        messages = [
            {"payload": record.decode(), "batch_id": "sdk", "message_id": str(number)}
            for number, record in enumerate(data)
        ]
        start = time.perf_counter()
        await device.call("send", group="ha", stream="states", messages=messages)
        enqueued = time.perf_counter()
        assert await device.call("wait_sent") == 0
        done = time.perf_counter()
    assert len(sim.messages("bench-sdk")) == len(data)
    return {
        "sdk_enqueue_records_per_s": len(data) / (enqueued - start),
        "sdk_records_per_s": len(data) / (done - start),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--sdk", type=int, default=5_000)
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments.records, arguments.backlog, arguments.sdk))
    for name, value in figures.items():
        print(f"{name}: {value:,.1f}" if isinstance(value, float | int) else f"{name}: {value}")
    print(
        json.dumps(
            {
                name: round(value, 2) if isinstance(value, float) else value
                for name, value in figures.items()
            }
        )
    )
