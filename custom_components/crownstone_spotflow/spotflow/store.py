"""The outbox database: credentials, queued records and messages, reported properties.

Every method is blocking and runs on the outbox's single writer thread, never on the event loop.
One `commit` call is one transaction: it stores a group of new records and messages, deletes the
acknowledged messages, enforces the backlog bound and packs records into messages. Packing inside
the same transaction makes a message's records, batch ID and message ID a durable decision taken
before its first publish, so every resend carries exactly the same content under the same IDs and
the platform's deduplication is safe.

A commit may also store the caller's watermark (a number, such as the time of the newest change
the records describe, or a text) in the same transaction as the records: after a crash, the
watermark says exactly up to where the records reached the disk, even once they were delivered
and deleted.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
import itertools
import json
import logging
from operator import add
from pathlib import Path
import secrets
import sqlite3
from typing import Any, Final

from .compression import compress
from .errors import OutboxCorruptError, OutboxStorageError, SpotflowError
from .models import Compression, OutboxConfig, Watermark
from .topics import property_bag

_LOGGER = logging.getLogger(__name__)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    stream_group TEXT NOT NULL,
    stream TEXT NOT NULL,
    compression TEXT NOT NULL,
    next_message INTEGER NOT NULL DEFAULT 1,
    UNIQUE (stream_group, stream)
);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, stream_id INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_stream ON records (stream_id, seq);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    properties TEXT NOT NULL,
    payload BLOB NOT NULL,
    records INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reported (seq INTEGER PRIMARY KEY AUTOINCREMENT, patch TEXT NOT NULL);
"""
_CORRUPT_CODES: Final = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_COUNTERS: Final = ("records_dropped", "records_delivered", "messages_delivered")
_SQL_VARIABLES: Final = 500
# Rows of one insert statement (the stream ID is one variable, each record another).
_INSERT_ROWS: Final = 256
# The sizes of a stream's oldest records, and those records joined with newlines: each one step
# of SQLite, which runs without the GIL. A window function finding the cut in SQL takes longer.
_LENGTHS_SQL: Final = """
SELECT group_concat(LENGTH(data))
FROM (SELECT data FROM records WHERE stream_id = ? ORDER BY seq LIMIT ?)
"""
# SQLite before 3.44 has no ORDER BY in an aggregate; it reads the rows in the order of the
# subquery (a test checks it).
_AGGREGATE_ORDER: Final = " ORDER BY seq" if sqlite3.sqlite_version_info >= (3, 44) else ""
_PACK_SQL: Final = f"""
SELECT COUNT(*), MAX(seq), SUM(LENGTH(data)),
    CAST(group_concat(data, char(10){_AGGREGATE_ORDER}) AS BLOB)
FROM (SELECT seq, data FROM records WHERE stream_id = ? ORDER BY seq LIMIT ?)
"""
_WATERMARK: Final = "watermark"

type StreamKey = tuple[str, str]


