"""Diagnostics for the Crownstone + Spotflow integration."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_EMAIL
from homeassistant.core import HomeAssistant

from .const import CONF_PASSWORD_SHA1
from .crownstone import Crownstone, Location, Sphere, User
from .mirror import is_mirror_entry
from .mirror.diagnostics import async_get_mirror_diagnostics

TO_REDACT = {
    CONF_EMAIL,
    CONF_PASSWORD_SHA1,
    "first_name",
    "last_name",
    "mac_address",
}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: ConfigEntry
) -> dict[str, Any]:
    """Return diagnostics for a config entry of either kind."""
    if is_mirror_entry(entry):
        return await async_get_mirror_diagnostics(hass, entry)
    coordinator = entry.runtime_data
    return async_redact_data(
        {
            "entry": {"data": dict(entry.data), "options": dict(entry.options)},
            "last_update_success": coordinator.last_update_success,
            # Seconds; longer while the event stream is up.
            "update_interval": (
                coordinator.update_interval.total_seconds() if coordinator.update_interval else None
            ),
            "stream": {
                "connected": coordinator.stream.connected,
                "reconnect_count": coordinator.stream.reconnect_count,
                "last_event_time": (
                    coordinator.stream.last_event_time.isoformat()
                    if coordinator.stream.last_event_time
                    else None
                ),
            },
            "spheres": [_sphere(sphere) for sphere in coordinator.data],
        },
        TO_REDACT,
    )


def _sphere(sphere: Sphere) -> dict[str, Any]:
    return {
        "cloud_id": sphere.cloud_id,
        "name": sphere.name,
        "present_people": sphere.present_people,
        "crownstones": [_crownstone(stone) for stone in sphere.crownstones],
        "locations": [_location(location) for location in sphere.locations],
        "users": [_user(user) for user in sphere.users],
    }


def _crownstone(stone: Crownstone) -> dict[str, Any]:
    return {
        "cloud_id": stone.cloud_id,
        "unique_id": stone.unique_id,
        "name": stone.name,
        "type": stone.type,
        "sw_version": stone.sw_version,
        "hardware_version": stone.hardware_version,
        "mac_address": stone.mac_address,
        "location_id": stone.location_id,
        "switches_power": stone.switches_power,
        "dimming_enabled": stone.dimming_enabled,
        "state": stone.state,
        "state_known": stone.state_known,
    }


def _location(location: Location) -> dict[str, Any]:
    return {
        "cloud_id": location.cloud_id,
        "name": location.name,
        "present_people": location.present_people,
    }


def _user(user: User) -> dict[str, Any]:
    return {
        "cloud_id": user.cloud_id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "role": user.role,
        "email_verified": user.email_verified,
    }
