"""CrownstoneEventStream against the simulator's real event stream over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from itertools import pairwise
import logging
import socket
from typing import Any

import aiohttp
import pytest

from custom_components.crownstone_spotflow.crownstone import (
    CrownstoneAuthenticationError,
    CrownstoneCloud,
    CrownstoneError,
)
from custom_components.crownstone_spotflow.crownstone.events import (
    AbilityChangeEvent,
    DataChangeEvent,
    DataChangeOperation,
    DataChangeSubType,
    Event,
    InvitationChangeEvent,
    MultiSwitchCommandEvent,
    PingEvent,
    PresenceEvent,
    PresenceSubType,
    SphereTokensChangedEvent,
    SwitchDataItem,
    SwitchStateUpdateEvent,
    SystemEvent,
)
from custom_components.crownstone_spotflow.crownstone.stream import CrownstoneEventStream
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

# Short intervals keep the suite fast; the stream gets the same ping interval as the server.
PING = 0.2
LIVENESS = PING + PING
STREAM_LOGGER = "custom_components.crownstone_spotflow.crownstone"


class Watcher:
    """Records what a stream reports and waits for it."""

    def __init__(self, stream: CrownstoneEventStream) -> None:
        self.events: list[Event] = []
        self.connection: list[bool] = []
        self.errors: list[CrownstoneError] = []
        self._changed = asyncio.Event()
        self.unsubscribe_events = stream.add_event_listener(self._recorder(self.events))
        self.unsubscribe_connection = stream.add_connection_listener(
            self._recorder(self.connection)
        )
        stream.add_error_listener(self._recorder(self.errors))

    def _recorder[T](self, into: list[T]) -> Callable[[T], None]:
        def record(item: T) -> None:
            into.append(item)
            self._changed.set()

        return record

    async def wait_for(self, predicate: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def connections(self, *expected: bool) -> None:
        await self.wait_for(lambda: self.connection == list(expected))

    def of_type[E](self, event_type: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, event_type)]

    async def next_of_type[E](self, event_type: type[E], count: int = 1) -> list[E]:
        await self.wait_for(lambda: len(self.of_type(event_type)) >= count)
        return self.of_type(event_type)


type OpenStream = Callable[..., Awaitable[tuple[CrownstoneEventStream, Watcher]]]


async def wait_until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition of the simulator (it has no events to wait on)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def logins(sim: CloudSimulator) -> int:
    return sim.request_count("POST", "/users/login")


@pytest.fixture
async def sim() -> AsyncGenerator[CloudSimulator]:
    simulator = CloudSimulator(phone_delay=0.02, ping_interval=PING)
    await simulator.start(host="127.0.0.1", port=0)
    yield simulator
    await simulator.stop()


@pytest.fixture
async def session() -> AsyncGenerator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def account(sim: CloudSimulator, session: aiohttp.ClientSession) -> CrownstoneCloud:
    account = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, session, base_url=sim.url)
    await account.async_login()
    return account


@pytest.fixture
async def open_stream(sim: CloudSimulator, account: CrownstoneCloud) -> AsyncGenerator[OpenStream]:
    """Start streams on the simulator (connected, unless told not to wait); stop them after."""
    streams: list[CrownstoneEventStream] = []

    async def start(
        *, wait: bool = True, sse_url: str | None = None, **options: Any
    ) -> tuple[CrownstoneEventStream, Watcher]:
        stream = CrownstoneEventStream(
            account,
            sse_url or sim.sse_url,
            **{
                "ping_interval": PING,
                "ping_margin": PING,
                "backoff_initial": 0.02,
                "backoff_max": 0.5,
                **options,
            },
        )
        watcher = Watcher(stream)
        streams.append(stream)
        await stream.start()
        if wait:
            await watcher.connections(True)
        return stream, watcher

    yield start
    for stream in streams:
        await stream.stop()


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [
        float(record.getMessage().split()[-2])
        for record in caplog.records
        if record.msg == "Event stream reconnecting in %.2f s"
    ]


async def test_switch_call_gives_command_then_state(
    sim: CloudSimulator, account: CrownstoneCloud, open_stream: OpenStream
) -> None:
    """A REST switch call shows up as multiSwitch, then the phone's switchStateUpdate."""
    _, watcher = await open_stream()
    await account.async_initialize()
    lamp = account.get_crownstone("Desk lamp")

    await lamp.async_set_brightness(40)
    await watcher.next_of_type(SwitchStateUpdateEvent)

    command, update = [
        event
        for event in watcher.events
        if isinstance(event, MultiSwitchCommandEvent | SwitchStateUpdateEvent)
    ]
    assert command == MultiSwitchCommandEvent(
        lamp.sphere_id, (SwitchDataItem(lamp.cloud_id, lamp.unique_id, "PERCENTAGE", 40),)
    )
    assert update == SwitchStateUpdateEvent(lamp.sphere_id, lamp.cloud_id, lamp.unique_id, 40)


