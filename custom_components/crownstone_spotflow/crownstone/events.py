"""Typed events of the Crownstone event stream, and the one parser that builds them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
import json
import logging

from .errors import CrownstoneInvalidResponseError
from .parsing import JsonObject, as_object, flag, integer, objects, switch_state, text

_LOGGER = logging.getLogger(__name__)


class PresenceSubType(StrEnum):
    """What a presence event reports."""

    ENTER_SPHERE = "enterSphere"
    EXIT_SPHERE = "exitSphere"
    ENTER_LOCATION = "enterLocation"
    EXIT_LOCATION = "exitLocation"


class DataChangeSubType(StrEnum):
    """Which kind of item a data change concerns."""

    STONES = "stones"
    LOCATIONS = "locations"
    SPHERES = "spheres"
    USERS = "users"


class DataChangeOperation(StrEnum):
    """What happened to the changed item."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class SystemEventType(StrEnum):
    """The system events the stream server sends; others may appear and are kept as text."""

    STREAM_START = "STREAM_START"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    INVALID_ACCESS_TOKEN = "INVALID_ACCESS_TOKEN"
    NO_ACCESS_TOKEN = "NO_ACCESS_TOKEN"
    NO_CONNECTION = "NO_CONNECTION"
    STREAM_CLOSED = "STREAM_CLOSED"


@dataclass(frozen=True, slots=True)
class SwitchStateUpdateEvent:
    """A Crownstone reported a new switch state (0..100 %)."""

    sphere_id: str
    crownstone_id: str
    crownstone_uid: int
    percentage: int


@dataclass(frozen=True, slots=True)
class SwitchDataItem:
    """One Crownstone's part of a multiSwitch command."""

    crownstone_id: str
    crownstone_uid: int
    type: str
    percentage: int | None


@dataclass(frozen=True, slots=True)
class MultiSwitchCommandEvent:
    """The cloud asked phones and hubs to switch Crownstones; the new state follows later."""

    sphere_id: str
    switch_data: tuple[SwitchDataItem, ...]


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A user entered or left a sphere or a location (room)."""

    sub_type: PresenceSubType
    sphere_id: str
    user_id: str
    user_name: str
    location_id: str | None


@dataclass(frozen=True, slots=True)
class DataChangeEvent:
    """A stone, location, sphere or user was created, updated or deleted."""

    sub_type: DataChangeSubType
    operation: DataChangeOperation
    sphere_id: str
    item_id: str
    item_name: str


@dataclass(frozen=True, slots=True)
class AbilityChangeEvent:
    """An ability (dimming, switchcraft, tapToToggle) of a Crownstone changed."""

    sphere_id: str
    crownstone_id: str
    ability_type: str
    enabled: bool
    synced_to_crownstone: bool


@dataclass(frozen=True, slots=True)
class SphereTokensChangedEvent:
    """The authorization tokens of a sphere changed (the tokens themselves are not sent)."""

    sphere_id: str
    operation: str


@dataclass(frozen=True, slots=True)
class InvitationChangeEvent:
    """Someone was invited to a sphere, or an invitation was revoked."""

    sphere_id: str
    operation: str
    email: str


@dataclass(frozen=True, slots=True)
class SystemEvent:
    """A message about the stream itself: start, token trouble, server trouble."""

    sub_type: str
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class PingEvent:
    """The server's keep-alive."""

    counter: int


type Event = (
    SwitchStateUpdateEvent
    | MultiSwitchCommandEvent
    | PresenceEvent
    | DataChangeEvent
    | AbilityChangeEvent
    | SphereTokensChangedEvent
    | InvitationChangeEvent
    | SystemEvent
    | PingEvent
)


def parse_event(data: str) -> Event | None:
    """Build the event one SSE `data` payload describes.

    Never raises: malformed JSON, unknown types and missing fields give None (logged at debug
    level without the payload, which is not ours to log).
    """
    try:
        raw = json.loads(data)
    except ValueError:
        _LOGGER.debug("Skipping event stream data that is not JSON (%d characters)", len(data))
        return None
    if not isinstance(raw, dict):
        _LOGGER.debug("Skipping event stream data that is not a JSON object")
        return None
    event_type = raw.get("type")
    parser = _PARSERS.get(event_type) if isinstance(event_type, str) else None
    if parser is None:
        _LOGGER.debug("Skipping event of unknown type %.40r", event_type)
        return None
    try:
        return parser(raw)
    # ValueError: a sub type or operation none of the enums knows.
    except (CrownstoneInvalidResponseError, ValueError) as err:
        _LOGGER.debug("Skipping malformed %s event: %s", event_type, err)
        return None


