"""What an event, or a read, changes in the data tree, and which objects it changed.

An application shows many objects; it should redraw only those a change touched, so that the
cost of an event does not grow with the account. An event says what changed and is applied
here without a request. A read only says how things are now: its changes are found by
comparing a snapshot of the tree taken before it with one taken after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .crownstones import Crownstone, CrownstoneAbility
from .events import (
    AbilityChangeEvent,
    DataChangeEvent,
    DataChangeSubType,
    Event,
    PresenceEvent,
    PresenceSubType,
    SwitchStateUpdateEvent,
)
from .spheres import Sphere, Spheres

# A user's presence in one sphere: (sphere id, user id). User ids are shared between spheres.
type SpherePerson = tuple[str, str]

# A part of the tree to read again: (sphere id, what in it). SPHERES means everything.
type StalePart = tuple[str, DataChangeSubType]


@dataclass(slots=True)
class Changes:
    """Which objects a change touched.

    `objects` holds the cloud ids of the spheres, locations and Crownstones whose data changed
    (for a sphere or location, who is present in it), `people` the users whose presence in a
    sphere, or whose name, changed. `structure` is set when objects came or went or were
    renamed: what an application builds from the tree as a whole (its list of devices) is out
    of date.
    """

    objects: set[str] = field(default_factory=set)
    people: set[SpherePerson] = field(default_factory=set)
    structure: bool = False

    def __bool__(self) -> bool:
        """Tell whether anything changed."""
        return bool(self.objects or self.people or self.structure)

    def update(self, other: Changes) -> None:
        """Add the changes of another event or read."""
        self.objects |= other.objects
        self.people |= other.people
        self.structure |= other.structure


def apply_event(spheres: Spheres, event: Event) -> Changes:
    """Apply a switch state, ability or presence change; return what it changed."""
    changes = Changes()
    match event:
        case SwitchStateUpdateEvent():
            stone = _crownstone(spheres, event.sphere_id, event.crownstone_id)
            if stone is not None and (stone.state, stone.state_known) != (event.percentage, True):
                stone.state = event.percentage
                changes.objects.add(stone.cloud_id)
        case AbilityChangeEvent():
            if (stone := _crownstone(spheres, event.sphere_id, event.crownstone_id)) is None:
                return changes
            ability = stone.abilities.setdefault(
                event.ability_type, CrownstoneAbility({"type": event.ability_type})
            )
            before = _ability_state(ability)
            ability.enabled = event.enabled
            ability.synced_to_crownstone = event.synced_to_crownstone
            if _ability_state(ability) != before:
                changes.objects.add(stone.cloud_id)
        case PresenceEvent():
            if (sphere := spheres.find_by_id(event.sphere_id)) is not None:
                _apply_presence(sphere, event, changes)
    return changes


def stale_part(spheres: Spheres, event: Event) -> StalePart | None:
    """Return the part of the tree an event shows to be out of date, if any.

    Data changes name what changed but not how; an event about a sphere, Crownstone or person
    the tree does not know means it missed its creation.
    """
    sphere = spheres.find_by_id(getattr(event, "sphere_id", ""))
    match event:
        case DataChangeEvent():
            if sphere is None:
                return event.sphere_id, DataChangeSubType.SPHERES
            return event.sphere_id, event.sub_type
        case SwitchStateUpdateEvent() | AbilityChangeEvent() if (
            sphere is None or event.crownstone_id not in sphere.crownstones
        ):
            return event.sphere_id, (
                DataChangeSubType.SPHERES if sphere is None else DataChangeSubType.STONES
            )
        case PresenceEvent() if sphere is None:
            return event.sphere_id, DataChangeSubType.SPHERES
        case PresenceEvent() if sphere is not None and event.user_id not in sphere.users:
            return event.sphere_id, DataChangeSubType.USERS
    return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What every object of the tree showed at one moment, to compare with a later one."""

    # Cloud id or sphere person -> everything an application shows of it.
    contents: dict[str | SpherePerson, object]
    # Cloud id or sphere person -> name: the objects that exist, as they are called.
    names: dict[str | SpherePerson, str]

    @classmethod
    def of(cls, spheres: Spheres) -> Snapshot:
        """Take a snapshot of the tree (one pass over it, no request)."""
        contents: dict[str | SpherePerson, object] = {}
        names: dict[str | SpherePerson, str] = {}
        for sphere in spheres:
            names[sphere.cloud_id] = sphere.name
            contents[sphere.cloud_id] = tuple(sphere.present_people)
            for location in sphere.locations:
                names[location.cloud_id] = location.name
                contents[location.cloud_id] = tuple(location.present_people)
            for stone in sphere.crownstones:
                names[stone.cloud_id] = stone.name
                contents[stone.cloud_id] = _crownstone_state(stone)
            for user in sphere.users:
                person = (sphere.cloud_id, user.cloud_id)
                names[person] = user.full_name
                contents[person] = (user.full_name, user.cloud_id in sphere.present_people)
        return cls(contents, names)

    def changes_since(self, before: Snapshot) -> Changes:
        """Return what changed from an earlier snapshot to this one."""
        changes = Changes(structure=self.names != before.names)
        for key, content in self.contents.items():
            if key in before.contents and before.contents[key] == content:
                continue
            if isinstance(key, str):
                changes.objects.add(key)
            else:
                changes.people.add(key)
        return changes


def _crownstone_state(stone: Crownstone) -> tuple[object, ...]:
    return (
        *(getattr(stone, name) for name in stone.CLOUD_FIELDS if name != "abilities"),
        tuple(sorted(_ability_state(ability) for ability in stone.abilities.values())),
    )


def _ability_state(ability: CrownstoneAbility) -> tuple[object, ...]:
    return (
        ability.type,
        ability.enabled,
        ability.synced_to_crownstone,
        tuple(sorted(ability.properties.items())),
    )


def _crownstone(spheres: Spheres, sphere_id: str, stone_id: str) -> Crownstone | None:
    sphere = spheres.find_by_id(sphere_id)
    return None if sphere is None else sphere.crownstones.find_by_id(stone_id)


def _apply_presence(sphere: Sphere, event: PresenceEvent, changes: Changes) -> None:
    """Move a person in or out of the sphere and its rooms, as the cloud's presence would."""
    user_id = event.user_id
    in_sphere = event.sub_type != PresenceSubType.EXIT_SPHERE
    for location in sphere.locations:
        if event.sub_type == PresenceSubType.ENTER_LOCATION:
            # A person is in one room at a time.
            inside = location.cloud_id == event.location_id
        elif event.sub_type == PresenceSubType.ENTER_SPHERE:
            inside = user_id in location.present_people
        else:
            inside = (
                in_sphere
                and location.cloud_id != event.location_id
                and user_id in location.present_people
            )
        if _set_member(location.present_people, user_id, inside):
            changes.objects.add(location.cloud_id)
    if _set_member(sphere.present_people, user_id, in_sphere):
        changes.objects.add(sphere.cloud_id)
        changes.people.add((sphere.cloud_id, user_id))


def _set_member(people: list[str], user_id: str, present: bool) -> bool:
    """Add or remove a person; return whether that changed the list."""
    if present and user_id not in people:
        people.append(user_id)
        return True
    if not present and user_id in people:
        people.remove(user_id)
        return True
    return False
