"""Release 1.2 kept the mirror in a Crownstone account's options; it now has its own entry.

The first start of this release hands those settings to a new mirror entry (through the flow's
import step) with the same outbox file and registration, so the backlog is delivered and no new
approval is needed. The account's Spotflow device goes: the mirror entry brings its own.
"""

from __future__ import annotations

from typing import Any, Final

from homeassistant.config_entries import SOURCE_IMPORT, ConfigEntry, ConfigEntryState
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from custom_components.crownstone_spotflow.const import DOMAIN, LOGGER

from .entities import mirror_device_identifier
from .settings import MIRROR_UNIQUE_ID

# Where release 1.2 kept the mirror's settings in an account's options.
LEGACY_OPTIONS_KEY: Final = "spotflow"


@callback
def async_split_legacy_mirror(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Move the mirror settings out of an account's options into a mirror entry of their own."""
    legacy: dict[str, Any] | None = entry.options.get(LEGACY_OPTIONS_KEY)
    if legacy is None:
        return
    hass.config_entries.async_update_entry(
        entry, options={k: v for k, v in entry.options.items() if k != LEGACY_OPTIONS_KEY}
    )
    device_registry = dr.async_get(hass)
    identifier = mirror_device_identifier(entry.entry_id)
    for device in dr.async_entries_for_config_entry(device_registry, entry.entry_id):
        if identifier in device.identifiers:
            device_registry.async_remove_device(device.id)
    if legacy.get("outbox") is None:
        # Never provisioned: nothing to keep.
        return
    if hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, MIRROR_UNIQUE_ID):
        # Two accounts mirrored into two devices; one Home Assistant now has one mirror.
        LOGGER.warning(
            "Not taking over the Spotflow mirror of %s: another account's mirror was taken over "
            "(its outbox %s stays in .storage)",
            entry.title,
            legacy["outbox"],
        )
        return
    # Not awaited: the domain is being set up, and the new entry's setup waits for that.
    hass.async_create_background_task(
        _async_import(hass, legacy), f"{DOMAIN} mirror import from {entry.entry_id}"
    )


async def _async_import(hass: HomeAssistant, settings: dict[str, Any]) -> None:
    await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_IMPORT}, data=settings
    )
    mirror = hass.config_entries.async_entry_for_domain_unique_id(DOMAIN, MIRROR_UNIQUE_ID)
    # Added while the domain set its entries up, it may have been left out of that round.
    if mirror is not None and mirror.state is ConfigEntryState.NOT_LOADED:
        await hass.config_entries.async_setup(mirror.entry_id)
