"""Helpers for talking to the cloud simulator with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import aiohttp

from simulators.crownstone_cloud import CloudSimulator

EVENT_TIMEOUT = 5.0


def sha1(password: str) -> str:
    """The password hash the clients send."""
    return hashlib.sha1(password.encode()).hexdigest()


async def login(
    session: aiohttp.ClientSession, sim: CloudSimulator, email: str, password: str
) -> tuple[str, str]:
    """Log in; returns (token, user id)."""
    async with session.post(
        f"{sim.url}/users/login", json={"email": email, "password": sha1(password)}
    ) as response:
        assert response.status == 200
        body = await response.json()
    return body["id"], body["userId"]


class EventReader:
    """Reads `data:` events from an open SSE response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, wait: float = EVENT_TIMEOUT) -> dict[str, Any] | None:
        """The next event, or None at the end of the stream."""
        async with asyncio.timeout(wait):
            while True:
                line = await self.response.content.readline()
                if not line:
                    return None
                if line.startswith(b"data:"):
                    assert not line.startswith(b"data: ")
                    event: dict[str, Any] = json.loads(line[5:])
                    blank = await self.response.content.readline()
                    assert blank == b"\n"
                    return event

    async def next_non_ping(self) -> dict[str, Any] | None:
        """The next event that is not a keep-alive."""
        while (event := await self.next()) is not None and event["type"] == "ping":
            pass
        return event

    async def next_of(self, event_type: str, wait: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next event of a type, skipping pings and others."""
        async with asyncio.timeout(wait):
            while True:
                event = await self.next(wait)
                assert event is not None, f"stream ended before a {event_type} event"
                if event["type"] == event_type:
                    return event


async def open_stream(
    session: aiohttp.ClientSession, sim: CloudSimulator, token: str | None
) -> EventReader:
    """Connect to the event stream (the caller closes the response)."""
    params = {"projectName": "tests"}
    if token is not None:
        params["accessToken"] = token
    response = await session.get(
        sim.sse_url, params=params, headers={"Accept": "text/event-stream"}
    )
    return EventReader(response)
