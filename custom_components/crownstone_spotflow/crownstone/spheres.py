"""Spheres (homes) of the user, each with its Crownstones, locations, users and presence."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
import logging
from typing import ClassVar

from .client import CloudClient, path
from .collection import CloudCollection
from .concurrency import first_error
from .const import SPHERES_INCLUDE_FILTER
from .crownstones import Crownstone, Crownstones, SwitchCommand
from .errors import CrownstoneNotFoundError
from .events import DataChangeSubType
from .keys import SphereKeys, async_get_keys
from .locations import Location, Locations, Presence, async_get_presence
from .parsing import JsonObject, integer, objects, text
from .users import Users

_LOGGER = logging.getLogger(__name__)


class Sphere:
    """A sphere; `present_people` holds the ids of the users the cloud places in it."""

    CLOUD_FIELDS: ClassVar[tuple[str, ...]] = ("name", "unique_id")

    def __init__(self, client: CloudClient, data: JsonObject) -> None:
        """Read one sphere of the cloud (its relations are read separately)."""
        self._client = client
        self.cloud_id = text(data, "id", "sphere")
        self.name = text(data, "name", "sphere")
        self.unique_id = integer(data, "uid", "sphere")
        self.crownstones = Crownstones(client, self.cloud_id)
        self.locations = Locations(client, self.cloud_id)
        self.users = Users(client, self.cloud_id)
        self.present_people: list[str] = []
        self.keys: SphereKeys | None = None

    async def async_update_sphere_presence(self) -> None:
        """Refresh who is in the sphere, and in which of its locations (one request)."""
        self.apply_presence(await async_get_presence(self._client, self.cloud_id))

    def apply_presence(self, presence: Presence) -> None:
        """Replace the present people of the sphere and of its locations."""
        self.present_people = list(presence)
        self.locations.apply_presence(presence)

    async def async_get_keys(self) -> SphereKeys | None:
        """Read this user's keys of this sphere (None when the user holds none)."""
        self.keys = (await async_get_keys(self._client)).get(self.cloud_id)
        return self.keys

    async def async_switch_crownstones(self, commands: Iterable[SwitchCommand]) -> None:
        """Switch several Crownstones of this sphere in one request.

        Raises CrownstoneNotFoundError for a Crownstone this sphere does not hold and
        CrownstoneAbilityError for dimming one without the ability, before any request.
        """
        commands = list(commands)
        for command in commands:
            crownstone = self.crownstones.find_by_id(command.crownstone_id)
            if crownstone is None:
                raise CrownstoneNotFoundError(
                    f"Sphere {self.name!r} holds no Crownstone with id {command.crownstone_id!r}"
                )
            if command.type == "PERCENTAGE" and command.percentage is not None:
                crownstone.check_dimming(command.percentage)
        if commands:
            await self._client.async_request(
                "POST",
                path("Spheres", self.cloud_id, "switchCrownstones"),
                json_body=[command.as_cloud_json() for command in commands],
                command=True,
            )

    async def async_synchronize(self, *, relations: bool, users: bool) -> None:
        """Refresh presence, plus stones and locations (`relations`) and users, side by side.

        Users are also read when presence names a user this sphere does not know yet.
        """
        await self.async_finish_refresh(
            await self.async_read(relations=relations, users=users), users=users
        )

    async def async_read_part(self, sub_type: DataChangeSubType) -> None:
        """Read one kind of item again (SPHERES is for the cloud to read, not a sphere)."""
        if sub_type is DataChangeSubType.STONES:
            await self.crownstones.async_update_crownstone_data()
        elif sub_type is DataChangeSubType.LOCATIONS:
            await self.locations.async_update_location_data()
            # A new room's people, and those of a removed one.
            await self.async_update_sphere_presence()
        elif sub_type is DataChangeSubType.USERS:
            await self.users.async_update_user_data()

    async def async_read(self, *, relations: bool, users: bool) -> Presence:
        """Read presence (returned, not applied), relations and users (applied) side by side."""
        with first_error():
            async with asyncio.TaskGroup() as group:
                presence = group.create_task(async_get_presence(self._client, self.cloud_id))
                if relations:
                    group.create_task(self.crownstones.async_update_crownstone_data())
                    group.create_task(self.locations.async_update_location_data())
                if users:
                    group.create_task(self.users.async_update_user_data())
        return presence.result()

    async def async_finish_refresh(self, presence: Presence, *, users: bool) -> None:
        """Apply presence once the locations are current; read users if presence names a stranger.

        Applied after the locations are read, so rooms new in this refresh get their people.
        """
        self.apply_presence(presence)
        if not users and any(user_id not in self.users for user_id in self.present_people):
            await self.users.async_update_user_data()


type _SphereListing = tuple[Sphere, list[Crownstone] | None, list[Location] | None]


class Spheres(CloudCollection[Sphere]):
    """The spheres of the logged-in user."""

    def __init__(self, client: CloudClient) -> None:
        """Start empty; a refresh fills the collection."""
        super().__init__()
        self._client = client
        # Cleared for good once this server answers without the included relations.
        self.server_includes_relations = True

    def find(self, sphere_name: str) -> Sphere | None:
        """Return the first sphere with this name, or None."""
        return next((sphere for sphere in self if sphere.name == sphere_name), None)

    async def async_update_sphere_data(self) -> None:
        """Refresh the spheres, with their Crownstones and locations when the server includes them.

        Call async_synchronize on the cloud for a complete refresh.
        """
        await self.async_update()

    async def async_update(self) -> bool:
        """Refresh the spheres; return whether their Crownstones and locations came along."""
        user_id = await self._client.async_ensure_login()
        include = self.server_includes_relations
        params = {"filter": SPHERES_INCLUDE_FILTER} if include else None
        spheres = await self._client.async_request(
            "GET", path("users", user_id, "spheres"), params=params
        )
        # Everything is parsed before anything changes: a bad body leaves the tree as it was.
        listing = [
            _parse_sphere(self._client, sphere, include=include)
            for sphere in objects(spheres, "the spheres of a user")
        ]
        included = include and all(
            stones is not None and locations is not None for _, stones, locations in listing
        )
        if include and not included:
            _LOGGER.debug("The cloud ignores included relations; reading them per sphere")
            self.server_includes_relations = False
        self.adopt(sphere for sphere, _, _ in listing)
        if included:
            for fresh, stones, locations in listing:
                sphere = self._items[fresh.cloud_id]
                sphere.crownstones.adopt(stones or [])
                sphere.locations.adopt(locations or [])
        return included


def _parse_sphere(client: CloudClient, data: JsonObject, *, include: bool) -> _SphereListing:
    sphere = Sphere(client, data)
    stones = data.get("ownedStones") if include else None
    locations = data.get("ownedLocations") if include else None
    return (
        sphere,
        None
        if stones is None
        else [
            Crownstone(client, stone, sphere.cloud_id)
            for stone in objects(stones, "sphere.ownedStones")
        ],
        None
        if locations is None
        else [
            Location(location, sphere.cloud_id)
            for location in objects(locations, "sphere.ownedLocations")
        ],
    )
