"""Hypothesis feeds the library bodies and statuses no real cloud should send.

Every answer either works or ends in a CrownstoneError subclass: never a KeyError, TypeError,
raw aiohttp error or asyncio.TimeoutError. The bodies come from a tiny server of our own on
127.0.0.1 (`ScriptedCloud`), over real HTTP.
"""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings, strategies as st

from custom_components.crownstone_spotflow.crownstone import (
    CrownstoneCloud,
    CrownstoneError,
    SwitchCommand,
)

from .scripted import STONE_ID, ScriptedCloud, valid_bodies

# Path fragment that is broken -> key of its valid body in valid_bodies().
ENDPOINTS = {
    "/users/login": "/users/login",
    "/spheres": "/spheres",
    "/presentPeople": "/presentPeople",
    "/ownedStones": "/ownedStones",
    "/ownedLocations": "/ownedLocations",
    "sphere1/users": "/users",
    "/keysV2": "/keysV2",
    "stone1/switch": "/switch",
    "/switchCrownstones": "/switchCrownstones",
}

FUZZ_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """The valid body with one value somewhere replaced, or one key removed."""
    body = copy.deepcopy(valid)
    if not isinstance(body, dict | list) or not body:
        return draw(json_values)
    container: Any = body
    while True:
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = container[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            container = child
            continue
        if isinstance(container, dict) and draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(json_values)
        break
    return body


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, int, bytes]:
    """A broken endpoint, a status and a body that may or may not make sense."""
    fragment = draw(st.sampled_from(list(ENDPOINTS)))
    valid = valid_bodies()[ENDPOINTS[fragment]]
    body = draw(
        st.one_of(
            mutated(valid).map(json.dumps),
            json_values.map(json.dumps),
            st.text(max_size=40),
            st.just("[" * 5000 + "]" * 5000),
        )
    )
    status = draw(st.sampled_from([200, 200, 200, 201, 400, 401, 403, 404, 409, 500, 502]))
    return fragment, status, body.encode("utf-8", "surrogatepass")


@st.composite
def broken_answers(draw: st.DrawFn) -> tuple[str, int, bytes]:
    """Answers that are wrong whatever the endpoint: not JSON, cut short, or an error status."""
    fragment = draw(st.sampled_from(list(ENDPOINTS)))
    valid = json.dumps(valid_bodies()[ENDPOINTS[fragment]] or {"ok": True})
    body = draw(
        st.one_of(
            st.integers(min_value=1, max_value=len(valid) - 1).map(lambda end: valid[:end]),
            st.binary(min_size=1, max_size=60),
        ).filter(_not_json)
    )
    return (
        fragment,
        draw(st.sampled_from([200, 201])),
        body.encode() if isinstance(body, str) else body,
    )


@st.composite
def error_answers(draw: st.DrawFn) -> tuple[str, int, bytes]:
    """Any body at all with a status of 400 or more."""
    fragment = draw(st.sampled_from(list(ENDPOINTS)))
    body = draw(json_values.map(json.dumps) | st.text(max_size=40))
    return (
        fragment,
        draw(st.integers(min_value=400, max_value=599)),
        body.encode("utf-8", "surrogatepass"),
    )


def _not_json(body: str | bytes) -> bool:
    if not body.strip():
        return False
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return True
    return False


async def _exercise(cloud: CrownstoneCloud, fragment: str) -> None:
    """Make the call that reaches the broken endpoint."""
    if fragment == "/users/login":
        await cloud.async_login()
    elif fragment == "/keysV2":
        await cloud.async_get_keys()
    elif fragment == "stone1/switch":
        await cloud.async_synchronize()
        await cloud.get_crownstone_by_id(STONE_ID).async_set_brightness(50)
    elif fragment == "/switchCrownstones":
        await cloud.async_synchronize()
        (sphere,) = cloud.cloud_data
        await sphere.async_switch_crownstones([SwitchCommand(STONE_ID, "PERCENTAGE", 50)])
    else:
        await cloud.async_synchronize(users=True)


async def _answer(
    scripted: ScriptedCloud,
    websession: aiohttp.ClientSession,
    answer: tuple[str, int, bytes],
) -> CrownstoneCloud:
    fragment, status, body = answer
    scripted.reset()
    # Stones and locations are read on their own endpoints only when spheres come without them.
    scripted.set_include_relations(fragment not in ("/ownedStones", "/ownedLocations"))
    scripted.break_path(fragment, body, status=status)
    return CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url, request_timeout=5)


@FUZZ_SETTINGS
@given(answer=answers())
async def test_any_answer_works_or_raises_a_crownstone_error(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession, answer: tuple[str, int, bytes]
) -> None:
    """Odd but well-formed data may pass; nothing escapes as another exception type."""
    cloud = await _answer(scripted, websession, answer)
    with contextlib.suppress(CrownstoneError):
        await _exercise(cloud, answer[0])


@FUZZ_SETTINGS
@given(answer=broken_answers())
async def test_bodies_that_are_not_json_raise(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession, answer: tuple[str, int, bytes]
) -> None:
    """Truncated JSON and random bytes always end in a CrownstoneError."""
    cloud = await _answer(scripted, websession, answer)
    try:
        await _exercise(cloud, answer[0])
    except CrownstoneError:
        return
    raise AssertionError(f"no error for {answer!r}")


@FUZZ_SETTINGS
@given(answer=error_answers())
async def test_error_statuses_raise(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession, answer: tuple[str, int, bytes]
) -> None:
    """Every status of 400 and more ends in a CrownstoneError, whatever the body."""
    cloud = await _answer(scripted, websession, answer)
    try:
        await _exercise(cloud, answer[0])
    except CrownstoneError:
        return
    raise AssertionError(f"no error for {answer!r}")
