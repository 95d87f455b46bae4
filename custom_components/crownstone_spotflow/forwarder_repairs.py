"""Repair issues of the Spotflow forwarder: raised only when the person must act."""

from __future__ import annotations

from enum import StrEnum

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN


class ForwarderIssue(StrEnum):
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
START_ISSUES: frozenset[ForwarderIssue] = frozenset(
    issue for issue in ForwarderIssue if issue is not ForwarderIssue.BACKLOG_DROPPING
)


def issue_id(entry_id: str, issue: ForwarderIssue) -> str:
    """Return the registry id of an issue of one config entry."""
    return f"{issue}_{entry_id}"


@callback
def async_raise_issue(
    hass: HomeAssistant,
    entry: ConfigEntry,
    issue: ForwarderIssue,
    **placeholders: str,
) -> None:
    """Create (or update) an issue of one config entry."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(entry.entry_id, issue),
        is_fixable=False,
        severity=(
            ir.IssueSeverity.WARNING
            if issue is ForwarderIssue.PROVISIONING_REQUIRED
            else ir.IssueSeverity.ERROR
        ),
        translation_key=str(issue),
        translation_placeholders={"title": entry.title, **placeholders},
    )


@callback
def async_clear_issues(
    hass: HomeAssistant, entry_id: str, issues: frozenset[ForwarderIssue] | None = None
) -> None:
    """Delete the given issues of one config entry (all of them by default)."""
    for issue in issues if issues is not None else ForwarderIssue:
        ir.async_delete_issue(hass, DOMAIN, issue_id(entry_id, issue))
