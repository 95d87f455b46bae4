"""Constants of the Crownstone cloud protocol."""

from __future__ import annotations

from typing import Final

DEFAULT_BASE_URL: Final = "https://cloud.ownstone.org/api"
DEFAULT_SSE_URL: Final = "https://events.ownstone.org/sse"

DIMMING_ABILITY: Final = "dimming"

# Only these stone types carry a relay or dimmer; dongles, guidestones and hubs do not.
SWITCHING_STONE_TYPES: Final = frozenset({"PLUG", "BUILTIN", "BUILTIN_ONE"})

# The server rejects 0 < p < 10 ("Dimming below 10% is not allowed.").
MIN_BRIGHTNESS: Final = 10

# One request returns spheres with their stones (state and abilities) and rooms. The object form
# of "abilities" matters: the plain string makes the server check the app version and may strip
# the abilities to an empty list.
SPHERES_INCLUDE_FILTER: Final = {
    "include": [
        {"ownedStones": ["currentSwitchState", {"abilities": "properties"}]},
        "ownedLocations",
    ]
}
STONES_INCLUDE_FILTER: Final = {"include": ["currentSwitchState", {"abilities": "properties"}]}

# Codes of a 401 that mean "this token is no longer valid": log in again and retry once.
TOKEN_REJECTED_CODES: Final = frozenset({"INVALID_TOKEN", "AUTHORIZATION_REQUIRED"})
