"""Typed events of the Crownstone event stream, and the one parser that builds them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
import json
import logging
from typing import Any

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


class _MalformedEventError(Exception):
    """An event lacks a field or holds one of the wrong type."""


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
    except (_MalformedEventError, ValueError) as err:
        _LOGGER.debug("Skipping malformed %s event: %s", event_type, err)
        return None


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise _MalformedEventError(f"{key} is not an object")
    return value


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise _MalformedEventError(f"{key} is not a string")
    return value


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    # bool is an int in Python, but never a valid counter or uid on the wire.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _MalformedEventError(f"{key} is not an integer")
    return value


def _bool(raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key)
    if not isinstance(value, bool):
        raise _MalformedEventError(f"{key} is not a boolean")
    return value


def _percentage(value: Any) -> int:
    """Return a switch state as 0..100; legacy records hold fractions 0 < x <= 1."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
        raise _MalformedEventError("percentage is not a number in 0..100")
    if 0 < value <= 1:
        value *= 100
    return round(value)


def _sphere_id(raw: dict[str, Any]) -> str:
    return _str(_object(raw, "sphere"), "id")


def _switch_state_update(raw: dict[str, Any]) -> SwitchStateUpdateEvent:
    crownstone = _object(raw, "crownstone")
    percentage = crownstone.get("percentage", crownstone.get("switchState"))
    return SwitchStateUpdateEvent(
        sphere_id=_sphere_id(raw),
        crownstone_id=_str(crownstone, "id"),
        crownstone_uid=_int(crownstone, "uid"),
        percentage=_percentage(percentage),
    )


def _switch_command(raw: Any) -> SwitchDataItem:
    if not isinstance(raw, dict):
        raise _MalformedEventError("switchData entry is not an object")
    percentage = raw.get("percentage")
    return SwitchDataItem(
        crownstone_id=_str(raw, "id"),
        crownstone_uid=_int(raw, "uid"),
        type=_str(raw, "type"),
        percentage=None if percentage is None else _percentage(percentage),
    )


def _command(raw: dict[str, Any]) -> MultiSwitchCommandEvent:
    if raw.get("subType") != "multiSwitch":
        raise _MalformedEventError(f"unknown command {raw.get('subType')!r:.40}")
    switch_data = raw.get("switchData")
    if not isinstance(switch_data, list):
        raise _MalformedEventError("switchData is not a list")
    return MultiSwitchCommandEvent(
        sphere_id=_sphere_id(raw),
        switch_data=tuple(_switch_command(item) for item in switch_data),
    )


def _presence(raw: dict[str, Any]) -> PresenceEvent:
    sub_type = PresenceSubType(_str(raw, "subType"))
    user = _object(raw, "user")
    in_location = sub_type in (PresenceSubType.ENTER_LOCATION, PresenceSubType.EXIT_LOCATION)
    return PresenceEvent(
        sub_type=sub_type,
        sphere_id=_sphere_id(raw),
        user_id=_str(user, "id"),
        user_name=_str(user, "name"),
        location_id=_str(_object(raw, "location"), "id") if in_location else None,
    )


def _data_change(raw: dict[str, Any]) -> DataChangeEvent:
    changed_item = _object(raw, "changedItem")
    return DataChangeEvent(
        sub_type=DataChangeSubType(_str(raw, "subType")),
        operation=DataChangeOperation(_str(raw, "operation")),
        sphere_id=_sphere_id(raw),
        item_id=_str(changed_item, "id"),
        item_name=_str(changed_item, "name"),
    )


def _ability_change(raw: dict[str, Any]) -> AbilityChangeEvent:
    ability = _object(raw, "ability")
    return AbilityChangeEvent(
        sphere_id=_sphere_id(raw),
        crownstone_id=_str(_object(raw, "stone"), "id"),
        ability_type=_str(ability, "type"),
        enabled=_bool(ability, "enabled"),
        synced_to_crownstone=_bool(ability, "syncedToCrownstone"),
    )


def _sphere_tokens_changed(raw: dict[str, Any]) -> SphereTokensChangedEvent:
    return SphereTokensChangedEvent(sphere_id=_sphere_id(raw), operation=_str(raw, "operation"))


def _invitation_change(raw: dict[str, Any]) -> InvitationChangeEvent:
    return InvitationChangeEvent(
        sphere_id=_sphere_id(raw), operation=_str(raw, "operation"), email=_str(raw, "email")
    )


def _system(raw: dict[str, Any]) -> SystemEvent:
    # Lenient on purpose: a TOKEN_EXPIRED without its code must still trigger a new login.
    code = raw.get("code")
    message = raw.get("message")
    return SystemEvent(
        sub_type=_str(raw, "subType"),
        code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
        message=message if isinstance(message, str) else "",
    )


def _ping(raw: dict[str, Any]) -> PingEvent:
    return PingEvent(counter=_int(raw, "counter"))


_PARSERS: dict[str, Callable[[dict[str, Any]], Event]] = {
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
