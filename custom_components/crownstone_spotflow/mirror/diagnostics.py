"""Diagnostics of the mirror entry: its settings (no token) and how the mirror runs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Final

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from . import MirrorConfigEntry
from .settings import MirrorSettings
from .supervisor import MirrorSupervisor

TO_REDACT: Final = {"provisioning_token"}


async def async_get_mirror_diagnostics(
    hass: HomeAssistant, entry: MirrorConfigEntry
) -> dict[str, Any]:
    """Return the mirror's settings and state, redacted."""
    supervisor = entry.runtime_data.supervisor
    return {
        "settings": async_redact_data(MirrorSettings.from_entry(entry).as_options(), TO_REDACT),
        "mirror": _running(supervisor) if supervisor else None,
    }


def _running(supervisor: MirrorSupervisor) -> dict[str, Any]:
    client = supervisor.client
    listener = supervisor.listener
    return {
        "running": client is not None,
        "device_id": client.device_id if client else None,
        "workspace_id": client.workspace_id if client else None,
        "connected": client.connected if client else False,
        "epoch": listener.epoch,
        "paused": listener.paused,
        # How the window before this start was covered: "no_recorder" means it was not.
        "catch_up": listener.catch_up.value,
        "desired": asdict(supervisor.desired) if supervisor.desired else None,
        "platform_filter": listener.platform_filter.config if listener.platform_filter else None,
        "stats": asdict(client.stats) if client else None,
        "pending_reported_properties": (
            client.any_pending_reported_properties_updates if client else False
        ),
    }
