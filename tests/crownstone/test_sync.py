"""Reading the data tree: shapes, request counts, include fallback, identity across refreshes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from custom_components.crownstone_spotflow.crownstone import (
    CrownstoneCloud,
    CrownstoneInvalidResponseError,
    CrownstoneNotFoundError,
    Sphere,
)
from simulators.crownstone_cloud import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    CloudSimulator,
    generated_home,
)

from .scripted import ScriptedCloud


def _home(cloud: CrownstoneCloud) -> Sphere:
    sphere = cloud.cloud_data.find("Home")
    assert sphere is not None
    return sphere


async def test_initialize_reads_everything(
    cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """Spheres, stones with state and abilities, rooms, users by role and presence."""
    await cloud.async_initialize()
    assert [sphere.name for sphere in cloud.cloud_data] == ["Home", "Cabin"]
    assert len(cloud.cloud_data) == 2
    home = _home(cloud)
    assert home.cloud_id == cloud_sim.sphere_id("Home")
    assert cloud.cloud_data.find_by_id(home.cloud_id) is home
    assert isinstance(home.unique_id, int)
    assert len(home.crownstones) == 7
    assert len(home.locations) == 4

    lamp = home.crownstones.find("Desk lamp")
    assert lamp is not None
    assert lamp.cloud_id == cloud_sim.stone_id("Desk lamp")
    assert lamp.type == "PLUG"
    assert lamp.sphere_id == home.cloud_id
    assert lamp.location_id == cloud_sim.location_id("Living room")
    assert lamp.sw_version
    assert lamp.hardware_version
    assert lamp.mac_address
    assert lamp.icon
    assert (lamp.state, lamp.state_known) == (100, True)
    assert lamp.dimming_enabled
    assert lamp.switches_power
    dimming = lamp.abilities["dimming"]
    assert (dimming.type, dimming.enabled, dimming.synced_to_crownstone) == ("dimming", True, True)
    assert all(
        isinstance(value, str) for value in lamp.abilities["tapToToggle"].properties.values()
    )
    assert home.crownstones.find_by_uid(lamp.unique_id) is lamp
    assert home.crownstones.find_by_id(lamp.cloud_id) is lamp

    ceiling = cloud.get_crownstone("Ceiling light")
    assert (ceiling.type, ceiling.state) == ("BUILTIN_ONE", 60)
    spots = cloud.get_crownstone("Kitchen spots")
    assert "dimming" in spots.abilities
    assert not spots.dimming_enabled
    coffee = cloud.get_crownstone("Coffee machine")
    assert not coffee.dimming_enabled
    assert (coffee.state, coffee.state_known) == (0, True)
    assert not cloud.get_crownstone("USB dongle").switches_power
    assert not cloud.get_crownstone("Guidestone").switches_power

    users = home.users
    assert len(users) == 3
    ann = users.find_by_id(cloud_sim.user_id(DEMO_EMAIL))
    assert ann is not None
    assert (ann.first_name, ann.last_name, ann.email, ann.role, ann.email_verified) == (
        "Ann",
        "Admin",
        DEMO_EMAIL,
        "admin",
        True,
    )
    assert users.find("Ann Admin") is ann
    assert users.find("Nobody") is None
    assert users.find_by_first_name("Bob")[0].role == "member"
    assert users.find_by_last_name("Guest")[0].role == "guest"
    assert users.find_by_first_name("Zed") == []

    bob = cloud_sim.user_id("bob@example.com")
    assert set(home.present_people) == {ann.cloud_id, bob}
    living = home.locations.find("Living room")
    assert living is not None
    assert living.present_people == [ann.cloud_id]
    assert (living.sphere_id, living.cloud_id) == (
        home.cloud_id,
        cloud_sim.location_id("Living room"),
    )
    assert isinstance(living.unique_id, int)
    assert home.locations.find_by_id(living.cloud_id) is living
    assert home.locations.find("Attic") is None
    kitchen = home.locations.find("Kitchen")
    assert kitchen is not None
    assert kitchen.present_people == []


async def test_null_state_and_missing_abilities(synced_cloud: CrownstoneCloud) -> None:
    """A stone that never reported and has no ability rows reads as state 0, unknown, no dimming."""
    plug = synced_cloud.get_crownstone("Hallway plug")
    assert (plug.state, plug.state_known) == (0, False)
    assert plug.abilities == {}
    assert not plug.dimming_enabled


async def test_full_refresh_request_counts(
    cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """1 + 2·N with users, 1 + N without; presence is read once per sphere."""
    await cloud.async_initialize()
    assert cloud_sim.request_count() == 1 + 1 + 2 * 2  # login, spheres, presence + users each
    assert cloud_sim.request_count(path_contains="/presentPeople") == 2
    cloud_sim.reset_counters()
    await cloud.async_synchronize(users=True)
    assert cloud_sim.request_count() == 1 + 2 * 2
    cloud_sim.reset_counters()
    await cloud.async_synchronize()
    assert cloud_sim.request_count() == 1 + 2
    assert cloud_sim.request_count(path_contains="/users/") == 1  # /users/{id}/spheres only


async def test_lost_sphere_during_refresh(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """Presence of known spheres is read alongside the listing; a sphere just lost is dropped."""
    cabin_id = cloud_sim.sphere_id("Cabin")
    cloud_sim.remove_sphere(cabin_id)
    await synced_cloud.async_synchronize()
    assert [sphere.name for sphere in synced_cloud.cloud_data] == ["Home"]
    assert synced_cloud.cloud_data.find_by_id(cabin_id) is None


async def test_new_sphere_during_refresh(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A sphere new in the listing gets its presence read after it."""
    attic_id = cloud_sim.add_sphere("Attic", DEMO_EMAIL)
    cloud_sim.enter_sphere(cloud_sim.user_id(DEMO_EMAIL), attic_id)
    await synced_cloud.async_synchronize()
    attic = synced_cloud.cloud_data.find_by_id(attic_id)
    assert attic is not None
    assert attic.present_people == [cloud_sim.user_id(DEMO_EMAIL)]
    assert len(attic.users) == 1
    assert cloud_sim.request_count() == 1 + 3 + 1


