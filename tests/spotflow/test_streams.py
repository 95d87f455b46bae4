"""Stream senders, packing, compression, IDs, completions and the payload limit."""

from __future__ import annotations

import json
import random

import brotli
import pytest

from custom_components.crownstone_spotflow.spotflow import (
    MAX_PAYLOAD_BYTES,
    Compression,
    DeviceClient,
    InvalidArgumentError,
    PayloadTooLargeError,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import StartClient


async def test_default_stream_and_explicit_ids(
    client: DeviceClient, sim: PlatformSimulator
) -> None:
    """Omitted group and stream reach the workspace defaults, with the IDs given."""
    sender = client.create_stream_sender()
    await sender.send_message(b'{"a": 1}', batch_id="b/1", message_id="m-1", batch_slice_id="s1")
    stored = sim.messages(client.device_id)
    assert [
        (m.stream_group, m.stream, m.batch_id, m.message_id, m.batch_slice_id) for m in stored
    ] == [("default-group", "default-stream", "b/1", "m-1", "s1")]
    assert stored[0].payload == b'{"a": 1}'


async def test_send_message_returns_after_acknowledgement(
    client: DeviceClient, sim: PlatformSimulator
) -> None:
    """send_message waits for the broker: the platform has stored the message on return."""
    sender = client.create_stream_sender("group", "stream")
    for index in range(5):
        await sender.send_message(b"x", batch_id="b", message_id=str(index))
        assert sim.message_count == index + 1
    assert client.pending_messages_count == 0


@pytest.mark.parametrize(
    ("compression", "quality"),
    [(Compression.FASTEST, 1), (Compression.SMALLEST_SIZE, 11)],
)
async def test_compression_only_when_smaller(
    client: DeviceClient, sim: PlatformSimulator, compression: Compression, quality: int
) -> None:
    """Compressible payloads travel as Brotli, incompressible ones as they are."""
    sender = client.create_stream_sender("group", "stream", compression)
    compressible = json.dumps([{"state": "on"}] * 2000).encode()
    await sender.send_message(compressible, batch_id="b", message_id="1")
    await sender.send_message(b"x", batch_id="b", message_id="2")
    first, second = sim.messages(client.device_id)
    assert first.compressed
    assert first.payload == compressible
    assert len(brotli.compress(compressible, quality=quality)) < len(compressible)
    assert not second.compressed
    assert second.payload == b"x"


async def test_uncompressed_sender(client: DeviceClient, sim: PlatformSimulator) -> None:
    """UNCOMPRESSED never compresses."""
    sender = client.create_stream_sender("group", "stream", Compression.UNCOMPRESSED)
    await sender.send_message(b"a" * 10_000, batch_id="b", message_id="1")
    assert not sim.messages(client.device_id)[0].compressed


async def test_completions(client: DeviceClient, sim: PlatformSimulator) -> None:
    """Batch and message completions are delivered as such."""
    sender = client.create_stream_sender("group", "stream")
    await sender.enqueue_message(b"part", batch_id="b", message_id="m", chunk_id="c1")
    await sender.enqueue_message_completion("b", "m")
    await sender.enqueue_batch_completion("b")
    await client.wait_enqueued_messages_sent()
    assert len(sim.completions) == 2
    assert sim.messages(client.device_id)[0].chunk_id == "c1"


async def test_payload_limit(client: DeviceClient, sim: PlatformSimulator) -> None:
    """Payloads over the limit after compression are refused; compressible ones pass."""
    plain = client.create_stream_sender("group", "stream")
    with pytest.raises(PayloadTooLargeError):
        await plain.enqueue_message(b"a" * (MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(PayloadTooLargeError):
        plain.enqueue_record_nowait(b"a" * (MAX_PAYLOAD_BYTES + 1))
    fast = client.create_stream_sender("group", "stream", Compression.FASTEST)
    with pytest.raises(PayloadTooLargeError):
        await fast.enqueue_message(random.Random(1).randbytes(MAX_PAYLOAD_BYTES + 10_000))
    big = b"a" * (MAX_PAYLOAD_BYTES * 2)
    await fast.send_message(big, batch_id="b", message_id="1")
    assert sim.messages(client.device_id)[0].payload == big


async def test_bad_input(client: DeviceClient, start_client: StartClient) -> None:
    """Bad arguments raise the library's own error type."""
    sender = client.create_stream_sender()
    with pytest.raises(InvalidArgumentError):
        await sender.enqueue_record(b"two\nlines")
    with pytest.raises(InvalidArgumentError):
        sender.enqueue_record_nowait("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await sender.enqueue_message("text")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        await client.update_reported_properties({"x": object()})
    with pytest.raises(InvalidArgumentError):
        await start_client("no")
    with pytest.raises(InvalidArgumentError):
        await start_client("dev-2", db="device.sqlite")
    with pytest.raises(InvalidArgumentError):
        await start_client("dev-2", provisioning_token="")


async def test_records_are_packed_with_deterministic_ids(
    client: DeviceClient, sim: PlatformSimulator
) -> None:
    """Thousands of records become a few JSON Lines messages with monotonic message IDs."""
    sender = client.create_stream_sender("home-assistant", "states", Compression.FASTEST)
    records = [
        json.dumps({"entity_id": f"light.l{i}", "state": "on"}).encode() for i in range(12_000)
    ]
    await sender.enqueue_records(records[:6000])
    for record in records[6000:]:
        sender.enqueue_record_nowait(record)
    await client.wait_enqueued_messages_sent()
    stored = sim.messages(client.device_id, "home-assistant", "states")
    assert 3 <= len(stored) <= 10
    assert [line for m in stored for line in m.payload.split(b"\n")] == records
    assert [m.message_id for m in stored] == [f"{n:08d}" for n in range(1, len(stored) + 1)]
    assert len({m.batch_id for m in stored}) == 1
    assert all(m.compressed for m in stored)
    stats = client.stats
    assert (stats.records_enqueued, stats.records_delivered) == (12_000, 12_000)
    assert stats.messages_delivered == len(stored)
    assert stats.last_delivery is not None
    assert (stats.backlog_records, stats.backlog_bytes) == (0, 0)
