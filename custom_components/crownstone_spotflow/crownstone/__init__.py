"""Asynchronous client of the Crownstone cloud (REST and event stream); no Home Assistant inside."""

from .changes import Changes, Snapshot, SpherePerson, StalePart, apply_event, stale_part
from .client import hash_password
from .cloud import CrownstoneCloud
from .const import DEFAULT_BASE_URL, DEFAULT_SSE_URL, MIN_BRIGHTNESS
from .crownstones import Crownstone, CrownstoneAbility, Crownstones, SwitchCommand
from .errors import (
    CrownstoneAbilityError,
    CrownstoneAuthenticationError,
    CrownstoneBrightnessError,
    CrownstoneConnectionError,
    CrownstoneCredentialsError,
    CrownstoneEmailNotVerifiedError,
    CrownstoneError,
    CrownstoneInvalidResponseError,
    CrownstoneNotFoundError,
    CrownstoneServerError,
    CrownstoneUnknownError,
)
from .events import (
    AbilityChangeEvent,
    DataChangeEvent,
    DataChangeOperation,
    DataChangeSubType,
    Event,
    InvitationChangeEvent,
    MultiSwitchCommandEvent,
    PingEvent,
    PresenceEvent,
    PresenceSubType,
    SphereTokensChangedEvent,
    SwitchDataItem,
    SwitchStateUpdateEvent,
    SystemEvent,
    SystemEventType,
    parse_event,
)
from .keys import SphereKeys
from .locations import Location, Locations
from .spheres import Sphere, Spheres
from .stream import CrownstoneEventStream
from .users import User, Users

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_SSE_URL",
    "MIN_BRIGHTNESS",
    "AbilityChangeEvent",
    "Changes",
    "Crownstone",
    "CrownstoneAbility",
    "CrownstoneAbilityError",
    "CrownstoneAuthenticationError",
    "CrownstoneBrightnessError",
    "CrownstoneCloud",
    "CrownstoneConnectionError",
    "CrownstoneCredentialsError",
    "CrownstoneEmailNotVerifiedError",
    "CrownstoneError",
    "CrownstoneEventStream",
    "CrownstoneInvalidResponseError",
    "CrownstoneNotFoundError",
    "CrownstoneServerError",
    "CrownstoneUnknownError",
    "Crownstones",
    "DataChangeEvent",
    "DataChangeOperation",
    "DataChangeSubType",
    "Event",
    "InvitationChangeEvent",
    "Location",
    "Locations",
    "MultiSwitchCommandEvent",
    "PingEvent",
    "PresenceEvent",
    "PresenceSubType",
    "Snapshot",
    "Sphere",
    "SphereKeys",
    "SpherePerson",
    "SphereTokensChangedEvent",
    "Spheres",
    "StalePart",
    "SwitchCommand",
    "SwitchDataItem",
    "SwitchStateUpdateEvent",
    "SystemEvent",
    "SystemEventType",
    "User",
    "Users",
    "apply_event",
    "hash_password",
    "parse_event",
    "stale_part",
]
