"""What the platform hears about the mirror, as the device twin's reported properties.

A reported patch is a JSON merge patch: `null` deletes a key. So a value that does not exist yet
is left out rather than sent as `null`, and a value that exists is always sent.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import callback
from homeassistant.loader import async_get_integration

from custom_components.crownstone_spotflow.const import DOMAIN, LOGGER
from custom_components.crownstone_spotflow.spotflow import SpotflowError

if TYPE_CHECKING:
    from .supervisor import MirrorSupervisor


class ReportedProperties:
    """Keep the reported properties current, one patch at a time, never an unchanged one."""

    def __init__(self, supervisor: MirrorSupervisor) -> None:
        """Initialize."""
        self._supervisor = supervisor
        self._integration_version = ""
        self._reported: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False

    async def async_load_version(self) -> None:
        """Read the integration's version once."""
        integration = await async_get_integration(self._supervisor.hass, DOMAIN)
        self._integration_version = str(integration.version)

    def current(self) -> dict[str, Any]:
        """Return what the platform should know about this mirror now."""
        supervisor = self._supervisor
        assert supervisor.client is not None
        stats = supervisor.client.stats
        listener = supervisor.listener
        reported: dict[str, Any] = {
            "homeAssistantVersion": HA_VERSION,
            "integrationVersion": self._integration_version,
            "mirroredEntities": listener.mirrored_entities(),
            "backlogRecords": stats.backlog_records,
            "paused": listener.paused,
            "entityFilter": "platform" if listener.platform_filter is not None else "options",
            "epoch": listener.epoch,
        }
        if stats.last_delivery is not None:
            reported["lastDelivery"] = stats.last_delivery.isoformat()
        if supervisor.desired is not None:
            reported["desiredVersion"] = supervisor.desired.version
        return reported

    @callback
    def async_schedule(self) -> None:
        """Report soon; a report running now reports once more afterwards."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = self._supervisor.async_create_task(self._async_report(), "report")

    @callback
    def async_cancel(self) -> None:
        """Stop reporting (the client is going away)."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def _async_report(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            if (client := self._supervisor.client) is None:
                return
            reported = self.current()
            if reported == self._reported:
                continue
            try:
                await client.update_reported_properties(reported)
            except SpotflowError as err:
                LOGGER.warning("Could not store the reported properties: %s", err)
                return
            self._reported = reported
