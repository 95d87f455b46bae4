"""Defensive readers for the cloud's JSON: a wrong shape becomes CrownstoneInvalidResponseError.

Error messages name the field, never its value (values may be secrets such as keys).
"""

from __future__ import annotations

from typing import Any

from .errors import CrownstoneInvalidResponseError

type JsonObject = dict[str, Any]


def as_object(value: object, what: str) -> JsonObject:
    """Return value if it is a JSON object."""
    if not isinstance(value, dict):
        raise CrownstoneInvalidResponseError(f"Expected {what} to be a JSON object")
    return value


def as_list(value: object, what: str) -> list[Any]:
    """Return value if it is a JSON array."""
    if not isinstance(value, list):
        raise CrownstoneInvalidResponseError(f"Expected {what} to be a JSON array")
    return value


def objects(value: object, what: str) -> list[JsonObject]:
    """Return value if it is a JSON array of objects."""
    return [as_object(item, f"each item of {what}") for item in as_list(value, what)]


def texts(value: object, what: str) -> list[str]:
    """Return value if it is a JSON array of strings."""
    items = as_list(value, what)
    if not all(isinstance(item, str) for item in items):
        raise CrownstoneInvalidResponseError(f"Expected each item of {what} to be a string")
    return items


def optional_objects(data: JsonObject, key: str, what: str) -> list[JsonObject]:
    """Return the array of objects under key; missing or null means none."""
    value = data.get(key)
    return [] if value is None else objects(value, f"{what}.{key}")


def text(data: JsonObject, key: str, what: str) -> str:
    """Return the string under key."""
    value = data.get(key)
    if not isinstance(value, str):
        raise CrownstoneInvalidResponseError(f"Expected {what}.{key} to be a string")
    return value


def optional_text(data: JsonObject, key: str, what: str) -> str | None:
    """Return the string under key, or None when it is missing or null."""
    return None if data.get(key) is None else text(data, key, what)


def integer(data: JsonObject, key: str, what: str) -> int:
    """Return the integer under key (true and false are not integers on this wire)."""
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CrownstoneInvalidResponseError(f"Expected {what}.{key} to be an integer")
    return value


def flag(data: JsonObject, key: str, what: str, *, default: bool | None = None) -> bool:
    """Return the boolean under key, or default when it is missing or null (if there is one)."""
    value = data.get(key)
    if value is None and default is not None:
        return default
    if not isinstance(value, bool):
        raise CrownstoneInvalidResponseError(f"Expected {what}.{key} to be true or false")
    return value


def switch_state(value: object, what: str) -> int | None:
    """Return a switch state as 0..100 %, or None when the stone never reported one.

    Legacy records hold fractions: 0 < x <= 1 means x * 100 %.
    """
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
        raise CrownstoneInvalidResponseError(f"Expected {what} to be a number in 0..100")
    if 0 < value <= 1:
        value *= 100
    return round(value)
