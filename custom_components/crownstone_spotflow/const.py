"""Constants for the Crownstone + Spotflow integration."""

from __future__ import annotations

from datetime import timedelta
import logging
from typing import Final

DOMAIN: Final = "crownstone_spotflow"
LOGGER = logging.getLogger(__package__)

MANUFACTURER: Final = "Crownstone"

# The cloud takes the sha1 of the password at login; the clear password is never stored.
CONF_PASSWORD_SHA1: Final = "password_sha1"
CONF_CLOUD_URL: Final = "cloud_url"
CONF_SSE_URL: Final = "sse_url"
SECTION_ADVANCED: Final = "advanced"

# While the event stream is up it carries every change, and polling only catches what it
# cannot: presence the server drops silently after 20 minutes, spheres created after the
# stream opened. While it is down, polling takes over.
SCAN_INTERVAL: Final = timedelta(minutes=15)
SCAN_INTERVAL_WITHOUT_STREAM: Final = timedelta(minutes=1)

# A switch command only reaches the stone through a phone or hub in range, so the cloud
# reports the new state seconds later. Until then (or until this window closes) entities
# show what was asked for rather than the stale state a poll returns.
OPTIMISTIC_WINDOW: Final = timedelta(seconds=30)

STONE_MODELS: Final = {
    "PLUG": "Crownstone Plug",
    "BUILTIN": "Crownstone Built-in",
    "BUILTIN_ONE": "Crownstone Built-in One",
}
