"""SQLite persistence: received stream messages, their bookkeeping, and the workspace's devices."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
import sqlite3
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY, key BLOB NOT NULL, desired TEXT NOT NULL, reported TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS registration_tokens (
    token TEXT PRIMARY KEY, device_id TEXT NOT NULL, expires_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, stream_group TEXT NOT NULL,
    stream TEXT NOT NULL, batch_id TEXT NOT NULL, message_id TEXT NOT NULL,
    batch_slice_id TEXT, chunk_id TEXT NOT NULL, payload BLOB NOT NULL,
    compressed INTEGER NOT NULL, received_at REAL NOT NULL,
    UNIQUE (device_id, stream_group, stream, batch_id, message_id, chunk_id));
CREATE TABLE IF NOT EXISTS duplicates (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, stream_group TEXT NOT NULL,
    stream TEXT NOT NULL, batch_id TEXT NOT NULL, message_id TEXT NOT NULL,
    received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
    payload BLOB NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS completions (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, device_id TEXT NOT NULL,
    stream_group TEXT NOT NULL, stream TEXT NOT NULL, batch_id TEXT NOT NULL,
    message_id TEXT NOT NULL, received_at REAL NOT NULL,
    UNIQUE (kind, device_id, stream_group, stream, batch_id, message_id));
"""

_MESSAGE_COLUMNS = (
    "device_id, stream_group, stream, batch_id, message_id, batch_slice_id, chunk_id, payload,"
    " compressed, received_at"
)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A stream message as the platform stored it (payload decompressed)."""

    device_id: str
    stream_group: str
    stream: str
    batch_id: str
    message_id: str
    batch_slice_id: str | None
    chunk_id: str | None
    payload: bytes
    compressed: bool
    received_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the platform could not file under a batch and message ID."""

    device_id: str
    topic: str
    reason: str
    payload: bytes
    received_at: float


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """A device's persistent record: its signing key and its twin (JSON text)."""

    device_id: str
    key: bytes = field(repr=False)
    desired: str
    reported: str


