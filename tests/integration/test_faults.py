"""Every cloud fault: what the user sees, and the recovery. No traceback, no secret logged."""

from __future__ import annotations

from collections.abc import Generator
from functools import partial
import hashlib
import logging
import re
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_REAUTH, ConfigEntryState
from homeassistant.const import (
    CONF_PASSWORD,
    EVENT_STATE_CHANGED,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
)
from homeassistant.core import Event, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import DOMAIN, SCAN_INTERVAL_WITHOUT_STREAM
from custom_components.crownstone_spotflow.crownstone import CrownstoneCloud
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

from . import (
    async_poll,
    async_wait_for_stream,
    async_wait_until,
    live_updates_entity,
    place_entity,
    stone_entity,
)
from .conftest import FAST_STREAM

NEW_PASSWORD = "changed-elsewhere"
LOGGERS = ("custom_components.crownstone_spotflow", "homeassistant.config_entries")


@pytest.fixture
def stream_options() -> dict[str, Any]:
    """Wait the full backoff cap (no jitter), so the waits can be checked."""
    return FAST_STREAM | {"jitter": lambda: 1.0}


@pytest.fixture
def issued_tokens(cloud: CloudSimulator) -> Generator[list[str]]:
    """Record every access token the simulator hands out."""
    tokens: list[str] = []
    issue = cloud.tokens.issue

    def _issue(user_id: str, ttl: int) -> Any:
        token = issue(user_id, ttl)
        tokens.append(token.id)
        return token

    with patch.object(cloud.tokens, "issue", _issue):
        yield tokens


