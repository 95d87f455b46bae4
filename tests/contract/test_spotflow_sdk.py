"""The published `spotflow-device` SDK runs unchanged against the Spotflow platform simulator.

The SDK runs in a child process (`spotflow_sdk_worker`): its `start()` blocks while provisioning
waits for approval, and a child can be ended at a deadline. Its broker connection goes to port
8883 of a loopback address of the simulator's own (see `platform_for_published_sdk`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from functools import partial
import logging
from pathlib import Path
import sys
from typing import Any

import pytest

from simulators.spotflow_platform import PlatformSimulator, platform_for_published_sdk

from .spotflow_sdk import DEADLINE, SdkDevice

pytest.importorskip(
    "spotflow_device",
    reason="spotflow-device 2.1.1 is not installed here: it ships compiled wheels only "
    "(cp37-abi3; manylinux_2_34 on x86_64 Linux), and none fits this platform",
)
pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 14),
    reason="spotflow-device 2.1.1 (a pyo3 0.20 abi3 build) installs on CPython 3.14 but "
    "DeviceClient.start() crashes the interpreter there (SIGSEGV inside its native module)",
)

DEVICE = "sdk-device"


@pytest.fixture(autouse=True)
def broker_without_complaints(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing the SDK does makes the broker warn (it did about late PUBACKs, see hub.py)."""
    yield
    complaints = [
        record.getMessage()
        for record in caplog.get_records("call")
        if record.name.startswith("amqtt") and record.levelno >= logging.WARNING
    ]
    assert not complaints


@pytest.fixture
async def approving(tmp_path: Path) -> AsyncIterator[PlatformSimulator]:
    """A platform whose operations wait for the approver."""
    async with platform_for_published_sdk(tmp_path / "platform") as sim:
        yield sim


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[PlatformSimulator]:
    """A platform that approves provisioning at once."""
    async with platform_for_published_sdk(tmp_path / "platform", auto_approve=True) as sim:
        yield sim


@pytest.fixture
async def device(platform: PlatformSimulator, tmp_path: Path) -> AsyncIterator[SdkDevice]:
    """The SDK, provisioned, registered and connected."""
    async with await SdkDevice.start(platform, tmp_path / "device.db") as sdk:
        await sdk.event("started")
        yield sdk


async def test_provisioning_with_approval_then_a_start_from_the_database(
    approving: PlatformSimulator, tmp_path: Path
) -> None:
    sim = approving
    db = tmp_path / "device.db"
    async with await SdkDevice.start(sim, db) as sdk:
        shown = await sdk.event("provisioning")
        operation = await sim.wait_for_operation(timeout=DEADLINE)
        # What the SDK shows its user is what the approver sees.
        assert (shown["id"], shown["verification_code"]) == (
            operation.id,
            operation.verification_code,
        )
        assert operation.device_id == DEVICE
        sim.approve(operation.id)
        started = await sdk.event("started")
        assert (started["device_id"], started["workspace_id"]) == (DEVICE, sim.workspace_id)
        await sim.wait_for_connection(DEVICE, timeout=DEADLINE)
        await sdk.call("send", group="g", stream="s", messages=[_message("first", "b1", "m1")])
        assert await sdk.call("wait_sent") == 0
    await sim.wait_for_disconnection(DEVICE, timeout=DEADLINE)

    # Started again with its database: no provisioning, a new connection, same identity.
    async with await SdkDevice.start(sim, db) as sdk:
        started = await sdk.event("started")
        assert started["device_id"] == DEVICE
        await sim.wait_for_connection(DEVICE, count=2, timeout=DEADLINE)
        await sdk.call("send", group="g", stream="s", messages=[_message("second", "b1", "m2")])
        assert await sdk.call("wait_sent") == 0
        assert not [event for event in sdk.events if event["event"] == "provisioning"]
    assert sim.pending_operations() == []
    assert [message.payload for message in sim.messages(DEVICE)] == [b"first", b"second"]
    assert sim.duplicate_count == 0


def _message(payload: str, batch: str, message: str, **ids: str) -> dict[str, str]:
    return {"payload": payload, "batch_id": batch, "message_id": message, **ids}