class Store:
    """One SQLite database in WAL mode, written only from the event loop's thread.

    Every write is its own transaction, committed before the call returns: the broker acknowledges
    a message only after this, so an acknowledged message is on disk.
    """

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a crash of the process (not of the machine) and keeps
        # a commit far below a millisecond.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._counts: Counter[str] = Counter(
            dict(self._db.execute("SELECT device_id, COUNT(*) FROM messages GROUP BY device_id"))
        )
        self.duplicate_count: int = self._scalar("SELECT COUNT(*) FROM duplicates")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _scalar(self, sql: str, *args: Any) -> Any:
        return self._db.execute(sql, args).fetchone()[0]

    # --- stream messages

    def add_message(self, message: StoredMessage) -> bool:
        """Store a message; False (and the duplicate recorded) when its IDs were seen before."""
        cursor = self._db.execute(
            f"INSERT OR IGNORE INTO messages ({_MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                message.device_id,
                message.stream_group,
                message.stream,
                message.batch_id,
                message.message_id,
                message.batch_slice_id,
                message.chunk_id or "",
                message.payload,
                message.compressed,
                message.received_at,
            ),
        )
        if cursor.rowcount:
            self._counts[message.device_id] += 1
            return True
        self._db.execute(
            "INSERT INTO duplicates (device_id, stream_group, stream, batch_id, message_id,"
            " received_at) VALUES (?,?,?,?,?,?)",
            (
                message.device_id,
                message.stream_group,
                message.stream,
                message.batch_id,
                message.message_id,
                message.received_at,
            ),
        )
        self.duplicate_count += 1
        return False

    def message_count(self, device_id: str | None = None) -> int:
        """Return how many distinct messages arrived (from one device, or from all)."""
        return self._counts[device_id] if device_id else self._counts.total()

    def messages(
        self,
        device_id: str | None = None,
        stream_group: str | None = None,
        stream: str | None = None,
        *,
        limit: int | None = None,
    ) -> list[StoredMessage]:
        """Return stored messages in arrival order (the latest `limit` ones when given)."""
        filters = {"device_id": device_id, "stream_group": stream_group, "stream": stream}
        used = {column: value for column, value in filters.items() if value is not None}
        where = " AND ".join(f"{column} = ?" for column in used) or "1"
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id"
        args: list[Any] = list(used.values())
        if limit is not None:
            sql += " DESC LIMIT ?"
            args.append(limit)
        found = [
            StoredMessage(
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                row[6] or None,
                bytes(row[7]),
                bool(row[8]),
                row[9],
            )
            for row in self._db.execute(sql, args)
        ]
        return found if limit is None else found[::-1]

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Keep a message that could not be filed."""
        self._db.execute(
            "INSERT INTO dead_letters (device_id, topic, reason, payload, received_at)"
            " VALUES (?,?,?,?,?)",
            (letter.device_id, letter.topic, letter.reason, letter.payload, letter.received_at),
        )

    def dead_letters(self) -> list[DeadLetter]:
        """Return the dead letters in arrival order."""
        rows = self._db.execute(
            "SELECT device_id, topic, reason, payload, received_at FROM dead_letters ORDER BY id"
        )
        return [DeadLetter(row[0], row[1], row[2], bytes(row[3]), row[4]) for row in rows]

    def add_completion(self, completion: tuple[str, ...], received_at: float) -> None:
        """Record a batch or message completion once (a retried completion changes nothing)."""
        kind, device_id, group, stream, batch_id, *message_id = completion
        self._db.execute(
            "INSERT OR IGNORE INTO completions (kind, device_id, stream_group, stream, batch_id,"
            " message_id, received_at) VALUES (?,?,?,?,?,?,?)",
            (kind, device_id, group, stream, batch_id, "".join(message_id), received_at),
        )

    def completions(self) -> list[tuple[str, ...]]:
        """Return ("batch", device, group, stream, batch) / ("message", ..., batch, message)."""
        rows = self._db.execute(
            "SELECT kind, device_id, stream_group, stream, batch_id, message_id"
            " FROM completions ORDER BY id"
        )
        return [tuple(row) if row[0] == "message" else tuple(row[:5]) for row in rows]

    def stats(self) -> dict[str, Any]:
        """Return totals and per device/stream counts."""
        streams = [
            {
                "device_id": row[0],
                "stream_group": row[1],
                "stream": row[2],
                "messages": row[3],
                "bytes": row[4],
            }
            for row in self._db.execute(
                "SELECT device_id, stream_group, stream, COUNT(*), SUM(LENGTH(payload))"
                " FROM messages GROUP BY device_id, stream_group, stream ORDER BY 1, 2, 3"
            )
        ]
        return {
            "messages": self.message_count(),
            "duplicates": self.duplicate_count,
            "dead_letters": self._scalar("SELECT COUNT(*) FROM dead_letters"),
            "completions": self._scalar("SELECT COUNT(*) FROM completions"),
            "bytes": sum(stream["bytes"] for stream in streams),
            "devices": dict(self._counts),
            "streams": streams,
        }

    # --- workspace state

    def get_meta(self, key: str) -> str | None:
        """Return a stored setting."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Store a setting."""
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def save_device(self, device: StoredDevice) -> None:
        """Insert or replace a device's record."""
        self._db.execute(
            "INSERT OR REPLACE INTO devices (device_id, key, desired, reported) VALUES (?,?,?,?)",
            (device.device_id, device.key, device.desired, device.reported),
        )

    def devices(self) -> list[StoredDevice]:
        """Return every device's record."""
        rows = self._db.execute("SELECT device_id, key, desired, reported FROM devices")
        return [StoredDevice(row[0], bytes(row[1]), row[2], row[3]) for row in rows]

    def save_token(self, token: str, device_id: str, expires_at: float, revoked: bool) -> None:
        """Insert or replace a registration token."""
        self._db.execute(
            "INSERT OR REPLACE INTO registration_tokens (token, device_id, expires_at, revoked)"
            " VALUES (?,?,?,?)",
            (token, device_id, expires_at, revoked),
        )

    def tokens(self) -> list[tuple[str, str, float, bool]]:
        """Return every registration token as (token, device, expiry, revoked)."""
        rows = self._db.execute(
            "SELECT token, device_id, expires_at, revoked FROM registration_tokens"
        )
        return [(row[0], row[1], row[2], bool(row[3])) for row in rows]

    def save_operation(self, operation_id: str, state: str) -> None:
        """Insert or replace a provisioning operation (its state as JSON text)."""
        self._db.execute(
            "INSERT OR REPLACE INTO operations (id, state) VALUES (?, ?)", (operation_id, state)
        )

    def operations(self) -> list[str]:
        """Return every provisioning operation's state (JSON text), oldest first."""
        return [row[0] for row in self._db.execute("SELECT state FROM operations ORDER BY rowid")]
