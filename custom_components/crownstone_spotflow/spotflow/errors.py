"""Errors raised by the Spotflow device library.

Messages never carry tokens, SAS signatures or connection strings: they are safe to log and to
show in a user interface.
"""

from __future__ import annotations


class SpotflowError(Exception):
    """Base class of every error this library raises."""


class InvalidArgumentError(SpotflowError, ValueError):
    """An argument (device ID, database path, stream name, option) is not acceptable."""


class SpotflowConnectionError(SpotflowError):
    """The platform could not be reached, or the connection dropped."""


class SpotflowCertificateError(SpotflowConnectionError):
    """The platform's TLS certificate is not trusted (its CA is missing, or it is wrong).

    A connection error (the client keeps retrying a running device), but one that a person
    must fix: provisioning does not wait for it.
    """


class ProvisioningTokenInvalidError(SpotflowError):
    """The platform rejected the provisioning token."""


class WorkspaceDisabledError(SpotflowError):
    """The workspace is disabled; nothing can be provisioned or sent until it is enabled."""


class ProvisioningOperationCancelledError(SpotflowError):
    """Someone cancelled the provisioning operation instead of approving it."""


class ProvisioningOperationExpiredError(SpotflowError):
    """The provisioning operation expired before anyone approved it."""


class RegistrationTokenRevokedError(SpotflowError):
    """The registration token is revoked or expired; the device must be provisioned again."""


class PayloadTooLargeError(SpotflowError, ValueError):
    """A payload or record exceeds the platform's MQTT limit of 250,000 bytes."""


class OutboxFullError(SpotflowError):
    """The outbox is at its bound and its policy is to reject new records."""


class MessageDroppedError(SpotflowError):
    """A message was dropped from the full outbox (drop_oldest) before it was acknowledged."""


class OutboxStorageError(SpotflowError):
    """The outbox database could not be written (full disk, I/O error, read-only file)."""


class OutboxCorruptError(SpotflowError):
    """The outbox database is corrupt; the file was set aside and a new one starts empty."""
