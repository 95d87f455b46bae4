"""JSON shapes of the v1 cloud (LoopBack 3) and the LoopBack `include` filter."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
import json
from typing import Any

from .errors import ApiError
from .scenario import Ability, Location, Presence, Sphere, Stone, SwitchState, User

_ROLE_KEYS: dict[str, tuple[str, ...]] = {
    "admin": (
        "ADMIN_KEY",
        "MEMBER_KEY",
        "BASIC_KEY",
        "LOCALIZATION_KEY",
        "SERVICE_DATA_KEY",
        "MESH_APPLICATION_KEY",
        "MESH_NETWORK_KEY",
    ),
    "member": (
        "MEMBER_KEY",
        "BASIC_KEY",
        "LOCALIZATION_KEY",
        "SERVICE_DATA_KEY",
        "MESH_APPLICATION_KEY",
        "MESH_NETWORK_KEY",
    ),
    "guest": ("BASIC_KEY", "LOCALIZATION_KEY", "SERVICE_DATA_KEY"),
}
_RELATIONS = {
    "Sphere": {"ownedStones": "Stone", "ownedLocations": "Location"},
    "Stone": {"currentSwitchState": "SwitchState", "abilities": "StoneAbility"},
    "StoneAbility": {"properties": "StoneAbilityProperty"},
    "Location": {},
    "SwitchState": {},
    "StoneAbilityProperty": {},
}


def iso(moment: datetime) -> str:
    """JavaScript's Date.toISOString(): milliseconds and a Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Include:
    """One included relation; `plain` when it was named by a bare string."""

    plain: bool = True
    children: dict[str, Include] = field(default_factory=dict)


def parse_filter(raw: str | None, model: str) -> dict[str, Include]:
    """Parse the `filter` query argument; only its `include` matters to these endpoints."""
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise ApiError(
            400,
            f"Invalid value for argument 'filter' of type 'object': {raw[:80]}. "
            "Value is not a valid JSON object.",
            code="INVALID_PARAMETER",
        ) from None
    if not isinstance(parsed, dict):
        return {}
    return _parse_include(parsed.get("include"), model)


def _parse_include(spec: Any, model: str) -> dict[str, Include]:
    result: dict[str, Include] = {}
    if spec is None:
        return result
    if isinstance(spec, str):
        _add(result, model, spec, Include(plain=True))
    elif isinstance(spec, list):
        for item in spec:
            for name, include in _parse_include(item, model).items():
                _add(result, model, name, include)
    elif isinstance(spec, dict):
        if "relation" in spec:
            scope = spec.get("scope") or {}
            target = _target(model, str(spec["relation"]))
            children = _parse_include(scope.get("include"), target) if scope else {}
            _add(result, model, str(spec["relation"]), Include(False, children))
        else:
            for name, sub in spec.items():
                target = _target(model, name)
                _add(result, model, name, Include(False, _parse_include(sub, target)))
    else:
        raise ApiError(400, 'Invalid "include" filter.', code="INVALID_INCLUSION_FILTER")
    return result


def _target(model: str, relation: str) -> str:
    target = _RELATIONS[model].get(relation)
    if target is None:
        raise ApiError(
            400,
            f'Relation "{relation}" is not defined for {model} model',
            code="RELATION_NOT_FOUND",
        )
    return target


def _add(result: dict[str, Include], model: str, name: str, include: Include) -> None:
    _target(model, name)
    existing = result.get(name)
    if existing is None:
        result[name] = include
    else:
        existing.plain = existing.plain and include.plain
        existing.children.update(include.children)


def sphere_json(sphere: Sphere, include: dict[str, Include]) -> dict[str, Any]:
    """A sphere, with its stones and locations when included."""
    body: dict[str, Any] = {
        "id": sphere.id,
        "name": sphere.name,
        "uid": sphere.uid,
        "uuid": sphere.uuid,
        "aiName": sphere.ai_name,
        "exitDelay": 600,
        "timezone": sphere.timezone,
        "gpsLocation": {"lat": sphere.latitude, "lng": sphere.longitude},
        "ownerId": sphere.owner_id,
        "createdAt": "2021-09-14T07:22:39.794Z",
        "updatedAt": "2024-05-20T10:00:00.000Z",
    }
    if (stones := include.get("ownedStones")) is not None:
        body["ownedStones"] = [
            stone_json(stone, sphere.id, stones.children) for stone in sphere.stones.values()
        ]
    if "ownedLocations" in include:
        body["ownedLocations"] = [
            location_json(location, sphere.id) for location in sphere.locations.values()
        ]
    return body


