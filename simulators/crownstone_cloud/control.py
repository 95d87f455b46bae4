"""`/_control/...`: a thin HTTP face on the simulator's Python API, for the standalone runner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import json_response
from .simulator import CloudSimulator

type _Action = Callable[[CloudSimulator, dict[str, Any], web.Request], Any]


def state_dump(sim: CloudSimulator) -> dict[str, Any]:
    """The live model without secrets (no passwords, no keys, no tokens)."""
    users = sim.state.users
    return {
        "spheres": [
            {
                "id": sphere.id,
                "name": sphere.name,
                "uid": sphere.uid,
                "locations": [
                    {"id": location.id, "name": location.name, "uid": location.uid}
                    for location in sphere.locations.values()
                ],
                "stones": [
                    {
                        "id": stone.id,
                        "name": stone.name,
                        "uid": stone.uid,
                        "type": stone.type,
                        "location_id": stone.location_id,
                        "switch_state": stone.switch_state.value if stone.switch_state else None,
                        "abilities": {row.type: row.enabled for row in stone.abilities},
                    }
                    for stone in sphere.stones.values()
                ],
                "users": [
                    {
                        "id": user_id,
                        "name": users[user_id].full_name,
                        "email": users[user_id].email,
                        "role": role,
                    }
                    for user_id, role in sphere.roles.items()
                ],
                "presence": {
                    user_id: presence.location_ids for user_id, presence in sphere.presence.items()
                },
            }
            for sphere in sim.state.spheres.values()
        ]
    }


def _counters(sim: CloudSimulator) -> dict[str, Any]:
    return {
        "requests": [list(request) for request in sim.requests],
        "request_count": len(sim.requests),
        "stream_connections": sim.stream_connections,
        "open_streams": sim.open_streams,
    }


def _presence(sim: CloudSimulator, body: dict[str, Any], _: web.Request) -> None:
    action = body["action"]
    user_id, sphere_id = body["user_id"], body["sphere_id"]
    if action == "enter_sphere":
        sim.enter_sphere(user_id, sphere_id)
    elif action == "exit_sphere":
        sim.exit_sphere(user_id, sphere_id)
    elif action == "enter_location":
        sim.enter_location(user_id, sphere_id, body["location_id"])
    elif action == "exit_location":
        sim.exit_location(user_id, sphere_id, body["location_id"])
    else:
        raise ValueError(f"unknown presence action: {action}")


_ROUTES: list[tuple[str, str, _Action]] = [
    ("GET", "/state", lambda sim, _, __: state_dump(sim)),
    ("POST", "/switch", lambda sim, b, _: sim.set_switch_state(b["stone_id"], b["percentage"])),
    ("POST", "/phone", lambda sim, b, _: sim.set_phone(b["delay"])),
    ("POST", "/presence", _presence),
    (
        "POST",
        "/ability",
        lambda sim, b, _: sim.set_ability(b["stone_id"], b["ability"], b["enabled"]),
    ),
    (
        "POST",
        "/stones",
        lambda sim, b, _: {"id": sim.add_stone(b.pop("sphere_id"), b.pop("name"), **b)},
    ),
    (
        "POST",
        "/stones/{stone_id}/rename",
        lambda sim, b, r: sim.rename_stone(r.match_info["stone_id"], b["name"]),
    ),
    ("DELETE", "/stones/{stone_id}", lambda sim, _, r: sim.remove_stone(r.match_info["stone_id"])),
    ("POST", "/faults", lambda sim, b, _: sim.inject_fault(b.pop("kind"), **b)),
    ("DELETE", "/faults", lambda sim, _, __: sim.clear_faults()),
    ("POST", "/expire_tokens", lambda sim, _, __: sim.expire_tokens()),
    ("GET", "/counters", lambda sim, _, __: _counters(sim)),
    ("DELETE", "/counters", lambda sim, _, __: sim.reset_counters()),
    ("POST", "/streams/drop", lambda sim, b, _: sim.drop_streams(b["mode"])),
    ("POST", "/streams/fault", lambda sim, b, _: sim.stream_fault(b["kind"])),
    ("POST", "/events", lambda sim, b, _: sim.emit_event(b)),
]


def add_control_routes(app: web.Application, sim: CloudSimulator) -> None:
    """Mount the control endpoints under `/_control`."""
    for method, path, action in _ROUTES:
        app.router.add_route(method, f"/_control{path}", _endpoint(sim, action))


def _endpoint(
    sim: CloudSimulator, action: _Action
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            body: Any = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise TypeError("the body must be a JSON object")
            result = action(sim, body, request)
        except KeyError as err:
            return json_response({"error": f"not found or missing: {err}"}, 404)
        except (TypeError, ValueError) as err:
            return json_response({"error": str(err)}, 400)
        return json_response(result if result is not None else {"ok": True})

    return handle
