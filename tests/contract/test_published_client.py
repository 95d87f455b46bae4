"""The published `crownstone-cloud` 1.4.11 client runs unchanged against the simulator.

Only its hard-coded base URL is pointed at the simulator (configuration, not protocol). Where the
published client cannot cope with the real server's behaviour, the test asserts that failure
explicitly, so a change in either the simulator or the client shows up here. Where the simulator
answered what the real server does not (a 204 without a content type), the simulator was fixed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import logging
from typing import Any

import aiohttp
from crownstone_cloud import CrownstoneCloud
from crownstone_cloud.exceptions import (
    CrownstoneAbilityError,
    CrownstoneAuthenticationError,
    CrownstoneNotFoundError,
)
import crownstone_cloud.helpers.requests
import pytest

from custom_components.crownstone_spotflow.crownstone import CrownstoneCloud as OwnCloud
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator
from tests.simulators.helpers import EventReader, login, open_stream


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CloudSimulator]:
    """The demo home, with the published client's base URL pointed at it."""
    simulator = CloudSimulator(phone_delay=0.01, ping_interval=30)
    await simulator.start()
    # requests.py copied the constant at import time, so patch it where it is used.
    monkeypatch.setattr(crownstone_cloud.helpers.requests, "DEFAULT_CLOUD_ADDR", simulator.url)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The session handed to the published client; the test owns and closes it."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client(sim: CloudSimulator, http: aiohttp.ClientSession) -> CrownstoneCloud:
    """The published client, logged in and synchronised."""
    cloud = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, clientsession=http)
    await cloud.async_initialize()
    return cloud


@pytest.fixture
async def events(sim: CloudSimulator, http: aiohttp.ClientSession) -> AsyncIterator[EventReader]:
    """Ann's event stream, to see what the switch calls did."""
    token, _ = await login(http, sim, DEMO_EMAIL, DEMO_PASSWORD)
    reader = await open_stream(http, sim, token)
    await reader.next_of("system")
    yield reader
    reader.response.close()


async def test_initialize_costs_one_plus_five_requests_per_sphere(
    sim: CloudSimulator, http: aiohttp.ClientSession
) -> None:
    cloud = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, clientsession=http)
    await cloud.async_initialize()
    assert cloud.cloud_data.user_id == sim.user_id(DEMO_EMAIL)
    assert len(cloud.access_token) == 64
    assert sim.request_count("POST", "/users/login") == 1
    assert sim.request_count() == 2 + 5 * 2  # login, spheres, then 5 calls for each sphere
    assert sim.request_count(path_contains="presentPeople") == 4  # twice per sphere
    sim.reset_counters()
    await cloud.async_synchronize()
    assert sim.request_count() == 1 + 5 * 2
    assert not http.closed  # the published client leaves an injected session alone


async def test_lookups(sim: CloudSimulator, client: CrownstoneCloud) -> None:
    desk = client.get_crownstone("Desk lamp")
    assert desk.cloud_id == sim.stone_id("Desk lamp")
    assert desk.type == "PLUG"
    assert desk.sw_version == "5.4.0"
    assert desk.state == 100
    assert desk.abilities["dimming"].is_enabled
    assert client.get_crownstone_by_id(desk.cloud_id) is desk
    home_id = sim.sphere_id("Home")
    assert client.get_crownstone_by_uid(desk.unique_id, home_id) is desk
    cabin_lamp = client.get_crownstone("Cabin lamp", sim.sphere_id("Cabin"))
    assert cabin_lamp.state == 0
    with pytest.raises(CrownstoneNotFoundError):
        client.get_crownstone("Desk lamp", sim.sphere_id("Cabin"))
    with pytest.raises(CrownstoneNotFoundError):
        client.get_crownstone_by_id("ffffffffffffffffffffffff")
    with pytest.raises(CrownstoneNotFoundError):
        client.get_crownstone_by_uid(99)

    home = client.cloud_data.find("Home")
    assert home is not None
    assert home.cloud_id == home_id
    assert home.unique_id == 1
    assert client.cloud_data.find_by_id(home_id) is home
    assert client.cloud_data.find("Attic") is None
    assert {stone.name for stone in home.crownstones} == {
        "Desk lamp",
        "Ceiling light",
        "Coffee machine",
        "Kitchen spots",
        "Hallway plug",
        "USB dongle",
        "Guidestone",
    }
    assert home.crownstones.find("Guidestone").type == "GUIDESTONE"  # type: ignore[union-attr]
    assert home.crownstones.find_by_uid(desk.unique_id) is desk
    living = home.locations.find("Living room")
    assert living is not None
    assert living.cloud_id == sim.location_id("Living room")
    assert home.locations.find_by_id(living.cloud_id) is living


