"""Locations (rooms) of a sphere and who is in them."""

from __future__ import annotations

from typing import ClassVar

from .client import CloudClient, path
from .collection import CloudCollection
from .parsing import JsonObject, integer, objects, optional_text, text, texts


class Location:
    """A room; `present_people` holds the ids of the users the cloud places in it."""

    CLOUD_FIELDS: ClassVar[tuple[str, ...]] = ("name", "unique_id", "icon")

    def __init__(self, data: JsonObject, sphere_id: str) -> None:
        """Read one location of the cloud."""
        self.sphere_id = sphere_id
        self.cloud_id = text(data, "id", "location")
        self.name = text(data, "name", "location")
        self.unique_id = integer(data, "uid", "location")
        self.icon = optional_text(data, "icon", "location")
        self.present_people: list[str] = []


class Locations(CloudCollection[Location]):
    """The locations of one sphere."""

    def __init__(self, client: CloudClient, sphere_id: str) -> None:
        """Start empty; a refresh fills the collection."""
        super().__init__()
        self._client = client
        self.sphere_id = sphere_id

    def find(self, location_name: str) -> Location | None:
        """Return the first location with this name, or None."""
        return next((location for location in self if location.name == location_name), None)

    async def async_update_location_data(self) -> None:
        """Refresh the locations of this sphere (presence is kept)."""
        locations = await self._client.async_request(
            "GET", path("Spheres", self.sphere_id, "ownedLocations")
        )
        self.update_from_cloud(objects(locations, "the locations of a sphere"))

    async def async_update_location_presence(self) -> None:
        """Refresh who is in which location from one presence request.

        The sphere's own `present_people` stays as it was: Sphere.async_update_sphere_presence
        refreshes both from the same request.
        """
        self.apply_presence(await async_get_presence(self._client, self.sphere_id))

    def update_from_cloud(self, locations: list[JsonObject]) -> None:
        """Adopt a complete listing of the sphere's locations."""
        self.adopt([Location(location, self.sphere_id) for location in locations])

    def apply_presence(self, presence: Presence) -> None:
        """Replace every location's present people with the given presence."""
        for location in self:
            location.present_people = [
                user_id
                for user_id, location_ids in presence.items()
                if location.cloud_id in location_ids
            ]


type Presence = dict[str, list[str]]
"""User id -> ids of the locations the user is in (empty: in the sphere, room unknown)."""


async def async_get_presence(client: CloudClient, sphere_id: str) -> Presence:
    """Read who is present in a sphere, and in which locations."""
    entries = await client.async_request("GET", path("Spheres", sphere_id, "presentPeople"))
    presence: Presence = {}
    for entry in objects(entries, "the present people of a sphere"):
        user_id = text(entry, "userId", "present person")
        locations = entry.get("locations")
        location_ids = [] if locations is None else texts(locations, "present person.locations")
        presence.setdefault(user_id, []).extend(location_ids)
    return presence
