"""Asyncio client for the Spotflow IoT Platform's device protocol, with a durable outbox.

Covers the public API of the `spotflow-device` SDK over HTTPS and MQTT over TLS, using only
aiohttp, paho-mqtt, brotli and sqlite3, and never imports Home Assistant.
"""

from .client import DeviceClient
from .errors import (
    InvalidArgumentError,
    MessageDroppedError,
    OutboxCorruptError,
    OutboxFullError,
    OutboxStorageError,
    PayloadTooLargeError,
    ProvisioningOperationCancelledError,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    RegistrationTokenRevokedError,
    SpotflowCertificateError,
    SpotflowConnectionError,
    SpotflowError,
    WorkspaceDisabledError,
)
from .models import (
    DEFAULT_INSTANCE,
    MAX_PAYLOAD_BYTES,
    Compression,
    DesiredProperties,
    OutboxConfig,
    OutboxStats,
    ProvisioningOperation,
    Watermark,
)
from .sender import StreamSender

__all__ = [
    "DEFAULT_INSTANCE",
    "MAX_PAYLOAD_BYTES",
    "Compression",
    "DesiredProperties",
    "DeviceClient",
    "InvalidArgumentError",
    "MessageDroppedError",
    "OutboxConfig",
    "OutboxCorruptError",
    "OutboxFullError",
    "OutboxStats",
    "OutboxStorageError",
    "PayloadTooLargeError",
    "ProvisioningOperation",
    "ProvisioningOperationCancelledError",
    "ProvisioningOperationExpiredError",
    "ProvisioningTokenInvalidError",
    "RegistrationTokenRevokedError",
    "SpotflowCertificateError",
    "SpotflowConnectionError",
    "SpotflowError",
    "StreamSender",
    "Watermark",
    "WorkspaceDisabledError",
]
