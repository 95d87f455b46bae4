"""What an event of the Crownstone event stream changes in the cloud data, without a request."""

from __future__ import annotations

from .crownstone import (
    AbilityChangeEvent,
    Crownstone,
    CrownstoneAbility,
    DataChangeEvent,
    DataChangeSubType,
    Event,
    PresenceEvent,
    PresenceSubType,
    Sphere,
    Spheres,
    SwitchStateUpdateEvent,
)

# A part of the cloud data to read again: (sphere id, what in it). SPHERES means everything.
type StalePart = tuple[str, DataChangeSubType]


def apply_event(spheres: Spheres, event: Event) -> bool:
    """Apply a switch state, presence or ability change; return whether the data changed."""
    match event:
        case SwitchStateUpdateEvent():
            if (stone := _crownstone(spheres, event.sphere_id, event.crownstone_id)) is None:
                return False
            stone.state = event.percentage
            return True
        case AbilityChangeEvent():
            if (stone := _crownstone(spheres, event.sphere_id, event.crownstone_id)) is None:
                return False
            if (ability := stone.abilities.get(event.ability_type)) is None:
                ability = stone.abilities[event.ability_type] = CrownstoneAbility(
                    {"type": event.ability_type}
                )
            ability.enabled = event.enabled
            ability.synced_to_crownstone = event.synced_to_crownstone
            return True
        case PresenceEvent():
            if (sphere := spheres.find_by_id(event.sphere_id)) is None:
                return False
            _apply_presence(sphere, event)
            return True
    return False


def stale_part(spheres: Spheres, event: Event) -> StalePart | None:
    """Return the part of the data an event shows to be out of date, if any.

    Data changes name what changed but not how; an event about a sphere, Crownstone or person
    we do not know means our copy missed its creation.
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


def _crownstone(spheres: Spheres, sphere_id: str, stone_id: str) -> Crownstone | None:
    sphere = spheres.find_by_id(sphere_id)
    return None if sphere is None else sphere.crownstones.find_by_id(stone_id)


def _apply_presence(sphere: Sphere, event: PresenceEvent) -> None:
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
        _set_member(location.present_people, user_id, inside)
    _set_member(sphere.present_people, user_id, in_sphere)


def _set_member(people: list[str], user_id: str, present: bool) -> None:
    if present and user_id not in people:
        people.append(user_id)
    elif not present and user_id in people:
        people.remove(user_id)