@dataclass(slots=True)
class Item:
    """A record to pack, records (`records` set), or a whole message (`properties` set).

    A batch of records is one object however many records it holds: records waiting for a
    commit then cost the garbage collector nothing each.
    """

    stream: StreamKey
    compression: Compression
    data: bytes
    properties: str | None = None
    # Accepted already (handed over without waiting): if refused, it counts as dropped.
    accepted: bool = False
    records: list[bytes] | None = None
    # Records and bytes it holds.
    count: int = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        """Count what it holds once."""
        if self.records is None:
            self.count, self.size = 1, len(self.data)
        else:
            self.count, self.size = len(self.records), sum(map(len, self.records))


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A formed message as it will be published (the property bag lacks the device prefix)."""

    seq: int
    properties: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Backlog:
    """What the outbox holds and has done, as of the last transaction."""

    records: int
    bytes: int
    messages: int
    unpacked_records: int
    newest_message: int
    records_dropped: int
    records_delivered: int
    messages_delivered: int


@dataclass(frozen=True, slots=True)
class Commit:
    """The outcome of one group commit."""

    # Indices of the items refused because the outbox is full (reject_new policy).
    rejected: list[int]
    # The queue sequence number of each whole message, by item index.
    message_seqs: dict[int, int]
    # Sequence numbers of the messages dropped unsent to bound the backlog (drop_oldest policy).
    dropped_messages: list[int]
    backlog: Backlog


@dataclass(slots=True)
class _State:
    streams: dict[StreamKey, int] = field(default_factory=dict)
    compression: dict[int, Compression] = field(default_factory=dict)
    next_message: dict[int, int] = field(default_factory=dict)
    unpacked: dict[int, list[int]] = field(default_factory=dict)  # stream id -> [count, bytes]
    messages: int = 0
    message_records: int = 0
    message_bytes: int = 0
    newest_message: int = 0
    counters: dict[str, int] = field(default_factory=dict)


def storage_error(err: sqlite3.Error | OSError) -> SpotflowError:
    """Translate a database or file error into the library's error (no paths, no data)."""
    if isinstance(err, OSError):
        return OutboxStorageError(f"Cannot write the outbox database: {err.strerror or err}")
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    if code in _CORRUPT_CODES:
        return OutboxCorruptError("The outbox database is corrupt")
    name = getattr(err, "sqlite_errorname", type(err).__name__)
    return OutboxStorageError(f"Cannot write the outbox database: {name}")


