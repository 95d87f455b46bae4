"""The v1 REST API (`/api/...`), answering as the LoopBack 3 cloud does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
import hashlib
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .errors import (
    ApiError,
    authorization_required,
    json_response,
    no_content,
    remote_method_error,
)
from .scenario import Sphere, Stone
from .shapes import (
    iso,
    keys_json,
    location_json,
    parse_filter,
    presence_json,
    sphere_json,
    stone_json,
    user_json,
)

if TYPE_CHECKING:
    from .simulator import CloudSimulator

type Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PRESENCE_MAX_AGE = timedelta(minutes=20)
_SWITCH_TYPES = ("PERCENTAGE", "TURN_ON", "TURN_OFF")
_SWITCH_DATA = "{ type: 'PERCENTAGE' | 'TURN_ON' | 'TURN_OFF', percentage?: number }"
_ROLE_GROUPS = (("admin", "admins"), ("member", "members"), ("guest", "guests"))


class RestApi:
    """Route handlers; every one reads and changes the simulator's live state."""

    def __init__(self, sim: CloudSimulator) -> None:
        self._sim = sim

    def routes(self) -> list[web.RouteDef]:
        """The endpoints, with the path case the real server uses."""
        return [
            web.post("/api/users/login", self.login),
            web.get("/api/users/{user_id}/spheres", self.user_spheres),
            web.get("/api/users/{user_id}/keysV2", self.keys),
            web.get("/api/Spheres/{sphere_id}/presentPeople", self.present_people),
            web.get("/api/Spheres/{sphere_id}/ownedStones", self.owned_stones),
            web.get("/api/Spheres/{sphere_id}/ownedLocations", self.owned_locations),
            web.get("/api/Spheres/{sphere_id}/users", self.sphere_users),
            web.post("/api/Spheres/{sphere_id}/switchCrownstones", self.switch_many),
            web.post("/api/Stones/{stone_id}/switch", self.switch),
            web.get("/api/Stones/{stone_id}/currentSwitchStateV2", self.current_switch_state),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count, delay and break REST requests; turn ApiError into LoopBack envelopes."""
        if not request.path.startswith("/api"):
            return await handler(request)
        sim = self._sim
        sim.requests.append((request.method, request.path))
        if sim.latency:
            await asyncio.sleep(sim.latency)
        if (fault := sim.faults.take(request.path)) is not None:
            broken = await sim.faults.apply(fault, request)
            if broken is not None:
                return broken
        try:
            response = await handler(request)
        except ApiError as err:
            return err.response()
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return ApiError(
                404, f"There is no method to handle {request.method} {request.path}"
            ).response()
        if fault is not None and fault.kind == "slow_answer":
            # A slow way back: the answer tells what the cloud knew before the wait.
            await asyncio.sleep(fault.seconds)
        return response

    # Authentication and access control.
    def _user_id(self, request: web.Request) -> str:
        token_id = (
            request.query.get("access_token")
            or request.headers.get("Authorization")
            or request.headers.get("X-Access-Token")
        )
        return self._sim.tokens.resolve(token_id).user_id

    def _own_user(self, request: web.Request) -> str:
        user_id = self._user_id(request)
        if request.match_info["user_id"] != user_id:
            raise authorization_required()
        return user_id

    def _sphere(self, request: web.Request) -> tuple[Sphere, str]:
        user_id = self._user_id(request)
        sphere = self._sim.state.spheres.get(request.match_info["sphere_id"])
        if sphere is None or user_id not in sphere.roles:
            raise authorization_required()
        return sphere, user_id

    def _stone(self, request: web.Request) -> tuple[Sphere, Stone]:
        user_id = self._user_id(request)
        stone_id = request.match_info["stone_id"]
        for sphere in self._sim.state.spheres.values():
            if (stone := sphere.stones.get(stone_id)) is not None and user_id in sphere.roles:
                return sphere, stone
        raise authorization_required()

    # Endpoints.
    async def login(self, request: web.Request) -> web.Response:
        """`POST /users/login` with the sha1 hex of the password."""
        body = await _json_body(request)
        email = body.get("email") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(email, str) or not email:
            raise ApiError(400, "username or email is required", code="USERNAME_EMAIL_REQUIRED")
        user = next(
            (u for u in self._sim.state.users.values() if u.email.lower() == email.lower()), None
        )
        if (
            user is None
            or not isinstance(password, str)
            or hashlib.sha1(user.password.encode()).hexdigest() != password.lower()
        ):
            raise ApiError(401, "login failed", code="LOGIN_FAILED")
        if not user.email_verified:
            raise ApiError(
                401,
                "login failed as the email has not been verified",
                code="LOGIN_FAILED_EMAIL_NOT_VERIFIED",
                details={"userId": user.id},
            )
        ttl = body.get("ttl")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
            ttl = self._sim.token_ttl
        token = self._sim.tokens.issue(user.id, ttl)
        return json_response(
            {
                "id": token.id,
                "ttl": token.ttl,
                "created": token.created_iso,
                "userId": user.id,
                "principalType": "user",
            }
        )

    async def user_spheres(self, request: web.Request) -> web.Response:
        """`GET /users/{id}/spheres`, honouring `filter.include` unless switched off."""
        user_id = self._own_user(request)
        include = parse_filter(request.query.get("filter"), "Sphere")
        if not self._sim.include_support:
            include = {}
        return json_response(
            [
                sphere_json(sphere, include)
                for sphere in self._sim.state.spheres.values()
                if user_id in sphere.roles
            ]
        )

    async def keys(self, request: web.Request) -> web.Response:
        """`GET /users/{id}/keysV2`: keys per sphere, by the user's role."""
        user_id = self._own_user(request)
        return json_response(
            [
                keys_json(sphere, sphere.roles[user_id])
                for sphere in self._sim.state.spheres.values()
                if user_id in sphere.roles
            ]
        )

    async def present_people(self, request: web.Request) -> web.Response:
        """`GET /Spheres/{id}/presentPeople`, without presence older than 20 minutes."""
        sphere, _ = self._sphere(request)
        fresh_since = datetime.now(UTC) - PRESENCE_MAX_AGE
        return json_response(
            [
                presence_json(user_id, presence)
                for user_id, presence in sphere.presence.items()
                if presence.updated_at >= fresh_since
            ]
        )

    async def owned_stones(self, request: web.Request) -> web.Response:
        """`GET /Spheres/{id}/ownedStones` with the stone includes."""
        sphere, _ = self._sphere(request)
        include = parse_filter(request.query.get("filter"), "Stone")
        return json_response(
            [stone_json(stone, sphere.id, include) for stone in sphere.stones.values()]
        )

    async def owned_locations(self, request: web.Request) -> web.Response:
        """`GET /Spheres/{id}/ownedLocations`."""
        sphere, _ = self._sphere(request)
        parse_filter(request.query.get("filter"), "Location")
        return json_response(
            [location_json(location, sphere.id) for location in sphere.locations.values()]
        )

    async def sphere_users(self, request: web.Request) -> web.Response:
        """`GET /Spheres/{id}/users`, keyed by role."""
        sphere, _ = self._sphere(request)
        users = self._sim.state.users
        return json_response(
            {
                group: [
                    user_json(users[user_id])
                    for user_id, user_role in sphere.roles.items()
                    if user_role == role
                ]
                for role, group in _ROLE_GROUPS
            }
        )

    async def switch(self, request: web.Request) -> web.Response:
        """`POST /Stones/{id}/switch`: an empty 204 labelled JSON; the phone switches later."""
        sphere, stone = self._stone(request)
        packet = await _json_body(request)
        if not isinstance(packet, dict):
            packet = {}
        _validate_switch(packet, "SwitchData", "SwitchData have a type")
        _check_dimming(stone, packet)
        self._sim.command_switch(sphere, [(stone, packet)])
        return no_content()

    async def switch_many(self, request: web.Request) -> web.Response:
        """`POST /Spheres/{id}/switchCrownstones`: several stones in one call."""
        sphere, _ = self._sphere(request)
        packets = await _json_body(request)
        if not isinstance(packets, list):
            packets = [packets]
        commands: list[tuple[Stone, dict[str, Any]]] = []
        for packet in packets:
            if not isinstance(packet, dict):
                raise remote_method_error("SwitchPackets must be objects.")
            _validate_switch(packet, "SwitchPackets", "SwitchPackets have a type")
            if not packet.get("stoneId"):
                raise remote_method_error(
                    "SwitchPackets have a stoneId, this is the id of the Crownstone."
                )
        for packet in packets:
            stone = sphere.stones.get(str(packet["stoneId"]))
            if stone is None:
                raise remote_method_error(f"Invalid uid:{packet['stoneId']}")
            _check_dimming(stone, packet)
            commands.append((stone, packet))
        self._sim.command_switch(sphere, commands)
        return no_content()

    async def current_switch_state(self, request: web.Request) -> web.Response:
        """`GET /Stones/{id}/currentSwitchStateV2`."""
        _, stone = self._stone(request)
        state = stone.switch_state
        if state is None:
            return json_response({"timestamp": None, "switchState": None})
        return json_response({"timestamp": iso(state.timestamp), "switchState": state.value})


async def _json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "Unexpected token in JSON body") from None


