"""The durable outbox: outages, bounds, full disk, corruption, secrets."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
import contextlib
import gc
import logging
from pathlib import Path
import sqlite3
import threading
from typing import Literal
import warnings

import pytest

from custom_components.crownstone_spotflow.spotflow import (
    Compression,
    DeviceClient,
    MessageDroppedError,
    OutboxConfig,
    OutboxCorruptError,
    OutboxFullError,
    OutboxStorageError,
    SpotflowConnectionError,
)
from custom_components.crownstone_spotflow.spotflow.outbox import Outbox
from custom_components.crownstone_spotflow.spotflow.store import Commit, Item, Store
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
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
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
            OutboxConfig(**bad)


async def test_send_message_dropped_by_the_bound(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """A send_message whose message the drop_oldest policy drops ends with a clear error."""
    await sim.stop_broker()
    config = OutboxConfig(max_backlog_records=3, commit_interval=0)
    client = await start_client(outbox=config)
    sender = client.create_stream_sender("g", "s")
    sending = asyncio.create_task(sender.send_message(b"old", batch_id="b", message_id="1"))
    async with asyncio.timeout(5):
        while client.pending_messages_count != 1:  # noqa: ASYNC110 (a counter, no event)
            await asyncio.sleep(0.01)
    await sender.enqueue_records([b"1", b"2", b"3"])
    with pytest.raises(MessageDroppedError):
        await sending
    assert client.stats.records_dropped == 1
    await sim.start_broker()
    async with asyncio.timeout(10):
        await client.wait_enqueued_messages_sent()
    assert _lines(sim) == [b"1", b"2", b"3"]


async def test_close_ends_send_message_and_keeps_the_message(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """Closing while send_message waits raises in the waiter; the message goes after restart."""
    await sim.stop_broker()
    client = await start_client()
    sending = asyncio.create_task(
        client.create_stream_sender().send_message(b"kept", batch_id="b", message_id="1")
    )
    async with asyncio.timeout(5):
        while client.pending_messages_count != 1:  # noqa: ASYNC110 (a counter, no event)
            await asyncio.sleep(0.01)
    await client.close()
    with pytest.raises(SpotflowConnectionError, match="stays queued"):
        await sending
    await sim.start_broker()
    client = await start_client()
    async with asyncio.timeout(10):
        await client.wait_enqueued_messages_sent()
    assert [m.payload for m in sim.messages("dev-1")] == [b"kept"]


async def test_full_disk_recovers_when_deliveries_free_space(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """Records kept in memory while the disk is full are written once deliveries free space."""
    await sim.stop_broker()
    config = OutboxConfig(
        max_database_bytes=96 * 1024, commit_interval=0, pack_linger=0.01, synchronous="NORMAL"
    )
    client = await start_client(outbox=config)
    sender = client.create_stream_sender("g", "s")
    records = [b'{"n": %d, "pad": "%s"}' % (n, b"x" * 500) for n in range(400)]
    accepted: list[bytes] = []
    for record in records:
        try:
            await sender.enqueue_record(record)
        except OutboxStorageError:
            break
        accepted.append(record)
    assert 0 < len(accepted) < len(records)
    with pytest.raises(OutboxStorageError, match="SQLITE_FULL"):
        await client.update_reported_properties({"state": "x" * 100_000})
    kept = records[len(accepted) : len(accepted) + 20]
    for record in kept:
        sender.enqueue_record_nowait(record)
    async with asyncio.timeout(5):
        while client.storage_error is None:  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.01)
    await sim.start_broker()
    async with asyncio.timeout(20):
        await client.wait_enqueued_messages_sent()
    assert [client.storage_error] == [None]
    assert _lines(sim) == accepted + kept


async def test_database_in_a_missing_directory(start_client: StartClient, tmp_path: Path) -> None:
    """A database that cannot be created is a storage error, not a corrupt file."""
    with pytest.raises(OutboxStorageError):
        await start_client(db=tmp_path / "missing" / "device.db")


async def test_damaged_pages_are_set_aside(
    start_client: StartClient, sim: PlatformSimulator, db_path: Path
) -> None:
    """A file with a valid header but damaged pages fails its check and is set aside."""
    await sim.stop_broker()
    client = await start_client()
    await client.create_stream_sender().enqueue_records([b"%d" % n for n in range(2000)])
    await client.close()
    data = bytearray(db_path.read_bytes())
    assert len(data) > 4 * 4096
    data[2 * 4096 : 4 * 4096] = b"\xff" * (2 * 4096)
    db_path.write_bytes(bytes(data))
    with pytest.raises(OutboxCorruptError):
        await start_client()
    assert len(list(db_path.parent.glob("device.db.corrupt-*"))) == 1
    await sim.start_broker()


async def test_unpacked_records_are_packed_after_restart(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """Records still unpacked at close are packed and delivered by the next start."""
    await sim.stop_broker()
    client = await start_client(outbox=OutboxConfig(pack_linger=60, commit_interval=0))
    sender = client.create_stream_sender("g", "s")
    await sender.enqueue_records([b"a", b"b"])
    await client.close()
    await sim.start_broker()
    client = await start_client()
    assert client.pending_messages_count == 2
    async with asyncio.timeout(10):
        await client.wait_enqueued_messages_sent()
    assert _lines(sim) == [b"a", b"b"]


async def test_packing_bounds_and_compression_change(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """Messages stay within max_message_bytes; a stream's new compression applies to packing."""
    config = OutboxConfig(max_message_bytes=100, commit_interval=0, pack_linger=0.01)
    client = await start_client(outbox=config)
    await wait_connected(client)
    records = [b'{"n": %02d, "pad": "%s"}' % (n, b"x" * 20) for n in range(20)]
    await client.create_stream_sender("g", "s").enqueue_records(records[:10])
    await client.create_stream_sender("g", "s", Compression.FASTEST).enqueue_records(records[10:])
    async with asyncio.timeout(10):
        await client.wait_enqueued_messages_sent()
    stored = sim.messages("dev-1")
    assert [line for m in stored for line in m.payload.split(b"\n")] == records
    assert all(len(m.payload) <= 100 for m in stored)