async def test_switched_by_hand(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """A state reported without a command arrives alone."""
    _, watcher = await open_stream()
    stone_id = sim.stone_id("Kitchen spots")

    sim.set_switch_state(stone_id, 0)

    (update,) = await watcher.next_of_type(SwitchStateUpdateEvent)
    assert (update.crownstone_id, update.percentage) == (stone_id, 0)
    assert update.sphere_id == sim.sphere_id("Home")
    assert not watcher.of_type(MultiSwitchCommandEvent)


async def test_presence(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """Entering and leaving a sphere and a room arrive in order, rooms with their id."""
    _, watcher = await open_stream()
    bob = sim.user_id("bob@example.com")
    home = sim.sphere_id("Home")
    kitchen = sim.location_id("Kitchen")

    sim.enter_sphere(bob, home)
    sim.enter_location(bob, home, kitchen)
    sim.exit_location(bob, home, kitchen)
    sim.exit_sphere(bob, home)

    events = await watcher.next_of_type(PresenceEvent, 4)
    assert events == [
        PresenceEvent(PresenceSubType.ENTER_SPHERE, home, bob, "Bob Member", None),
        PresenceEvent(PresenceSubType.ENTER_LOCATION, home, bob, "Bob Member", kitchen),
        PresenceEvent(PresenceSubType.EXIT_LOCATION, home, bob, "Bob Member", kitchen),
        PresenceEvent(PresenceSubType.EXIT_SPHERE, home, bob, "Bob Member", None),
    ]


async def test_data_changes(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """Stones and rooms created, renamed and deleted arrive as data changes."""
    _, watcher = await open_stream()
    home = sim.sphere_id("Home")

    stone_id = sim.add_stone(home, "Reading lamp")
    sim.rename_stone(stone_id, "Floor lamp")
    sim.remove_stone(stone_id)
    location_id = sim.add_location(home, "Attic")

    events = await watcher.next_of_type(DataChangeEvent, 4)
    stones, op = DataChangeSubType.STONES, DataChangeOperation
    assert events == [
        DataChangeEvent(stones, op.CREATE, home, stone_id, "Reading lamp"),
        DataChangeEvent(stones, op.UPDATE, home, stone_id, "Floor lamp"),
        DataChangeEvent(stones, op.DELETE, home, stone_id, "Floor lamp"),
        DataChangeEvent(DataChangeSubType.LOCATIONS, op.CREATE, home, location_id, "Attic"),
    ]


async def test_ability_change(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """Turning dimming off in the app arrives, not yet synced to the Crownstone."""
    _, watcher = await open_stream()
    stone_id = sim.stone_id("Desk lamp")

    sim.set_ability(stone_id, "dimming", False)

    (event,) = await watcher.next_of_type(AbilityChangeEvent)
    assert event == AbilityChangeEvent(sim.sphere_id("Home"), stone_id, "dimming", False, False)


async def test_sphere_tokens_and_invitations(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """The two sphere housekeeping events arrive typed."""
    _, watcher = await open_stream()
    sphere = {"id": "sphere-x", "name": "Home", "uid": 1}

    sim.emit_event(
        {
            "type": "sphereTokensChanged",
            "subType": "sphereAuthorizationTokens",
            "operation": "update",
            "sphere": sphere,
        }
    )
    sim.emit_event(
        {"type": "invitationChange", "operation": "invited", "sphere": sphere, "email": "d@e.f"}
    )

    assert await watcher.next_of_type(SphereTokensChangedEvent) == [
        SphereTokensChangedEvent("sphere-x", "update")
    ]
    assert await watcher.next_of_type(InvitationChangeEvent) == [
        InvitationChangeEvent("sphere-x", "invited", "d@e.f")
    ]


async def test_unknown_and_malformed_events_are_skipped(
    sim: CloudSimulator, open_stream: OpenStream
) -> None:
    """Events we cannot read are skipped; the stream stays up and the next one arrives."""
    _, watcher = await open_stream()

    sim.emit_event({"type": "somethingNew", "payload": [1, 2, 3]})
    sim.emit_event({"type": "switchStateUpdate", "crownstone": "not an object"})
    sim.set_switch_state(sim.stone_id("Desk lamp"), 100)

    await watcher.next_of_type(SwitchStateUpdateEvent)
    assert [type(event) for event in watcher.events] == [SystemEvent, SwitchStateUpdateEvent]
    assert watcher.connection == [True]


async def test_pings_keep_a_quiet_stream_open(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """Pings alone keep the stream alive past the liveness limit."""
    stream, watcher = await open_stream()

    await watcher.next_of_type(PingEvent, 3)

    assert watcher.connection == [True]
    assert stream.connected
    assert sim.stream_connections == 1
    assert stream.last_event_time is not None


async def test_silent_stream_is_replaced(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """No data for ping interval + margin means a dead stream: close it and reconnect."""
    stream, watcher = await open_stream()
    loop = asyncio.get_running_loop()
    silenced_at = loop.time()

    sim.drop_streams("silence")
    await watcher.connections(True, False)
    lost_after = loop.time() - silenced_at
    await watcher.connections(True, False, True)

    assert LIVENESS - 0.05 <= lost_after < LIVENESS + 1.0
    assert sim.stream_connections == 2
    assert stream.reconnect_count == 1
    assert stream.connected


async def test_reset_connection_is_replaced(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """A TCP reset is a disconnect; the stream comes back and delivers again."""
    _, watcher = await open_stream()

    sim.drop_streams("reset")
    await watcher.connections(True, False, True)
    sim.set_switch_state(sim.stone_id("Desk lamp"), 0)

    await watcher.next_of_type(SwitchStateUpdateEvent)
    assert sim.stream_connections == 2


async def test_streams_ending_at_once_back_off_growing(
    sim: CloudSimulator, open_stream: OpenStream, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that ends every stream right after its start gets ever fewer attempts."""
    caplog.set_level(logging.DEBUG, logger=STREAM_LOGGER)
    _, watcher = await open_stream(backoff_initial=0.05, backoff_max=10.0, jitter=lambda: 1.0)
    before = sim.stream_connections

    sim.stream_fault("end_on_connect")
    sim.drop_streams("end")
    await wait_until(lambda: len(retry_delays(caplog)) >= 5)

    # Waits of 0.05, 0.1, 0.2, 0.4, 0.8 s: one attempt after each wait, not hundreds.
    delays = retry_delays(caplog)
    assert sim.stream_connections - before <= len(delays)
    assert all(later == pytest.approx(2 * earlier) for earlier, later in pairwise(delays))
    # Every attempt reached STREAM_START, so every one is reported, and every loss too.
    assert watcher.connection[:4] == [True, False, True, False]


async def test_backoff_jitters_below_its_cap(
    sim: CloudSimulator, open_stream: OpenStream, caplog: pytest.LogCaptureFixture
) -> None:
    """With real randomness, waits stay within the doubling cap (full jitter)."""
    caplog.set_level(logging.DEBUG, logger=STREAM_LOGGER)
    await open_stream(backoff_initial=0.05, backoff_max=0.1)

    sim.stream_fault("end_on_connect")
    sim.drop_streams("end")
    await wait_until(lambda: len(retry_delays(caplog)) >= 5)

    delays = retry_delays(caplog)
    assert delays[0] <= 0.05
    assert all(0 <= delay <= 0.1 for delay in delays)


async def test_backoff_resets_after_a_healthy_stream(
    sim: CloudSimulator, open_stream: OpenStream, caplog: pytest.LogCaptureFixture
) -> None:
    """Once a stream stayed up for a ping interval, the next loss starts from the first wait."""
    caplog.set_level(logging.DEBUG, logger=STREAM_LOGGER)
    _, watcher = await open_stream(backoff_initial=0.02, backoff_max=10.0, jitter=lambda: 1.0)
    sim.stream_fault("end_on_connect")
    sim.drop_streams("end")
    await wait_until(lambda: len(retry_delays(caplog)) >= 3)

    sim.stream_fault(None)
    await wait_until(lambda: sim.open_streams == 1)
    pings = len(watcher.of_type(PingEvent))
    await watcher.next_of_type(PingEvent, pings + 2)  # up for more than a ping interval
    caplog.clear()
    sim.drop_streams("reset")
    await wait_until(lambda: bool(retry_delays(caplog)))

    assert retry_delays(caplog)[0] == pytest.approx(0.02)


async def test_expired_token_means_one_login_and_a_new_stream(
    sim: CloudSimulator, account: CrownstoneCloud, open_stream: OpenStream
) -> None:
    """TOKEN_EXPIRED costs exactly one login, then the stream is back without waiting."""
    _, watcher = await open_stream(backoff_initial=10.0)
    old_token = account.access_token
    logins_before = logins(sim)

    sim.expire_tokens()
    await watcher.connections(True, False, True)

    assert logins(sim) == logins_before + 1
    assert account.access_token != old_token
    assert sim.stream_connections == 2
    assert any(
        isinstance(event, SystemEvent) and event.sub_type == "TOKEN_EXPIRED"
        for event in watcher.events
    )


async def test_token_renewed_elsewhere_is_reused(
    sim: CloudSimulator, account: CrownstoneCloud, open_stream: OpenStream
) -> None:
    """When the REST side logged in again already, the stream takes its token as it is."""
    stream, watcher = await open_stream(backoff_initial=10.0)
    await account.async_login()  # what a REST call that met an expired token does
    logins_before = logins(sim)

    sim.stream.expire()  # the open stream hears TOKEN_EXPIRED for the old token
    await watcher.connections(True, False, True)

    assert logins(sim) == logins_before


async def test_stream_and_requests_share_one_login(
    sim: CloudSimulator, account: CrownstoneCloud, open_stream: OpenStream
) -> None:
    """A request and the stream that meet the same expired token log in once between them."""
    _, watcher = await open_stream(backoff_initial=10.0)
    logins_before = logins(sim)

    sim.expire_tokens()
    await asyncio.gather(account.cloud_data.async_update(), watcher.connections(True, False, True))

    assert logins(sim) == logins_before + 1


async def test_login_refused_to_a_request_is_not_tried_again_by_the_stream(
    sim: CloudSimulator, account: CrownstoneCloud, open_stream: OpenStream
) -> None:
    """Credentials the cloud refused once are not sent again for the same expired token."""
    stream, watcher = await open_stream(backoff_initial=10.0)
    sim.change_password(DEMO_EMAIL, "changed-elsewhere")
    sim.tokens.expire_all()  # the open stream hears of it with its next event
    with pytest.raises(CrownstoneAuthenticationError):
        await account.cloud_data.async_update()
    attempts = logins(sim)

    sim.set_switch_state(sim.stone_id("Desk lamp"), 0)
    await watcher.wait_for(lambda: bool(watcher.errors))
    assert logins(sim) == attempts
    assert stream.last_error is watcher.errors[0]


async def test_rejected_token_again_backs_off(
    sim: CloudSimulator, account: CrownstoneCloud, open_stream: OpenStream
) -> None:
    """A server that refuses every fresh token gets a login per attempt, with waits between."""
    _, watcher = await open_stream(backoff_initial=0.1, backoff_max=10.0, jitter=lambda: 1.0)
    logins_before = logins(sim)
    loop = asyncio.get_running_loop()
    started = loop.time()

    sim.stream_fault("invalid_token")
    sim.drop_streams("end")
    await wait_until(lambda: logins(sim) == logins_before + 3)

    # Waits of 0.1 s (stream ended), none (first refusal), 0.2 and 0.4 s (refused again).
    assert loop.time() - started >= 0.65
    sim.stream_fault(None)
    await watcher.connections(True, False, True)


async def test_refused_login_stops_the_stream(
    sim: CloudSimulator, account: CrownstoneCloud, open_stream: OpenStream
) -> None:
    """A password changed elsewhere: the stream stops and says why, so reauth can begin."""
    stream, watcher = await open_stream(backoff_initial=0.02)
    sim.change_password(DEMO_EMAIL, "changed-elsewhere")
    sim.expire_tokens()

    await watcher.wait_for(lambda: bool(watcher.errors))
    (error,) = watcher.errors
    assert isinstance(error, CrownstoneAuthenticationError)
    assert stream.last_error is error
    assert not stream.connected
    assert watcher.connection == [True, False]
    connections, login_attempts = sim.stream_connections, logins(sim)
    await asyncio.sleep(0.2)
    assert (sim.stream_connections, logins(sim)) == (connections, login_attempts)

    # After reauth the integration starts the stream again.
    sim.change_password(DEMO_EMAIL, DEMO_PASSWORD)
    await stream.start()
    await watcher.connections(True, False, True)
    assert stream.last_error is None


async def test_no_connection_backs_off_and_recovers(
    sim: CloudSimulator, open_stream: OpenStream
) -> None:
    """NO_CONNECTION ends each attempt; the stream keeps trying, then connects."""
    stream, watcher = await open_stream(backoff_initial=0.02, backoff_max=0.05)
    sim.stream_fault("no_connection")
    sim.drop_streams("end")
    await wait_until(lambda: sim.stream_connections >= 4)
    assert watcher.connection == [True, False]

    sim.stream_fault(None)
    await watcher.connections(True, False, True)

    refusals = [event for event in watcher.of_type(SystemEvent) if event.code == 500]
    assert {event.sub_type for event in refusals} == {"NO_CONNECTION"}
    assert stream.reconnect_count == sim.stream_connections - 1


async def test_unreachable_server_backs_off(open_stream: OpenStream) -> None:
    """Refused connections are retried with backoff and never reported as connected."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    stream, watcher = await open_stream(wait=False, sse_url=f"http://127.0.0.1:{port}/sse")

    await wait_until(lambda: stream.reconnect_count >= 3)

    assert watcher.connection == []
    assert not stream.connected


async def test_http_error_status_backs_off(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """A stream URL that answers 404 is a failed attempt, not a stream."""
    stream, watcher = await open_stream(wait=False, sse_url=sim.url + "/no-such-stream")

    await wait_until(lambda: stream.reconnect_count >= 2)

    assert watcher.connection == []
    assert sim.stream_connections == 0


async def test_connection_listener_unsubscribes(
    sim: CloudSimulator, open_stream: OpenStream
) -> None:
    """After unsubscribing, a listener hears nothing more."""
    _, watcher = await open_stream()
    watcher.unsubscribe_connection()
    watcher.unsubscribe_events()

    sim.drop_streams("reset")
    await wait_until(lambda: sim.stream_connections == 2 and sim.open_streams == 1)

    assert watcher.connection == [True]
    assert len(watcher.events) == 1


async def test_failing_listener_does_not_stop_the_stream(
    sim: CloudSimulator, open_stream: OpenStream, caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that raises is logged; other listeners and the stream go on."""
    stream, watcher = await open_stream()

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    stream.add_event_listener(broken)
    sim.set_switch_state(sim.stone_id("Desk lamp"), 0)

    await watcher.next_of_type(SwitchStateUpdateEvent)
    assert "Error in event stream listener" in caplog.text
    assert stream.connected


async def test_stop_with_the_stream_open_is_prompt(
    sim: CloudSimulator, open_stream: OpenStream
) -> None:
    """stop() closes an open stream at once; the server sees the client leave."""
    stream, watcher = await open_stream()
    loop = asyncio.get_running_loop()

    started = loop.time()
    await stream.stop()

    # Seconds even on a loaded machine; not waiting for the server, which never ends the stream.
    assert loop.time() - started < 5
    assert not stream.connected
    await wait_until(lambda: sim.open_streams == 0)
    assert watcher.connection == [True]  # stopping is not a lost connection
    await stream.stop()  # a second stop is harmless


async def test_stop_while_backing_off_is_prompt(
    sim: CloudSimulator, open_stream: OpenStream
) -> None:
    """stop() does not wait for a long backoff to run out."""
    stream, watcher = await open_stream(backoff_initial=60.0, backoff_max=60.0, jitter=lambda: 1.0)
    sim.drop_streams("end")
    await watcher.connections(True, False)  # now waiting a minute before the next attempt
    loop = asyncio.get_running_loop()

    started = loop.time()
    await stream.stop()

    assert loop.time() - started < 5  # far from the minute's wait, even on a loaded machine
    assert sim.stream_connections == 1


async def test_start_twice_opens_one_stream(sim: CloudSimulator, open_stream: OpenStream) -> None:
    """start() on a running stream changes nothing."""
    stream, _ = await open_stream()

    await stream.start()
    await asyncio.sleep(0.05)

    assert sim.stream_connections == 1


async def test_stop_before_start_is_harmless(account: CrownstoneCloud, sim: CloudSimulator) -> None:
    """A stream that never started stops without complaint."""
    stream = CrownstoneEventStream(account, sim.sse_url)

    await stream.stop()

    assert not stream.connected
    assert stream.reconnect_count == 0
    assert stream.last_event_time is None


async def test_stream_logs_in_when_the_cloud_has_no_token(
    sim: CloudSimulator, session: aiohttp.ClientSession
) -> None:
    """A cloud that never logged in is logged in by the stream; a cloud in trouble is retried."""
    fresh = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, session, base_url=sim.url)
    sim.inject_fault("http_503", path="/users/login", count=2)
    stream = CrownstoneEventStream(
        fresh, sim.sse_url, ping_interval=PING, ping_margin=PING, backoff_initial=0.02
    )
    watcher = Watcher(stream)
    await stream.start()
    try:
        await watcher.connections(True)
    finally:
        await stream.stop()

    assert logins(sim) == 3
    assert fresh.access_token is not None


async def test_token_never_logged(
    sim: CloudSimulator,
    account: CrownstoneCloud,
    open_stream: OpenStream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Neither the first nor a renewed access token appears in any log line of the library."""
    caplog.set_level(logging.DEBUG)
    first_token = account.access_token
    _, watcher = await open_stream()
    sim.expire_tokens()
    await watcher.connections(True, False, True)
    second_token = account.access_token
    sim.drop_streams("silence")
    await watcher.connections(True, False, True, False, True)
    sim.emit_event({"type": "ping", "counter": second_token})
    sim.set_switch_state(sim.stone_id("Desk lamp"), 0)
    await watcher.next_of_type(SwitchStateUpdateEvent)

    assert first_token
    assert second_token
    ours = [r for r in caplog.records if r.name.startswith("custom_components")]
    assert any("Opening event stream" in record.getMessage() for record in ours)
    for record in ours:
        text = record.getMessage() + (record.exc_text or "")
        assert first_token not in text
        assert second_token not in text


async def test_reconnect_now_cuts_a_long_wait_short(
    sim: CloudSimulator, open_stream: OpenStream, caplog: pytest.LogCaptureFixture
) -> None:
    """When the cloud answers again, the stream is back at once, not after its backoff."""
    caplog.set_level(logging.DEBUG, logger=STREAM_LOGGER)
    stream, watcher = await open_stream(backoff_initial=60.0, backoff_max=60.0, jitter=lambda: 1.0)
    stream.reconnect_now()  # connected: nothing to cut short
    sim.stream_fault("no_connection")
    sim.drop_streams("end")
    await watcher.connections(True, False)
    await wait_until(lambda: retry_delays(caplog) == [60.0])  # now waiting a minute

    sim.stream_fault(None)
    stream.reconnect_now()  # a poll succeeded

    await watcher.connections(True, False, True)
    assert sim.stream_connections == 2
