"""A tiny cloud of our own on 127.0.0.1 that answers whatever a test scripts.

It serves a small valid account by default; `break_path` replaces the answer for requests whose
path contains a fragment, to feed the library bodies and statuses the simulator never sends.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
from typing import Any

from aiohttp import web

TOKEN = "scripted-token-" + "t" * 49
USER_ID = "user1"
SPHERE_ID = "sphere1"
STONE_ID = "stone1"
LOCATION_ID = "loc1"
ADMIN_KEY = "scripted-admin-key-0123456789abcdef"


def valid_bodies(*, include_relations: bool = True) -> dict[str, Any]:
    """Path fragment -> a valid JSON answer, most specific fragments first."""
    stone = {
        "id": STONE_ID,
        "name": "Lamp",
        "uid": 1,
        "type": "PLUG",
        "address": "AA:BB:CC:DD:EE:01",
        "icon": "lamp",
        "firmwareVersion": "5.4.0",
        "hardwareVersion": "101020100000000000000000000QFAAB0",
        "locationId": LOCATION_ID,
        "sphereId": SPHERE_ID,
        "currentSwitchState": {"switchState": 100, "timestamp": "2024-05-20T10:00:00.000Z"},
        "abilities": [
            {
                "type": "dimming",
                "enabled": True,
                "syncedToCrownstone": True,
                "properties": [{"type": "softOnSpeed", "value": "5"}],
            }
        ],
    }
    location = {"id": LOCATION_ID, "name": "Living room", "uid": 1, "icon": "tv"}
    sphere: dict[str, Any] = {"id": SPHERE_ID, "name": "Home", "uid": 7}
    if include_relations:
        sphere |= {"ownedStones": [stone], "ownedLocations": [location]}
    user = {
        "id": USER_ID,
        "firstName": "Ann",
        "lastName": "Admin",
        "email": "ann@example.com",
        "emailVerified": True,
    }
    return {
        "/users/login": {"id": TOKEN, "ttl": 1209600, "userId": USER_ID},
        "/keysV2": [
            {
                "sphereId": SPHERE_ID,
                "sphereAuthorizationToken": "scripted-sphere-token",
                "sphereKeys": [{"keyType": "ADMIN_KEY", "key": ADMIN_KEY, "ttl": 0}],
                "stoneKeys": {STONE_ID: [{"keyType": "DEVICE_UART_KEY", "key": "uart-key"}]},
            }
        ],
        "/spheres": [sphere],
        "/presentPeople": [{"userId": USER_ID, "locations": [LOCATION_ID]}],
        "/ownedStones": [stone],
        "/ownedLocations": [location],
        "/users": {"admins": [user], "members": [], "guests": []},
        "/switchCrownstones": None,
        "/switch": None,
    }


@dataclass
class Answer:
    """A scripted HTTP answer."""

    status: int
    body: bytes
    content_type: str = "application/json"


class ScriptedCloud:
    """Serves `valid_bodies()` unless a path fragment was broken."""

    def __init__(self) -> None:
        """Prepare the app; start() binds it."""
        self.bodies = valid_bodies()
        self.broken: dict[str, Answer] = {}
        self.requests: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def url(self) -> str:
        """The base URL to give the library."""
        return f"http://127.0.0.1:{self._port}/api"

    def break_path(
        self,
        fragment: str,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = "application/json",
    ) -> None:
        """Answer requests whose path contains fragment with this body and status."""
        raw = body.encode() if isinstance(body, str) else body
        self.broken[fragment] = Answer(status, raw, content_type)

    def set_include_relations(self, include: bool) -> None:
        """Serve spheres with or without their stones and locations."""
        self.bodies = valid_bodies(include_relations=include)

    def reset(self) -> None:
        """Answer everything validly again and forget the requests."""
        self.broken.clear()
        self.requests.clear()
        self.bodies = valid_bodies()

    async def start(self) -> None:
        """Serve on an ephemeral port of 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path))
        for fragment, answer in self.broken.items():
            if fragment in request.path:
                return web.Response(
                    status=answer.status, body=answer.body, content_type=answer.content_type
                )
        for fragment, body in self.bodies.items():
            if fragment in request.path:
                if body is None:
                    return web.Response(status=204)
                return web.Response(text=json.dumps(body), content_type="application/json")
        return web.Response(status=404)
