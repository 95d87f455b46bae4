"""The Crownstone + Spotflow integration: two kinds of config entries that share no lifecycle.

A Crownstone account (any number) and the mirror to Spotflow (one); each call dispatches by the
entry's kind, and neither side imports the other.
"""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_PASSWORD, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .const import CONF_PASSWORD_SHA1, DOMAIN, LOGGER
from .coordinator import CrownstoneConfigEntry, CrownstoneDataUpdateCoordinator
from .crownstone import hash_password
from .mirror import (
    async_remove_mirror_entry,
    async_setup_mirror_entry,
    async_unload_mirror_entry,
    is_mirror_entry,
)
from .mirror.migration import async_split_legacy_mirror

PLATFORMS = [Platform.BINARY_SENSOR, Platform.LIGHT, Platform.SENSOR, Platform.SWITCH]


async def async_setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Set up a config entry of either kind."""
    if is_mirror_entry(entry):
        return await async_setup_mirror_entry(hass, entry)
    return await _async_setup_account(hass, entry)


async def _async_setup_account(hass: HomeAssistant, entry: CrownstoneConfigEntry) -> bool:
    """Set up a Crownstone account from a config entry."""
    coordinator = CrownstoneDataUpdateCoordinator(hass, entry)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = coordinator

    @callback
    def _async_update_devices() -> None:
        # An unreachable cloud says nothing about what exists.
        if not coordinator.last_update_success:
            return
        device_registry = dr.async_get(hass)
        names = coordinator.cloud_names()
        for device in dr.async_entries_for_config_entry(device_registry, entry.entry_id):
            if device.entry_type is dr.DeviceEntryType.SERVICE:
                continue
            current = [
                names[cloud_id]
                for cloud_id in _device_cloud_ids(device, coordinator.account_id)
                if cloud_id in names
            ]
            if not current:
                _async_let_go(device_registry, device, entry.entry_id)
            elif device.name != current[0]:
                # Renamed in the Crownstone app; a name given in Home Assistant still wins.
                device_registry.async_update_device(device.id, name=current[0])

    _async_update_devices()
    entry.async_on_unload(coordinator.async_add_listener(_async_update_devices))

    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    await coordinator.async_start_push()
    return True


async def async_migrate_entry(hass: HomeAssistant, entry: CrownstoneConfigEntry) -> bool:
    """Bring an account's entry of an earlier release up to date.

    1.1 kept the clear password (now its sha1); 1.2 kept the mirror in the account's options
    (now an entry of its own). Mirror entries were born at 1.3.
    """
    if entry.version > 1:
        # Made by a newer release: its data may mean something this one does not know.
        return False
    if entry.minor_version < 2:
        data = {key: value for key, value in entry.data.items() if key != CONF_PASSWORD}
        data[CONF_PASSWORD_SHA1] = hash_password(entry.data[CONF_PASSWORD])
        hass.config_entries.async_update_entry(entry, data=data, minor_version=2)
        LOGGER.debug("Migrated %s to version 1.2: only the password's hash is kept", entry.title)
    if entry.minor_version < 3:
        async_split_legacy_mirror(hass, entry)
        hass.config_entries.async_update_entry(entry, minor_version=3)
        LOGGER.debug("Migrated %s to version 1.3: the mirror has an entry of its own", entry.title)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
    """Unload a config entry of either kind."""
    if is_mirror_entry(entry):
        return await async_unload_mirror_entry(hass, entry)
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: ConfigEntry) -> None:
    """Delete the mirror's outbox with its entry: nothing of it is useful any more."""
    if is_mirror_entry(entry):
        await async_remove_mirror_entry(hass, entry)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: ConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Allow removing a device by hand once the cloud no longer has it."""
    if is_mirror_entry(entry):
        # The mirror's one device goes when mirroring is turned off.
        return False
    coordinator = entry.runtime_data
    return device.entry_type is not dr.DeviceEntryType.SERVICE and not (
        _device_cloud_ids(device, coordinator.account_id) & coordinator.cloud_names().keys()
    )


@callback
def _async_let_go(
    device_registry: dr.DeviceRegistry, device: dr.DeviceEntry, entry_id: str
) -> None:
    """Remove the entry from a device the account no longer sees."""
    # From Home Assistant 2026.8 a device belongs to one config entry (`config_entry_id`).
    # Before, accounts sharing a sphere share its devices: only let go of one still shared.
    if getattr(device, "config_entry_id", None) is not None or device.config_entries == {entry_id}:
        device_registry.async_remove_device(device.id)
    else:
        device_registry.async_update_device(device.id, remove_config_entry_id=entry_id)


def _device_cloud_ids(device: dr.DeviceEntry, account_id: str) -> set[str]:
    """Return the cloud ids of the objects a device of this account stands for."""
    prefix = f"{account_id}_"
    return {
        identifier.removeprefix(prefix)
        for domain, identifier in device.identifiers
        if domain == DOMAIN and identifier.startswith(prefix)
    }
