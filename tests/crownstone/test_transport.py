"""Every way the connection or the answer can fail ends in the library's own error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import socket

import aiohttp
from aiohttp.abc import ResolveResult
import pytest

from custom_components.crownstone_spotflow.crownstone import (
    CrownstoneAbilityError,
    CrownstoneBrightnessError,
    CrownstoneCloud,
    CrownstoneConnectionError,
    CrownstoneError,
    CrownstoneInvalidResponseError,
    CrownstoneServerError,
    CrownstoneUnknownError,
    SwitchCommand,
)
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

from .scripted import ScriptedCloud

type Call = Callable[[CrownstoneCloud], Awaitable[object]]


async def _sync(cloud: CrownstoneCloud) -> None:
    await cloud.async_synchronize(users=True)


async def _sync_without_includes(cloud: CrownstoneCloud) -> None:
    cloud.cloud_data.server_includes_relations = False
    await cloud.async_synchronize(users=True)


async def _turn_on(cloud: CrownstoneCloud) -> None:
    await cloud.get_crownstone("Desk lamp").async_turn_on()


async def _switch_many(cloud: CrownstoneCloud) -> None:
    await cloud.cloud_data.find("Home").async_switch_crownstones([])  # type: ignore[union-attr]


# Path fragment -> a call that reaches it (after a successful initial sync).
ENDPOINTS: dict[str, Call] = {
    "/users/login": lambda cloud: cloud.async_login(),
    "/spheres": _sync,
    "/presentPeople": _sync,
    "/ownedStones": _sync_without_includes,
    "/ownedLocations": _sync_without_includes,
    "/users": _sync,
    "/keysV2": lambda cloud: cloud.async_get_keys(),
    "/switch": _turn_on,
}


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("http_500", CrownstoneConnectionError),
        ("http_503", CrownstoneConnectionError),
        ("html", CrownstoneConnectionError),
        ("reset", CrownstoneConnectionError),
        ("malformed_json", CrownstoneInvalidResponseError),
        ("non_json", CrownstoneInvalidResponseError),
    ],
)
@pytest.mark.parametrize("fragment", list(ENDPOINTS))
async def test_fault_on_every_endpoint(
    synced_cloud: CrownstoneCloud,
    cloud_sim: CloudSimulator,
    fragment: str,
    fault: str,
    error: type[CrownstoneError],
) -> None:
    """A broken answer raises its error type; the next call works again."""
    call = ENDPOINTS[fragment]
    path = f"Spheres/{cloud_sim.sphere_id('Home')}/users" if fragment == "/users" else fragment
    # Not a single fault: aiohttp itself retries an idempotent request once when a kept-alive
    # connection drops.
    cloud_sim.inject_fault(fault, path=path)  # type: ignore[arg-type]
    with pytest.raises(error):
        await call(synced_cloud)
    cloud_sim.clear_faults()
    await call(synced_cloud)


async def test_timeout(cloud_sim: CloudSimulator, websession: aiohttp.ClientSession) -> None:
    """A server that never answers is a connection error after request_timeout."""
    cloud = CrownstoneCloud(
        DEMO_EMAIL, DEMO_PASSWORD, websession, base_url=cloud_sim.url, request_timeout=0.2
    )
    cloud_sim.inject_fault("timeout_hang", path="/users/login", count=1)
    with pytest.raises(CrownstoneConnectionError, match="did not answer"):
        await cloud.async_login()
    assert await cloud.async_login() == cloud_sim.user_id(DEMO_EMAIL)


async def test_latency_within_timeout_is_fine(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A slow answer inside request_timeout is no error."""
    cloud_sim.inject_fault("latency", seconds=0.05, count=1)
    await synced_cloud.async_synchronize()


async def test_connection_refused(websession: aiohttp.ClientSession) -> None:
    """Nobody listening is a connection error."""
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url="http://127.0.0.1:9/api")
    with pytest.raises(CrownstoneConnectionError, match="ClientConnectorError"):
        await cloud.async_login()


class _NothingResolves(aiohttp.abc.AbstractResolver):
    """A resolver for which no name exists, as a resolver answers for an unknown host.

    The tests cannot ask real DNS (no network; newer test plugins refuse any lookup).
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        raise OSError(socket.EAI_NONAME, f"{host}: Name or service not known")

    async def close(self) -> None:
        """Nothing to close."""


async def test_unresolvable_host() -> None:
    """A host name that does not resolve is a connection error, not a raw aiohttp error."""
    connector = aiohttp.TCPConnector(resolver=_NothingResolves())
    async with aiohttp.ClientSession(connector=connector) as session:
        cloud = CrownstoneCloud("a@b.c", "pw", session, base_url="http://nowhere.invalid/api")
        with pytest.raises(CrownstoneConnectionError, match="ClientConnectorDNSError"):
            await cloud.async_login()


class _BrokenResolver(aiohttp.abc.AbstractResolver):
    """Fails as aiodns 3.2 on pycares 5 did: a TypeError instead of an answer, every time."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise TypeError("Channel.getaddrinfo() takes 3 positional arguments but 4 were given")

    async def close(self) -> None:
        """Nothing to close."""