def stone_json(stone: Stone, sphere_id: str, include: dict[str, Include]) -> dict[str, Any]:
    """A stone, with its switch state and abilities when included."""
    body: dict[str, Any] = {
        "id": stone.id,
        "name": stone.name,
        "uid": stone.uid,
        "type": stone.type,
        "address": stone.address,
        "icon": stone.icon,
        "firmwareVersion": stone.firmware_version,
        "bootloaderVersion": "2.1.0",
        "hardwareVersion": "101020100000000000000000000QFAAB0",
        "major": 1000 + stone.uid,
        "minor": 2000 + stone.uid,
        "hidden": False,
        "locked": False,
        "locationId": stone.location_id,
        "sphereId": sphere_id,
        "currentSwitchStateId": stone.switch_state.id if stone.switch_state else None,
        "createdAt": "2021-09-14T07:22:39.794Z",
        "updatedAt": "2024-05-20T10:00:00.000Z",
    }
    if "currentSwitchState" in include:
        body["currentSwitchState"] = (
            None if stone.switch_state is None else switch_state_json(stone.switch_state, stone)
        )
    if (abilities := include.get("abilities")) is not None:
        # A bare "abilities" goes through the server's app-version check, which a client that
        # sends no app version fails: the server answers an empty list.
        body["abilities"] = (
            []
            if abilities.plain
            else [ability_json(row, stone, abilities.children) for row in stone.abilities]
        )
    return body


def switch_state_json(state: SwitchState, stone: Stone) -> dict[str, Any]:
    """A stored switch state record."""
    return {
        "timestamp": iso(state.timestamp),
        "switchState": state.value,
        "id": state.id,
        "stoneId": stone.id,
    }


def ability_json(row: Ability, stone: Stone, include: dict[str, Include]) -> dict[str, Any]:
    """An ability row, with its properties when included."""
    body: dict[str, Any] = {
        "type": row.type,
        "enabled": row.enabled,
        "syncedToCrownstone": row.synced_to_crownstone,
        "id": row.id,
        "stoneId": stone.id,
    }
    if "properties" in include:
        body["properties"] = [
            {"type": prop.type, "value": prop.value, "id": prop.id, "abilityId": row.id}
            for prop in row.properties
        ]
    return body


def location_json(location: Location, sphere_id: str) -> dict[str, Any]:
    """A room."""
    return {
        "id": location.id,
        "name": location.name,
        "uid": location.uid,
        "icon": location.icon,
        "sphereId": sphere_id,
        "createdAt": "2021-09-14T07:22:39.794Z",
        "updatedAt": "2024-05-20T10:00:00.000Z",
    }


def user_json(user: User) -> dict[str, Any]:
    """A user as `/Spheres/{id}/users` lists it (never the password)."""
    return {
        "id": user.id,
        "firstName": user.first_name,
        "lastName": user.last_name,
        "email": user.email,
        "emailVerified": user.email_verified,
        "language": "en_us",
        "uploadLocation": True,
        "uploadSwitchState": False,
        "uploadDeviceDetails": False,
        "new": False,
        "createdAt": "2021-09-14T07:22:39.794Z",
        "updatedAt": "2024-05-20T10:00:00.000Z",
    }


def presence_json(user_id: str, presence: Presence) -> dict[str, Any]:
    """One entry of `presentPeople`."""
    return {"userId": user_id, "locations": list(presence.location_ids)}


def keys_json(sphere: Sphere, role: str) -> dict[str, Any]:
    """The keys one user holds for one sphere (`stoneKeys` are only filled for admins)."""
    return {
        "sphereId": sphere.id,
        "sphereAuthorizationToken": sphere.authorization_token,
        "sphereKeys": [
            {
                "id": f"{key_type}-{sphere.id}",
                "keyType": key_type,
                "key": sphere.key(key_type),
                "ttl": 0,
                "createdAt": "2021-09-14T07:22:39.794Z",
            }
            for key_type in _ROLE_KEYS[role]
        ],
        "stoneKeys": {
            stone.id: [
                {
                    "id": f"DEVICE_UART_KEY-{stone.id}",
                    "keyType": "DEVICE_UART_KEY",
                    "key": stone.uart_key,
                    "ttl": 0,
                    "createdAt": "2021-09-14T07:22:39.794Z",
                }
            ]
            for stone in sphere.stones.values()
        }
        if role == "admin"
        else {},
    }


# Common parts of event-stream payloads.
def event_sphere(sphere: Sphere) -> dict[str, Any]:
    """`sphere` as events carry it."""
    return {"id": sphere.id, "name": sphere.name, "uid": sphere.uid}


def event_stone(stone: Stone) -> dict[str, Any]:
    """`crownstone`/`stone` as events carry it."""
    return {"id": stone.id, "uid": stone.uid, "name": stone.name, "macAddress": stone.address}
