"""Login, token expiry and the one re-login, over real HTTP to the simulator."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest

from custom_components.crownstone_spotflow.crownstone import (
    CrownstoneAuthenticationError,
    CrownstoneCloud,
    CrownstoneCredentialsError,
    CrownstoneEmailNotVerifiedError,
    hash_password,
)
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

from .scripted import ScriptedCloud


async def test_login_returns_user_id_and_sets_token(
    cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A login answers the user id; the token is kept for the following calls."""
    user_id = await cloud.async_login()
    assert user_id == cloud_sim.user_id(DEMO_EMAIL) == cloud.user_id
    assert cloud.access_token is not None
    assert len(cloud.access_token) == 64


async def test_login_sends_the_sha1_of_the_password(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession
) -> None:
    """The clear password never leaves the machine."""
    seen: list[object] = []

    async def record(request: aiohttp.web.Request) -> aiohttp.web.Response:
        seen.append(await request.json())
        return aiohttp.web.json_response({"id": "t" * 64, "userId": "u1"})

    app = aiohttp.web.Application()
    app.router.add_post("/api/users/login", record)
    runner = aiohttp.web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        cloud = CrownstoneCloud(
            "Ann@Example.com", "secret pw", websession, base_url=f"http://127.0.0.1:{port}/api/"
        )
        assert await cloud.async_login() == "u1"
    finally:
        await runner.cleanup()
    assert seen == [
        {"email": "Ann@Example.com", "password": hashlib.sha1(b"secret pw").hexdigest()}
    ]


async def test_login_with_only_the_hash(
    cloud_sim: CloudSimulator, websession: aiohttp.ClientSession
) -> None:
    """An application that stored only the hash logs in with it."""
    cloud = CrownstoneCloud(
        DEMO_EMAIL,
        websession=websession,
        password_sha1=hash_password(DEMO_PASSWORD),
        base_url=cloud_sim.url,
    )
    assert await cloud.async_login() == cloud_sim.user_id(DEMO_EMAIL)
    assert hash_password(DEMO_PASSWORD) == hashlib.sha1(DEMO_PASSWORD.encode()).hexdigest()


@pytest.mark.parametrize(("password", "password_sha1"), [(None, None), ("pw", hash_password("pw"))])
def test_password_or_its_hash(password: str | None, password_sha1: str | None) -> None:
    """Exactly one of the two is given."""
    with pytest.raises(TypeError):
        CrownstoneCloud(DEMO_EMAIL, password, password_sha1=password_sha1)


async def test_email_is_case_insensitive(
    cloud_sim: CloudSimulator, websession: aiohttp.ClientSession
) -> None:
    """The cloud matches e-mail addresses without regard to case."""
    cloud = CrownstoneCloud(DEMO_EMAIL.upper(), DEMO_PASSWORD, websession, base_url=cloud_sim.url)
    assert await cloud.async_login() == cloud_sim.user_id(DEMO_EMAIL)


async def test_wrong_password(cloud_sim: CloudSimulator, websession: aiohttp.ClientSession) -> None:
    """A wrong password is LOGIN_FAILED."""
    cloud = CrownstoneCloud(DEMO_EMAIL, "wrong", websession, base_url=cloud_sim.url)
    with pytest.raises(CrownstoneCredentialsError) as caught:
        await cloud.async_login()
    assert caught.value.type == "LOGIN_FAILED"
    assert not isinstance(caught.value, CrownstoneEmailNotVerifiedError)
    assert cloud.access_token is None


async def test_missing_email(cloud_sim: CloudSimulator, websession: aiohttp.ClientSession) -> None:
    """An empty e-mail address is the server's 400 USERNAME_EMAIL_REQUIRED."""
    cloud = CrownstoneCloud("", DEMO_PASSWORD, websession, base_url=cloud_sim.url)
    with pytest.raises(CrownstoneCredentialsError) as caught:
        await cloud.async_initialize()
    assert caught.value.type == "USERNAME_EMAIL_REQUIRED"


async def test_email_not_verified(cloud: CrownstoneCloud, cloud_sim: CloudSimulator) -> None:
    """An unconfirmed account gets its own error type (still an authentication error)."""
    cloud_sim.set_email_verified(DEMO_EMAIL, False)
    with pytest.raises(CrownstoneEmailNotVerifiedError) as caught:
        await cloud.async_initialize()
    assert isinstance(caught.value, CrownstoneCredentialsError)
    assert caught.value.type == "LOGIN_FAILED_EMAIL_NOT_VERIFIED"
    assert "verified" in str(caught.value)


async def test_first_call_logs_in(cloud: CrownstoneCloud, cloud_sim: CloudSimulator) -> None:
    """Any call logs in first when there is no token yet, once."""
    await cloud.async_get_keys()
    assert cloud_sim.request_count("POST", "/users/login") == 1
    await cloud.async_get_keys()
    assert cloud_sim.request_count("POST", "/users/login") == 1