@pytest.fixture(autouse=True)
def clean_logs(
    caplog: pytest.LogCaptureFixture, issued_tokens: list[str]
) -> Generator[pytest.LogCaptureFixture]:
    """Log everything, and check afterwards that no line holds a traceback or a secret."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog
    secrets = [
        *issued_tokens,
        *(
            password
            for clear in (DEMO_PASSWORD, NEW_PASSWORD)
            for password in (clear, hashlib.sha1(clear.encode()).hexdigest())
        ),
    ]
    assert all(record.exc_info is None for record in caplog.records)
    assert "Traceback" not in caplog.text
    for secret in secrets:
        assert secret not in caplog.text


@pytest.fixture
def unavailable_changes(hass: HomeAssistant) -> list[str]:
    """Record every entity that went unavailable."""
    changes: list[str] = []

    def _record(event: Event[Any]) -> None:
        new_state = event.data["new_state"]
        if new_state is not None and new_state.state == STATE_UNAVAILABLE:
            changes.append(event.data["entity_id"])

    hass.bus.async_listen(EVENT_STATE_CHANGED, _record)
    return changes


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def _logins(cloud: CloudSimulator) -> int:
    return cloud.request_count("POST", "/users/login")


def _fetch_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if "Error fetching" in record.getMessage()]


@pytest.fixture
def quick_timeout() -> Generator[None]:
    """Give up on a silent cloud after 0.3 s instead of 10 s."""
    with patch(
        "custom_components.crownstone_spotflow.coordinator.CrownstoneCloud",
        partial(CrownstoneCloud, request_timeout=0.3),
    ):
        yield


FAULTS = ["http_500", "http_503", "html", "reset", "malformed_json", "non_json", "latency"]


@pytest.mark.usefixtures("quick_timeout")
@pytest.mark.parametrize("kind", FAULTS)
async def test_cloud_down_at_startup(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry, kind: str
) -> None:
    """Setup is retried while the cloud is in trouble, and works once it answers."""
    cloud.inject_fault(kind, seconds=1.0)  # type: ignore[arg-type]
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert cloud.stream_connections == 0

    cloud.clear_faults()
    await hass.config_entries.async_reload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.LOADED
    await async_wait_for_stream(mock_config_entry.runtime_data)
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_ON


def _endpoint(cloud: CloudSimulator, name: str) -> str:
    home = cloud.sphere_id("Home")
    return {
        "spheres": f"/users/{cloud.user_id(DEMO_EMAIL)}/spheres",
        "presence": f"/Spheres/{home}/presentPeople",
    }[name]


@pytest.mark.usefixtures("quick_timeout")
# A poll does not read users (see test_coordinator's test_requests_per_poll).
@pytest.mark.parametrize("endpoint", ["spheres", "presence"])
@pytest.mark.parametrize("kind", FAULTS)
async def test_cloud_in_trouble(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    endpoint: str,
) -> None:
    """Entities go unavailable while any endpoint fails, logged once, and come back."""
    coordinator = init_integration.runtime_data
    cloud.inject_fault(kind, path=_endpoint(cloud, endpoint), seconds=1.0)  # type: ignore[arg-type]
    for _ in range(2):
        await coordinator.async_refresh()
    await hass.async_block_till_done()

    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_UNAVAILABLE
    assert _state(hass, place_entity(hass, cloud, "Home", "occupancy")) == STATE_UNAVAILABLE
    assert len(_fetch_errors(caplog)) == 1

    cloud.clear_faults()
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_ON
    assert sum("recovered" in record.getMessage() for record in caplog.records) == 1


@pytest.mark.usefixtures("init_integration")
async def test_token_expired_mid_session(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    unavailable_changes: list[str],
) -> None:
    """Expired tokens cost one login for the stream and the REST calls together; nobody notices."""
    coordinator = init_integration.runtime_data
    logins = _logins(cloud)
    connections = cloud.stream_connections

    # The stream hears TOKEN_EXPIRED, and REST calls get INVALID_TOKEN.
    cloud.expire_tokens()
    await async_wait_until(hass, lambda: cloud.stream_connections == connections + 1)
    await async_wait_for_stream(coordinator)
    await coordinator.async_refresh()
    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 0)
    await async_wait_until(
        hass, lambda: _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_OFF
    )

    assert _logins(cloud) == logins + 1
    assert unavailable_changes == []


async def test_token_expired_found_by_a_poll(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    unavailable_changes: list[str],
) -> None:
    """REST meets INVALID_TOKEN first; the stream then takes the new token without a login."""
    coordinator = init_integration.runtime_data
    logins = _logins(cloud)
    cloud.tokens.expire_all()  # the open stream is not told until its next event

    await coordinator.async_refresh()
    assert _logins(cloud) == logins + 1
    # This event ends the stream with TOKEN_EXPIRED instead; the resync shows it anyway.
    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 0)
    await async_wait_until(
        hass, lambda: _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_OFF
    )
    await async_wait_for_stream(coordinator)

    assert _logins(cloud) == logins + 1
    assert unavailable_changes == []


async def test_password_changed_elsewhere(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """The stream's refused login starts reauthentication; entities are back after it."""
    logins = _logins(cloud)
    cloud.change_password(DEMO_EMAIL, NEW_PASSWORD)
    cloud.expire_tokens()

    await async_wait_until(
        hass, lambda: _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_UNAVAILABLE
    )
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]
    # One refused login, shared by the stream and the refresh; no hammering.
    assert _logins(cloud) == logins + 1
    assert _state(hass, live_updates_entity(hass)) == STATE_OFF

    result = await hass.config_entries.flow.async_configure(
        flows[0]["flow_id"], {CONF_PASSWORD: NEW_PASSWORD}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.LOADED
    await async_wait_for_stream(init_integration.runtime_data)
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_ON
    assert _state(hass, live_updates_entity(hass)) == STATE_ON


async def test_email_no_longer_verified(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """An account whose e-mail needs confirming again asks to sign in, and says why."""
    cloud.set_email_verified(DEMO_EMAIL, False)
    cloud.expire_tokens()
    await async_wait_until(
        hass, lambda: _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_UNAVAILABLE
    )
    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)

    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_PASSWORD: DEMO_PASSWORD}
    )
    assert result["type"] is FlowResultType.FORM
    assert list(result["errors"].values()) == ["email_not_verified"]

    cloud.set_email_verified(DEMO_EMAIL, True)
    result = await hass.config_entries.flow.async_configure(
        flow["flow_id"], {CONF_PASSWORD: DEMO_PASSWORD}
    )
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    await async_wait_for_stream(init_integration.runtime_data)
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_ON