def _validate_switch(packet: dict[str, Any], noun: str, missing_type: str) -> None:
    """The real server's checks, in its order and with its messages."""
    kind = packet.get("type")
    if kind and kind not in _SWITCH_TYPES:
        raise remote_method_error(
            f"Type of {'a switch packet' if noun == 'SwitchPackets' else noun} can only be "
            "'PERCENTAGE', 'TURN_ON' or 'TURN_OFF'"
        )
    if not kind:
        raise remote_method_error(
            f"{missing_type}: it can only be 'PERCENTAGE', 'TURN_ON' or 'TURN_OFF'"
        )
    if kind != "PERCENTAGE":
        return
    percentage = packet.get("percentage")
    if (
        not isinstance(percentage, int | float)
        or isinstance(percentage, bool)
        or 0 < percentage <= 1
        or percentage < 0
        or percentage > 100
    ):
        raise remote_method_error(
            f"{noun} with type PERCENTAGE require a percentage between 0 and 100:{_SWITCH_DATA}"
        )
    if 0 < percentage < 10:
        raise remote_method_error("Dimming below 10% is not allowed.")


def _check_dimming(stone: Stone, packet: dict[str, Any]) -> None:
    """Intermediate percentages need the dimming ability (0 and 100 are plain off and on)."""
    if packet["type"] == "PERCENTAGE" and 0 < packet["percentage"] < 100 and not stone.can_dim:
        raise remote_method_error("Dimming is not enabled for this Crownstone.")