async def test_nowait_records_are_committed_as_one_group(
    start_client: StartClient, sim: PlatformSimulator, db_path: Path
) -> None:
    """Records handed over without waiting reach the disk together, within commit_interval."""
    await sim.stop_broker()
    client = await start_client(outbox=OutboxConfig(commit_interval=0.2, pack_linger=60))
    sender = client.create_stream_sender("g", "s")
    for n in range(100):
        sender.enqueue_record_nowait(b"%d" % n)
    with contextlib.closing(sqlite3.connect(db_path)) as reader:

        def on_disk() -> int:
            return int(reader.execute("SELECT COUNT(*) FROM records").fetchone()[0])

        assert on_disk() == 0
        async with asyncio.timeout(5):
            while on_disk() != 100:  # noqa: ASYNC110 (another connection's commit, no event)
                await asyncio.sleep(0.02)
    assert client.pending_messages_count == 100
    await sim.start_broker()


class _HeldStore(Store):
    """A real store whose commits wait for a go on the writer thread, before (`started`) or
    after (`committed`, the transaction already visible on disk) the transaction."""

    hold_after_commit = False

    def __init__(self, connection: sqlite3.Connection, config: OutboxConfig) -> None:
        super().__init__(connection, config)
        self.started = threading.Event()
        self.committed = threading.Event()
        self.go = threading.Event()

    def commit(
        self,
        items: Sequence[Item],
        acked: Iterable[int],
        *,
        flush: bool,
        dropped: int,
        watermark: float | None = None,
    ) -> Commit:
        self.started.set()
        if not self.hold_after_commit:
            self.go.wait(10)
        commit = super().commit(items, acked, flush=flush, dropped=dropped, watermark=watermark)
        self.committed.set()
        if self.hold_after_commit:
            self.go.wait(10)
        return commit


class _HeldAfterCommitStore(_HeldStore):
    hold_after_commit = True