async def test_email_not_verified_at_setup(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """Setup fails with the translated authentication error and asks to sign in again."""
    cloud.set_email_verified(DEMO_EMAIL, False)
    mock_config_entry.add_to_hass(hass)
    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    assert mock_config_entry.state is ConfigEntryState.SETUP_ERROR
    assert mock_config_entry.reason == (
        "The Crownstone cloud no longer accepts the stored credentials. Sign in again"
    )
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [flow["context"]["source"] for flow in flows] == [SOURCE_REAUTH]


@pytest.mark.parametrize("mode", ["reset", "end", "silence"])
async def test_stream_dropped_while_things_happen(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry, mode: str
) -> None:
    """What happens while the stream is down shows up once it is back (it replays nothing)."""
    coordinator = init_integration.runtime_data
    home = cloud.sphere_id("Home")
    cloud.stream_fault("no_connection")
    cloud.drop_streams(mode)  # type: ignore[arg-type]
    await async_wait_until(hass, lambda: not coordinator.stream.connected)

    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 0)
    cloud.set_ability(cloud.stone_id("Cabin lamp"), "dimming", False)
    cloud.enter_location(cloud.user_id("bob@example.com"), home, cloud.location_id("Kitchen"))
    coffee_machine = stone_entity(hass, cloud, "Coffee machine")
    cloud.rename_stone(cloud.stone_id("Coffee machine"), "Espresso machine")
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_ON

    cloud.stream_fault(None)
    await async_wait_until(
        hass, lambda: _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_OFF
    )
    # A light whose dimming was turned off stays a light, without brightness.
    cabin_lamp = hass.states.get(stone_entity(hass, cloud, "Cabin lamp", "light"))
    assert cabin_lamp.attributes["supported_color_modes"] == ["onoff"]
    assert _state(hass, place_entity(hass, cloud, "Kitchen", "occupancy")) == STATE_ON
    assert hass.states.get(coffee_machine).attributes["friendly_name"] == "Espresso machine"


async def test_stream_ending_again_and_again(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that ends every stream right after starting it: backoff grows, no busy loop."""
    loop = hass.loop
    cloud.stream_fault("end_on_connect")
    connections = cloud.stream_connections
    started = loop.time()
    cloud.drop_streams("end")
    # Waits of 0.05, 0.1, 0.2, 0.4 and 0.4 s: six connections in about 1.15 s.
    await async_wait_until(hass, lambda: cloud.stream_connections >= connections + 6)
    elapsed = loop.time() - started

    waits = [
        float(match.group(1))
        for record in caplog.records
        if (match := re.fullmatch(r"Event stream reconnecting in ([\d.]+) s", record.getMessage()))
    ]
    assert waits[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]
    # Each short-lived stream asks for a resync; the debouncer keeps that to one or two reads.
    assert cloud.request_count("GET", "/spheres") <= 3
    # A resync that reaches the cloud cuts the stream's current wait (0.4 s at most) short.
    cut_short = caplog.text.count("Event stream reconnecting now")
    assert cut_short <= 2
    assert elapsed >= 1.1 - 0.4 * cut_short

    cloud.stream_fault(None)
    await async_wait_for_stream(init_integration.runtime_data)
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_ON


async def test_no_stream_at_all(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """A cloud whose event server is out: entities work from polls, live updates say off."""
    cloud.stream_fault("no_connection")
    cloud.drop_streams("reset")
    await async_wait_until(hass, lambda: _state(hass, live_updates_entity(hass)) == STATE_OFF)
    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 0)
    await async_poll(hass, init_integration.runtime_data.update_interval)
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_OFF


# Longer than the polls the test lets pass (async_poll runs every timer due within its delay).
@pytest.mark.parametrize(
    "stream_options",
    [FAST_STREAM | {"backoff_initial": 600.0, "backoff_max": 600.0, "jitter": lambda: 1.0}],
)
async def test_live_updates_come_back_with_the_cloud(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """The first poll that reaches the cloud again reopens the stream, whatever its backoff."""
    coordinator = init_integration.runtime_data
    cloud.inject_fault("http_503")
    cloud.stream_fault("no_connection")
    cloud.drop_streams("end")
    await async_wait_until(hass, lambda: not coordinator.stream.connected)
    await async_poll(hass, SCAN_INTERVAL_WITHOUT_STREAM)
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_UNAVAILABLE
    assert not coordinator.stream.connected  # waiting out its 10 minutes

    cloud.clear_faults()
    cloud.stream_fault(None)
    await async_poll(hass, SCAN_INTERVAL_WITHOUT_STREAM)

    await async_wait_for_stream(coordinator)
    assert _state(hass, stone_entity(hass, cloud, "Desk lamp")) == STATE_ON
