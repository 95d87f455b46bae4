"""The entry point of the library: one Crownstone account and the data tree of its spheres."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp

from .changes import Changes, Snapshot, StalePart, apply_event, stale_part
from .client import CloudClient, hash_password
from .concurrency import first_error
from .const import DEFAULT_BASE_URL
from .crownstones import Crownstone
from .errors import CrownstoneError, CrownstoneNotFoundError
from .events import DataChangeSubType, Event
from .keys import SphereKeys, async_get_keys
from .locations import Presence
from .spheres import Sphere, Spheres


class CrownstoneCloud:
    """A Crownstone account: log in, read its spheres, switch its Crownstones.

    Several accounts may share one aiohttp session; nothing is shared between them but it.
    """

    def __init__(
        self,
        email: str,
        password: str | None = None,
        websession: aiohttp.ClientSession | None = None,
        *,
        password_sha1: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        request_timeout: float = 10.0,
    ) -> None:
        """Prepare the account; nothing is sent before the first call.

        Give the password, or only its hash (`hash_password`), which is all the cloud needs and
        all an application has to store.
        """
        if (password is None) == (password_sha1 is None):
            raise TypeError("Give either password or password_sha1")
        self._client = CloudClient(
            email,
            password_sha1 or hash_password(password or ""),
            websession,
            base_url=base_url,
            request_timeout=request_timeout,
        )
        self.cloud_data = Spheres(self._client)
        # A read may answer with what the cloud knew before the events heard meanwhile.
        self._reads = 0
        self._heard_while_reading: list[Event] = []

    def __repr__(self) -> str:
        """Show the account, never its password or token."""
        return f"CrownstoneCloud(email={self._client.email!r}, user_id={self.user_id!r})"

    @property
    def user_id(self) -> str | None:
        """Return the id of the logged-in user (None before the first login)."""
        return self._client.user_id

    @property
    def access_token(self) -> str | None:
        """Return the current access token (a secret: for the event stream only)."""
        return self._client.access_token

    @property
    def base_url(self) -> str:
        """Return the REST API base URL in use."""
        return self._client.base_url

    @property
    def websession(self) -> aiohttp.ClientSession:
        """Return the session the library sends its requests with."""
        return self._client.session

    async def async_login(self) -> str:
        """Log in (sending the sha1 of the password, never the password) and return the user id."""
        return await self._client.async_login()

    async def async_renew_token(self, rejected: str | None) -> str:
        """Replace a token the cloud rejected; return the user id.

        Shares one login with every request that met the same rejected token, so a stream and
        REST calls never log in twice for one expiry. A refused login is raised again, without
        a request, to later callers with the same rejected token; async_login tries anew.
        """
        return await self._client.async_renew_token(rejected=rejected)

    async def async_initialize(self) -> None:
        """Log in if needed and read everything: spheres, Crownstones, rooms, users, presence."""
        await self.async_synchronize(users=True)

    async def async_synchronize(self, *, users: bool = False) -> Changes:
        """Refresh the whole tree in at most 1 + 2 requests per sphere, in about one round trip.

        One request reads the spheres with their Crownstones and locations; per sphere, one
        reads presence and, when asked, for a sphere new to the tree, or when presence names a
        user not known yet, one reads the users. The per-sphere requests of spheres already
        known go out together with the first one instead of waiting for it. Objects already in
        the tree are updated in place. Returns which objects changed.
        """
        return await self._async_read(self._async_read_tree(users=users))

    def apply_event(self, event: Event) -> Changes:
        """Apply a switch state, ability or presence event to the tree, without a request.

        Returns which objects changed. Data changes and events about objects the tree does not
        know change nothing here: stale_part says what to read instead.
        """
        if self._reads:
            self._heard_while_reading.append(event)
        return apply_event(self.cloud_data, event)

    def stale_part(self, event: Event) -> StalePart | None:
        """Return the part of the tree an event shows to be out of date, if any."""
        return stale_part(self.cloud_data, event)

    async def async_read_part(self, part: StalePart) -> Changes:
        """Read again a part of the tree that stale_part named; return which objects changed."""
        sphere_id, sub_type = part
        if sub_type is DataChangeSubType.SPHERES:
            return await self.async_synchronize()
        if (sphere := self.cloud_data.find_by_id(sphere_id)) is None:
            # Gone meanwhile: nothing of it is left to read.
            return Changes()
        return await self._async_read(sphere.async_read_part(sub_type))

    async def _async_read(self, read: Awaitable[None]) -> Changes:
        """Run a read, apply the events heard meanwhile again, and return what changed.

        The cloud may have answered before those events happened: without the replay, a lamp
        switched during a poll would show its old state until the next poll. What the replay
        changes is reported too, even when a read overlapping this one found it already.
        """
        before = Snapshot.of(self.cloud_data)
        replayed = Changes()
        self._reads += 1
        try:
            await read
        finally:
            self._reads -= 1
            if not self._reads:
                heard, self._heard_while_reading = self._heard_while_reading, []
                for event in heard:
                    replayed.update(apply_event(self.cloud_data, event))
        changes = Snapshot.of(self.cloud_data).changes_since(before)
        changes.update(replayed)
        return changes

    async def _async_read_tree(self, *, users: bool) -> None:
        early_relations = not self.cloud_data.server_includes_relations
        early: dict[str, asyncio.Task[Presence | CrownstoneError]] = {}
        with first_error():
            async with asyncio.TaskGroup() as group:
                listing = group.create_task(self.cloud_data.async_update())
                for sphere in self.cloud_data:
                    early[sphere.cloud_id] = group.create_task(
                        _settled(sphere.async_read(relations=early_relations, users=users))
                    )
        relations = not listing.result()
        with first_error():
            async with asyncio.TaskGroup() as group:
                for sphere in self.cloud_data:
                    read = early.get(sphere.cloud_id)
                    # A sphere new in this listing, or relations this server stopped including.
                    if read is None or (relations and not early_relations):
                        group.create_task(
                            sphere.async_synchronize(
                                relations=relations, users=users or read is None
                            )
                        )
                        continue
                    presence = read.result()
                    if isinstance(presence, CrownstoneError):
                        raise presence
                    group.create_task(sphere.async_finish_refresh(presence, users=users))

    def get_crownstone(self, crownstone_name: str, sphere_id: str | None = None) -> Crownstone:
        """Return the first Crownstone with this name; raise CrownstoneNotFoundError if none."""
        return self._find_crownstone(
            lambda sphere: sphere.crownstones.find(crownstone_name),
            sphere_id,
            f"name {crownstone_name!r}",
        )

    def get_crownstone_by_id(self, crownstone_id: str, sphere_id: str | None = None) -> Crownstone:
        """Return the Crownstone with this cloud id; raise CrownstoneNotFoundError if none."""
        return self._find_crownstone(
            lambda sphere: sphere.crownstones.find_by_id(crownstone_id),
            sphere_id,
            f"id {crownstone_id!r}",
        )

    def get_crownstone_by_uid(
        self, crownstone_uid: int, sphere_id: str | None = None
    ) -> Crownstone:
        """Return the Crownstone with this uid; raise CrownstoneNotFoundError if none.

        Uids are unique within a sphere only: pass the sphere id when there are several.
        """
        return self._find_crownstone(
            lambda sphere: sphere.crownstones.find_by_uid(crownstone_uid),
            sphere_id,
            f"uid {crownstone_uid}",
        )

    def _find_crownstone(
        self, find: Callable[[Sphere], Crownstone | None], sphere_id: str | None, what: str
    ) -> Crownstone:
        for sphere in self.cloud_data:
            if sphere_id is None or sphere.cloud_id == sphere_id:
                crownstone = find(sphere)
                if crownstone is not None:
                    return crownstone
        raise CrownstoneNotFoundError(f"No Crownstone with {what}")

    async def async_get_keys(self) -> dict[str, SphereKeys]:
        """Read this user's keys of every sphere, by sphere id (secrets: never log them)."""
        keys = await async_get_keys(self._client)
        for sphere in self.cloud_data:
            sphere.keys = keys.get(sphere.cloud_id)
        return keys

    async def async_close_session(self) -> None:
        """Close the session if the library created it; an injected session stays open."""
        await self._client.async_close()


async def _settled(read: Awaitable[Presence]) -> Presence | CrownstoneError:
    """Hold a read's error until the listing tells whether its sphere still exists.

    The read of a sphere the user just lost fails (401); that must not fail the refresh.
    """
    try:
        return await read
    except CrownstoneError as err:
        return err
