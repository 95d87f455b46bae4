"""The SSE wire format at its edges, served byte for byte by a small real server on 127.0.0.1.

The simulator writes exactly what the Crownstone server writes; these cases are what other
servers (proxies, self-hosted clouds, the SSE spec) may send as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import logging

import aiohttp
from aiohttp import web
import pytest

from custom_components.crownstone_spotflow.crownstone import CrownstoneCloud
from custom_components.crownstone_spotflow.crownstone.events import (
    Event,
    PingEvent,
    SwitchStateUpdateEvent,
    SystemEvent,
)
from custom_components.crownstone_spotflow.crownstone.stream import CrownstoneEventStream
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

START = b'data:{"type":"system","subType":"STREAM_START","code":200,"message":"Go."}\n\n'
HANG = None  # keep the response open after the script


class ScriptedServer:
    """Answers each stream request with the next script: raw chunks, then end (or hang)."""

    def __init__(self) -> None:
        self.scripts: list[list[bytes | None]] = []
        self.requests: list[web.Request] = []
        self.arrived = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/sse", self._stream)
        app.router.add_get("/moved", self._moved)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._runner is not None
        self._closing.set()
        await self._runner.cleanup()

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.arrived.set()
        script = self.scripts.pop(0) if self.scripts else [START, HANG]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in script:
            if chunk is HANG:
                await self._closing.wait()
            else:
                await response.write(chunk)
        await response.write_eof()
        return response

    async def _moved(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        self.arrived.set()
        raise web.HTTPFound("/sse")

    async def wait_for_requests(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def server() -> AsyncGenerator[ScriptedServer]:
    scripted = ScriptedServer()
    await scripted.start()
    yield scripted
    await scripted.stop()


@pytest.fixture
async def account() -> AsyncGenerator[CrownstoneCloud]:
    """An account logged in at the simulator; its token is what the stream must send."""
    sim = CloudSimulator()
    await sim.start(host="127.0.0.1", port=0)
    async with aiohttp.ClientSession() as session:
        account = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, session, base_url=sim.url)
        await account.async_login()
        yield account
    await sim.stop()


@pytest.fixture
async def stream(
    server: ScriptedServer, account: CrownstoneCloud
) -> AsyncGenerator[CrownstoneEventStream]:
    event_stream = CrownstoneEventStream(
        account,
        f"{server.url}/sse",
        project_name="Tests",
        ping_interval=0.2,
        ping_margin=0.2,
        backoff_initial=0.02,
        backoff_max=0.05,
    )
    yield event_stream
    await event_stream.stop()


async def collect(stream: CrownstoneEventStream, count: int) -> list[Event]:
    """Start the stream and return its first `count` events."""
    events: list[Event] = []
    enough = asyncio.Event()

    def record(event: Event) -> None:
        events.append(event)
        if len(events) >= count:
            enough.set()

    stream.add_event_listener(record)
    await stream.start()
    async with asyncio.timeout(5):
        await enough.wait()
    return events


def switch(percentage: int) -> bytes:
    return (
        b'{"type":"switchStateUpdate","sphere":{"id":"s1"},'
        b'"crownstone":{"id":"c1","uid":3,"percentage":%d}}' % percentage
    )


async def test_request_carries_token_project_and_accept(
    server: ScriptedServer, account: CrownstoneCloud, stream: CrownstoneEventStream
) -> None:
    """GET {sse}?projectName=.., the bare token in Authorization, never in the URL."""
    await collect(stream, 1)

    (request,) = server.requests
    token = account.access_token
    assert token
    assert request.headers["Authorization"] == token
    assert dict(request.query) == {"projectName": "Tests"}
    assert token not in request.raw_path
    assert request.headers["Accept"] == "text/event-stream"


async def test_tolerates_what_the_sse_spec_allows(
    server: ScriptedServer, stream: CrownstoneEventStream
) -> None:
    """Space after the colon, CRLF, comments, id and event fields, data over two lines."""
    server.scripts.append(
        [
            START,
            b"data: " + switch(10) + b"\r\n\r\n",
            b": a comment\n\n",
            b"id: 7\nevent: message\ndata:" + switch(20) + b"\n\n",
            b'data:{"type":"ping",\ndata:"counter":4}\n\n',
            b"retry: 100\n",
            b"data:" + switch(30) + b"\n",  # split across writes: one event in two chunks
            b"\n",
            HANG,
        ]
    )

    events = await collect(stream, 5)

    assert events[1:] == [
        SwitchStateUpdateEvent("s1", "c1", 3, 10),
        SwitchStateUpdateEvent("s1", "c1", 3, 20),
        PingEvent(4),
        SwitchStateUpdateEvent("s1", "c1", 3, 30),
    ]


async def test_skips_what_it_cannot_read(
    server: ScriptedServer, stream: CrownstoneEventStream
) -> None:
    """Malformed JSON, unknown types and an unfinished event at the end are dropped."""
    server.scripts.append(
        [
            START,
            b"data:{not json\n\n",
            b'data:{"type":"weather","sunny":true}\n\n',
            b"data:" + switch(40) + b"\n\n",
            b"data:" + switch(50) + b"\n",  # the stream ends before the blank line
        ]
    )

    events = await collect(stream, 3)  # the next stream's STREAM_START is the third

    assert events == [
        SystemEvent("STREAM_START", 200, "Go."),
        SwitchStateUpdateEvent("s1", "c1", 3, 40),
        SystemEvent("STREAM_START", 200, "Go."),
    ]


async def test_oversized_line_is_a_failed_stream(
    server: ScriptedServer, stream: CrownstoneEventStream, caplog: pytest.LogCaptureFixture
) -> None:
    """A line over the limit ends that stream at once, on every aiohttp version; the next works."""
    caplog.set_level(logging.DEBUG, logger="custom_components.crownstone_spotflow.crownstone")
    server.scripts.append([START, b"data:" + b"x" * 300_000, HANG])

    events = await collect(stream, 2)

    assert events == [SystemEvent("STREAM_START", 200, "Go.")] * 2
    assert "longer than 65536 bytes" in caplog.text


async def test_redirect_is_not_followed(server: ScriptedServer, account: CrownstoneCloud) -> None:
    """A redirect is not the SSE server's doing: it counts as a failed attempt."""
    stream = CrownstoneEventStream(
        account, f"{server.url}/moved", backoff_initial=0.02, backoff_max=0.05
    )
    await stream.start()
    try:
        await server.wait_for_requests(3)
    finally:
        await stream.stop()

    assert {request.path for request in server.requests} == {"/moved"}
    assert not stream.connected


async def test_stop_keeps_the_callers_cancellation(
    server: ScriptedServer, stream: CrownstoneEventStream
) -> None:
    """Cancelling whoever awaits stop() cancels them, it is not swallowed as ours."""
    await collect(stream, 1)
    stopper = asyncio.create_task(stream.stop())
    await asyncio.sleep(0)  # stopper is now waiting for the reader to finish

    stopper.cancel()

    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not stream.connected
