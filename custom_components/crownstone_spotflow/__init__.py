"""The Crownstone + Spotflow integration."""

from __future__ import annotations

from homeassistant.const import CONF_PASSWORD, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import device_registry as dr

from .const import CONF_PASSWORD_SHA1, DOMAIN, LOGGER
from .coordinator import CrownstoneConfigEntry, CrownstoneDataUpdateCoordinator
from .crownstone import hash_password
from .forwarder import async_remove_forwarder, async_setup_forwarder, async_unload_forwarder

PLATFORMS = [Platform.BINARY_SENSOR, Platform.LIGHT, Platform.SENSOR, Platform.SWITCH]


async def async_setup_entry(hass: HomeAssistant, entry: CrownstoneConfigEntry) -> bool:
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

    await async_setup_forwarder(hass, entry)
    try:
        await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
        await coordinator.async_start_push()
    except BaseException:
        # A failed setup is not unloaded: the forwarder must not outlive it (and a retry would
        # open its outbox a second time).
        await async_unload_forwarder(hass, entry)
        raise
    return True


async def async_migrate_entry(hass: HomeAssistant, entry: CrownstoneConfigEntry) -> bool:
    """Replace the clear password that entries of version 1.1 kept with its sha1."""
    if entry.version > 1:
        # Made by a newer release: its data may mean something this one does not know.
        return False
    if entry.minor_version < 2:
        data = {key: value for key, value in entry.data.items() if key != CONF_PASSWORD}
        data[CONF_PASSWORD_SHA1] = hash_password(entry.data[CONF_PASSWORD])
        hass.config_entries.async_update_entry(entry, data=data, minor_version=2)
        LOGGER.debug("Migrated %s to version 1.2: only the password's hash is kept", entry.title)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: CrownstoneConfigEntry) -> bool:
    """Unload a config entry."""
    if unload_ok := await hass.config_entries.async_unload_platforms(entry, PLATFORMS):
        await async_unload_forwarder(hass, entry)
    return unload_ok


async def async_remove_entry(hass: HomeAssistant, entry: CrownstoneConfigEntry) -> None:
    """Delete the Spotflow outbox file with the entry: nothing of it is useful any more."""
    await async_remove_forwarder(hass, entry)


async def async_remove_config_entry_device(
    hass: HomeAssistant, entry: CrownstoneConfigEntry, device: dr.DeviceEntry
) -> bool:
    """Allow removing a device by hand once the cloud no longer has it."""
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