async def test_counters_never_lag_the_disk(db_path: Path) -> None:
    """Records already on disk, whose commit the loop has not seen yet, are still counted."""
    config = OutboxConfig(commit_interval=0, pack_linger=60)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1) as executor:
        store = await loop.run_in_executor(executor, _HeldAfterCommitStore.open, db_path, config)
        assert isinstance(store, _HeldAfterCommitStore)
        outbox = Outbox(store, executor, config)
        outbox.start()
        outbox.add_nowait([Item(("g", "s"), Compression.UNCOMPRESSED, b"%d" % n) for n in range(3)])
        assert await loop.run_in_executor(None, store.committed.wait, 10)
        with contextlib.closing(sqlite3.connect(db_path)) as reader:
            assert reader.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 3
        assert outbox.pending_count == 3
        assert outbox.stats.backlog_records == 3
        assert outbox.stats.backlog_bytes == 3
        store.go.set()
        await outbox.close()
        assert outbox.pending_count == 3
        assert outbox.stats.backlog_records == 3
        await loop.run_in_executor(executor, store.close)


async def test_close_during_a_commit_keeps_each_record_once(db_path: Path) -> None:
    """Closing while the writer thread commits neither loses nor duplicates that commit."""
    config = OutboxConfig(commit_interval=0, pack_linger=60)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=1) as executor:
        store = await loop.run_in_executor(executor, _HeldStore.open, db_path, config)
        assert isinstance(store, _HeldStore)
        outbox = Outbox(store, executor, config)
        outbox.start()
        outbox.add_nowait([Item(("g", "s"), Compression.UNCOMPRESSED, b"%d" % n) for n in range(3)])
        await loop.run_in_executor(None, store.started.wait, 5)
        (committer,) = [t for t in asyncio.all_tasks() if t.get_name() == "spotflow outbox"]
        closing = asyncio.create_task(outbox.close())
        await asyncio.wait([committer])  # close cancelled it while the commit is held
        store.go.set()
        async with asyncio.timeout(5):
            await closing
        await loop.run_in_executor(executor, store.close)
    with contextlib.closing(sqlite3.connect(db_path)) as reader:
        rows = reader.execute("SELECT data FROM records ORDER BY seq").fetchall()
    assert rows == [(b"0",), (b"1",), (b"2",)]


@pytest.mark.parametrize("overflow", ["drop_oldest", "reject_new"])
async def test_records_kept_in_memory_are_bounded(
    start_client: StartClient,
    sim: PlatformSimulator,
    overflow: Literal["drop_oldest", "reject_new"],
) -> None:
    """While the disk is full, the records waiting in memory obey the bound and its policy."""
    await sim.stop_broker()
    config = OutboxConfig(
        max_database_bytes=96 * 1024,
        max_backlog_records=5,
        overflow=overflow,
        commit_interval=0,
        pack_linger=0.01,
        synchronous="NORMAL",
    )
    client = await start_client(outbox=config)
    for size in (8192, 512, 64):  # reported patches fill the disk; delivering them frees it
        with contextlib.suppress(OutboxStorageError):
            while True:
                await client.update_reported_properties({"pad": "x" * size})
    sender = client.create_stream_sender("g", "s")
    # Each record needs an overflow page of its own, so none fits on the full disk.
    records = [b'{"n": %d, "pad": "%s"}' % (n, b"x" * 12_000) for n in range(15)]
    sender.enqueue_record_nowait(records[0])
    async with asyncio.timeout(5):
        while client.storage_error is None:  # noqa: ASYNC110 (no event to wait on)
            await asyncio.sleep(0.01)
    for record in records[1:]:  # kept in memory until the disk has room again
        sender.enqueue_record_nowait(record)
    assert client.stats.backlog_records == 5
    assert client.stats.records_dropped == 10
    if overflow == "reject_new":
        with pytest.raises(OutboxFullError):
            await sender.enqueue_record(b"{}")
    await sim.start_broker()
    async with asyncio.timeout(20):
        await client.wait_enqueued_messages_sent()
    assert _lines(sim) == (records[10:] if overflow == "drop_oldest" else records[:5])
    assert client.stats.records_dropped == 10


