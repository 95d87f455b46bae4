"""Repair issues of the mirror: raised only when the person must act."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.spotflow import (
    OutboxCorruptError,
    OutboxStorageError,
    ProvisioningOperationCancelledError,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    RegistrationTokenRevokedError,
    SpotflowError,
    WorkspaceDisabledError,
)


class MirrorIssue(StrEnum):
    """What went wrong; each value is the issue's translation key."""

    PROVISIONING_REQUIRED = "spotflow_provisioning_required"
    PROVISIONING_CANCELLED = "spotflow_provisioning_cancelled"
    PROVISIONING_EXPIRED = "spotflow_provisioning_expired"
    PROVISIONING_TOKEN_INVALID = "spotflow_provisioning_token_invalid"
    REGISTRATION_REVOKED = "spotflow_registration_revoked"
    WORKSPACE_DISABLED = "spotflow_workspace_disabled"
    OUTBOX_UNUSABLE = "spotflow_outbox_unusable"
    BACKLOG_DROPPING = "spotflow_backlog_dropping"


# Issues the person resolves by provisioning again: a successful start clears them all.
START_ISSUES: Final = frozenset(
    issue for issue in MirrorIssue if issue is not MirrorIssue.BACKLOG_DROPPING
)
# Issues that a working connection to the platform resolves.
CONNECTION_ISSUES: Final = START_ISSUES - {MirrorIssue.OUTBOX_UNUSABLE}
# Issues about delivery mean nothing while the mirror does not run.
RUNNING_ISSUES: Final = frozenset({MirrorIssue.PROVISIONING_REQUIRED, MirrorIssue.BACKLOG_DROPPING})

# Start failures the person must resolve, as the issue that tells them how.
_START_FAILURES: Final[tuple[tuple[type[SpotflowError], MirrorIssue], ...]] = (
    (ProvisioningTokenInvalidError, MirrorIssue.PROVISIONING_TOKEN_INVALID),
    (ProvisioningOperationCancelledError, MirrorIssue.PROVISIONING_CANCELLED),
    (ProvisioningOperationExpiredError, MirrorIssue.PROVISIONING_EXPIRED),
    (RegistrationTokenRevokedError, MirrorIssue.REGISTRATION_REVOKED),
    (WorkspaceDisabledError, MirrorIssue.WORKSPACE_DISABLED),
    (OutboxStorageError, MirrorIssue.OUTBOX_UNUSABLE),
    (OutboxCorruptError, MirrorIssue.OUTBOX_UNUSABLE),
)


def start_failure_issue(error: SpotflowError | None) -> MirrorIssue | None:
    """Return the issue that tells the person how to resolve a failure, if they can."""
    for error_type, issue in _START_FAILURES:
        if isinstance(error, error_type):
            return issue
    return None


def issue_id(entry_id: str, issue: MirrorIssue) -> str:
    """Return the registry id of an issue of the mirror entry."""
    return f"{issue}_{entry_id}"


@callback
def async_raise_issue(
    hass: HomeAssistant, entry_id: str, title: str, issue: MirrorIssue, **placeholders: str
) -> None:
    """Create (or update) an issue of the mirror entry."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(entry_id, issue),
        is_fixable=False,
        severity=(
            ir.IssueSeverity.WARNING
            if issue is MirrorIssue.PROVISIONING_REQUIRED
            else ir.IssueSeverity.ERROR
        ),
        translation_key=str(issue),
        translation_placeholders={"title": title, **placeholders},
    )


@callback
def async_clear_issues(
    hass: HomeAssistant, entry_id: str, issues: frozenset[MirrorIssue] | None = None
) -> None:
    """Delete the given issues of the mirror entry (all of them by default)."""
    for issue in issues if issues is not None else MirrorIssue:
        ir.async_delete_issue(hass, DOMAIN, issue_id(entry_id, issue))