def _sphere_id(raw: JsonObject) -> str:
    return text(as_object(raw.get("sphere"), "event.sphere"), "id", "event.sphere")


def _switch_state_update(raw: JsonObject) -> SwitchStateUpdateEvent:
    crownstone = as_object(raw.get("crownstone"), "event.crownstone")
    percentage = switch_state(
        crownstone.get("percentage", crownstone.get("switchState")), "event.crownstone.percentage"
    )
    if percentage is None:
        raise CrownstoneInvalidResponseError("Expected event.crownstone.percentage")
    return SwitchStateUpdateEvent(
        sphere_id=_sphere_id(raw),
        crownstone_id=text(crownstone, "id", "event.crownstone"),
        crownstone_uid=integer(crownstone, "uid", "event.crownstone"),
        percentage=percentage,
    )


def _switch_command(raw: JsonObject) -> SwitchDataItem:
    return SwitchDataItem(
        crownstone_id=text(raw, "id", "switchData"),
        crownstone_uid=integer(raw, "uid", "switchData"),
        type=text(raw, "type", "switchData"),
        percentage=switch_state(raw.get("percentage"), "switchData.percentage"),
    )


def _command(raw: JsonObject) -> MultiSwitchCommandEvent:
    if raw.get("subType") != "multiSwitch":
        raise CrownstoneInvalidResponseError(f"Unknown command {raw.get('subType')!r:.40}")
    return MultiSwitchCommandEvent(
        sphere_id=_sphere_id(raw),
        switch_data=tuple(
            _switch_command(item) for item in objects(raw.get("switchData"), "switchData")
        ),
    )


def _presence(raw: JsonObject) -> PresenceEvent:
    sub_type = PresenceSubType(text(raw, "subType", "event"))
    user = as_object(raw.get("user"), "event.user")
    in_location = sub_type in (PresenceSubType.ENTER_LOCATION, PresenceSubType.EXIT_LOCATION)
    return PresenceEvent(
        sub_type=sub_type,
        sphere_id=_sphere_id(raw),
        user_id=text(user, "id", "event.user"),
        user_name=text(user, "name", "event.user"),
        location_id=(
            text(as_object(raw.get("location"), "event.location"), "id", "event.location")
            if in_location
            else None
        ),
    )


def _data_change(raw: JsonObject) -> DataChangeEvent:
    changed_item = as_object(raw.get("changedItem"), "event.changedItem")
    return DataChangeEvent(
        sub_type=DataChangeSubType(text(raw, "subType", "event")),
        operation=DataChangeOperation(text(raw, "operation", "event")),
        sphere_id=_sphere_id(raw),
        item_id=text(changed_item, "id", "event.changedItem"),
        item_name=text(changed_item, "name", "event.changedItem"),
    )


def _ability_change(raw: JsonObject) -> AbilityChangeEvent:
    ability = as_object(raw.get("ability"), "event.ability")
    return AbilityChangeEvent(
        sphere_id=_sphere_id(raw),
        crownstone_id=text(as_object(raw.get("stone"), "event.stone"), "id", "event.stone"),
        ability_type=text(ability, "type", "event.ability"),
        enabled=flag(ability, "enabled", "event.ability"),
        synced_to_crownstone=flag(ability, "syncedToCrownstone", "event.ability"),
    )


def _sphere_tokens_changed(raw: JsonObject) -> SphereTokensChangedEvent:
    return SphereTokensChangedEvent(
        sphere_id=_sphere_id(raw), operation=text(raw, "operation", "event")
    )


def _invitation_change(raw: JsonObject) -> InvitationChangeEvent:
    return InvitationChangeEvent(
        sphere_id=_sphere_id(raw),
        operation=text(raw, "operation", "event"),
        email=text(raw, "email", "event"),
    )


def _system(raw: JsonObject) -> SystemEvent:
    # Lenient on purpose: a TOKEN_EXPIRED without its code must still trigger a new login.
    code = raw.get("code")
    message = raw.get("message")
    return SystemEvent(
        sub_type=text(raw, "subType", "event"),
        code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
        message=message if isinstance(message, str) else "",
    )


def _ping(raw: JsonObject) -> PingEvent:
    return PingEvent(counter=integer(raw, "counter", "event"))


_PARSERS: dict[str, Callable[[JsonObject], Event]] = {
    "switchStateUpdate": _switch_state_update,
    "command": _command,
    "presence": _presence,
    "dataChange": _data_change,
    "abilityChange": _ability_change,
    "sphereTokensChanged": _sphere_tokens_changed,
    "invitationChange": _invitation_change,
    "system": _system,
    "ping": _ping,
}
