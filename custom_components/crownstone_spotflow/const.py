"""Constants for the Crownstone + Spotflow integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "crownstone_spotflow"
LOGGER = logging.getLogger(__package__)