async def test_presence(sim: CloudSimulator, client: CrownstoneCloud) -> None:
    home = client.cloud_data.find_by_id(sim.sphere_id("Home"))
    assert home is not None
    ann, bob = sim.user_id(DEMO_EMAIL), sim.user_id("bob@example.com")
    assert home.present_people == [ann, bob]
    living = home.locations.find("Living room")
    assert living is not None
    assert living.present_people == [ann]
    assert home.locations.find("Kitchen").present_people == []  # type: ignore[union-attr]

    sim.enter_location(bob, home.cloud_id, sim.location_id("Kitchen"))
    sim.exit_sphere(ann, home.cloud_id)
    await client.async_synchronize()
    assert home.present_people == [bob]
    assert home.locations.find("Kitchen").present_people == [bob]  # type: ignore[union-attr]
    assert living.present_people == []


async def test_users(sim: CloudSimulator, client: CrownstoneCloud) -> None:
    home = client.cloud_data.find("Home")
    assert home is not None
    (bob,) = home.users.find_by_first_name("Bob")
    assert bob.role == "members"
    assert bob.email == "bob@example.com"
    assert bob.email_verified is True
    assert [user.role for user in home.users.find_by_last_name("Guest")] == ["guests"]
    ann = home.users.find_by_id(sim.user_id(DEMO_EMAIL))
    assert ann is not None
    assert ann.role == "admins"
    assert ann.first_name == "Ann"
    assert home.users.find_by_first_name("Nobody") == []


async def test_keys(sim: CloudSimulator, client: CrownstoneCloud) -> None:
    home = client.cloud_data.find("Home")
    assert home is not None
    keys = await home.async_get_keys()
    assert set(keys) == {
        "ADMIN_KEY",
        "MEMBER_KEY",
        "BASIC_KEY",
        "LOCALIZATION_KEY",
        "SERVICE_DATA_KEY",
        "MESH_APPLICATION_KEY",
        "MESH_NETWORK_KEY",
    }
    assert all(len(key) == 32 for key in keys.values())
    assert keys["ADMIN_KEY"] == sim.sphere(home.cloud_id).key("ADMIN_KEY")


async def test_switching_succeeds_on_the_json_labelled_204(
    sim: CloudSimulator, client: CrownstoneCloud, events: EventReader
) -> None:
    """The real cloud labels its empty 204 as JSON, so `response.json()` gives None: success."""
    coffee = client.get_crownstone("Coffee machine")
    await coffee.async_turn_on()
    assert (await events.next_of("command"))["switchData"][0]["type"] == "TURN_ON"
    update = await events.next_of("switchStateUpdate")
    assert (update["crownstone"]["name"], update["crownstone"]["percentage"]) == (
        "Coffee machine",
        100,
    )
    await coffee.async_turn_off()
    assert (await events.next_of("switchStateUpdate"))["crownstone"]["percentage"] == 0

    desk = client.get_crownstone("Desk lamp")
    await desk.async_set_brightness(50)
    assert (await events.next_of("switchStateUpdate"))["crownstone"]["percentage"] == 50
    await client.async_synchronize()
    assert desk.state == 50
    assert sim.request_count("POST", "/switch") == 3
    assert sim.commands == [
        (coffee.cloud_id, "TURN_ON", None),
        (coffee.cloud_id, "TURN_OFF", None),
        (desk.cloud_id, "PERCENTAGE", 50),
    ]


