"""Value types of the Spotflow device library."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from .errors import InvalidArgumentError

DEFAULT_INSTANCE = "api.eu1.spotflow.io"
# The platform's limit for one MQTT message, after compression.
MAX_PAYLOAD_BYTES = 250_000


class Compression(StrEnum):
    """How a stream sender compresses its messages (Brotli, only when it helps)."""

    UNCOMPRESSED = "uncompressed"
    FASTEST = "fastest"
    SMALLEST_SIZE = "smallest_size"


@dataclass(frozen=True)
class ProvisioningOperation:
    """A pending provisioning operation; show its verification code to the approver."""

    id: str
    verification_code: str
    expiration_time: datetime


@dataclass(frozen=True)
class DesiredProperties:
    """The desired properties of the device twin at one version."""

    version: int
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxConfig:
    """Bounds and timings of the durable outbox.

    `max_message_bytes` bounds the packed (uncompressed) payload of one message, so the platform's
    limit of 250,000 bytes holds whatever the compression does.
    `synchronous` is SQLite's: "FULL" survives power loss (an fsync per group commit, amortised by
    grouping), "NORMAL" survives a killed process but may lose the last commits on power loss.
    """

    max_backlog_records: int = 1_000_000
    max_backlog_bytes: int = 512 * 1024 * 1024
    overflow: Literal["drop_oldest", "reject_new"] = "drop_oldest"
    max_message_bytes: int = MAX_PAYLOAD_BYTES
    max_records_per_message: int = 5000
    max_in_flight: int = 8
    commit_interval: float = 0.05
    pack_linger: float = 0.1
    synchronous: Literal["NORMAL", "FULL"] = "FULL"
    # A hard cap on the database file; writes beyond it fail with OutboxStorageError.
    max_database_bytes: int | None = None

    def __post_init__(self) -> None:
        """Refuse bounds that cannot work."""
        if not 0 < self.max_message_bytes <= MAX_PAYLOAD_BYTES:
            raise InvalidArgumentError(
                f"max_message_bytes must be between 1 and {MAX_PAYLOAD_BYTES}"
            )
        for name in ("max_backlog_records", "max_backlog_bytes", "max_records_per_message"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be at least 1")
        if self.max_in_flight < 1:
            raise InvalidArgumentError("max_in_flight must be at least 1")
        if self.overflow not in ("drop_oldest", "reject_new"):
            raise InvalidArgumentError("overflow must be 'drop_oldest' or 'reject_new'")
        if self.synchronous not in ("NORMAL", "FULL"):
            raise InvalidArgumentError("synchronous must be 'NORMAL' or 'FULL'")
        if self.commit_interval < 0 or self.pack_linger < 0:
            raise InvalidArgumentError("commit_interval and pack_linger must not be negative")


@dataclass(frozen=True)
class OutboxStats:
    """Counters of the outbox; records_dropped and the delivery counts survive restarts."""

    records_enqueued: int
    records_delivered: int
    messages_delivered: int
    records_dropped: int
    backlog_records: int
    backlog_bytes: int
    last_delivery: datetime | None


# The caller's mark of how far its records reach, stored in the commit that stores them: a number
# (the time of the newest change, say) or a text (a caller's own JSON, say).
type Watermark = float | str
