"""parse_event on payloads as the stream server writes them, and on what it must survive."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from custom_components.crownstone_spotflow.crownstone.events import (
    AbilityChangeEvent,
    DataChangeEvent,
    DataChangeOperation,
    DataChangeSubType,
    InvitationChangeEvent,
    MultiSwitchCommandEvent,
    PingEvent,
    PresenceEvent,
    PresenceSubType,
    SphereTokensChangedEvent,
    SwitchDataItem,
    SwitchStateUpdateEvent,
    SystemEvent,
    parse_event,
)

SPHERE = {"id": "sphere1", "name": "Home", "uid": 69}
STONE = {"id": "stone1", "uid": 1, "name": "Desk lamp", "macAddress": "AA:BB:CC:DD:EE:01"}
USER = {"id": "u1", "name": "Ann A"}


def _parse(payload: dict[str, Any]) -> object:
    return parse_event(json.dumps(payload, separators=(",", ":")))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {
                "type": "switchStateUpdate",
                "subType": "stone",
                "sphere": SPHERE,
                "crownstone": {**STONE, "percentage": 55, "switchState": 55},
            },
            SwitchStateUpdateEvent("sphere1", "stone1", 1, 55),
        ),
        (
            # Legacy fraction; only switchState present.
            {
                "type": "switchStateUpdate",
                "sphere": SPHERE,
                "crownstone": {**STONE, "switchState": 0.5},
            },
            SwitchStateUpdateEvent("sphere1", "stone1", 1, 50),
        ),
        (
            {
                "type": "switchStateUpdate",
                "sphere": SPHERE,
                "crownstone": {**STONE, "percentage": 1, "switchState": 1},
            },
            SwitchStateUpdateEvent("sphere1", "stone1", 1, 100),
        ),
        (
            {
                "type": "switchStateUpdate",
                "sphere": SPHERE,
                "crownstone": {**STONE, "percentage": 0},
            },
            SwitchStateUpdateEvent("sphere1", "stone1", 1, 0),
        ),
        (
            {
                "type": "command",
                "subType": "multiSwitch",
                "sphere": SPHERE,
                "switchData": [
                    {**STONE, "type": "PERCENTAGE", "percentage": 50},
                    {**STONE, "id": "stone2", "uid": 2, "type": "TURN_ON"},
                ],
                "sequenceTime": {"timestamp": 1716199200000, "counter": 3},
            },
            MultiSwitchCommandEvent(
                "sphere1",
                (
                    SwitchDataItem("stone1", 1, "PERCENTAGE", 50),
                    SwitchDataItem("stone2", 2, "TURN_ON", None),
                ),
            ),
        ),
        (
            {"type": "presence", "subType": "enterSphere", "sphere": SPHERE, "user": USER},
            PresenceEvent(PresenceSubType.ENTER_SPHERE, "sphere1", "u1", "Ann A", None),
        ),
        (
            {
                "type": "presence",
                "subType": "exitLocation",
                "sphere": SPHERE,
                "location": {"id": "loc1", "name": "Living room"},
                "user": USER,
            },
            PresenceEvent(PresenceSubType.EXIT_LOCATION, "sphere1", "u1", "Ann A", "loc1"),
        ),
        (
            {
                "type": "dataChange",
                "subType": "locations",
                "operation": "delete",
                "sphere": SPHERE,
                "changedItem": {"id": "loc1", "name": "Living room"},
            },
            DataChangeEvent(
                DataChangeSubType.LOCATIONS,
                DataChangeOperation.DELETE,
                "sphere1",
                "loc1",
                "Living room",
            ),
        ),
        (
            {
                "type": "abilityChange",
                "subType": "dimming",
                "sphere": SPHERE,
                "stone": STONE,
                "ability": {"type": "dimming", "enabled": True, "syncedToCrownstone": False},
            },
            AbilityChangeEvent("sphere1", "stone1", "dimming", True, False),
        ),
        (
            {
                "type": "sphereTokensChanged",
                "subType": "sphereAuthorizationTokens",
                "operation": "update",
                "sphere": SPHERE,
            },
            SphereTokensChangedEvent("sphere1", "update"),
        ),
        (
            {
                "type": "invitationChange",
                "operation": "invitationRevoked",
                "sphere": SPHERE,
                "email": "x@y.example",
            },
            InvitationChangeEvent("sphere1", "invitationRevoked", "x@y.example"),
        ),
        (
            {"type": "system", "subType": "STREAM_START", "code": 200, "message": "Go."},
            SystemEvent("STREAM_START", 200, "Go."),
        ),
        (
            # A system event without code or message still counts.
            {"type": "system", "subType": "TOKEN_EXPIRED"},
            SystemEvent("TOKEN_EXPIRED", 0, ""),
        ),
        ({"type": "ping", "counter": 12}, PingEvent(12)),
    ],
)
def test_parses_every_event_type(payload: dict[str, Any], expected: object) -> None:
    """Every payload of the protocol doc becomes its typed event."""
    assert _parse(payload) == expected


@pytest.mark.parametrize(
    "data",
    [
        "",
        "{not json",
        "[1, 2]",
        '"ping"',
        '{"counter": 1}',
        '{"type": 7}',
        '{"type": "somethingNew", "sphere": {"id": "s"}}',
        '{"type": "ping", "counter": "1"}',
        '{"type": "ping", "counter": true}',
        '{"type": "ping"}',
        '{"type": "system", "code": 200}',
        '{"type": "command", "subType": "singleSwitch", "sphere": {"id": "s"}, "switchData": []}',
        '{"type": "command", "subType": "multiSwitch", "sphere": {"id": "s"}, "switchData": {}}',
        '{"type": "command", "subType": "multiSwitch", "sphere": {"id": "s"}, "switchData": [1]}',
        '{"type": "presence", "subType": "dance", "sphere": {"id": "s"}, "user": {}}',
        '{"type": "presence", "subType": "enterLocation", "sphere": {"id": "s"},'
        ' "user": {"id": "u", "name": "U"}}',
        '{"type": "presence", "subType": "enterSphere", "sphere": "s",'
        ' "user": {"id": "u", "name": "U"}}',
        '{"type": "dataChange", "subType": "stones", "operation": "explode",'
        ' "sphere": {"id": "s"}, "changedItem": {"id": "i", "name": "n"}}',
        '{"type": "abilityChange", "sphere": {"id": "s"}, "stone": {"id": "x"},'
        ' "ability": {"type": "dimming", "enabled": "yes", "syncedToCrownstone": true}}',
        '{"type": "switchStateUpdate", "sphere": {"id": "s"},'
        ' "crownstone": {"id": "x", "uid": 1, "percentage": 101}}',
        '{"type": "switchStateUpdate", "sphere": {"id": "s"},'
        ' "crownstone": {"id": "x", "uid": 1, "percentage": "50"}}',
        '{"type": "switchStateUpdate", "sphere": {"id": "s"}, "crownstone": {"id": "x", "uid": 1}}',
    ],
)
def test_bad_input_gives_none(data: str) -> None:
    """Malformed JSON, unknown types and missing or mistyped fields never raise."""
    assert parse_event(data) is None


def test_skip_log_leaves_out_the_payload(caplog: pytest.LogCaptureFixture) -> None:
    """The debug line names the problem, not the data (which may carry anything)."""
    secret = "a" * 64
    caplog.set_level(logging.DEBUG)
    assert parse_event(f'{{"type": "ping", "counter": "{secret}"}}') is None
    assert parse_event(f"{secret}{{") is None
    assert parse_event(f'{{"type": "{secret}"}}') is None
    assert caplog.records
    assert all(secret not in record.getMessage() for record in caplog.records)


def test_events_are_frozen() -> None:
    """Listeners share one event object; none may change it for the others."""
    event = PingEvent(1)
    with pytest.raises(AttributeError):
        event.counter = 2  # type: ignore[misc]