class Store:
    """The SQLite outbox file. Not thread-safe: use it from one thread at a time."""

    def __init__(self, connection: sqlite3.Connection, config: OutboxConfig) -> None:
        """Wrap an open connection whose schema exists."""
        self._conn = connection
        self._config = config
        self._state = _State()
        self.salt: bytes = b""
        # The newest watermark committed; None until a commit stored one.
        self.watermark: Watermark | None = None
        self.tag = ""

    @classmethod
    def open(cls, path: Path, config: OutboxConfig) -> Store:
        """Open or create the database; a corrupt file is renamed and OutboxCorruptError raised."""
        existed = path.exists()
        connection: sqlite3.Connection | None = None
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA busy_timeout = 5000")
            if existed and connection.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {config.synchronous}")
            if config.max_database_bytes is not None:
                page_size = connection.execute("PRAGMA page_size").fetchone()[0]
                pages = max(config.max_database_bytes // page_size, 1)
                connection.execute(f"PRAGMA max_page_count = {pages}")
            connection.executescript(_SCHEMA)
            store = cls(connection, config)
            store._load()
        except (sqlite3.Error, OSError) as err:
            if connection is not None:
                connection.close()
            error = storage_error(err)
            if existed and (
                isinstance(error, OutboxCorruptError) or type(err) is sqlite3.DatabaseError
            ):
                _set_aside(path)
                raise OutboxCorruptError(
                    "The outbox database was corrupt; it was renamed to "
                    f"{path.name}.corrupt-<time> and a new one will be created"
                ) from err
            raise error from err
        return store

    def close(self) -> None:
        """Close the database (its WAL is checkpointed by SQLite)."""
        self._conn.close()

    def _load(self) -> None:
        settings = self.load_settings()
        if "salt" not in settings:
            settings = {"salt": secrets.token_bytes(16), "tag": secrets.token_hex(4)}
            self.save_settings(settings)
        self.salt, self.tag = settings["salt"], settings["tag"]
        self.watermark = settings.get(_WATERMARK)
        state = self._state
        state.counters = {name: int(settings.get(name, 0)) for name in _COUNTERS}
        for stream_id, group, stream, compression, next_message in self._conn.execute(
            "SELECT id, stream_group, stream, compression, next_message FROM streams"
        ):
            state.streams[group, stream] = stream_id
            state.compression[stream_id] = Compression(compression)
            state.next_message[stream_id] = next_message
            state.unpacked[stream_id] = [0, 0]
        for stream_id, count, size in self._conn.execute(
            "SELECT stream_id, COUNT(*), SUM(LENGTH(data)) FROM records GROUP BY stream_id"
        ):
            state.unpacked[stream_id] = [count, size]
        (
            state.messages,
            state.message_records,
            state.message_bytes,
            state.newest_message,
        ) = self._conn.execute(
            "SELECT COUNT(*), IFNULL(SUM(records), 0), IFNULL(SUM(LENGTH(payload)), 0),"
            " IFNULL(MAX(seq), 0) FROM messages"
        ).fetchone()

    # Settings (credentials, desired properties, counters)

    def load_settings(self) -> dict[str, Any]:
        """Return every stored setting."""
        return dict(self._conn.execute("SELECT key, value FROM settings"))

    def save_settings(self, values: dict[str, Any]) -> None:
        """Store settings in one transaction; None deletes a key."""
        try:
            with self._transaction():
                for key, value in values.items():
                    if value is None:
                        self._conn.execute("DELETE FROM settings WHERE key = ?", (key,))
                    else:
                        self._conn.execute(
                            "INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, value)
                        )
        except sqlite3.Error as err:
            raise storage_error(err) from err

    # Reported properties

    def add_reported(self, patch: dict[str, Any]) -> None:
        """Queue a reported-properties patch."""
        try:
            with self._transaction():
                self._conn.execute("INSERT INTO reported (patch) VALUES (?)", (json.dumps(patch),))
        except sqlite3.Error as err:
            raise storage_error(err) from err

    def pending_reported(self) -> list[tuple[int, dict[str, Any]]]:
        """Return the queued reported-properties patches, oldest first."""
        return [
            (seq, json.loads(patch))
            for seq, patch in self._conn.execute("SELECT seq, patch FROM reported ORDER BY seq")
        ]

    def delete_reported(self, seq: int) -> None:
        """Forget a patch the platform acknowledged."""
        try:
            with self._transaction():
                self._conn.execute("DELETE FROM reported WHERE seq = ?", (seq,))
        except sqlite3.Error as err:
            raise storage_error(err) from err

    # The queue

    @property
    def backlog(self) -> Backlog:
        """Return the current backlog and counters."""
        state = self._state
        unpacked_records = sum(count for count, _ in state.unpacked.values())
        return Backlog(
            records=unpacked_records + state.message_records,
            bytes=sum(size for _, size in state.unpacked.values()) + state.message_bytes,
            messages=state.messages,
            unpacked_records=unpacked_records,
            newest_message=state.newest_message,
            **state.counters,
        )

    def commit(
        self,
        items: Sequence[Item],
        acked: Iterable[int],
        *,
        flush: bool,
        dropped: int,
        watermark: Watermark | None = None,
    ) -> Commit:
        """Store items, delete acknowledged messages, bound the backlog, pack records.

        `flush` also packs partial messages; `dropped` counts records dropped before the disk;
        `watermark`, when given, is stored with the items.
        """
        saved = copy.deepcopy(self._state)
        try:
            with self._transaction():
                self._state.counters["records_dropped"] += dropped
                self._delete_acknowledged(acked)
                rejected, message_seqs = self._insert(items)
                dropped_messages = self._enforce_bound()
                self._pack(flush=flush)
                self._conn.executemany(
                    "INSERT OR REPLACE INTO settings VALUES (?, ?)",
                    [*self._state.counters.items(), *_watermark_row(watermark)],
                )
        except (sqlite3.Error, OSError) as err:
            self._state = saved
            raise storage_error(err) from err
        if watermark is not None:
            self.watermark = watermark
        return Commit(rejected, message_seqs, dropped_messages, self.backlog)

    def fetch_messages(self, after_seq: int, limit: int) -> list[QueuedMessage]:
        """Return up to `limit` queued messages after `after_seq`, oldest first."""
        try:
            return [
                QueuedMessage(*row)
                for row in self._conn.execute(
                    "SELECT seq, properties, payload FROM messages WHERE seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
            ]
        except sqlite3.Error as err:
            raise storage_error(err) from err

    def _transaction(self) -> sqlite3.Connection:
        # `with connection` commits or rolls back; BEGIN IMMEDIATE takes the write lock up front.
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def _delete_acknowledged(self, acked: Iterable[int]) -> None:
        acked = list(acked)
        state = self._state
        for start in range(0, len(acked), _SQL_VARIABLES):
            chunk = acked[start : start + _SQL_VARIABLES]
            for records, size in self._conn.execute(
                f"DELETE FROM messages WHERE seq IN ({','.join('?' * len(chunk))})"
                " RETURNING records, LENGTH(payload)",
                chunk,
            ).fetchall():
                state.messages -= 1
                state.message_records -= records
                state.message_bytes -= size
                state.counters["records_delivered"] += records
                state.counters["messages_delivered"] += 1

    def _stream_id(self, key: StreamKey, compression: Compression) -> int:
        state = self._state
        if (stream_id := state.streams.get(key)) is None:
            stream_id = self._conn.execute(
                "INSERT INTO streams (stream_group, stream, compression) VALUES (?, ?, ?)"
                " RETURNING id",
                (*key, compression.value),
            ).fetchone()[0]
            state.streams[key] = stream_id
            state.next_message[stream_id] = 1
            state.unpacked[stream_id] = [0, 0]
        elif state.compression[stream_id] is not compression:
            self._conn.execute(
                "UPDATE streams SET compression = ? WHERE id = ?", (compression.value, stream_id)
            )
        state.compression[stream_id] = compression
        return stream_id

    def _insert(self, items: Sequence[Item]) -> tuple[list[int], dict[int, int]]:
        state, config = self._state, self._config
        backlog = self.backlog
        count, size = backlog.records, backlog.bytes
        rejected: list[int] = []
        message_seqs: dict[int, int] = {}
        # Records of one stream, in order, not inserted yet.
        pending: list[bytes] = []
        pending_stream = 0
        for index, item in enumerate(items):
            if config.overflow == "reject_new" and (
                count + item.count > config.max_backlog_records
                or size + item.size > config.max_backlog_bytes
            ):
                rejected.append(index)
                if item.accepted:
                    state.counters["records_dropped"] += item.count
                continue
            count, size = count + item.count, size + item.size
            stream_id = self._stream_id(item.stream, item.compression)
            if item.properties is None:
                if stream_id != pending_stream:
                    self._insert_records(pending_stream, pending)
                    pending, pending_stream = [], stream_id
                if item.records is None:
                    pending.append(item.data)
                else:
                    pending.extend(item.records)
                state.unpacked[stream_id][0] += item.count
                state.unpacked[stream_id][1] += item.size
                continue
            # Records of the stream queued before a whole message are packed before it, so the
            # platform gets the stream in the order it was queued.
            self._insert_records(pending_stream, pending)
            pending = []
            while state.unpacked[stream_id][0]:
                self._pack_one(item.stream, stream_id)
            message_seqs[index] = self._insert_message(item.properties, item.data, 1)
        self._insert_records(pending_stream, pending)
        return rejected, message_seqs

    def _insert_records(self, stream_id: int, records: list[bytes]) -> None:
        # Many rows per statement: executemany runs a step per row, dropping and taking back the
        # GIL each time (the event loop's GIL), and takes twice the CPU.
        start = 0
        while start < len(records):
            rows = _insert_rows(len(records) - start)
            self._conn.execute(_insert_sql(rows), [stream_id, *records[start : start + rows]])
            start += rows

    def _insert_message(self, properties: str, payload: bytes, records: int) -> int:
        seq: int = self._conn.execute(
            "INSERT INTO messages (properties, payload, records) VALUES (?, ?, ?) RETURNING seq",
            (properties, payload, records),
        ).fetchone()[0]
        state = self._state
        state.newest_message = seq
        state.messages += 1
        state.message_records += records
        state.message_bytes += len(payload)
        return seq

    def _over_bound(self) -> bool:
        backlog = self.backlog
        return (
            backlog.records > self._config.max_backlog_records
            or backlog.bytes > self._config.max_backlog_bytes
        )

    def _enforce_bound(self) -> list[int]:
        """Drop the oldest records until the backlog is within bounds; return dropped messages."""
        dropped: list[int] = []
        if self._config.overflow != "drop_oldest":
            return dropped
        state = self._state
        # Messages go first: each holds records older than its stream's unpacked ones (see
        # `_insert`), and their records cannot be split.
        while self._over_bound() and state.messages:
            seq, records, size = self._conn.execute(
                "DELETE FROM messages WHERE seq = (SELECT MIN(seq) FROM messages)"
                " RETURNING seq, records, LENGTH(payload)"
            ).fetchone()
            dropped.append(seq)
            state.messages -= 1
            state.message_records -= records
            state.message_bytes -= size
            state.counters["records_dropped"] += records
        while self._over_bound():
            excess = self.backlog.records - self._config.max_backlog_records
            last_seq = None
            for seq, stream_id, size in self._conn.execute(
                "SELECT seq, stream_id, LENGTH(data) FROM records ORDER BY seq LIMIT ?",
                (max(excess, 256),),
            ).fetchall():
                state.unpacked[stream_id][0] -= 1
                state.unpacked[stream_id][1] -= size
                state.counters["records_dropped"] += 1
                last_seq = seq
                if not self._over_bound():
                    break
            self._conn.execute("DELETE FROM records WHERE seq <= ?", (last_seq,))
        if total := state.counters["records_dropped"]:
            _LOGGER.debug("Outbox over its bound; %d records dropped so far", total)
        return dropped

    def _pack(self, *, flush: bool) -> None:
        config = self._config
        for key, stream_id in self._state.streams.items():
            unpacked = self._state.unpacked[stream_id]
            while unpacked[0] and (
                flush
                or unpacked[0] >= config.max_records_per_message
                or unpacked[1] + unpacked[0] - 1 >= config.max_message_bytes
            ):
                self._pack_one(key, stream_id)

    def _pack_one(self, key: StreamKey, stream_id: int) -> None:
        config, state = self._config, self._state
        # SQLite measures and joins the records, without the GIL and without a Python object per
        # record: reading the rows took twice the CPU, and the GIL back for every row.
        (lengths,) = self._conn.execute(
            _LENGTHS_SQL, (stream_id, config.max_records_per_message)
        ).fetchone()
        # What n records take packed (n - 1 separators), summed in C; at least one record goes.
        sizes = itertools.accumulate(map(int, lengths.split(",")))
        packed = list(map(add, sizes, itertools.count()))
        fitting = max(bisect_right(packed, config.max_message_bytes), 1)
        taken, last_seq, size, joined = self._conn.execute(
            _PACK_SQL, (stream_id, fitting)
        ).fetchone()
        payload, compressed = compress(joined, state.compression[stream_id])
        message_number = state.next_message[stream_id]
        properties = property_bag(
            stream_group=key[0] or None,
            stream=key[1] or None,
            batch_id=f"{datetime.now(UTC):%Y-%m-%d}-{self.tag}",
            message_id=f"{message_number:08d}",
            compressed=compressed,
        )
        self._conn.execute(
            "DELETE FROM records WHERE stream_id = ? AND seq <= ?", (stream_id, last_seq)
        )
        self._conn.execute(
            "UPDATE streams SET next_message = ? WHERE id = ?", (message_number + 1, stream_id)
        )
        self._insert_message(properties, payload, taken)
        state.next_message[stream_id] = message_number + 1
        state.unpacked[stream_id][0] -= taken
        state.unpacked[stream_id][1] -= size


def _insert_rows(remaining: int) -> int:
    """Return how many rows the next insert takes: a power of two, so few statements exist."""
    return 1 << (min(remaining, _INSERT_ROWS).bit_length() - 1)


@cache
def _insert_sql(rows: int) -> str:
    values = ", ".join(f"(?1, ?{index})" for index in range(2, rows + 2))
    return f"INSERT INTO records (stream_id, data) VALUES {values}"


def _watermark_row(watermark: Watermark | None) -> list[tuple[str, Watermark]]:
    return [] if watermark is None else [(_WATERMARK, watermark)]


def _set_aside(path: Path) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(path.with_name(f"{path.name}.corrupt-{stamp}{suffix}"))
    _LOGGER.error("The outbox database %s was corrupt and has been set aside", path.name)
