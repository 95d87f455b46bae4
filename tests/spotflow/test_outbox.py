"""The durable outbox: outages, bounds, full disk, corruption, secrets."""

from __future__ import annotations

import ast
import asyncio
import logging
from pathlib import Path
import sqlite3

import pytest

from custom_components.crownstone_spotflow.spotflow import (
    DeviceClient,
    OutboxConfig,
    OutboxCorruptError,
    OutboxFullError,
    OutboxStorageError,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import FAST_OUTBOX, StartClient, wait_connected

PACKAGE = Path(__file__).parents[2] / "custom_components" / "crownstone_spotflow" / "spotflow"


def _lines(sim: PlatformSimulator) -> list[bytes]:
    return [line for m in sim.messages("dev-1") for line in m.payload.split(b"\n")]


async def test_broker_restart_mid_stream(client: DeviceClient, sim: PlatformSimulator) -> None:
    """Records enqueued across a broker outage all arrive once, in order."""
    sender = client.create_stream_sender("g", "s")
    records = [b'{"n": %d}' % n for n in range(20_000)]
    for start in range(0, 10_000, 500):
        await sender.enqueue_records(records[start : start + 500])
    await sim.stop_broker()
    for record in records[10_000:15_000]:
        sender.enqueue_record_nowait(record)
    await sender.enqueue_records(records[15_000:])
    await sim.start_broker()
    async with asyncio.timeout(20):
        await client.wait_enqueued_messages_sent()
    assert _lines(sim) == records
    print("duplicates before deduplication:", sim.duplicate_count)


async def test_drop_oldest_bound(start_client: StartClient, sim: PlatformSimulator) -> None:
    """Over its bound the outbox drops the oldest records and counts them, across restarts."""
    await sim.stop_broker()
    config = OutboxConfig(max_backlog_records=100, max_records_per_message=10, commit_interval=0)
    client = await start_client(outbox=config)
    sender = client.create_stream_sender("g", "s")
    records = [b'{"n": %d}' % n for n in range(250)]
    await sender.enqueue_records(records[:100])  # packed into ten full messages
    await sender.enqueue_records(records[100:])  # drops the oldest messages whole
    assert client.stats.records_dropped == 150
    assert client.stats.backlog_records == 100
    await client.close()
    await sim.start_broker()
    client = await start_client(outbox=config)
    async with asyncio.timeout(10):
        await client.wait_enqueued_messages_sent()
    assert _lines(sim) == records[150:]
    assert client.stats.records_dropped == 150


async def test_reject_new_bound(start_client: StartClient, sim: PlatformSimulator) -> None:
    """With reject_new, awaited enqueues fail and nowait records are counted as dropped."""
    await sim.stop_broker()
    config = OutboxConfig(max_backlog_bytes=1000, overflow="reject_new", commit_interval=0)
    client = await start_client(outbox=config)
    sender = client.create_stream_sender("g", "s")
    await sender.enqueue_record(b"x" * 900)
    with pytest.raises(OutboxFullError):
        await sender.enqueue_record(b"y" * 200)
    sender.enqueue_record_nowait(b"z" * 200)
    async with asyncio.timeout(5):
        while client.stats.records_dropped != 1:  # noqa: ASYNC110 (a counter, no event)
            await asyncio.sleep(0.01)
    await sim.start_broker()
    async with asyncio.timeout(10):
        await client.wait_enqueued_messages_sent()
    assert _lines(sim) == [b"x" * 900]


async def test_full_disk(start_client: StartClient, sim: PlatformSimulator) -> None:
    """SQLITE_FULL is a clear error; records accepted without waiting stay in memory."""
    await sim.stop_broker()
    config = OutboxConfig(max_database_bytes=64 * 1024, commit_interval=0)
    client = await start_client(outbox=config)
    sender = client.create_stream_sender("g", "s")
    record = b'{"state": "%s"}' % (b"x" * 1000)
    with pytest.raises(OutboxStorageError):
        await sender.enqueue_records([record] * 200)
    sender.enqueue_record_nowait(b'{"kept": true}')
    async with asyncio.timeout(5):
        while client.storage_error is None:  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.01)
    assert "SQLITE_FULL" in str(client.storage_error)
    assert client.stats.backlog_records == 1  # the nowait record, kept in memory


async def test_corrupt_database_is_set_aside(
    start_client: StartClient, db_path: Path, sim: PlatformSimulator
) -> None:
    """A corrupt file is renamed, not deleted; the next start begins a new one."""
    db_path.write_bytes(b"definitely not SQLite" * 1000)
    with pytest.raises(OutboxCorruptError):
        await start_client()
    set_aside = list(db_path.parent.glob("device.db.corrupt-*"))
    assert len(set_aside) == 1
    assert set_aside[0].read_bytes().startswith(b"definitely not SQLite")
    client = await start_client()
    await wait_connected(client)


async def test_secrets_stay_secret(
    start_client: StartClient,
    sim: PlatformSimulator,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tokens and SAS appear in no log, repr or database row in plain text."""
    caplog.set_level(logging.DEBUG)
    client = await start_client()
    await wait_connected(client)
    registration = client._registration
    token = client._token
    assert registration is not None
    assert token is not None
    secrets = [sim.provisioning_token, token.token, registration.sas]
    texts = [caplog.text, repr(client), repr(registration), repr(token), repr(client.stats)]
    await client.close()
    with sqlite3.connect(db_path) as connection:
        texts += [repr(row) for row in connection.execute("SELECT * FROM settings")]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_no_home_assistant_imports() -> None:
    """The library stands alone."""
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            assert not any(name.split(".")[0] == "homeassistant" for name in names), path


async def test_closing_twice_and_pending_count(client: DeviceClient) -> None:
    """close is idempotent."""
    await client.close()
    await client.close()


def test_fast_outbox_is_valid() -> None:
    """Option validation."""
    assert FAST_OUTBOX.synchronous == "NORMAL"
    for bad in (
        {"max_message_bytes": 300_000},
        {"max_in_flight": 0},
        {"max_backlog_records": 0},
        {"overflow": "spill"},
        {"synchronous": "OFF"},
        {"commit_interval": -1},
    ):
        with pytest.raises(ValueError):  # noqa: PT011 (InvalidArgumentError is a ValueError)
            OutboxConfig(**bad)  # type: ignore[arg-type]