async def test_messages_dropped_before_sending_do_not_stall_the_sender(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """A message the bound drops in the commit that queued it leaves nothing to wait for."""
    config = OutboxConfig(max_backlog_records=2, commit_interval=0, pack_linger=0.05)
    client = await start_client(outbox=config)
    await wait_connected(client)
    sender = client.create_stream_sender("g", "s")
    # One group commit: the message is queued, then dropped for the two newer records.
    await asyncio.gather(
        sender.enqueue_message(b"m", batch_id="b", message_id="1"),
        sender.enqueue_records([b"1", b"2"]),
    )
    assert client.stats.records_dropped == 1
    await sim.wait_for_messages(1, timeout=5)  # the records are packed after pack_linger
    assert _lines(sim) == [b"1", b"2"]


async def test_whole_messages_keep_their_place_among_records(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """Records queued before a whole message of their stream reach the platform before it."""
    await sim.stop_broker()
    client = await start_client(outbox=OutboxConfig(commit_interval=0, pack_linger=60))
    sender = client.create_stream_sender("g", "s")
    await sender.enqueue_records([b"a", b"b"])  # stays unpacked on disk
    sender.enqueue_record_nowait(b"c")  # in the same group commit as the message
    await sender.enqueue_message(b"whole", batch_id="x", message_id="1")
    await sender.enqueue_record(b"d")
    await sim.start_broker()
    async with asyncio.timeout(10):
        await client.wait_enqueued_messages_sent()
    assert [m.payload for m in sim.messages("dev-1")] == [b"a\nb\nc", b"whole", b"d"]


async def test_watermark_is_stored_with_its_records(
    start_client: StartClient, sim: PlatformSimulator
) -> None:
    """A watermark reaches the disk with the records it came with, and stays after they were
    delivered and deleted."""
    client = await start_client()
    assert client.watermark is None
    sender = client.create_stream_sender("g", "s")
    sender.enqueue_records_nowait([b"a", b"b"], watermark=1.5)
    # Not on disk yet: the watermark says what the disk holds.
    assert client.watermark is None
    await sender.enqueue_records([b"c"], watermark=2.5)
    assert client.watermark == 2.5
    sender.enqueue_records_nowait([b"d"])
    async with asyncio.timeout(10):
        await client.wait_enqueued_messages_sent()
    await client.close()
    assert _lines(sim) == [b"a", b"b", b"c", b"d"]

    client = await start_client()
    assert client.pending_messages_count == 0
    assert client.watermark == 2.5


def test_packing_keeps_any_bytes_in_order(tmp_path: Path) -> None:
    """Packed in SQLite: any bytes (NUL, not UTF-8, empty) keep their order and the bounds."""
    config = OutboxConfig(max_records_per_message=300, max_message_bytes=2000)
    with contextlib.closing(Store.open(tmp_path / "outbox.db", config)) as store:
        records = [bytes([11 + n % 245]) * (n % 7) + b"\x00\xff" for n in range(1001)]
        records[500] = b"x" * 3000  # larger than a message: packed alone
        records[501] = b""
        stream = ("g", "s")
        commit = store.commit(
            [
                Item(stream, Compression.UNCOMPRESSED, b"", records=records[:999]),
                Item(stream, Compression.UNCOMPRESSED, records[999]),
                Item(stream, Compression.UNCOMPRESSED, records[1000]),
            ],
            [],
            flush=True,
            dropped=0,
        )
        messages = store.fetch_messages(0, 100)
        assert commit.backlog.messages == len(messages)
        assert commit.backlog.records == len(records)
        assert commit.backlog.bytes == sum(len(m.payload) for m in messages)
        assert commit.backlog.unpacked_records == 0
        assert [line for m in messages for line in m.payload.split(b"\n")] == records
        assert all(
            len(m.payload) <= 2000 and m.payload.count(b"\n") < 300
            for m in messages
            if m.payload != records[500]
        )


async def test_start_cancelled_while_the_outbox_opens_closes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start cancelled while its thread opens the database (a dialog closed then) closes the
    database once it is open, instead of leaving the connection to the garbage collector."""
    opening, release = threading.Event(), threading.Event()
    real_open = Store.open

    def open_when_released(path: Path, config: OutboxConfig) -> Store:
        opening.set()
        release.wait()
        return real_open(path, config)

    monkeypatch.setattr(Store, "open", staticmethod(open_when_released))
    loop = asyncio.get_running_loop()
    start = asyncio.create_task(DeviceClient.start("ha-test", "token", tmp_path / "outbox.db"))
    await loop.run_in_executor(None, opening.wait)
    start.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert not [warning for warning in caught if "unclosed database" in str(warning.message)]