async def test_resolver_failing_its_own_way() -> None:
    """Whatever the resolver raises, the cloud was not reached: a connection error."""
    connector = aiohttp.TCPConnector(resolver=_BrokenResolver())
    async with aiohttp.ClientSession(connector=connector) as session:
        cloud = CrownstoneCloud("a@b.c", "pw", session, base_url="https://nowhere.invalid/api")
        with pytest.raises(CrownstoneConnectionError, match="TypeError"):
            await cloud.async_login()


async def test_server_message_of_a_refused_command(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """The cloud refuses dimming with a 500 and a message: a refusal, not a connection error."""
    lamp = synced_cloud.get_crownstone("Desk lamp")
    home = synced_cloud.cloud_data.find("Home")
    assert home is not None
    cloud_sim.set_ability(lamp.cloud_id, "dimming", False)
    # Our copy still says dimming is enabled, so the library sends the command.
    with pytest.raises(CrownstoneAbilityError, match="Dimming is not enabled") as caught:
        await lamp.async_set_brightness(50)
    assert not isinstance(caught.value, CrownstoneBrightnessError)
    with pytest.raises(CrownstoneAbilityError, match="Dimming is not enabled"):
        await home.async_switch_crownstones([SwitchCommand(lamp.cloud_id, "PERCENTAGE", 50)])
    assert cloud_sim.commands == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('{"error":{"statusCode":500,"message":"Invalid uid:7"}}', CrownstoneUnknownError),
        ('{"error":{"message":"Dimming below 10% is not allowed."}}', CrownstoneAbilityError),
        # Nothing but LoopBack's word for a crash: the cloud is in trouble.
        (
            '{"error":{"statusCode":500,"message":"Internal Server Error"}}',
            CrownstoneServerError,
        ),
        ('{"error":{"statusCode":500}}', CrownstoneServerError),
        ("oops", CrownstoneServerError),
    ],
)
async def test_commands_refused_with_a_500(
    scripted: ScriptedCloud,
    websession: aiohttp.ClientSession,
    body: str,
    error: type[CrownstoneError],
) -> None:
    """A 500 with a reason of its own refuses a command; anything else is the cloud's trouble."""
    scripted.break_path("/switch", body, status=500)
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    await cloud.async_synchronize()
    with pytest.raises(error) as caught:
        await cloud.get_crownstone("Lamp").async_turn_on()
    assert type(caught.value) is error


async def test_reads_failing_with_a_reason_are_connection_errors(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession
) -> None:
    """A read answered 500, whatever it says, may work when asked again."""
    scripted.break_path(
        "/presentPeople", '{"error":{"message":"Cannot read property of undefined"}}', status=500
    )
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    with pytest.raises(CrownstoneConnectionError, match="Cannot read property"):
        await cloud.async_synchronize()


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (
            400,
            '{"error":{"statusCode":400,"message":"Dimming below 10% is not allowed."}}',
            r"400 \(Dimming below 10% is not allowed.\)",
        ),
        (404, '{"error":{"code":"MODEL_NOT_FOUND","message":"Unknown Stone"}}', "MODEL_NOT_FOUND"),
        (422, "not json at all", "422$"),
        (302, "", "302"),
    ],
)
async def test_other_client_errors(
    scripted: ScriptedCloud,
    websession: aiohttp.ClientSession,
    status: int,
    body: str,
    match: str,
) -> None:
    """Other 4xx answers are CrownstoneUnknownError with the server's code and message."""
    scripted.break_path("stone1/switch", body, status=status)
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    await cloud.async_synchronize()
    with pytest.raises(CrownstoneUnknownError, match=match):
        await cloud.get_crownstone("Lamp").async_set_brightness(50)


async def test_html_page_with_success_status(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession
) -> None:
    """A captive portal or maintenance page answering 200 is no data."""
    scripted.break_path("/spheres", "<!doctype html><p>Maintenance</p>", content_type="text/plain")
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    with pytest.raises(CrownstoneConnectionError, match="HTML page"):
        await cloud.async_synchronize()


async def test_empty_success_body(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession
) -> None:
    """A 200 without a body is success for a command, and wrong shape for data."""
    scripted.break_path("stone1/switch", "", status=200)
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    await cloud.async_synchronize()
    await cloud.get_crownstone("Lamp").async_turn_off()
    scripted.break_path("/presentPeople", "")
    with pytest.raises(CrownstoneInvalidResponseError, match="JSON array"):
        await cloud.async_synchronize()
