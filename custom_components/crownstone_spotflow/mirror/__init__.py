"""Mirror Home Assistant's entity states into a Spotflow stream: its own kind of config entry.

The mirror shares no lifecycle with any Crownstone account: it starts as early as Home Assistant
sets it up, and an account's outage, refused password, reload or removal never pauses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .entities import mirror_device_identifier
from .repairs import RUNNING_ISSUES, async_clear_issues
from .settings import MirrorSettings, is_mirror_entry, outbox_path, remove_outbox_files
from .supervisor import MirrorSupervisor

MIRROR_PLATFORMS = [Platform.BINARY_SENSOR, Platform.SENSOR]


@dataclass(kw_only=True)
class MirrorRuntimeData:
    """Everything a loaded mirror entry runs; no supervisor while mirroring is off."""

    supervisor: MirrorSupervisor | None


type MirrorConfigEntry = ConfigEntry[MirrorRuntimeData]

__all__ = [
    "MirrorConfigEntry",
    "MirrorRuntimeData",
    "async_remove_mirror_entry",
    "async_setup_mirror_entry",
    "async_unload_mirror_entry",
    "is_mirror_entry",
]


async def async_setup_mirror_entry(hass: HomeAssistant, entry: MirrorConfigEntry) -> bool:
    """Start mirroring, when the options turn it on."""
    settings = MirrorSettings.from_entry(entry)
    supervisor: MirrorSupervisor | None = None
    if settings.enabled and settings.outbox is not None:
        supervisor = MirrorSupervisor(
            hass, entry.entry_id, entry.title, settings, created=entry.created_at.timestamp()
        )
    else:
        async_clear_issues(hass, entry.entry_id)
        _async_remove_device(hass, entry)
    entry.runtime_data = MirrorRuntimeData(supervisor=supervisor)
    if supervisor is not None:
        # Before the platforms: no state change may wait for them.
        await supervisor.async_start()
    try:
        await hass.config_entries.async_forward_entry_setups(entry, MIRROR_PLATFORMS)
    except BaseException:
        # A failed setup is not unloaded: the supervisor must not outlive it (and a retry would
        # open its outbox a second time).
        if supervisor is not None:
            await supervisor.async_stop()
        raise
    return True


async def async_unload_mirror_entry(hass: HomeAssistant, entry: MirrorConfigEntry) -> bool:
    """Stop mirroring; the outbox stays for the next start."""
    if unload_ok := await hass.config_entries.async_unload_platforms(entry, MIRROR_PLATFORMS):
        if (supervisor := entry.runtime_data.supervisor) is not None:
            await supervisor.async_stop()
        async_clear_issues(hass, entry.entry_id, RUNNING_ISSUES)
    return unload_ok


async def async_remove_mirror_entry(hass: HomeAssistant, entry: MirrorConfigEntry) -> None:
    """Delete the outbox with the entry: nothing of it is useful any more."""
    settings = MirrorSettings.from_entry(entry)
    storage = Path(outbox_path(hass, "x").parent)

    def remove_files() -> None:
        if settings.outbox is not None:
            # A migrated outbox is named after the Crownstone entry it came from.
            remove_outbox_files(storage / settings.outbox)
        # Outboxes of earlier provisionings, with their side files and corrupt copies.
        for path in storage.glob(f"*.{entry.entry_id}.*"):
            path.unlink(missing_ok=True)

    await hass.async_add_executor_job(remove_files)
    async_clear_issues(hass, entry.entry_id)


@callback
def _async_remove_device(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Remove the Spotflow device (and its entities) while mirroring is off."""
    device_registry = dr.async_get(hass)
    identifier = mirror_device_identifier(entry.entry_id)
    for device in dr.async_entries_for_config_entry(device_registry, entry.entry_id):
        if identifier in device.identifiers:
            device_registry.async_remove_device(device.id)
