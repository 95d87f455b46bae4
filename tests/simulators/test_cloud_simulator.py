"""The Crownstone cloud simulator answers as the real v1 cloud and SSE server, over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
import json
import os
from pathlib import Path
import signal
import sys
from typing import Any

import aiohttp
import pytest

from simulators.crownstone_cloud import (
    DEMO_EMAIL,
    DEMO_PASSWORD,
    CloudSimulator,
    demo_home,
    generated_home,
)
from simulators.crownstone_cloud.control import add_control_routes

from .helpers import EventReader, login, open_stream, sha1

NESTED = json.dumps(
    {
        "include": [
            {"ownedStones": ["currentSwitchState", {"abilities": "properties"}]},
            "ownedLocations",
        ]
    }
)
STONE_INCLUDE = json.dumps({"include": ["currentSwitchState", {"abilities": "properties"}]})


async def get(
    http: aiohttp.ClientSession, url: str, token: str | None, **params: str
) -> tuple[int, Any]:
    if token is not None:
        params["access_token"] = token
    async with http.get(url, params=params) as response:
        return response.status, await response.json()


async def switch(
    http: aiohttp.ClientSession, cloud: CloudSimulator, token: str, stone: str, body: Any
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    async with http.post(
        f"{cloud.url}/Stones/{cloud.stone_id(stone)}/switch",
        params={"access_token": token},
        json=body,
    ) as response:
        return response.status, await response.read(), response


@pytest.fixture
async def ann(http: aiohttp.ClientSession, cloud: CloudSimulator) -> tuple[str, str]:
    return await login(http, cloud, DEMO_EMAIL, DEMO_PASSWORD)


# Login and tokens.
async def test_login_answers_a_loopback_token(
    http: aiohttp.ClientSession, cloud: CloudSimulator
) -> None:
    async with http.post(
        f"{cloud.url}/users/login",
        json={"email": DEMO_EMAIL.upper(), "password": sha1(DEMO_PASSWORD)},
    ) as response:
        assert response.status == 200
        body = await response.json()
    assert len(body["id"]) == 64
    assert body["ttl"] == 1_209_600
    assert body["userId"] == cloud.user_id(DEMO_EMAIL)
    assert body["principalType"] == "user"
    assert body["created"].endswith("Z")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": DEMO_EMAIL, "password": sha1("wrong")}, 401, "LOGIN_FAILED"),
        ({"email": DEMO_EMAIL, "password": DEMO_PASSWORD}, 401, "LOGIN_FAILED"),
        ({"email": "nobody@example.com", "password": sha1("x")}, 401, "LOGIN_FAILED"),
        ({"email": DEMO_EMAIL}, 401, "LOGIN_FAILED"),
        ({"password": sha1(DEMO_PASSWORD)}, 400, "USERNAME_EMAIL_REQUIRED"),
    ],
)
async def test_login_errors_use_the_loopback_envelope(
    http: aiohttp.ClientSession, cloud: CloudSimulator, body: dict[str, str], status: int, code: str
) -> None:
    async with http.post(f"{cloud.url}/users/login", json=body) as response:
        assert response.status == status
        error = (await response.json())["error"]
    assert error["statusCode"] == status
    assert error["code"] == code
    assert error["name"] == "Error"
    assert error["message"]


async def test_unverified_email_cannot_log_in(
    http: aiohttp.ClientSession, cloud: CloudSimulator
) -> None:
    cloud.set_email_verified(DEMO_EMAIL, False)
    body = {"email": DEMO_EMAIL, "password": sha1(DEMO_PASSWORD)}
    async with http.post(f"{cloud.url}/users/login", json=body) as response:
        error = (await response.json())["error"]
    assert response.status == 401
    assert error["code"] == "LOGIN_FAILED_EMAIL_NOT_VERIFIED"
    assert error["details"] == {"userId": cloud.user_id(DEMO_EMAIL)}


async def test_login_honours_a_shorter_ttl(
    http: aiohttp.ClientSession, cloud: CloudSimulator
) -> None:
    body = {"email": DEMO_EMAIL, "password": sha1(DEMO_PASSWORD), "ttl": 60}
    async with http.post(f"{cloud.url}/users/login", json=body) as response:
        assert (await response.json())["ttl"] == 60


async def test_token_via_query_or_authorization_header(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    url = f"{cloud.url}/users/{user_id}/spheres"
    assert (await get(http, url, token))[0] == 200
    async with http.get(url, headers={"Authorization": token}) as response:
        assert response.status == 200
    status, body = await get(http, url, None)
    assert status == 401
    assert body["error"]["code"] == "AUTHORIZATION_REQUIRED"


async def test_no_access_is_401_not_403(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    bob_token, bob_id = await login(http, cloud, "bob@example.com", "bob-password")
    _, ann_id = ann
    for url in (
        f"{cloud.url}/users/{ann_id}/spheres",
        f"{cloud.url}/users/{ann_id}/keysV2",
        f"{cloud.url}/Spheres/{cloud.sphere_id('Cabin')}/ownedStones",
        f"{cloud.url}/Spheres/ffffffffffffffffffffffff/users",
        f"{cloud.url}/Stones/{cloud.stone_id('Cabin lamp')}/currentSwitchStateV2",
    ):
        status, body = await get(http, url, bob_token)
        assert status == 401, url
        assert body["error"]["code"] == "AUTHORIZATION_REQUIRED"
    assert (await get(http, f"{cloud.url}/users/{bob_id}/spheres", bob_token))[0] == 200


async def test_expired_token_is_invalid_once_then_unknown(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    url = f"{cloud.url}/users/{user_id}/spheres"
    cloud.expire_tokens()
    status, body = await get(http, url, token)
    assert (status, body["error"]["code"]) == (401, "INVALID_TOKEN")
    status, body = await get(http, url, token)
    assert (status, body["error"]["code"]) == (401, "AUTHORIZATION_REQUIRED")
    fresh, _ = await login(http, cloud, DEMO_EMAIL, DEMO_PASSWORD)
    assert (await get(http, url, fresh))[0] == 200


async def test_token_ttl_runs_out(http: aiohttp.ClientSession) -> None:
    sim = CloudSimulator(token_ttl=1)
    await sim.start()
    try:
        token, user_id = await login(http, sim, DEMO_EMAIL, DEMO_PASSWORD)
        stored = sim.tokens.peek(token)
        assert stored is not None
        stored.created -= 2  # a fake clock: the token was issued two seconds ago
        status, body = await get(http, f"{sim.url}/users/{user_id}/spheres", token)
        assert (status, body["error"]["code"]) == (401, "INVALID_TOKEN")
    finally:
        await sim.stop()


async def test_password_change_logs_out(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    cloud.change_password(DEMO_EMAIL, "new-secret")
    status, body = await get(http, f"{cloud.url}/users/{user_id}/spheres", token)
    assert (status, body["error"]["code"]) == (401, "AUTHORIZATION_REQUIRED")
    async with http.post(
        f"{cloud.url}/users/login", json={"email": DEMO_EMAIL, "password": sha1(DEMO_PASSWORD)}
    ) as response:
        assert response.status == 401
    await login(http, cloud, DEMO_EMAIL, "new-secret")


# Reading the account.
async def test_spheres_with_nested_include(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    status, spheres = await get(http, f"{cloud.url}/users/{user_id}/spheres", token, filter=NESTED)
    assert status == 200
    assert [sphere["name"] for sphere in spheres] == ["Home", "Cabin"]
    home = spheres[0]
    assert home["id"] == cloud.sphere_id("Home")
    assert {loc["name"] for loc in home["ownedLocations"]} == {
        "Living room",
        "Kitchen",
        "Bedroom",
        "Hallway",
    }
    stones = {stone["name"]: stone for stone in home["ownedStones"]}
    assert len(stones) == 7
    desk = stones["Desk lamp"]
    assert desk["currentSwitchState"]["switchState"] == 100
    dimming = next(row for row in desk["abilities"] if row["type"] == "dimming")
    assert dimming["enabled"] is True
    assert dimming["properties"][0]["abilityId"] == dimming["id"]
    assert stones["Hallway plug"]["currentSwitchState"] is None
    assert stones["Hallway plug"]["abilities"] == []
    assert "dimming" not in {row["type"] for row in stones["Coffee machine"]["abilities"]}
    spots = next(r for r in stones["Kitchen spots"]["abilities"] if r["type"] == "dimming")
    assert spots["enabled"] is False
    assert stones["USB dongle"]["type"] == "CROWNSTONE_USB"
    assert stones["USB dongle"]["locationId"] is None


async def test_spheres_without_include_or_support(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    url = f"{cloud.url}/users/{user_id}/spheres"
    _, plain = await get(http, url, token)
    assert "ownedStones" not in plain[0]
    cloud.set_include_support(False)
    _, ignored = await get(http, url, token, filter=NESTED)
    assert ignored == plain


@pytest.mark.parametrize("raw", ["{not json", '{"include": 5}', '{"include": ["nope"]}'])
async def test_bad_filter_is_400(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str], raw: str
) -> None:
    token, _ = ann
    url = f"{cloud.url}/Spheres/{cloud.sphere_id('Home')}/ownedStones"
    status, body = await get(http, url, token, filter=raw)
    assert status == 400
    assert body["error"]["statusCode"] == 400


async def test_plain_abilities_include_strips_abilities(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, _ = ann
    url = f"{cloud.url}/Spheres/{cloud.sphere_id('Home')}/ownedStones"
    _, stones = await get(http, url, token, filter='{"include": ["abilities"]}')
    assert all(stone["abilities"] == [] for stone in stones)
    assert all("currentSwitchState" not in stone for stone in stones)
    _, stones = await get(http, url, token, filter=STONE_INCLUDE)
    assert any(stone["abilities"] for stone in stones)
    relation_form = json.dumps(
        {"include": {"relation": "abilities", "scope": {"include": "properties"}}}
    )
    _, stones = await get(http, url, token, filter=relation_form)
    assert "properties" in stones[0]["abilities"][0]


async def test_locations_presence_users_and_keys(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    home = f"{cloud.url}/Spheres/{cloud.sphere_id('Home')}"
    _, locations = await get(http, f"{home}/ownedLocations", token)
    assert locations[0] | {"sphereId": cloud.sphere_id("Home")} == locations[0]
    _, present = await get(http, f"{home}/presentPeople", token)
    assert present == [
        {"userId": user_id, "locations": [cloud.location_id("Living room")]},
        {"userId": cloud.user_id("bob@example.com"), "locations": []},
    ]
    _, users = await get(http, f"{home}/users", token)
    assert [u["firstName"] for u in users["admins"]] == ["Ann"]
    assert [u["firstName"] for u in users["members"]] == ["Bob"]
    assert [u["firstName"] for u in users["guests"]] == ["Cleo"]
    assert all("password" not in u for u in users["admins"])
    _, keys = await get(http, f"{cloud.url}/users/{user_id}/keysV2", token)
    home_keys = next(k for k in keys if k["sphereId"] == cloud.sphere_id("Home"))
    assert {k["keyType"] for k in home_keys["sphereKeys"]} >= {"ADMIN_KEY", "BASIC_KEY"}
    assert cloud.stone_id("Desk lamp") in home_keys["stoneKeys"]

    bob_token, bob_id = await login(http, cloud, "bob@example.com", "bob-password")
    _, bob_keys = await get(http, f"{cloud.url}/users/{bob_id}/keysV2", bob_token)
    assert len(bob_keys) == 1
    assert bob_keys[0]["stoneKeys"] == {}
    assert "ADMIN_KEY" not in {k["keyType"] for k in bob_keys[0]["sphereKeys"]}


async def test_stale_presence_is_dropped(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    home = cloud.sphere(cloud.sphere_id("Home"))
    home.presence[user_id].updated_at = datetime.now(UTC) - timedelta(minutes=21)
    _, present = await get(http, f"{cloud.url}/Spheres/{home.id}/presentPeople", token)
    assert [entry["userId"] for entry in present] == [cloud.user_id("bob@example.com")]


async def test_unknown_path_is_404(http: aiohttp.ClientSession, cloud: CloudSimulator) -> None:
    status, body = await get(http, f"{cloud.url}/Spheres", None)
    assert status == 404
    assert body["error"]["statusCode"] == 404


# Switching.
async def test_switch_answers_204_empty_and_the_phone_reports_later(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, _ = ann
    cloud.set_phone(0.2)
    events = await open_stream(http, cloud, token)
    await events.next_of("system")
    status, body, response = await switch(
        http, cloud, token, "Desk lamp", {"type": "PERCENTAGE", "percentage": 40}
    )
    assert (status, body) == (204, b"")
    # LoopBack labels a void method's empty 204 as JSON.
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    _, desk = cloud.stone(cloud.stone_id("Desk lamp"))
    assert desk.switch_state is not None
    assert desk.switch_state.value == 100  # the cloud itself never changes the state
    command = await events.next_of("command")
    assert command["subType"] == "multiSwitch"
    assert command["switchData"][0]["percentage"] == 40
    assert command["switchData"][0]["macAddress"] == desk.address
    update = await events.next_of("switchStateUpdate")
    assert update["crownstone"]["percentage"] == 40
    assert update["crownstone"]["switchState"] == 40
    assert desk.switch_state.value == 40
    status, state = await get(http, f"{cloud.url}/Stones/{desk.id}/currentSwitchStateV2", token)
    assert state["switchState"] == 40
    events.response.close()


async def test_turn_on_and_off(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, _ = ann
    events = await open_stream(http, cloud, token)
    for kind, expected in (("TURN_ON", 100), ("TURN_OFF", 0)):
        status, _, _ = await switch(http, cloud, token, "Coffee machine", {"type": kind})
        assert status == 204
        update = await events.next_of("switchStateUpdate")
        assert update["crownstone"]["percentage"] == expected
    events.response.close()


async def test_commands_are_recorded(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    """TURN_ON and PERCENTAGE 100 end alike on the stone; the record tells them apart."""
    token, _ = ann
    lamp = cloud.stone_id("Desk lamp")
    for body in (
        {"type": "TURN_ON", "percentage": 40},
        {"type": "PERCENTAGE", "percentage": 100},
        {"type": "PERCENTAGE", "percentage": 5},
    ):
        await switch(http, cloud, token, "Desk lamp", body)
    assert cloud.commands == [(lamp, "TURN_ON", None), (lamp, "PERCENTAGE", 100)]
    cloud.reset_counters()
    assert cloud.commands == []


async def test_no_phone_means_no_state_change(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, _ = ann
    cloud.set_phone(None)
    events = await open_stream(http, cloud, token)
    assert (await switch(http, cloud, token, "Coffee machine", {"type": "TURN_ON"}))[0] == 204
    await events.next_of("command")
    with pytest.raises(TimeoutError):
        await events.next_of("switchStateUpdate", wait=0.3)
    _, coffee = cloud.stone(cloud.stone_id("Coffee machine"))
    assert coffee.switch_state is not None
    assert coffee.switch_state.value == 0
    events.response.close()


@pytest.mark.parametrize(
    ("stone", "body", "message"),
    [
        ("Desk lamp", {"type": "DIM"}, "Type of SwitchData can only be"),
        ("Desk lamp", {}, "SwitchData have a type"),
        ("Desk lamp", {"type": "PERCENTAGE"}, "require a percentage between 0 and 100"),
        ("Desk lamp", {"type": "PERCENTAGE", "percentage": 0.5}, "between 0 and 100"),
        ("Desk lamp", {"type": "PERCENTAGE", "percentage": -1}, "between 0 and 100"),
        ("Desk lamp", {"type": "PERCENTAGE", "percentage": 101}, "between 0 and 100"),
        ("Desk lamp", {"type": "PERCENTAGE", "percentage": 9}, "Dimming below 10% is not allowed."),
        ("Kitchen spots", {"type": "PERCENTAGE", "percentage": 50}, "Dimming is not enabled"),
        ("Hallway plug", {"type": "PERCENTAGE", "percentage": 50}, "Dimming is not enabled"),
    ],
)
async def test_switch_validation(
    http: aiohttp.ClientSession,
    cloud: CloudSimulator,
    ann: tuple[str, str],
    stone: str,
    body: dict[str, Any],
    message: str,
) -> None:
    token, _ = ann
    status, raw, _ = await switch(http, cloud, token, stone, body)
    error = json.loads(raw)["error"]
    assert status == 500  # the server calls back with a bare string; LoopBack makes it a 500
    assert message in error["message"]
    assert "code" not in error


@pytest.mark.parametrize(
    ("stone", "percentage"), [("Desk lamp", 10), ("Desk lamp", 0), ("Kitchen spots", 100)]
)
async def test_switch_accepts_edges(
    http: aiohttp.ClientSession,
    cloud: CloudSimulator,
    ann: tuple[str, str],
    stone: str,
    percentage: int,
) -> None:
    token, _ = ann
    body = {"type": "PERCENTAGE", "percentage": percentage}
    assert (await switch(http, cloud, token, stone, body))[0] == 204


async def test_switch_many(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, _ = ann
    events = await open_stream(http, cloud, token)
    url = f"{cloud.url}/Spheres/{cloud.sphere_id('Home')}/switchCrownstones"
    packets = [
        {"stoneId": cloud.stone_id("Desk lamp"), "type": "PERCENTAGE", "percentage": 50},
        {"stoneId": cloud.stone_id("Coffee machine"), "type": "TURN_ON"},
    ]
    async with http.post(url, params={"access_token": token}, json=packets) as response:
        assert response.status == 204
        assert response.headers["Content-Type"] == "application/json; charset=utf-8"
        assert await response.read() == b""
    command = await events.next_of("command")
    assert [entry["name"] for entry in command["switchData"]] == ["Desk lamp", "Coffee machine"]
    assert cloud.commands == [
        (cloud.stone_id("Desk lamp"), "PERCENTAGE", 50),
        (cloud.stone_id("Coffee machine"), "TURN_ON", None),
    ]
    bad = [{"stoneId": cloud.stone_id("Cabin lamp"), "type": "TURN_ON"}]
    async with http.post(url, params={"access_token": token}, json=bad) as response:
        assert response.status == 500
        assert "Invalid uid" in (await response.json())["error"]["message"]
    events.response.close()


# Faults.
async def test_http_faults(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    url = f"{cloud.url}/users/{user_id}/spheres"
    cloud.inject_fault("http_500", path="/spheres", count=1)
    assert (await get(http, url, token))[0] == 500
    assert (await get(http, url, token))[0] == 200
    cloud.inject_fault("http_503", count=1)
    status, body = await get(http, url, token)
    assert (status, body["error"]["statusCode"]) == (503, 503)
    cloud.inject_fault("html", count=1)
    async with http.get(url, params={"access_token": token}) as response:
        assert (response.status, response.content_type) == (502, "text/html")
    cloud.inject_fault("malformed_json", count=1)
    async with http.get(url, params={"access_token": token}) as response:
        assert response.content_type == "application/json"
        with pytest.raises(json.JSONDecodeError):
            json.loads(await response.text())
    cloud.inject_fault("non_json", count=1)
    async with http.get(url, params={"access_token": token}) as response:
        assert (response.status, response.content_type) == (200, "text/plain")
    cloud.inject_fault("unauthorized", count=1)
    status, body = await get(http, url, token)
    assert (status, body["error"]["code"]) == (401, "AUTHORIZATION_REQUIRED")
    cloud.inject_fault("http_500", path="/keysV2")
    assert (await get(http, url, token))[0] == 200
    cloud.clear_faults()
    assert (await get(http, f"{cloud.url}/users/{user_id}/keysV2", token))[0] == 200


async def test_reset_latency_and_hang(cloud: CloudSimulator) -> None:
    async with aiohttp.ClientSession() as http:
        token, user_id = await login(http, cloud, DEMO_EMAIL, DEMO_PASSWORD)
        url = f"{cloud.url}/users/{user_id}/spheres"
        # aiohttp silently retries an idempotent request once after a reset.
        cloud.inject_fault("reset", path="/spheres", count=1)
        assert (await get(http, url, token))[0] == 200
        cloud.inject_fault("reset", path="/spheres", count=2)
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(http, url, token)
        assert cloud.request_count(path_contains="/spheres") == 4
        cloud.inject_fault("latency", count=1, seconds=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await get(http, url, token))[0] == 200
        assert loop.time() - started >= 0.2
        cloud.inject_fault("timeout_hang")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await get(http, url, token)
        asked = cloud.request_count(path_contains="/spheres")
        hanging = asyncio.ensure_future(get(http, url, token))
        async with asyncio.timeout(5):
            while cloud.request_count(path_contains="/spheres") == asked:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await cloud.stop()  # must not wait for the hanging request
        with pytest.raises(aiohttp.ClientConnectionError):
            await hanging


async def test_counters(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, user_id = ann
    cloud.reset_counters()
    await get(http, f"{cloud.url}/users/{user_id}/spheres", token, filter=NESTED)
    await get(http, f"{cloud.url}/users/{user_id}/keysV2", token)
    assert cloud.requests == [
        ("GET", f"/api/users/{user_id}/spheres"),
        ("GET", f"/api/users/{user_id}/keysV2"),
    ]
    assert cloud.request_count("GET", "keysV2") == 1
    assert cloud.request_count("POST") == 0
    (await open_stream(http, cloud, token)).response.close()
    assert cloud.stream_connections == 1
    cloud.reset_counters()
    assert (cloud.request_count(), cloud.stream_connections) == (0, 0)


# The event stream.
async def test_stream_starts_and_pings(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, _ = ann
    events = await open_stream(http, cloud, token)
    assert events.response.status == 200
    assert events.response.content_type == "text/event-stream"
    assert await events.next() == {
        "type": "system",
        "subType": "STREAM_START",
        "code": 200,
        "message": "Stream Starting.",
    }
    assert await events.next() == {"type": "ping", "counter": 0}
    assert await events.next() == {"type": "ping", "counter": 1}
    events.response.close()


@pytest.mark.parametrize(
    ("token", "code", "sub_type"),
    [(None, 400, "NO_ACCESS_TOKEN"), ("x" * 64, 401, "INVALID_ACCESS_TOKEN")],
)
async def test_stream_refusals(
    http: aiohttp.ClientSession,
    cloud: CloudSimulator,
    token: str | None,
    code: int,
    sub_type: str,
) -> None:
    events = await open_stream(http, cloud, token)
    assert events.response.status == 200
    event = await events.next()
    assert event is not None
    assert (event["type"], event["code"], event["subType"]) == ("system", code, sub_type)
    assert await events.next() is None


@pytest.mark.parametrize(
    ("where", "name"),
    [
        ("header", "Authorization"),
        ("header", "access_token"),
        ("query", "accessToken"),
        ("query", "access_token"),
    ],
)
async def test_stream_token_locations(
    http: aiohttp.ClientSession,
    cloud: CloudSimulator,
    ann: tuple[str, str],
    where: str,
    name: str,
) -> None:
    token, _ = ann
    given = {name: token}
    headers, params = (given, None) if where == "header" else (None, given)
    async with http.get(cloud.sse_url, headers=headers, params=params) as response:
        events = EventReader(response)
        assert (await events.next_of("system"))["subType"] == "STREAM_START"
        # Accepted, not merely started: the stream stays open and routes the user's events.
        cloud.set_switch_state(cloud.stone_id("Desk lamp"), 30)
        assert (await events.next_of("switchStateUpdate"))["crownstone"]["percentage"] == 30


async def test_busy_stream_still_pings(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    """Pings come every ping_interval (0.1 s) even when events arrive more often than that."""
    token, _ = ann
    events = await open_stream(http, cloud, token)
    await events.next_of("system")

    async def keep_busy() -> None:
        percentage = 0
        while True:
            percentage = (percentage + 1) % 100
            cloud.set_switch_state(cloud.stone_id("Desk lamp"), percentage)
            await asyncio.sleep(0.02)

    busy = asyncio.create_task(keep_busy())
    try:
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while sum(event["type"] == "ping" for event in seen) < 3:
                event = await events.next()
                assert event is not None
                seen.append(event)
    finally:
        busy.cancel()
        events.response.close()
    assert [e["counter"] for e in seen if e["type"] == "ping"] == [0, 1, 2]
    assert sum(e["type"] == "switchStateUpdate" for e in seen) > 3


async def test_stream_routing_by_sphere(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    ann_token, _ = ann
    bob_token, _ = await login(http, cloud, "bob@example.com", "bob-password")
    ann_events = await open_stream(http, cloud, ann_token)
    bob_events = await open_stream(http, cloud, bob_token)
    await ann_events.next_of("system")
    await bob_events.next_of("system")
    cloud.set_switch_state(cloud.stone_id("Cabin lamp"), 70)
    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 30)
    first = await ann_events.next_of("switchStateUpdate")
    assert first["crownstone"]["name"] == "Cabin lamp"
    assert first["sphere"] == {"id": cloud.sphere_id("Cabin"), "name": "Cabin", "uid": 2}
    seen_by_bob = await bob_events.next_of("switchStateUpdate")
    assert seen_by_bob["crownstone"]["name"] == "Desk lamp"
    # A sphere created after the stream opened is not routed to it (a reconnect is needed).
    new_sphere = cloud.add_sphere("Office", DEMO_EMAIL)
    cloud.add_stone(new_sphere, "Office lamp")
    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 40)
    seen_by_ann = [await ann_events.next_non_ping() for _ in range(2)]
    assert [event["crownstone"]["percentage"] for event in seen_by_ann] == [30, 40]  # type: ignore[index]
    ann_events.response.close()
    bob_events.response.close()


async def test_scenario_changes_emit_events(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, ann_id = ann
    events = await open_stream(http, cloud, token)
    home = cloud.sphere_id("Home")
    kitchen = cloud.location_id("Kitchen")

    cloud.enter_location(ann_id, home, kitchen)
    event = await events.next_of("presence")
    assert event["subType"] == "enterLocation"
    assert event["location"] == {"id": kitchen, "name": "Kitchen"}
    assert event["user"] == {"id": ann_id, "name": "Ann Admin"}
    cloud.exit_location(ann_id, home, kitchen)
    assert (await events.next_of("presence"))["subType"] == "exitLocation"
    cloud.exit_sphere(ann_id, home)
    assert (await events.next_of("presence"))["subType"] == "exitSphere"
    cloud.enter_sphere(ann_id, home)
    assert (await events.next_of("presence"))["subType"] == "enterSphere"

    cloud.set_ability(cloud.stone_id("Hallway plug"), "dimming", True)
    event = await events.next_of("abilityChange")
    assert event["subType"] == "dimming"
    assert event["ability"] == {"type": "dimming", "enabled": True, "syncedToCrownstone": False}
    assert event["stone"]["name"] == "Hallway plug"

    stone_id = cloud.add_stone(home, "Fan", location_id=kitchen, dimming=True)
    cloud.rename_stone(stone_id, "Big fan")
    cloud.remove_stone(stone_id)
    assert cloud.add_stone(home, "Big fan") != stone_id
    location_id = cloud.add_location(home, "Attic")
    cloud.rename_location(location_id, "Loft")
    cloud.remove_location(location_id)
    user_id = cloud.add_user(home, "Dan", "Dev", "dan@example.com", "dan-pw", role="guest")
    cloud.rename_user(user_id, "Daniel", "Dev")
    cloud.remove_user(home, user_id)
    changes = [await events.next_of("dataChange") for _ in range(10)]
    assert [(c["subType"], c["operation"], c["changedItem"]["name"]) for c in changes] == [
        ("stones", "create", "Fan"),
        ("stones", "update", "Big fan"),
        ("stones", "delete", "Big fan"),
        ("stones", "create", "Big fan"),
        ("locations", "create", "Attic"),
        ("locations", "update", "Loft"),
        ("locations", "delete", "Loft"),
        ("users", "create", "Dan Dev"),
        ("users", "update", "Daniel Dev"),
        ("users", "delete", "Daniel Dev"),
    ]
    cloud.remove_sphere(cloud.sphere_id("Cabin"))
    event = await events.next_of("dataChange")
    assert (event["subType"], event["operation"]) == ("spheres", "delete")

    cloud.emit_event({"type": "invitationChange", "operation": "invited", "email": "x@y"})
    assert (await events.next_of("invitationChange"))["email"] == "x@y"
    events.response.close()


async def test_expire_tokens_ends_streams(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, _ = ann
    events = await open_stream(http, cloud, token)
    await events.next_of("system")
    cloud.expire_tokens()
    event = await events.next_of("system")
    assert (event["subType"], event["code"]) == ("TOKEN_EXPIRED", 401)
    assert await events.next() is None
    again = await open_stream(http, cloud, token)
    assert (await again.next_of("system"))["subType"] == "STREAM_START"
    assert (await again.next_of("system"))["subType"] == "TOKEN_EXPIRED"
    assert await again.next() is None


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("no_connection", ["NO_CONNECTION"]),
        ("end_on_connect", ["STREAM_START"]),
        ("invalid_token", ["INVALID_ACCESS_TOKEN"]),
    ],
)
async def test_stream_faults(
    http: aiohttp.ClientSession,
    cloud: CloudSimulator,
    ann: tuple[str, str],
    fault: Any,
    expected: list[str],
) -> None:
    token, _ = ann
    cloud.stream_fault(fault)
    events = await open_stream(http, cloud, token)
    seen = []
    while (event := await events.next()) is not None:
        seen.append(event["subType"])
    assert seen == expected
    cloud.stream_fault(None)
    events = await open_stream(http, cloud, token)
    assert (await events.next_of("system"))["subType"] == "STREAM_START"
    events.response.close()


async def test_drop_streams(
    http: aiohttp.ClientSession, cloud: CloudSimulator, ann: tuple[str, str]
) -> None:
    token, _ = ann
    events = await open_stream(http, cloud, token)
    await events.next_of("ping")
    cloud.drop_streams("end")
    with pytest.raises(AssertionError, match="stream ended"):
        await events.next_of("ping")
    events.response.close()

    events = await open_stream(http, cloud, token)
    await events.next_of("ping")
    cloud.drop_streams("reset")
    with pytest.raises(aiohttp.ClientPayloadError):
        await events.next_of("ping")
    events.response.close()

    events = await open_stream(http, cloud, token)
    await events.next_of("ping")
    cloud.drop_streams("silence")
    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 20)
    with pytest.raises(TimeoutError):
        await events.next(wait=0.4)
    assert cloud.open_streams == 1
    events.response.close()


async def test_stop_closes_streams(http: aiohttp.ClientSession) -> None:
    sim = CloudSimulator(ping_interval=30)
    await sim.start()
    token, _ = await login(http, sim, DEMO_EMAIL, DEMO_PASSWORD)
    events = await open_stream(http, sim, token)
    await events.next_of("system")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sim.stop()
    assert loop.time() - started < 1.0
    event = await events.next_of("system")
    assert event["subType"] == "STREAM_CLOSED"
    assert await events.next() is None


# Scenarios.
def test_demo_home_is_deterministic() -> None:
    first, second = CloudSimulator(demo_home()), CloudSimulator()
    assert first.stone_id("Desk lamp") == second.stone_id("Desk lamp")
    assert len(first.sphere_id("Home")) == 24
    int(first.sphere_id("Home"), 16)
    with pytest.raises(KeyError):
        first.stone_id("Nope")


def test_generated_home_shapes() -> None:
    scenario = generated_home(spheres=3, stones_per_sphere=30, rooms_per_sphere=2)
    assert len(scenario.spheres) == 3
    stones = [stone for sphere in scenario.spheres.values() for stone in sphere.stones.values()]
    assert len(stones) == 90
    values = [stone.switch_state.value for stone in stones if stone.switch_state]
    assert any(
        0 < value <= 1 or value in (0.0, 1.0) for value in values if isinstance(value, float)
    )
    assert any(stone.switch_state is None for stone in stones)
    assert generated_home(spheres=3).spheres.keys() == generated_home(spheres=3).spheres.keys()
    sim = CloudSimulator(scenario)
    owner = sim.user_id(DEMO_EMAIL)
    assert all(sphere.roles[owner] == "admin" for sphere in sim.state.spheres.values())


# Control endpoints and the standalone runner.
async def test_control_endpoints(http: aiohttp.ClientSession) -> None:
    sim = CloudSimulator(phone_delay=0.01, ping_interval=0.1)
    app = sim.build_app()
    add_control_routes(app, sim)
    await sim.start_app(app, "127.0.0.1", 0)
    control = f"http://127.0.0.1:{sim.port}/_control"
    try:

        async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with http.request(method, f"{control}{path}", json=body) as response:
                return response.status, await response.json()

        status, state = await call("GET", "/state")
        assert status == 200
        assert "password" not in json.dumps(state)
        desk = sim.stone_id("Desk lamp")
        assert (await call("POST", "/switch", {"stone_id": desk, "percentage": 30}))[0] == 200
        assert sim.stone(desk)[1].switch_state.value == 30  # type: ignore[union-attr]
        ann_id, home = sim.user_id(DEMO_EMAIL), sim.sphere_id("Home")
        body: dict[str, Any] = {"action": "exit_sphere", "user_id": ann_id, "sphere_id": home}
        assert (await call("POST", "/presence", body))[0] == 200
        assert ann_id not in sim.sphere(home).presence
        body = {"stone_id": desk, "ability": "dimming", "enabled": False}
        assert (await call("POST", "/ability", body))[0] == 200
        assert not sim.stone(desk)[1].can_dim
        status, created = await call("POST", "/stones", {"sphere_id": home, "name": "Fan"})
        assert status == 200
        assert (await call("POST", f"/stones/{created['id']}/rename", {"name": "Fan 2"}))[0] == 200
        assert sim.stone_id("Fan 2") == created["id"]
        assert (await call("DELETE", f"/stones/{created['id']}"))[0] == 200
        assert (await call("DELETE", f"/stones/{created['id']}"))[0] == 404
        assert (await call("POST", "/faults", {"kind": "http_503", "count": 1}))[0] == 200
        async with http.get(f"{sim.url}/users/x/spheres") as response:
            assert response.status == 503
        assert (await call("DELETE", "/faults"))[0] == 200
        assert (await call("POST", "/phone", {"delay": None}))[0] == 200
        assert sim.phone_delay is None
        assert (await call("POST", "/expire_tokens"))[0] == 200
        status, counters = await call("GET", "/counters")
        assert counters["request_count"] == 1
        assert (await call("DELETE", "/counters"))[0] == 200
        assert sim.request_count() == 0
        token, _ = await login(http, sim, DEMO_EMAIL, DEMO_PASSWORD)
        events = await open_stream(http, sim, token)
        await events.next_of("system")
        assert (await call("POST", "/streams/drop", {"mode": "end"}))[0] == 200
        assert await events.next() is None
        assert (await call("POST", "/streams/fault", {"kind": "no_connection"}))[0] == 200
        assert (await call("POST", "/events", {"type": "x"}))[0] == 200
        assert (await call("POST", "/presence", {"action": "fly"}))[0] == 404
        body = {"action": "fly", "user_id": ann_id, "sphere_id": home}
        assert (await call("POST", "/presence", body))[0] == 400
    finally:
        await sim.stop()


async def test_standalone_runner_prints_its_json_line(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.crownstone_cloud",
        "--port",
        "0",
        "--ping-interval",
        "0.5",
        stdout=asyncio.subprocess.PIPE,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            ready = json.loads(await process.stdout.readline())
        assert ready["email"] == DEMO_EMAIL
        assert ready["password"] == DEMO_PASSWORD
        assert ready["url"].startswith("http://127.0.0.1:")
        body = {"email": ready["email"], "password": sha1(ready["password"])}
        async with http.post(f"{ready['url']}/users/login", json=body) as response:
            assert response.status == 200
        async with http.get(f"{ready['control_url']}/state") as response:
            assert response.status == 200
        assert ready["sse_url"].endswith("/sse")
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0


async def test_latency_applies_to_every_rest_request(http: aiohttp.ClientSession) -> None:
    sim = CloudSimulator(latency=0.1)
    await sim.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await login(http, sim, DEMO_EMAIL, DEMO_PASSWORD)
        assert loop.time() - started >= 0.1
    finally:
        await sim.stop()
