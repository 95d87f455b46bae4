"""Users of a sphere (admins, members, guests)."""

from __future__ import annotations

from typing import ClassVar, Literal

from .client import CloudClient, path
from .collection import CloudCollection
from .parsing import JsonObject, as_object, flag, optional_objects, optional_text, text

type Role = Literal["admin", "member", "guest"]

_ROLE_KEYS: dict[str, Role] = {"admins": "admin", "members": "member", "guests": "guest"}


class User:
    """A user of a sphere; `role` is admin, member or guest."""

    CLOUD_FIELDS: ClassVar[tuple[str, ...]] = (
        "first_name",
        "last_name",
        "email",
        "role",
        "email_verified",
    )

    def __init__(self, data: JsonObject, role: Role) -> None:
        """Read one user of the cloud."""
        self.role = role
        self.cloud_id = text(data, "id", "user")
        self.first_name = optional_text(data, "firstName", "user") or ""
        self.last_name = optional_text(data, "lastName", "user") or ""
        self.email = optional_text(data, "email", "user")
        self.email_verified = flag(data, "emailVerified", "user", default=False)

    @property
    def full_name(self) -> str:
        """Return "first last", the way the event stream names users."""
        return " ".join(name for name in (self.first_name, self.last_name) if name)


class Users(CloudCollection[User]):
    """The users of one sphere."""

    def __init__(self, client: CloudClient, sphere_id: str) -> None:
        """Start empty; a refresh fills the collection."""
        super().__init__()
        self._client = client
        self.sphere_id = sphere_id

    def find(self, full_name: str) -> User | None:
        """Return the first user with this full name ("first last"), or None."""
        return next((user for user in self if user.full_name == full_name), None)

    def find_by_first_name(self, first_name: str) -> list[User]:
        """Return the users with this first name."""
        return [user for user in self if user.first_name == first_name]

    def find_by_last_name(self, last_name: str) -> list[User]:
        """Return the users with this last name."""
        return [user for user in self if user.last_name == last_name]

    async def async_update_user_data(self) -> None:
        """Refresh the users of this sphere."""
        by_role = as_object(
            await self._client.async_request("GET", path("Spheres", self.sphere_id, "users")),
            "the users of a sphere",
        )
        self.adopt(
            [
                User(user, role)
                for key, role in _ROLE_KEYS.items()
                for user in optional_objects(by_role, key, "users")
            ]
        )