async def test_stream_messages_ids_compressions_and_completions(
    platform: PlatformSimulator, device: SdkDevice
) -> None:
    sim = platform
    text = "temperature=21.5;" * 200  # compresses well
    await device.call(
        "send",
        group="sensors",
        stream="plain",
        messages=[
            _message("one", "batch-1", "msg-1", batch_slice_id="slice-1"),
            _message("two", "batch-1", "msg-2", batch_slice_id="slice-1", chunk_id="chunk-1"),
            _message("three", "batch-1", "msg-2", batch_slice_id="slice-2", chunk_id="chunk-2"),
        ],
    )
    await device.call(
        "complete_message", group="sensors", stream="plain", **_ids("batch-1", "msg-2")
    )
    await device.call("complete_batch", group="sensors", stream="plain", batch_id="batch-1")
    for compression in ("FASTEST", "SMALLEST_SIZE"):
        await device.call(
            "send",
            group="sensors",
            stream=compression.lower(),
            compression=compression,
            messages=[_message(text, "batch-2", "big"), _message("x", "batch-2", "tiny")],
        )
    # send_message blocks until the message is in the SDK's database, like enqueue_message.
    await device.call(
        "send", group="sensors", stream="plain", enqueue=False, messages=[_message("b", "b3", "m")]
    )
    assert await device.call("wait_sent") == 0

    stored = {(m.stream, m.batch_id, m.message_id, m.chunk_id): m for m in sim.messages(DEVICE)}
    assert len(stored) == 8
    assert stored["plain", "batch-1", "msg-1", None].batch_slice_id == "slice-1"
    assert stored["plain", "batch-1", "msg-2", "chunk-1"].payload == b"two"
    assert stored["plain", "batch-1", "msg-2", "chunk-2"].batch_slice_id == "slice-2"
    for stream in ("fastest", "smallest_size"):
        big = stored[stream, "batch-2", "big", None]
        # Brotli on the wire, stored decoded; a payload that would not shrink goes uncompressed.
        assert (big.payload.decode(), big.compressed) == (text, True)
        assert (stored[stream, "batch-2", "tiny", None].compressed) is False
        assert big.stream_group == "sensors"
    assert sorted(sim.completions) == [
        ("batch", DEVICE, "sensors", "plain", "batch-1"),
        ("message", DEVICE, "sensors", "plain", "batch-1", "msg-2"),
    ]
    assert (sim.duplicate_count, sim.dead_letters) == (0, [])


def _ids(batch: str, message: str) -> dict[str, str]:
    return {"batch_id": batch, "message_id": message}


async def test_reported_properties_land_in_the_twin_20_times_in_a_row(
    platform: PlatformSimulator, device: SdkDevice
) -> None:
    """Each round: a burst of messages, all sent, then a reported-properties patch."""
    sim = platform
    for round_ in range(20):
        await device.call(
            "send_many", group="g", stream="s", count=20, size=64, batch_id="b", prefix=f"{round_}-"
        )
        assert await device.call("wait_sent") == 0
        await device.call("report", properties={"round": round_, "state": {"ok": True}})
        reported = await sim.wait_until(
            partial(_reported_if, sim, "round", round_),
            what=f"round {round_} in the reported properties",
            timeout=DEADLINE,
        )
        assert reported == {"round": round_, "state": {"ok": True}, "$version": round_ + 2}
        assert await device.call("wait_reported") is True  # the SDK saw the hub's 204
    assert (sim.message_count, sim.duplicate_count) == (400, 0)
    assert not device.logged("Updating reported properties failed")


def _reported_if(sim: PlatformSimulator, key: str, value: Any) -> dict[str, Any] | None:
    """The reported properties once `key` has `value` in them."""
    twin = sim.reported(DEVICE)
    return twin if twin.get(key) == value else None


async def test_a_desired_patch_reaches_the_sdk(
    platform: PlatformSimulator, device: SdkDevice
) -> None:
    sim = platform
    initial = await device.call("desired")
    assert initial == {"version": 1, "values": {}}
    version = sim.set_desired(DEVICE, {"interval": 30, "mode": {"fast": True}})
    pushed = await device.event("desired", version=version)
    assert (pushed["version"], pushed["values"]) == (
        version,
        {"interval": 30, "mode": {"fast": True}},
    )
    assert await device.call("desired") == {
        "version": version,
        "values": {"interval": 30, "mode": {"fast": True}},
    }
    assert await device.call("desired_if_newer", version=version) is None
    version = sim.set_desired(DEVICE, {"mode": None})  # a merge patch removes with null
    pushed = await device.event("desired", version=version)
    assert (pushed["version"], pushed["values"]) == (version, {"interval": 30})
    assert await device.call("desired_if_newer", version=1) == {
        "version": version,
        "values": {"interval": 30},
    }


async def test_the_sdk_drops_a_report_made_behind_ten_waiting_messages(
    platform: PlatformSimulator, device: SdkDevice
) -> None:
    """The SDK's own fault, pinned: not the simulator's, and the real hub cannot help it.

    The SDK hands every MQTT request to its client through a queue of 10 (`AsyncClient::new(
    options, 10)`), with one message in flight at a time (`set_inflight(1)`). Its sender awaits
    room in that queue, but its twin task only *tries* to enqueue a reported-properties patch
    (`try_publish`); on a full queue it logs the error and never retries in this run (the patch
    stays pending in its database). So a report made while 10 or more stream messages wait is
    never published. Here the broker is down, so the queue fills for sure; during a burst it is
    full whenever the sender is 10 messages behind, which is most of a burst with any broker.
    """
    sim = platform
    await sim.stop_broker()
    await sim.wait_for_disconnection(DEVICE, timeout=DEADLINE)
    await device.call(
        "send_many", group="g", stream="s", count=60, size=64, batch_id="b", prefix=""
    )
    await device.call("report", properties={"dropped": True})
    failure = await device.event("log", containing="Updating reported properties failed")
    assert "sending into a full channel" in failure["message"]

    await sim.start_broker()
    assert await device.call("wait_sent") == 0  # the messages all arrive after the reconnection
    await device.call("report", properties={"later": True})
    # Patches go out in order from one task: had the first one been published, the hub would
    # have applied it before the second.
    reported = await sim.wait_until(
        partial(_reported_if, sim, "later", True),
        timeout=DEADLINE,
        what="the second report",
    )
    assert reported == {"later": True, "$version": 2}
    assert await device.call("pending_reported") is True  # the first one is still pending
    assert (sim.message_count, sim.duplicate_count) == (60, 0)