async def test_rejected_dimming_is_only_logged(
    sim: CloudSimulator,
    client: CrownstoneCloud,
    events: EventReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The published client never checks the status: a 500 without a code returns quietly."""
    desk = client.get_crownstone("Desk lamp")
    with caplog.at_level(logging.ERROR, logger="crownstone_cloud"):
        await desk.async_set_brightness(5)
    assert "Dimming below 10% is not allowed." in caplog.text
    with pytest.raises(TimeoutError):
        await events.next_of("command", wait=0.2)
    assert sim.stone(desk.cloud_id)[1].switch_state.value == 100  # type: ignore[union-attr]


async def test_ability_handling(client: CrownstoneCloud) -> None:
    # A dimming row that is disabled: refused client-side, as intended.
    with pytest.raises(CrownstoneAbilityError):
        await client.get_crownstone("Kitchen spots").async_set_brightness(50)
    # No dimming row at all, which the real cloud returns: the published client crashes.
    with pytest.raises(KeyError, match="dimming"):
        await client.get_crownstone("Coffee machine").async_set_brightness(50)
    with pytest.raises(KeyError, match="dimming"):
        await client.get_crownstone("Hallway plug").async_set_brightness(50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        await client.get_crownstone("Desk lamp").async_set_brightness(101)


async def test_null_switch_state_crashes_the_published_client(client: CrownstoneCloud) -> None:
    hallway = client.get_crownstone("Hallway plug")
    assert hallway.data["currentSwitchState"] is None
    with pytest.raises(TypeError):
        _ = hallway.state


async def test_wrong_password(sim: CloudSimulator, http: aiohttp.ClientSession) -> None:
    cloud = CrownstoneCloud(DEMO_EMAIL, "not-the-password", clientsession=http)
    with pytest.raises(CrownstoneAuthenticationError) as raised:
        await cloud.async_initialize()
    assert raised.value.type == "LOGIN_FAILED"


async def test_unverified_email(sim: CloudSimulator, http: aiohttp.ClientSession) -> None:
    sim.set_email_verified(DEMO_EMAIL, False)
    cloud = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, clientsession=http)
    with pytest.raises(CrownstoneAuthenticationError) as raised:
        await cloud.async_initialize()
    assert raised.value.type == "LOGIN_FAILED_EMAIL_NOT_VERIFIED"


async def test_token_expiry_breaks_the_published_client(
    sim: CloudSimulator, client: CrownstoneCloud
) -> None:
    """It logs in again and retries, then returns the original error body instead."""
    old_token = client.access_token
    sim.expire_tokens()
    sim.reset_counters()
    with pytest.raises(TypeError):  # iterates {"error": ...} as if it were the sphere list
        await client.async_synchronize()
    assert client.access_token != old_token
    assert sim.requests[:3] == [
        ("GET", f"/api/users/{client.cloud_data.user_id}/spheres"),
        ("POST", "/api/users/login"),
        ("GET", f"/api/users/{client.cloud_data.user_id}/spheres"),
    ]
    # With the new token in place, the next synchronisation works again.
    await client.async_synchronize()
    assert client.get_crownstone("Desk lamp").state == 100


def _published_tree(cloud: CrownstoneCloud) -> dict[str, Any]:
    """What the published client read, in neutral terms."""
    return {
        sphere.cloud_id: {
            "name": sphere.name,
            "uid": sphere.unique_id,
            "present": sorted(sphere.present_people),
            "stones": {
                stone.cloud_id: (
                    stone.name,
                    stone.unique_id,
                    stone.type,
                    stone.sw_version,
                    stone.data["locationId"],
                    # The published client reads a never-reported state as a crash; compare raw.
                    (stone.data["currentSwitchState"] or {}).get("switchState"),
                    {kind: ability.is_enabled for kind, ability in stone.abilities.items()},
                )
                for stone in sphere.crownstones
            },
            "locations": {
                location.cloud_id: (location.name, location.unique_id, location.present_people)
                for location in sphere.locations
            },
            "users": {
                # The published client keeps the group name ("admins"), ours the role ("admin").
                user.cloud_id: (
                    user.role.removesuffix("s"),
                    user.first_name,
                    user.last_name,
                    user.email,
                )
                for user in sphere.users
            },
        }
        for sphere in cloud.cloud_data
    }


def _own_tree(cloud: OwnCloud) -> dict[str, Any]:
    """What our own client read, in the same terms."""
    return {
        sphere.cloud_id: {
            "name": sphere.name,
            "uid": sphere.unique_id,
            "present": sorted(sphere.present_people),
            "stones": {
                stone.cloud_id: (
                    stone.name,
                    stone.unique_id,
                    stone.type,
                    stone.sw_version,
                    stone.location_id,
                    stone.state if stone.state_known else None,
                    {kind: ability.enabled for kind, ability in stone.abilities.items()},
                )
                for stone in sphere.crownstones
            },
            "locations": {
                location.cloud_id: (location.name, location.unique_id, location.present_people)
                for location in sphere.locations
            },
            "users": {
                user.cloud_id: (user.role, user.first_name, user.last_name, user.email)
                for user in sphere.users
            },
        }
        for sphere in cloud.cloud_data
    }


async def test_full_sync_agrees_with_our_own_client(
    sim: CloudSimulator, http: aiohttp.ClientSession
) -> None:
    """Both clients read the same account into the same tree, also after changes."""
    published = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, clientsession=http)
    own = OwnCloud(DEMO_EMAIL, DEMO_PASSWORD, http, base_url=sim.url)
    await published.async_initialize()
    await own.async_initialize()
    await own.async_synchronize(users=True)
    assert _published_tree(published) == _own_tree(own)
    assert len(_own_tree(own)[sim.sphere_id("Home")]["stones"]) == 7

    home = sim.sphere_id("Home")
    bob = sim.user_id("bob@example.com")
    sim.set_switch_state(sim.stone_id("Ceiling light"), 20)
    sim.enter_location(bob, home, sim.location_id("Kitchen"))
    sim.rename_stone(sim.stone_id("Guidestone"), "Hall guide")
    sim.add_stone(home, "New plug", location_id=sim.location_id("Bedroom"), switch_state=70)
    await published.async_synchronize()
    await own.async_synchronize(users=True)
    tree = _own_tree(own)
    assert _published_tree(published) == tree
    names = {stone[0]: stone[5] for stone in tree[home]["stones"].values()}
    assert (names["Ceiling light"], names["New plug"], "Hall guide" in names) == (20, 70, True)
