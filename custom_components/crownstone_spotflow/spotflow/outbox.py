"""The durable outbox, event-loop side: group commits, packing triggers and the in-flight window.

Enqueued items wait in memory only until the next group commit, which runs on the outbox's single
writer thread. Callers that await an enqueue make the commit start at once; records handed over
with `nowait` let it linger up to `commit_interval` so a burst becomes one transaction. While
connected, the sender keeps up to `max_in_flight` messages published and unacknowledged, reading
them from the database (the only source of truth), and deletes each one in a later commit after
its PUBACK. Records are packed into a partial message only when the window has room and the oldest
of them waited `pack_linger`, so a slow trickle still forms few messages.

A watermark handed over with records is stored by the commit that stores them (or a later one),
never before: `watermark` is what the disk holds.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
import logging

from .errors import MessageDroppedError, OutboxFullError, SpotflowConnectionError, SpotflowError
from .models import OutboxConfig, OutboxStats
from .store import Backlog, Item, QueuedMessage, Store

_LOGGER = logging.getLogger(__name__)
_STORAGE_RETRY_INTERVAL = 1.0

type Publish = Callable[[QueuedMessage], asyncio.Future[None]]


@dataclass(slots=True)
class _Entry:
    item: Item
    future: asyncio.Future[None] | None
    acknowledged: asyncio.Future[None] | None = None


class Outbox:
    """Queue of records and messages, persisted in a Store through one writer thread."""

    def __init__(self, store: Store, executor: ThreadPoolExecutor, config: OutboxConfig) -> None:
        """Take over an open store; `start` begins committing."""
        self._loop = asyncio.get_running_loop()
        self._store = store
        self._executor = executor
        self._config = config
        self._buffer: deque[_Entry] = deque()
        self._buffer_records = 0
        self._buffer_bytes = 0
        # Entries handed to the writer thread: its transaction may already be visible on disk
        # before the loop learns the new backlog, so the counters keep them until then.
        self._in_commit: list[_Entry] = []
        self._in_commit_records = 0
        self._in_commit_bytes = 0
        # Records dropped from the buffer, counted on disk by the next successful commit.
        self._dropped_unsaved = 0
        self._acked: list[int] = []
        self._acked_uncommitted: set[int] = set()
        self._ack_waiters: dict[int, asyncio.Future[None]] = {}
        self._flush_wanted = False
        # The caller's watermark: committed, and waiting for the next commit.
        self._watermark = store.watermark
        self._watermark_wanted: float | None = None
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._progress = asyncio.Event()
        self._backlog: Backlog = store.backlog
        self._newest_seq = self._backlog.newest_message
        self._unpacked_since: float | None = (
            self._loop.time() if self._backlog.unpacked_records else None
        )
        self._records_enqueued = 0
        self._last_delivery: datetime | None = None
        self._storage_error: SpotflowError | None = None
        self._committer: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the group-commit task."""
        self._committer = self._loop.create_task(self._commit_loop(), name="spotflow outbox")

    async def close(self) -> None:
        """Commit what is buffered (when the disk allows) and stop."""
        if self._committer is not None:
            self._committer.cancel()
            with suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None
        if self._committing is not None:
            # The cancel ended the committer's wait, not the writer thread: let that commit
            # finish and settle its entries, or they would be committed again below.
            with suppress(SpotflowError):
                await self._committing
            self._committing = None
        if self._buffer or self._acked or self._watermark_wanted is not None:
            with suppress(SpotflowError):
                await self._commit_once()
        if self._buffer:
            _LOGGER.error(
                "%d records could not be written to the outbox and are lost", self._buffer_records
            )
        for seq in list(self._ack_waiters):
            self._fail_waiter(
                seq,
                SpotflowConnectionError(
                    "The client closed before the message was acknowledged; it stays queued"
                ),
            )

    def _fail_waiter(self, seq: int, error: SpotflowError) -> None:
        if (waiter := self._ack_waiters.pop(seq, None)) is not None and not waiter.done():
            waiter.set_exception(error)

    # Enqueueing

    def add_nowait(self, items: Sequence[Item], watermark: float | None = None) -> None:
        """Buffer items for the next group commit; refused ones count as dropped.

        A watermark is stored with them (even when the bound dropped some of them).
        """
        if watermark is not None:
            self._watermark_wanted = watermark
        count = 0
        for item in items:
            item.accepted = True
            count += item.count
        self._records_enqueued += count
        if not self._add_to_buffer([_Entry(item, None) for item in items]):
            self._dropped_unsaved += count
        self._wake.set()

    async def add(self, items: Sequence[Item], watermark: float | None = None) -> None:
        """Buffer items and return once they are on disk; OutboxFullError if refused.

        A watermark is stored with them.
        """
        future: asyncio.Future[None] = self._loop.create_future()
        if not self._add_to_buffer([_Entry(item, future) for item in items]):
            raise OutboxFullError("The outbox is full")
        if watermark is not None:
            self._watermark_wanted = watermark
        self._wake.set()
        self._urgent.set()
        await future
        self._records_enqueued += sum(item.count for item in items)

    async def add_and_wait_acknowledged(self, item: Item) -> None:
        """Buffer a message and return once the broker acknowledged it."""
        future: asyncio.Future[None] = self._loop.create_future()
        acknowledged: asyncio.Future[None] = self._loop.create_future()
        if not self._add_to_buffer([_Entry(item, future, acknowledged)]):
            raise OutboxFullError("The outbox is full")
        self._wake.set()
        self._urgent.set()
        await future
        self._records_enqueued += 1
        await acknowledged

    def _add_to_buffer(self, entries: list[_Entry]) -> bool:
        """Buffer entries within the bound; False when the reject_new policy refuses them.

        The buffer holds one group commit, unless commits fail (a full disk): then the outbox's
        bound and overflow policy apply to it as they apply to the disk.
        """
        count = sum(entry.item.count for entry in entries)
        size = sum(entry.item.size for entry in entries)
        backlog = self._backlog
        if self._config.overflow == "reject_new" and self._over_bound(
            backlog.records + self._buffer_records + self._in_commit_records + count,
            backlog.bytes + self._buffer_bytes + self._in_commit_bytes + size,
        ):
            return False
        self._buffer.extend(entries)
        self._buffer_records += count
        self._buffer_bytes += size
        self._drop_oldest_buffered()
        return True

    def _put_back(self, entries: list[_Entry]) -> None:
        """Return entries a failed commit did not store to the front of the buffer."""
        self._buffer.extendleft(reversed(entries))
        self._buffer_records += sum(entry.item.count for entry in entries)
        self._buffer_bytes += sum(entry.item.size for entry in entries)
        self._drop_oldest_buffered()

    def _over_bound(self, records: int, size: int) -> bool:
        return records > self._config.max_backlog_records or size > self._config.max_backlog_bytes

    def _drop_oldest_buffered(self) -> None:
        # The buffer holds the newest records, so it alone is held to the bound; the next
        # commit drops older ones on disk. Only entries nobody awaits may go from it; an
        # awaited one is settled by the next commit anyway.
        buffer = self._buffer
        while (
            self._config.overflow == "drop_oldest"
            and self._over_bound(self._buffer_records, self._buffer_bytes)
            and buffer
            and buffer[0].future is None
        ):
            item = buffer[0].item
            if item.records is not None and item.count > 1:
                # Of a batch, only its oldest records go (never the newest with them).
                config = self._config
                excess = self._buffer_records - config.max_backlog_records
                excess_bytes = self._buffer_bytes - config.max_backlog_bytes
                drop = size = 0
                while drop < item.count - 1 and (drop < excess or size < excess_bytes):
                    size += len(item.records[drop])
                    drop += 1
                del item.records[:drop]
                item.count -= drop
                item.size -= size
            else:
                buffer.popleft()
                drop, size = item.count, item.size
            self._buffer_records -= drop
            self._buffer_bytes -= size
            self._dropped_unsaved += drop

    # State

    @property
    def max_message_bytes(self) -> int:
        """Return the bound of one packed message, and so of one record."""
        return self._config.max_message_bytes

    @property
    def pending_count(self) -> int:
        """Return how many records and messages are not acknowledged yet."""
        backlog = self._backlog
        # Acknowledged messages count as sent even before the commit that deletes them.
        acknowledged = len(self._acked_uncommitted)
        unsettled = self._buffer_records + self._in_commit_records
        return backlog.messages - acknowledged + backlog.unpacked_records + unsettled

    @property
    def stats(self) -> OutboxStats:
        """Return the counters."""
        backlog = self._backlog
        return OutboxStats(
            records_enqueued=self._records_enqueued,
            records_delivered=backlog.records_delivered,
            messages_delivered=backlog.messages_delivered,
            records_dropped=backlog.records_dropped + self._dropped_unsaved,
            backlog_records=backlog.records + self._buffer_records + self._in_commit_records,
            backlog_bytes=backlog.bytes + self._buffer_bytes + self._in_commit_bytes,
            last_delivery=self._last_delivery,
        )

    @property
    def watermark(self) -> float | None:
        """Return the newest watermark on disk (None if none was ever stored)."""
        return self._watermark

    @property
    def storage_error(self) -> SpotflowError | None:
        """Return the error of the last failed commit, None once a commit succeeded."""
        return self._storage_error

    async def wait_drained(self) -> None:
        """Wait until everything enqueued so far is acknowledged and forgotten.

        Partial messages are formed at once instead of after `pack_linger`.
        """
        while self.pending_count or self._acked_uncommitted:
            if self._backlog.unpacked_records:
                self._flush_wanted = True
                self._wake.set()
                self._urgent.set()
            self._progress.clear()
            await self._progress.wait()

    # Group commits

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            if not self._urgent.is_set() and self._config.commit_interval:
                with suppress(TimeoutError):
                    async with asyncio.timeout(self._config.commit_interval):
                        await self._urgent.wait()
            try:
                await self._commit_shielded()
            except SpotflowError as err:
                if self._storage_error is None:
                    _LOGGER.error("Outbox commit failed, keeping records in memory: %s", err)
                self._storage_error = err
                # On a full disk, new records fail the whole transaction. Without them, deleting
                # what was delivered and packing what waits can succeed, and frees the space.
                with suppress(SpotflowError):
                    await self._commit_shielded(keep_buffer=True)
                await asyncio.sleep(_STORAGE_RETRY_INTERVAL)
                self._wake.set()

    async def _commit_shielded(self, *, keep_buffer: bool = False) -> None:
        # A commit runs as its own task that cancelling the committer does not reach, because
        # the writer thread finishes a started transaction whatever happens to its waiter.
        self._committing = self._loop.create_task(self._commit_once(keep_buffer=keep_buffer))
        await asyncio.shield(self._committing)

    async def _commit_once(self, *, keep_buffer: bool = False) -> None:
        self._wake.clear()
        self._urgent.clear()
        entries: list[_Entry] = []
        watermark: float | None = None
        if not keep_buffer:
            watermark, self._watermark_wanted = self._watermark_wanted, None
            entries = list(self._buffer)
            self._buffer.clear()
            self._in_commit = entries
            self._in_commit_records, self._in_commit_bytes = (
                self._buffer_records,
                self._buffer_bytes,
            )
            self._buffer_records = self._buffer_bytes = 0
        acked, self._acked = self._acked, []
        flush, self._flush_wanted = self._flush_wanted, False
        dropped = self._dropped_unsaved
        try:
            commit = await self._loop.run_in_executor(
                self._executor,
                lambda: self._store.commit(
                    [entry.item for entry in entries],
                    acked,
                    flush=flush,
                    dropped=dropped,
                    watermark=watermark,
                ),
            )
        except SpotflowError as err:
            self._settle_in_commit()
            if all(entry.future is None for entry in entries):
                # Else the watermark would claim records their callers were told are not stored.
                self._keep_watermark(watermark)
            # Awaiting callers learn that their records were not accepted; records already
            # accepted (nowait) stay buffered, ahead of newer ones, for the next attempt.
            for entry in entries:
                if entry.future is not None and not entry.future.done():
                    entry.future.set_exception(err)
            self._put_back([entry for entry in entries if entry.future is None])
            self._acked[:0] = acked
            self._flush_wanted |= flush
            raise
        except Exception:
            self._settle_in_commit()
            self._keep_watermark(watermark)
            # The thread ended with this error and its transaction rolled back.
            self._put_back(entries)
            self._acked[:0] = acked
            raise
        self._dropped_unsaved -= dropped
        if watermark is not None:
            self._watermark = watermark
        if not keep_buffer:
            self._storage_error = None
        refused = {id(entries[index]) for index in commit.rejected}
        for entry in entries:
            if entry.future is None or entry.future.done():
                continue
            if id(entry) in refused:
                entry.future.set_exception(OutboxFullError("The outbox is full"))
            else:
                entry.future.set_result(None)
        for index, seq in commit.message_seqs.items():
            if (acknowledged := entries[index].acknowledged) is not None:
                self._ack_waiters[seq] = acknowledged
        for seq in commit.dropped_messages:
            self._fail_waiter(
                seq,
                MessageDroppedError(
                    "The message was dropped from the full outbox before it was acknowledged"
                ),
            )
        self._acked_uncommitted.difference_update(acked)
        backlog = self._backlog = commit.backlog
        self._settle_in_commit()
        self._newest_seq = backlog.newest_message
        if not backlog.unpacked_records:
            self._unpacked_since = None
        elif self._unpacked_since is None:
            self._unpacked_since = self._loop.time()
        self._progress.set()

    def _keep_watermark(self, watermark: float | None) -> None:
        # A newer one, handed over during the failed commit, stands for it too.
        if self._watermark_wanted is None:
            self._watermark_wanted = watermark

    def _settle_in_commit(self) -> None:
        self._in_commit, self._in_commit_records, self._in_commit_bytes = [], 0, 0

    # Sending

    async def send(self, publish: Publish) -> None:
        """Keep the in-flight window full until a publish fails (the connection dropped)."""
        config = self._config
        in_flight: dict[int, asyncio.Future[None]] = {}
        failed: list[BaseException] = []
        cursor = 0

        def acknowledged(seq: int, future: asyncio.Future[None]) -> None:
            in_flight.pop(seq, None)
            if future.cancelled():
                failed.append(asyncio.CancelledError())
            elif (error := future.exception()) is not None:
                failed.append(error)
            else:
                self._acked.append(seq)
                self._acked_uncommitted.add(seq)
                self._last_delivery = datetime.now(UTC)
                if (waiter := self._ack_waiters.pop(seq, None)) and not waiter.done():
                    waiter.set_result(None)
                self._wake.set()
                self._urgent.set()
            self._progress.set()

        try:
            while not failed:
                self._progress.clear()
                room = config.max_in_flight - len(in_flight)
                if room and (newest := self._newest_seq) > cursor:
                    messages = await self._loop.run_in_executor(
                        self._executor, self._store.fetch_messages, cursor, room
                    )
                    if not messages:
                        # The bound dropped every message up to `newest` before it was sent.
                        cursor = newest
                    for message in messages:
                        cursor = message.seq
                        if message.seq in self._acked_uncommitted:
                            continue
                        future = publish(message)
                        in_flight[message.seq] = future
                        future.add_done_callback(partial(acknowledged, message.seq))
                    continue
                timeout = self._linger_left() if room else None
                if timeout is not None and timeout <= 0:
                    self._flush_wanted = True
                    self._wake.set()
                    self._urgent.set()
                    timeout = None
                with suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._progress.wait()
            raise failed[0]
        finally:
            for future in in_flight.values():
                future.cancel()

    def _linger_left(self) -> float | None:
        if self._unpacked_since is None or self._flush_wanted:
            return None
        return self._unpacked_since + self._config.pack_linger - self._loop.time()
