"""`CloudSimulator`: the Crownstone v1 cloud and its SSE server on one local port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
import copy
from datetime import UTC, datetime
import time
from typing import Any

from aiohttp import web

from .faults import Fault, FaultInjector, FaultKind
from .rest import RestApi
from .scenario import (
    Ability,
    Presence,
    Role,
    Scenario,
    Sphere,
    Stone,
    SwitchState,
    add_location,
    add_stone,
    demo_home,
    make_id,
)
from .shapes import event_sphere, event_stone
from .stream import DropMode, EventStream, StreamFault
from .tokens import TokenStore


class CloudSimulator:
    """A faithful local Crownstone cloud: REST under `/api`, the event stream under `/sse`."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        phone_delay: float | None = 0.05,
        ping_interval: float = 30.0,
        token_ttl: int = 1_209_600,
        latency: float = 0.0,
    ) -> None:
        self.state: Scenario = copy.deepcopy(scenario) if scenario else demo_home()
        self.phone_delay = phone_delay
        self.token_ttl = token_ttl
        self.latency = latency
        self.include_support = True
        self.requests: list[tuple[str, str]] = []
        # Every accepted switch command: (stone id, type, percentage or None).
        self.commands: list[tuple[str, str, int | None]] = []
        self.tokens = TokenStore()
        self._closing = asyncio.Event()
        self.faults = FaultInjector(self._closing)
        self.stream = EventStream(self.tokens, self._sphere_ids_of, ping_interval)
        self._rest = RestApi(self)
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._host = "127.0.0.1"
        self._phone_calls: set[asyncio.TimerHandle] = set()
        self._sequence = 0

    # Lifecycle.
    def build_app(self) -> web.Application:
        """The aiohttp application (the standalone runner adds its control routes to it)."""
        app = web.Application(middlewares=[self._rest.middleware])
        app.add_routes(self._rest.routes())
        app.router.add_get("/sse", self.stream.handle)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on host:port (0: an ephemeral port)."""
        await self.start_app(self.build_app(), host, port)

    async def start_app(self, app: web.Application, host: str, port: int) -> None:
        """Serve a prepared application."""
        self._closing.clear()
        self._runner = web.AppRunner(
            # No access log: it would print the access_token query parameter.
            app,
            shutdown_timeout=1.0,
            handle_signals=False,
            access_log=None,
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self._host = host
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop serving; open streams get STREAM_CLOSED, hanging requests are cut."""
        for handle in self._phone_calls:
            handle.cancel()
        self._phone_calls.clear()
        self._closing.set()
        self.stream.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        """The bound port."""
        return self._port

    @property
    def url(self) -> str:
        """REST base, as a client's base_url."""
        return f"http://{self._host}:{self._port}/api"

    @property
    def sse_url(self) -> str:
        """The event stream's URL."""
        return f"http://{self._host}:{self._port}/sse"

    # Lookups (KeyError when missing).
    def sphere(self, sphere_id: str) -> Sphere:
        """The live sphere."""
        return self.state.spheres[sphere_id]

    def sphere_id(self, name: str) -> str:
        """Id of the sphere with that name."""
        return _find(((s.name, s.id) for s in self.state.spheres.values()), name)

    def stone_id(self, name: str) -> str:
        """Id of the stone with that name (any sphere)."""
        return _find(
            ((st.name, st.id) for s in self.state.spheres.values() for st in s.stones.values()),
            name,
        )

    def location_id(self, name: str) -> str:
        """Id of the room with that name (any sphere)."""
        return _find(
            ((lo.name, lo.id) for s in self.state.spheres.values() for lo in s.locations.values()),
            name,
        )

    def user_id(self, email: str) -> str:
        """Id of the user with that email (case-insensitive)."""
        return _find(((u.email.lower(), u.id) for u in self.state.users.values()), email.lower())

    def stone(self, stone_id: str) -> tuple[Sphere, Stone]:
        """The live stone and its sphere."""
        for sphere in self.state.spheres.values():
            if stone_id in sphere.stones:
                return sphere, sphere.stones[stone_id]
        raise KeyError(stone_id)

    def _location(self, location_id: str) -> Sphere:
        for sphere in self.state.spheres.values():
            if location_id in sphere.locations:
                return sphere
        raise KeyError(location_id)

    def _sphere_ids_of(self, user_id: str) -> frozenset[str]:
        return frozenset(s.id for s in self.state.spheres.values() if user_id in s.roles)

    # Counters.
    def request_count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """REST requests so far, optionally only of a method and/or path fragment."""
        return sum(
            1
            for req_method, path in self.requests
            if (method is None or req_method == method.upper())
            and (path_contains is None or path_contains in path)
        )

    def reset_counters(self) -> None:
        """Forget counted requests, switch commands and stream connections."""
        self.requests.clear()
        self.commands.clear()
        self.stream.connections = 0

    @property
    def stream_connections(self) -> int:
        """SSE connections opened so far."""
        return self.stream.connections

    # Faults and accounts.
    def inject_fault(
        self,
        kind: FaultKind,
        *,
        path: str | None = None,
        count: int | None = None,
        seconds: float = 0.0,
    ) -> None:
        """Break REST requests whose path contains `path` (None: all), `count` times."""
        self.faults.add(Fault(kind, path, count, seconds))

    def clear_faults(self) -> None:
        """Answer normally again."""
        self.faults.clear()

    def expire_tokens(self) -> None:
        """Every issued token expires now; open streams get TOKEN_EXPIRED and end."""
        self.tokens.expire_all()
        self.stream.expire()

    def change_password(self, email: str, new_password: str) -> None:
        """Change a password; the user's tokens stop working."""
        user = self.state.users[self.user_id(email)]
        user.password = new_password
        self.tokens.revoke_user(user.id)

    def set_email_verified(self, email: str, verified: bool) -> None:
        """Mark an account's email (un)verified; unverified accounts cannot log in."""
        self.state.users[self.user_id(email)].email_verified = verified

    def set_include_support(self, enabled: bool) -> None:
        """False: `/users/{id}/spheres` ignores `filter.include`, like an older server."""
        self.include_support = enabled

    # Switching.
    def set_phone(self, delay: float | None) -> None:
        """Seconds until the phone executes switch calls; None: no phone in range."""
        self.phone_delay = delay

    def command_switch(self, sphere: Sphere, commands: list[tuple[Stone, dict[str, Any]]]) -> None:
        """A validated switch call: `command/multiSwitch` now, the phone's report later."""
        self._sequence += 1
        switch_data = []
        for stone, packet in commands:
            entry: dict[str, Any] = {**event_stone(stone), "type": packet["type"]}
            if packet["type"] == "PERCENTAGE":
                entry["percentage"] = packet["percentage"]
            switch_data.append(entry)
            self.commands.append((stone.id, packet["type"], entry.get("percentage")))
        self._emit(
            sphere,
            {
                "type": "command",
                "subType": "multiSwitch",
                "sphere": event_sphere(sphere),
                "switchData": switch_data,
                "sequenceTime": {"timestamp": int(time.time() * 1000), "counter": self._sequence},
            },
        )
        if self.phone_delay is None:
            return
        loop = asyncio.get_running_loop()
        for stone, packet in commands:
            percentage = {"TURN_ON": 100, "TURN_OFF": 0}.get(packet["type"])
            if percentage is None:
                percentage = int(packet["percentage"])
            handle = loop.call_later(self.phone_delay, self._phone_reports, stone.id, percentage)
            self._phone_calls.add(handle)

    def _phone_reports(self, stone_id: str, percentage: int) -> None:
        now = asyncio.get_running_loop().time()
        self._phone_calls = {h for h in self._phone_calls if h.when() > now}
        try:
            self.set_switch_state(stone_id, percentage)
        except KeyError:
            return  # the stone was removed before the phone got to it

    def set_switch_state(self, stone_id: str, percentage: int) -> None:
        """The stone reports a new state (switched by hand or by the phone)."""
        sphere, stone = self.stone(stone_id)
        state_id = stone.switch_state.id if stone.switch_state else make_id("switchState", stone_id)
        stone.switch_state = SwitchState(percentage, state_id, datetime.now(UTC))
        self._emit(
            sphere,
            {
                "type": "switchStateUpdate",
                "subType": "stone",
                "sphere": event_sphere(sphere),
                "crownstone": {
                    **event_stone(stone),
                    "percentage": percentage,
                    "switchState": percentage,
                },
            },
        )

    # Presence.
    def enter_sphere(self, user_id: str, sphere_id: str) -> None:
        """The user arrives in the sphere (room unknown)."""
        sphere = self.sphere(sphere_id)
        sphere.presence[user_id] = Presence([], datetime.now(UTC))
        self._presence_event(sphere, user_id, "enterSphere")

    def exit_sphere(self, user_id: str, sphere_id: str) -> None:
        """The user leaves the sphere."""
        sphere = self.sphere(sphere_id)
        sphere.presence.pop(user_id, None)
        self._presence_event(sphere, user_id, "exitSphere")

    def enter_location(self, user_id: str, sphere_id: str, location_id: str) -> None:
        """The user walks into a room (and so is in the sphere)."""
        sphere = self.sphere(sphere_id)
        _check_location(sphere, location_id)
        sphere.presence[user_id] = Presence([location_id], datetime.now(UTC))
        self._presence_event(sphere, user_id, "enterLocation", location_id)

    def exit_location(self, user_id: str, sphere_id: str, location_id: str) -> None:
        """The user leaves a room but stays in the sphere."""
        sphere = self.sphere(sphere_id)
        _check_location(sphere, location_id)
        presence = sphere.presence.get(user_id)
        if presence is not None and location_id in presence.location_ids:
            presence.location_ids.remove(location_id)
            presence.updated_at = datetime.now(UTC)
        self._presence_event(sphere, user_id, "exitLocation", location_id)

    def _presence_event(
        self, sphere: Sphere, user_id: str, sub_type: str, location_id: str | None = None
    ) -> None:
        user = self.state.users[user_id]
        event: dict[str, Any] = {
            "type": "presence",
            "subType": sub_type,
            "sphere": event_sphere(sphere),
            "user": {"id": user.id, "name": user.full_name},
        }
        if location_id is not None:
            location = sphere.locations[location_id]
            event["location"] = {"id": location.id, "name": location.name}
        self._emit(sphere, event)

    # Abilities and data changes.
    def set_ability(self, stone_id: str, ability: str, enabled: bool) -> None:
        """Enable or disable an ability (the row is created if the stone has none)."""
        if ability not in ("dimming", "switchcraft", "tapToToggle"):
            raise ValueError(f"unknown ability type: {ability}")
        sphere, stone = self.stone(stone_id)
        row = stone.ability(ability)
        if row is None:
            row = Ability(ability, enabled, make_id("ability", stone.id, ability))
            stone.abilities.append(row)
        row.enabled = enabled
        row.synced_to_crownstone = False
        self._emit(
            sphere,
            {
                "type": "abilityChange",
                "subType": ability,
                "sphere": event_sphere(sphere),
                "stone": event_stone(stone),
                "ability": {"type": ability, "enabled": enabled, "syncedToCrownstone": False},
            },
        )

    def add_stone(
        self,
        sphere_id: str,
        name: str,
        *,
        stone_type: str = "PLUG",
        location_id: str | None = None,
        dimming: bool = False,
        switch_state: int | None = 0,
    ) -> str:
        """A new stone in the sphere; returns its id."""
        sphere = self.sphere(sphere_id)
        if location_id is not None:
            _check_location(sphere, location_id)
        stone = add_stone(
            sphere,
            name,
            stone_type=stone_type,
            location_id=location_id,
            dimming=dimming,
            switch_state=switch_state,
        )
        self._data_change(sphere, "stones", "create", stone.id, stone.name)
        return stone.id

    def rename_stone(self, stone_id: str, name: str) -> None:
        """Rename a stone."""
        sphere, stone = self.stone(stone_id)
        stone.name = name
        self._data_change(sphere, "stones", "update", stone.id, name)

    def remove_stone(self, stone_id: str) -> None:
        """Delete a stone."""
        sphere, stone = self.stone(stone_id)
        del sphere.stones[stone_id]
        self._data_change(sphere, "stones", "delete", stone.id, stone.name)

    def add_location(self, sphere_id: str, name: str) -> str:
        """A new room; returns its id."""
        sphere = self.sphere(sphere_id)
        location = add_location(sphere, name)
        self._data_change(sphere, "locations", "create", location.id, name)
        return location.id

    def rename_location(self, location_id: str, name: str) -> None:
        """Rename a room."""
        sphere = self._location(location_id)
        sphere.locations[location_id].name = name
        self._data_change(sphere, "locations", "update", location_id, name)

    def remove_location(self, location_id: str) -> None:
        """Delete a room; its stones lose their room, people in it stay in the sphere."""
        sphere = self._location(location_id)
        location = sphere.locations.pop(location_id)
        for stone in sphere.stones.values():
            if stone.location_id == location_id:
                stone.location_id = None
        for presence in sphere.presence.values():
            if location_id in presence.location_ids:
                presence.location_ids.remove(location_id)
        self._data_change(sphere, "locations", "delete", location_id, location.name)

    def add_user(
        self,
        sphere_id: str,
        first_name: str,
        last_name: str,
        email: str,
        password: str,
        role: Role = "member",
    ) -> str:
        """Add an account (or reuse the one with that email) to a sphere; returns its id."""
        sphere = self.sphere(sphere_id)
        try:
            user = self.state.users[self.user_id(email)]
        except KeyError:
            user = self.state.add_user(first_name, last_name, email, password)
        sphere.roles[user.id] = role
        self._data_change(sphere, "users", "create", user.id, user.full_name)
        return user.id

    def rename_user(self, user_id: str, first_name: str, last_name: str) -> None:
        """Rename an account; every sphere it belongs to is told."""
        user = self.state.users[user_id]
        user.first_name, user.last_name = first_name, last_name
        for sphere in self.state.spheres.values():
            if user_id in sphere.roles:
                self._data_change(sphere, "users", "update", user_id, user.full_name)

    def remove_user(self, sphere_id: str, user_id: str) -> None:
        """Take a user out of a sphere (the account stays)."""
        sphere = self.sphere(sphere_id)
        del sphere.roles[user_id]
        sphere.presence.pop(user_id, None)
        self._data_change(sphere, "users", "delete", user_id, self.state.users[user_id].full_name)

    def add_sphere(self, name: str, owner_email: str) -> str:
        """A new sphere owned by an existing account; returns its id."""
        owner = self.state.users[self.user_id(owner_email)]
        sphere = self.state.add_sphere(name, owner)
        self._data_change(sphere, "spheres", "create", sphere.id, name)
        return sphere.id

    def remove_sphere(self, sphere_id: str) -> None:
        """Delete a sphere (streams that could see it are told)."""
        sphere = self.state.spheres.pop(sphere_id)
        self._data_change(sphere, "spheres", "delete", sphere.id, sphere.name)

    def _data_change(
        self, sphere: Sphere, sub_type: str, operation: str, item_id: str, name: str
    ) -> None:
        self._emit(
            sphere,
            {
                "type": "dataChange",
                "subType": sub_type,
                "operation": operation,
                "sphere": event_sphere(sphere),
                "changedItem": {"id": item_id, "name": name},
            },
        )

    # The event stream.
    def emit_event(self, event: dict[str, Any]) -> None:
        """A raw event to every open stream, whatever its sphere."""
        self.stream.dispatch(event, sphere_id=None)

    def _emit(self, sphere: Sphere, event: dict[str, Any]) -> None:
        self.stream.dispatch(event, sphere_id=sphere.id)

    def drop_streams(self, mode: DropMode) -> None:
        """Break open streams: "reset" (TCP reset), "end" (clean end), "silence" (no more data)."""
        self.stream.drop(mode)

    def stream_fault(self, kind: StreamFault | None) -> None:
        """How new stream connections behave (None: normally)."""
        self.stream.fault = kind

    @property
    def open_streams(self) -> int:
        """Streams connected right now."""
        return self.stream.open_streams


def _find(pairs: Iterable[tuple[str, str]], wanted: str) -> str:
    for name, item_id in pairs:
        if name == wanted:
            return item_id
    raise KeyError(wanted)


def _check_location(sphere: Sphere, location_id: str) -> None:
    if location_id not in sphere.locations:
        raise KeyError(location_id)