async def test_users_of_a_new_sphere_are_read_with_it(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A new sphere's users are read alongside its presence, once, though nobody is in it."""
    attic_id = cloud_sim.add_sphere("Attic", DEMO_EMAIL)
    await synced_cloud.async_synchronize()
    attic = synced_cloud.cloud_data.find_by_id(attic_id)
    assert attic is not None
    assert attic.present_people == []
    assert [user.full_name for user in attic.users] == ["Ann Admin"]
    assert cloud_sim.request_count(path_contains=f"Spheres/{attic_id}/users") == 1
    cloud_sim.reset_counters()
    await synced_cloud.async_synchronize()
    assert cloud_sim.request_count() == 1 + 3


async def test_server_stops_including_relations(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """Relations missing from a listing are read per sphere in the same refresh."""
    lamp = synced_cloud.get_crownstone("Desk lamp")
    cloud_sim.set_switch_state(lamp.cloud_id, 30)
    cloud_sim.set_include_support(False)
    await synced_cloud.async_synchronize()
    assert lamp.state == 30
    assert len(_home(synced_cloud).locations) == 4
    assert not synced_cloud.cloud_data.server_includes_relations


async def test_generated_home_within_budget(websession: aiohttp.ClientSession) -> None:
    """10 spheres: at most 21 requests for a full refresh, every legacy state a percentage."""
    sim = CloudSimulator(generated_home(spheres=10, stones_per_sphere=30), phone_delay=None)
    await sim.start(host="127.0.0.1", port=0)
    try:
        cloud = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, websession, base_url=sim.url)
        await cloud.async_login()
        sim.reset_counters()
        await cloud.async_synchronize(users=True)
        assert sim.request_count() <= 1 + 2 * 10
        states = [stone.state for sphere in cloud.cloud_data for stone in sphere.crownstones]
        assert len(states) == 300
        assert all(0 <= state <= 100 for state in states)
        unknown = [
            s for sphere in cloud.cloud_data for s in sphere.crownstones if not s.state_known
        ]
        assert unknown
        assert all(stone.state == 0 for stone in unknown)
    finally:
        await sim.stop()


async def test_users_read_when_presence_names_a_stranger(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """Without users=True, users are read only for a sphere whose presence names someone new."""
    home_id = cloud_sim.sphere_id("Home")
    dave = cloud_sim.add_user(home_id, "Dave", "New", "dave@example.com", "pw", "member")
    await synced_cloud.async_synchronize()
    assert cloud_sim.request_count(path_contains="/users") == 1  # spheres only
    cloud_sim.enter_sphere(dave, home_id)
    cloud_sim.reset_counters()
    await synced_cloud.async_synchronize()
    assert cloud_sim.request_count(path_contains=f"Spheres/{home_id}/users") == 1
    assert cloud_sim.request_count(path_contains="/users") == 2
    assert _home(synced_cloud).users.find("Dave New") is not None
    assert dave in _home(synced_cloud).present_people


async def test_include_fallback_is_remembered(
    cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A server that ignores includes gets per-sphere calls, at once from the next refresh on."""
    cloud_sim.set_include_support(False)
    await cloud.async_initialize()
    assert len(_home(cloud).crownstones) == 7
    assert _home(cloud).locations.find("Living room").present_people  # type: ignore[union-attr]
    assert cloud_sim.request_count(path_contains="/ownedStones") == 2
    assert cloud_sim.request_count(path_contains="/ownedLocations") == 2
    cloud_sim.reset_counters()
    await cloud.async_synchronize()
    assert cloud_sim.request_count() == 1 + 3 * 2
    method, spheres_path = cloud_sim.requests[0]
    assert (method, spheres_path.endswith("/spheres")) == ("GET", True)
    assert not cloud.cloud_data.server_includes_relations


async def test_include_filter_is_the_nested_object_form(
    websession: aiohttp.ClientSession,
) -> None:
    """The include asks for abilities with their properties, never the plain "abilities"."""
    seen: list[str] = []

    async def spheres(request: aiohttp.web.Request) -> aiohttp.web.Response:
        seen.append(request.query["filter"])
        return aiohttp.web.json_response([])

    app = aiohttp.web.Application()
    app.router.add_post("/api/users/login", _login)
    app.router.add_get("/api/users/u1/spheres", spheres)
    runner = aiohttp.web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        other = CrownstoneCloud("a@b.c", "pw", websession, base_url=f"http://127.0.0.1:{port}/api")
        await other.async_synchronize()
    finally:
        await runner.cleanup()
    assert seen == [
        '{"include":[{"ownedStones":["currentSwitchState",{"abilities":"properties"}]},'
        '"ownedLocations"]}'
    ]
    assert len(other.cloud_data) == 0


async def _login(_: aiohttp.web.Request) -> aiohttp.web.Response:
    return aiohttp.web.json_response({"id": "t" * 64, "userId": "u1"})


async def test_refresh_keeps_object_identity(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """Renames and new states update the objects entities hold; removed items disappear."""
    home = _home(synced_cloud)
    lamp = synced_cloud.get_crownstone("Desk lamp")
    living = home.locations.find("Living room")
    ann = home.users.find("Ann Admin")
    cloud_sim.rename_stone(lamp.cloud_id, "Reading lamp")
    cloud_sim.set_switch_state(lamp.cloud_id, 40)
    coffee = synced_cloud.get_crownstone("Coffee machine")
    cloud_sim.remove_stone(coffee.cloud_id)
    new_id = cloud_sim.add_stone(home.cloud_id, "Fan", dimming=True, switch_state=20)
    await synced_cloud.async_synchronize(users=True)
    assert _home(synced_cloud) is home
    assert synced_cloud.get_crownstone("Reading lamp") is lamp
    assert (lamp.name, lamp.state) == ("Reading lamp", 40)
    assert home.locations.find("Living room") is living
    assert living is not None
    assert living.present_people
    assert home.users.find("Ann Admin") is ann
    assert home.crownstones.find_by_id(coffee.cloud_id) is None
    assert synced_cloud.get_crownstone_by_id(new_id).state == 20


async def test_event_stream_style_updates(synced_cloud: CrownstoneCloud) -> None:
    """Models take pushed changes as plain assignments."""
    lamp = synced_cloud.get_crownstone("Hallway plug")
    lamp.state = 55
    assert (lamp.state, lamp.state_known) == (55, True)
    lamp.state = 140
    assert lamp.state == 100
    spots = synced_cloud.get_crownstone("Kitchen spots")
    spots.abilities["dimming"].enabled = True
    assert spots.dimming_enabled
    home = _home(synced_cloud)
    home.present_people = []
    assert home.present_people == []


async def test_lookups(synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator) -> None:
    """get_crownstone* find by name, id and uid, optionally within one sphere, or raise."""
    lamp = synced_cloud.get_crownstone("Desk lamp")
    home_id = cloud_sim.sphere_id("Home")
    cabin_id = cloud_sim.sphere_id("Cabin")
    assert synced_cloud.get_crownstone("Desk lamp", home_id) is lamp
    assert synced_cloud.get_crownstone_by_id(lamp.cloud_id, home_id) is lamp
    assert synced_cloud.get_crownstone_by_uid(lamp.unique_id, home_id) is lamp
    with pytest.raises(CrownstoneNotFoundError, match="Nothing"):
        synced_cloud.get_crownstone("Nothing")
    with pytest.raises(CrownstoneNotFoundError):
        synced_cloud.get_crownstone("Desk lamp", cabin_id)
    with pytest.raises(CrownstoneNotFoundError):
        synced_cloud.get_crownstone_by_id("no-such-id")
    with pytest.raises(CrownstoneNotFoundError):
        synced_cloud.get_crownstone_by_uid(999)
    assert synced_cloud.cloud_data.find("Attic") is None
    assert synced_cloud.cloud_data.find_by_id("nope") is None
    assert _home(synced_cloud).crownstones.find("Nothing") is None
    assert _home(synced_cloud).crownstones.find_by_uid(999) is None
    assert "nope" not in _home(synced_cloud).crownstones


async def test_partial_refreshes(synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator) -> None:
    """Each collection refreshes on its own with one request."""
    home = _home(synced_cloud)
    ann = cloud_sim.user_id(DEMO_EMAIL)
    kitchen_id = cloud_sim.location_id("Kitchen")
    cloud_sim.enter_location(ann, home.cloud_id, kitchen_id)
    cloud_sim.add_location(home.cloud_id, "Attic")
    await home.crownstones.async_update_crownstone_data()
    await home.locations.async_update_location_data()
    await home.locations.async_update_location_presence()
    await home.users.async_update_user_data()
    await synced_cloud.cloud_data.async_update_sphere_data()
    assert cloud_sim.request_count() == 5
    assert home.locations.find("Attic") is not None
    assert home.locations.find_by_id(kitchen_id).present_people == [ann]  # type: ignore[union-attr]
    cloud_sim.exit_sphere(ann, home.cloud_id)
    await home.async_update_sphere_presence()
    assert ann not in home.present_people


async def test_keys(synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator) -> None:
    """Keys per sphere by type, stone keys for admins; one request; set on the spheres."""
    keys = await synced_cloud.async_get_keys()
    home = _home(synced_cloud)
    assert set(keys) == {sphere.cloud_id for sphere in synced_cloud.cloud_data}
    assert home.keys is keys[home.cloud_id]
    assert {"ADMIN_KEY", "MEMBER_KEY", "BASIC_KEY"} <= set(home.keys.sphere_keys)
    assert home.keys.sphere_authorization_token
    assert set(home.keys.stone_keys) == {stone.cloud_id for stone in home.crownstones}
    sphere_keys = await home.async_get_keys()
    assert sphere_keys is not None
    assert sphere_keys.sphere_keys == keys[home.cloud_id].sphere_keys
    assert cloud_sim.request_count(path_contains="/keysV2") == 2


async def test_guest_keys(cloud_sim: CloudSimulator, websession: aiohttp.ClientSession) -> None:
    """A guest gets fewer keys and no stone keys."""
    cloud = CrownstoneCloud("cleo@example.com", "cleo-password", websession, base_url=cloud_sim.url)
    await cloud.async_initialize()
    keys = await cloud.async_get_keys()
    (home_keys,) = keys.values()
    assert "ADMIN_KEY" not in home_keys.sphere_keys
    assert home_keys.stone_keys == {}


async def test_malformed_tree_leaves_the_old_one(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession
) -> None:
    """A body of the wrong shape raises and changes nothing already read."""
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    await cloud.async_synchronize()
    lamp = cloud.get_crownstone("Lamp")
    scripted.break_path(
        "/spheres",
        '[{"id":"sphere1","name":"Home","uid":7,"ownedLocations":[],'
        '"ownedStones":[{"id":"stone1","name":"Renamed","uid":1,"type":"PLUG"},{"id":"x"}]}]',
    )
    with pytest.raises(CrownstoneInvalidResponseError, match=r"stone\.name"):
        await cloud.async_synchronize()
    assert cloud.get_crownstone_by_id("stone1") is lamp
    assert lamp.name == "Lamp"
    assert len(cloud.cloud_data.find("Home").locations) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, 0), (1, 100), (0.5, 50), (0.0, 0), (60, 60), (100, 100), (99.6, 100), (None, None)],
)
async def test_switch_state_values(
    scripted: ScriptedCloud,
    websession: aiohttp.ClientSession,
    raw: float | None,
    expected: int | None,
) -> None:
    """Legacy fractions 0 < x <= 1 are scaled; null means never reported."""
    stone = scripted.bodies["/spheres"][0]["ownedStones"][0]
    stone["currentSwitchState"] = {"switchState": raw}
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    await cloud.async_synchronize()
    lamp = cloud.get_crownstone("Lamp")
    assert lamp.state_known is (expected is not None)
    assert lamp.state == (expected or 0)


def _set_stone_field(bodies: dict[str, Any], key: str, value: object) -> None:
    bodies["/spheres"][0]["ownedStones"][0][key] = value


@pytest.mark.parametrize(
    ("path", "change", "field"),
    [
        ("/spheres", lambda b: _set_stone_field(b, "uid", "1"), "stone.uid"),
        ("/spheres", lambda b: _set_stone_field(b, "uid", True), "stone.uid"),
        ("/spheres", lambda b: _set_stone_field(b, "name", None), "stone.name"),
        ("/spheres", lambda b: _set_stone_field(b, "currentSwitchState", 5), "currentSwitchState"),
        (
            "/spheres",
            lambda b: _set_stone_field(b, "currentSwitchState", {"switchState": "50"}),
            "switchState",
        ),
        (
            "/spheres",
            lambda b: _set_stone_field(b, "currentSwitchState", {"switchState": 150}),
            "switchState",
        ),
        (
            "/spheres",
            lambda b: _set_stone_field(b, "abilities", [{"type": "dimming", "enabled": "yes"}]),
            "ability.enabled",
        ),
        ("/spheres", lambda b: _set_stone_field(b, "abilities", {}), "stone.abilities"),
        ("/spheres", lambda b: b["/spheres"][0].update(ownedLocations=[3]), "ownedLocations"),
        ("/presentPeople", lambda b: b.update({"/presentPeople": {}}), "present people"),
        (
            "/presentPeople",
            lambda b: b.update({"/presentPeople": [{"userId": "user1", "locations": [1]}]}),
            "locations",
        ),
        ("/users", lambda b: b.update({"/users": []}), "users of a sphere"),
        ("/users", lambda b: b["/users"].update(admins=[{"firstName": "X"}]), "user.id"),
    ],
)
async def test_wrong_shapes_name_the_field(
    scripted: ScriptedCloud,
    websession: aiohttp.ClientSession,
    path: str,
    change: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    """A wrong shape is CrownstoneInvalidResponseError naming the field, not its value."""
    change(scripted.bodies)
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    with pytest.raises(CrownstoneInvalidResponseError, match=field):
        await cloud.async_synchronize(users=True)


async def test_lenient_where_the_cloud_is(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession
) -> None:
    """Missing optional fields, null lists and keys without a value are fine."""
    stone = scripted.bodies["/spheres"][0]["ownedStones"][0]
    for key in ("address", "icon", "firmwareVersion", "hardwareVersion", "locationId"):
        del stone[key]
    stone["abilities"] = [{"type": "dimming", "properties": None}]
    scripted.bodies["/presentPeople"] = [{"userId": "user1", "locations": None}]
    scripted.bodies["/users"] = {"admins": None, "members": [{"id": "user1"}]}
    scripted.bodies["/keysV2"][0]["sphereKeys"].append({"keyType": "MEMBER_KEY", "key": None})
    scripted.bodies["/keysV2"][0]["stoneKeys"] = None
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    await cloud.async_synchronize(users=True)
    lamp = cloud.get_crownstone("Lamp")
    assert (lamp.mac_address, lamp.icon, lamp.sw_version, lamp.location_id) == (None,) * 4
    assert not lamp.dimming_enabled
    assert lamp.abilities["dimming"].properties == {}
    (sphere,) = cloud.cloud_data
    assert sphere.present_people == ["user1"]
    user = sphere.users.find_by_id("user1")
    assert user is not None
    assert (user.role, user.full_name, user.email) == ("member", "", None)
    assert not user.email_verified
    keys = await cloud.async_get_keys()
    assert set(keys["sphere1"].sphere_keys) == {"ADMIN_KEY"}
    assert keys["sphere1"].stone_keys == {}
