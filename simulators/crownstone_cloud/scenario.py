"""The simulated cloud's data model, and the homes it ships with.

A `Scenario` is plain mutable data: the simulator deep-copies it and mutates the copy as its live
state, so a scenario object can be reused across tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
import hashlib
import random
from typing import Literal
import uuid

type Role = Literal["admin", "member", "guest"]

DEMO_EMAIL = "ann@example.com"
DEMO_PASSWORD = "crownstone-demo"

SWITCHING_TYPES = frozenset({"PLUG", "BUILTIN", "BUILTIN_ONE"})
# Fixed so that ids, addresses and keys are stable across runs.
_EPOCH = datetime(2024, 5, 20, 10, 0, tzinfo=UTC)


def make_id(*parts: object) -> str:
    """A deterministic 24-hex id, shaped like the MongoDB ObjectIds the cloud hands out."""
    return _digest(*parts)[:24]


def make_secret(*parts: object) -> str:
    """A deterministic 32-hex key (the cloud's BLE keys are 16 bytes, hex encoded)."""
    return _digest("secret", *parts)[:32]


def _digest(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


@dataclass
class AbilityProperty:
    """A setting of an ability; the cloud stores every value as a string."""

    type: str
    value: str
    id: str


@dataclass
class Ability:
    """One ability row of a stone (`dimming`, `switchcraft`, `tapToToggle`)."""

    type: str
    enabled: bool
    id: str
    synced_to_crownstone: bool = True
    properties: list[AbilityProperty] = field(default_factory=list)


@dataclass
class SwitchState:
    """A stone's last reported switch state: 0..100, or 0..1 in legacy records."""

    value: float
    id: str
    timestamp: datetime = _EPOCH


@dataclass
class Stone:
    """A Crownstone (or a dongle, guidestone or hub, which do not switch)."""

    id: str
    name: str
    uid: int
    type: str
    address: str
    location_id: str | None
    switch_state: SwitchState | None
    abilities: list[Ability] = field(default_factory=list)
    icon: str = "fiCS1-desk-lamp-2"
    firmware_version: str = "5.4.0"
    uart_key: str = ""

    def ability(self, ability_type: str) -> Ability | None:
        """The ability row of that type, if the stone has one."""
        return next((row for row in self.abilities if row.type == ability_type), None)

    @property
    def can_dim(self) -> bool:
        """Whether the cloud accepts PERCENTAGE switch calls for this stone."""
        dimming = self.ability("dimming")
        return dimming is not None and dimming.enabled


@dataclass
class Location:
    """A room of a sphere."""

    id: str
    name: str
    uid: int
    icon: str = "c1-tvSetup2"


@dataclass
class User:
    """An account; `password` is the clear text the simulator hashes to check logins."""

    id: str
    first_name: str
    last_name: str
    email: str
    password: str
    email_verified: bool = True

    @property
    def full_name(self) -> str:
        """The name the event stream shows."""
        return f"{self.first_name} {self.last_name}"


@dataclass
class Presence:
    """Where a user is in a sphere: no location ids means in the sphere, room unknown."""

    location_ids: list[str]
    updated_at: datetime


@dataclass
class Sphere:
    """A home: its rooms, stones, users by role and who is present."""

    id: str
    name: str
    uid: int
    owner_id: str
    roles: dict[str, Role] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    stones: dict[str, Stone] = field(default_factory=dict)
    presence: dict[str, Presence] = field(default_factory=dict)
    # uids only grow, so a deleted stone's id never comes back for a new one.
    last_location_uid: int = 0
    last_stone_uid: int = 0
    ai_name: str = "Rocky"
    timezone: str = "Europe/Amsterdam"
    latitude: float = 51.9
    longitude: float = 4.4

    @property
    def uuid(self) -> str:
        """The sphere's iBeacon UUID."""
        return str(uuid.UUID(_digest("uuid", self.id)[:32]))

    def key(self, key_type: str) -> str:
        """One of the sphere's BLE keys."""
        return make_secret(self.id, key_type)

    @property
    def authorization_token(self) -> str:
        """The sphere authorization token handed out with the keys."""
        return make_secret(self.id, "sphereAuthorizationToken")


@dataclass
class Scenario:
    """Everything the cloud knows: accounts and spheres."""

    users: dict[str, User] = field(default_factory=dict)
    spheres: dict[str, Sphere] = field(default_factory=dict)
    last_sphere_uid: int = 0

    def add_user(self, first_name: str, last_name: str, email: str, password: str) -> User:
        """Create an account (id derived from the email)."""
        user = User(make_id("user", email.lower()), first_name, last_name, email, password)
        self.users[user.id] = user
        return user

    def add_sphere(self, name: str, owner: User) -> Sphere:
        """Create a sphere owned (and administered) by `owner`."""
        self.last_sphere_uid += 1
        uid = self.last_sphere_uid
        sphere = Sphere(
            make_id("sphere", name, uid), name, uid, owner.id, roles={owner.id: "admin"}
        )
        self.spheres[sphere.id] = sphere
        return sphere


def add_location(sphere: Sphere, name: str) -> Location:
    """Add a room to a sphere."""
    sphere.last_location_uid += 1
    uid = sphere.last_location_uid
    location = Location(make_id("location", sphere.id, name, uid), name, uid)
    sphere.locations[location.id] = location
    return location


def add_stone(
    sphere: Sphere,
    name: str,
    *,
    stone_type: str = "PLUG",
    location_id: str | None = None,
    dimming: bool | None = False,
    abilities: bool = True,
    switch_state: float | None = 0,
) -> Stone:
    """Add a stone; `dimming=None` leaves out the dimming row, `abilities=False` every row."""
    sphere.last_stone_uid += 1
    uid = sphere.last_stone_uid
    stone_id = make_id("stone", sphere.id, name, uid)
    address = ":".join(_digest("mac", stone_id)[i : i + 2] for i in range(0, 12, 2)).upper()
    stone = Stone(
        id=stone_id,
        name=name,
        uid=uid,
        type=stone_type,
        address=address,
        location_id=location_id,
        switch_state=None
        if switch_state is None
        else SwitchState(switch_state, make_id("switchState", stone_id)),
        uart_key=make_secret(stone_id, "DEVICE_UART_KEY"),
    )
    if abilities:
        if dimming is not None:
            dimming_row = Ability("dimming", dimming, make_id("ability", stone_id, "dimming"))
            dimming_row.properties.append(
                AbilityProperty("softOnSpeed", "5", make_id("property", dimming_row.id))
            )
            stone.abilities.append(dimming_row)
        stone.abilities.append(
            Ability("switchcraft", False, make_id("ability", stone_id, "switchcraft"))
        )
        tap_row = Ability("tapToToggle", True, make_id("ability", stone_id, "tapToToggle"))
        tap_row.properties.append(
            AbilityProperty("rssiOffset", "-10", make_id("property", tap_row.id))
        )
        stone.abilities.append(tap_row)
    sphere.stones[stone.id] = stone
    return stone


def demo_home() -> Scenario:
    """The demo home: sphere "Home" with every kind of stone, and a small "Cabin"."""
    scenario = Scenario()
    ann = scenario.add_user("Ann", "Admin", DEMO_EMAIL, DEMO_PASSWORD)
    bob = scenario.add_user("Bob", "Member", "bob@example.com", "bob-password")
    cleo = scenario.add_user("Cleo", "Guest", "cleo@example.com", "cleo-password")

    home = scenario.add_sphere("Home", ann)
    home.roles[bob.id] = "member"
    home.roles[cleo.id] = "guest"
    living = add_location(home, "Living room")
    kitchen = add_location(home, "Kitchen")
    bedroom = add_location(home, "Bedroom")
    hallway = add_location(home, "Hallway")
    add_stone(home, "Desk lamp", location_id=living.id, dimming=True, switch_state=100)
    add_stone(
        home,
        "Ceiling light",
        stone_type="BUILTIN_ONE",
        location_id=living.id,
        dimming=True,
        switch_state=60,
    )
    add_stone(home, "Coffee machine", location_id=kitchen.id, dimming=None, switch_state=0)
    add_stone(home, "Kitchen spots", stone_type="BUILTIN", location_id=kitchen.id, switch_state=100)
    add_stone(home, "Hallway plug", location_id=hallway.id, abilities=False, switch_state=None)
    add_stone(home, "USB dongle", stone_type="CROWNSTONE_USB", abilities=False, switch_state=None)
    add_stone(
        home,
        "Guidestone",
        stone_type="GUIDESTONE",
        location_id=bedroom.id,
        abilities=False,
        switch_state=None,
    )
    home.presence[ann.id] = Presence([living.id], datetime.now(UTC))
    home.presence[bob.id] = Presence([], datetime.now(UTC))

    cabin = scenario.add_sphere("Cabin", ann)
    cabin_room = add_location(cabin, "Cabin room")
    add_stone(cabin, "Cabin lamp", location_id=cabin_room.id, dimming=True, switch_state=0)
    add_stone(cabin, "Porch light", stone_type="BUILTIN", switch_state=0)
    return scenario


def generated_home(
    spheres: int = 10,
    stones_per_sphere: int = 30,
    rooms_per_sphere: int = 6,
    users_per_sphere: int = 4,
    seed: int = 0,
) -> Scenario:
    """A big account for benchmarks; the login user administers every sphere.

    Every 7th stone holds a legacy 0..1 switch state, every 11th none at all, and a few stones
    are dongles or guidestones, so clients meet every shape the real cloud returns.
    """
    rng = random.Random(seed)
    scenario = Scenario()
    owner = scenario.add_user("Ann", "Admin", DEMO_EMAIL, DEMO_PASSWORD)
    roles: tuple[Role, ...] = ("member", "guest", "admin")
    for sphere_index in range(spheres):
        sphere = scenario.add_sphere(f"Sphere {sphere_index + 1}", owner)
        rooms = [add_location(sphere, f"Room {n + 1}") for n in range(rooms_per_sphere)]
        for user_index in range(users_per_sphere - 1):
            number = sphere_index * users_per_sphere + user_index
            user = scenario.add_user(
                f"User{number}", f"Last{number}", f"user{number}@example.com", f"password-{number}"
            )
            sphere.roles[user.id] = roles[user_index % len(roles)]
        for stone_index in range(stones_per_sphere):
            room = rng.choice(rooms) if rooms else None
            state: float | None = rng.choice((0, 100, rng.randint(10, 100)))
            if stone_index % 7 == 3:
                state = rng.choice((0.0, 1.0, 0.5))
            if stone_index % 11 == 5:
                state = None
            stone_type = rng.choice(("PLUG", "BUILTIN", "BUILTIN_ONE"))
            if stone_index % 13 == 12:
                stone_type = rng.choice(("CROWNSTONE_USB", "GUIDESTONE"))
            add_stone(
                sphere,
                f"Stone {sphere_index + 1}.{stone_index + 1}",
                stone_type=stone_type,
                location_id=room.id if room else None,
                dimming=rng.random() < 0.5,
                switch_state=state,
            )
        for user_id in sphere.roles:
            if rng.random() < 0.5:
                located = [rng.choice(rooms).id] if rooms and rng.random() < 0.7 else []
                sphere.presence[user_id] = Presence(located, datetime.now(UTC))
    return scenario
