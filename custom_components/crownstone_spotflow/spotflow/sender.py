"""Stream senders: whole messages (the SDK's API) and the packed record stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .compression import compress
from .errors import InvalidArgumentError, PayloadTooLargeError
from .models import MAX_PAYLOAD_BYTES, Compression, Watermark
from .outbox import Outbox
from .store import Item
from .topics import property_bag

# Brotli quality 1 compresses this much in well under a millisecond, less than a hop to a thread
# and back. Quality 11 (SMALLEST_SIZE) takes milliseconds even for a few bytes, so it always runs
# in a thread, off the event loop.
_COMPRESS_INLINE_BYTES = 16 * 1024


class StreamSender:
    """Sends to one stream; create it with `DeviceClient.create_stream_sender`."""

    def __init__(
        self,
        outbox: Outbox,
        stream_group: str | None,
        stream: str | None,
        compression: Compression,
    ) -> None:
        """Bind a sender to a stream of the outbox."""
        self._outbox = outbox
        self._stream_group = stream_group
        self._stream = stream
        self._key = (stream_group or "", stream or "")
        self._compression = compression
        self._max_record_bytes = outbox.max_message_bytes

    @property
    def max_record_bytes(self) -> int:
        """Return the size of the largest record the stream can carry."""
        return self._max_record_bytes

    def __repr__(self) -> str:
        """Name the stream."""
        return f"<StreamSender {self._stream_group or '<default>'}/{self._stream or '<default>'}>"

    # Whole messages

    async def enqueue_message(
        self,
        payload: bytes,
        batch_id: str | None = None,
        message_id: str | None = None,
        batch_slice_id: str | None = None,
        chunk_id: str | None = None,
    ) -> None:
        """Queue one message; returns once it is on disk."""
        await self._outbox.add(
            [await self._message(payload, batch_id, message_id, batch_slice_id, chunk_id)]
        )

    async def send_message(
        self,
        payload: bytes,
        batch_id: str | None = None,
        message_id: str | None = None,
        batch_slice_id: str | None = None,
        chunk_id: str | None = None,
    ) -> None:
        """Queue one message and wait until the platform acknowledged it."""
        await self._outbox.add_and_wait_acknowledged(
            await self._message(payload, batch_id, message_id, batch_slice_id, chunk_id)
        )

    async def enqueue_batch_completion(self, batch_id: str) -> None:
        """Queue the completion of a batch."""
        await self._outbox.add([self._control(batch_id=batch_id, complete_batch=True)])

    async def enqueue_message_completion(self, batch_id: str, message_id: str) -> None:
        """Queue the completion of a message sent in chunks."""
        await self._outbox.add(
            [self._control(batch_id=batch_id, message_id=message_id, complete_message=True)]
        )

    async def _message(
        self,
        payload: bytes,
        batch_id: str | None,
        message_id: str | None,
        batch_slice_id: str | None,
        chunk_id: str | None,
    ) -> Item:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise InvalidArgumentError("The payload must be bytes")
        payload = bytes(payload)
        if self._compression is Compression.UNCOMPRESSED and len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLargeError(
                f"The payload has {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            )
        if (
            self._compression is not Compression.SMALLEST_SIZE
            and len(payload) <= _COMPRESS_INLINE_BYTES
        ):
            data, compressed = compress(payload, self._compression)
        else:
            data, compressed = await asyncio.get_running_loop().run_in_executor(
                None, compress, payload, self._compression
            )
        if len(data) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLargeError(
                f"The compressed payload has {len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            )
        properties = property_bag(
            stream_group=self._stream_group,
            stream=self._stream,
            batch_id=batch_id,
            batch_slice_id=batch_slice_id,
            message_id=message_id,
            chunk_id=chunk_id,
            compressed=compressed,
        )
        return Item(self._key, self._compression, data, properties)

    def _control(
        self,
        *,
        batch_id: str,
        message_id: str | None = None,
        complete_batch: bool = False,
        complete_message: bool = False,
    ) -> Item:
        properties = property_bag(
            stream_group=self._stream_group,
            stream=self._stream,
            batch_id=batch_id,
            message_id=message_id,
            complete_batch=complete_batch,
            complete_message=complete_message,
        )
        return Item(self._key, self._compression, b"", properties)

    # The packed record stream

    async def enqueue_record(self, record: bytes) -> None:
        """Queue one record (a JSON line without newline); returns once it is on disk."""
        await self._outbox.add([self._record(record)])

    async def enqueue_records(
        self, records: Sequence[bytes], *, watermark: Watermark | None = None
    ) -> None:
        """Queue records in order; returns once all are on disk (with the watermark, if any).

        The watermark is the caller's mark of how far its records reach (the time of the newest
        change, say, or a JSON text); `DeviceClient.watermark` returns it after a restart or a
        crash.
        """
        await self._outbox.add([self._record(record) for record in records], watermark)

    def enqueue_record_nowait(self, record: bytes) -> None:
        """Hand a record to the next group commit (within `commit_interval`); never blocks.

        Raises only for a record that can never be sent (too large, not bytes, has a newline).
        """
        self._outbox.add_nowait([self._record(record)])

    def enqueue_records_nowait(
        self, records: Sequence[bytes], *, watermark: Watermark | None = None
    ) -> None:
        """Hand records (and a watermark) to the next group commit; never blocks.

        Raises PayloadTooLargeError or InvalidArgumentError before taking any of them.
        """
        if not self._all_valid(records):
            for record in records:
                self._check(record)
        self._outbox.add_nowait(
            [Item(self._key, self._compression, b"", records=list(records))], watermark
        )

    def _record(self, record: bytes) -> Item:
        self._check(record)
        return Item(self._key, self._compression, record)

    def _all_valid(self, records: Sequence[bytes]) -> bool:
        """Return whether every record is valid, checked in C: the loop hands over thousands."""
        return (
            set(map(type, records)) <= {bytes}
            and max(map(len, records), default=0) <= self._max_record_bytes
            and b"\n" not in b"".join(records)
        )

    def _check(self, record: bytes) -> None:
        if not isinstance(record, bytes):
            raise InvalidArgumentError("A record must be bytes")
        if len(record) > self._max_record_bytes:
            raise PayloadTooLargeError(
                f"The record has {len(record)} bytes; the limit is {self._max_record_bytes}"
            )
        if b"\n" in record:
            raise InvalidArgumentError("A record must not contain a newline")
