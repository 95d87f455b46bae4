"""Bluetooth keys of a sphere: secrets, never shown in reprs, logs or messages."""

from __future__ import annotations

from .client import CloudClient, path
from .parsing import JsonObject, as_object, objects, optional_objects, optional_text, text


class SphereKeys:
    """The keys of one sphere for this user (which keys depends on the user's role)."""

    def __init__(self, data: JsonObject) -> None:
        """Read one sphere's entry of the keysV2 response."""
        self.sphere_id = text(data, "sphereId", "keys")
        self.sphere_authorization_token = optional_text(data, "sphereAuthorizationToken", "keys")
        self.sphere_keys = _keys_by_type(optional_objects(data, "sphereKeys", "keys"))
        # Only admins get stone keys.
        stone_keys = as_object(data.get("stoneKeys") or {}, "keys.stoneKeys")
        self.stone_keys: dict[str, dict[str, str]] = {
            stone_id: _keys_by_type(objects(entries, "each entry of keys.stoneKeys"))
            for stone_id, entries in stone_keys.items()
        }

    def __repr__(self) -> str:
        """Name the key types, never the keys."""
        return (
            f"SphereKeys(sphere_id={self.sphere_id!r}, key_types={sorted(self.sphere_keys)!r}, "
            f"stones={sorted(self.stone_keys)!r})"
        )


def _keys_by_type(entries: list[JsonObject]) -> dict[str, str]:
    """Map key type to key, leaving out the types this user holds no key for."""
    keys: dict[str, str] = {}
    for entry in entries:
        key = optional_text(entry, "key", "key")
        if key is not None:
            keys[text(entry, "keyType", "key")] = key
    return keys


async def async_get_keys(client: CloudClient) -> dict[str, SphereKeys]:
    """Read this user's keys of every sphere, by sphere id."""
    user_id = await client.async_ensure_login()
    entries = await client.async_request("GET", path("users", user_id, "keysV2"))
    keys = [SphereKeys(entry) for entry in objects(entries, "the keys of a user")]
    return {sphere_keys.sphere_id: sphere_keys for sphere_keys in keys}