async def test_expired_token_costs_one_login_and_one_retry(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """INVALID_TOKEN: log in again, retry the same request, return its result."""
    old_token = synced_cloud.access_token
    cloud_sim.expire_tokens()
    keys = await synced_cloud.async_get_keys()
    assert len(keys) == 2
    assert synced_cloud.access_token != old_token
    assert cloud_sim.requests == [
        ("GET", f"/api/users/{synced_cloud.user_id}/keysV2"),
        ("POST", "/api/users/login"),
        ("GET", f"/api/users/{synced_cloud.user_id}/keysV2"),
    ]


async def test_concurrent_requests_share_one_login(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """Requests that all meet an expired token wait for one shared login."""
    cloud_sim.expire_tokens()
    lamp = synced_cloud.get_crownstone("Desk lamp")
    await asyncio.gather(
        synced_cloud.async_synchronize(users=True),
        lamp.async_turn_on(),
        synced_cloud.async_get_keys(),
    )
    assert cloud_sim.request_count("POST", "/users/login") == 1


async def test_password_changed_is_an_authentication_error(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A revoked token whose re-login fails raises LOGIN_FAILED (Home Assistant: reauth)."""
    cloud_sim.change_password(DEMO_EMAIL, "new password")
    with pytest.raises(CrownstoneCredentialsError) as caught:
        await synced_cloud.async_synchronize()
    assert caught.value.type == "LOGIN_FAILED"
    # Three requests met the revoked token; they shared the one refused login, and later
    # calls do not try the refused credentials again until async_login is called.
    assert cloud_sim.request_count("POST", "/users/login") == 1
    with pytest.raises(CrownstoneAuthenticationError, match="Wrong e-mail address or password"):
        await synced_cloud.async_synchronize()
    assert cloud_sim.request_count("POST", "/users/login") == 1
    cloud_sim.change_password(DEMO_EMAIL, DEMO_PASSWORD)
    await synced_cloud.async_login()
    await synced_cloud.async_synchronize()
    assert cloud_sim.request_count("POST", "/users/login") == 2


async def test_second_rejection_raises(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession
) -> None:
    """A token rejected again right after a fresh login is an error, not a loop."""
    scripted.break_path(
        "/keysV2",
        '{"error":{"statusCode":401,"name":"Error","message":"Authorization Required",'
        '"code":"AUTHORIZATION_REQUIRED"}}',
        status=401,
    )
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    with pytest.raises(CrownstoneAuthenticationError) as caught:
        await cloud.async_get_keys()
    assert caught.value.type == "AUTHORIZATION_REQUIRED"
    # The login worked: the credentials are fine, the account lacks access.
    assert not isinstance(caught.value, CrownstoneCredentialsError)
    assert [path for _, path in scripted.requests] == [
        "/api/users/login",
        "/api/users/user1/keysV2",
        "/api/users/login",
        "/api/users/user1/keysV2",
    ]


@pytest.mark.parametrize(
    ("status", "body", "expected_type"),
    [
        (401, "", "AUTHORIZATION_REQUIRED"),
        (401, '{"error":{"code":"SOMETHING_ELSE"}}', "SOMETHING_ELSE"),
        (403, '{"error":{"message":"Forbidden"}}', "HTTP_403"),
    ],
)
async def test_other_refusals_are_authentication_errors(
    scripted: ScriptedCloud,
    websession: aiohttp.ClientSession,
    status: int,
    body: str,
    expected_type: str,
) -> None:
    """401 and 403 answers that a new login cannot cure are reported with their code."""
    scripted.break_path("/keysV2", body, status=status)
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    with pytest.raises(CrownstoneAuthenticationError) as caught:
        await cloud.async_get_keys()
    assert caught.value.type == expected_type
    assert not isinstance(caught.value, CrownstoneCredentialsError)


@pytest.mark.parametrize(
    ("status", "body", "expected_type"),
    [
        (401, "", "HTTP_401"),
        (403, '{"error":{"message":"Forbidden"}}', "HTTP_403"),
        (400, '{"error":{"code":"USERNAME_EMAIL_REQUIRED"}}', "USERNAME_EMAIL_REQUIRED"),
    ],
)
async def test_refused_logins_are_credentials_errors(
    scripted: ScriptedCloud,
    websession: aiohttp.ClientSession,
    status: int,
    body: str,
    expected_type: str,
) -> None:
    """Whatever the login's refusal says, it is about the e-mail address or password."""
    scripted.break_path("/users/login", body, status=status)
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    with pytest.raises(CrownstoneCredentialsError) as caught:
        await cloud.async_login()
    assert caught.value.type == expected_type


async def test_password_with_a_lone_surrogate(
    cloud_sim: CloudSimulator, websession: aiohttp.ClientSession
) -> None:
    """A password that is no valid Unicode (possible through JSON) is a wrong password."""
    cloud = CrownstoneCloud(DEMO_EMAIL, "crownstone-\ud800", websession, base_url=cloud_sim.url)
    with pytest.raises(CrownstoneCredentialsError) as caught:
        await cloud.async_login()
    assert caught.value.type == "LOGIN_FAILED"
    assert "\ud800" not in repr(cloud)
