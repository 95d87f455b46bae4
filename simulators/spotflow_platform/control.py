"""A plain-HTTP control server: JSON endpoints under /_control/ and a page at / showing what
arrived. It is the approver's portal and the fault injector for the demo and manual tests."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
import dataclasses
import html
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .simulator import PlatformSimulator
    from .store import StoredMessage

_SIMULATOR: web.AppKey[PlatformSimulator] = web.AppKey("simulator")
_Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _jsonable(message: StoredMessage) -> dict[str, Any]:
    fields = dataclasses.asdict(message)
    payload: bytes = fields.pop("payload")
    try:
        fields["payload"] = payload.decode()
    except UnicodeDecodeError:
        fields["payload_base64"] = base64.b64encode(payload).decode()
    return fields


def _sim(request: web.Request) -> PlatformSimulator:
    return request.app[_SIMULATOR]


def _guarded(handler: _Route) -> _Route:
    """Answer a bad request (unknown ID, wrong state, bad JSON) with 4xx JSON, not a 500."""

    async def call(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except KeyError as error:
            return web.json_response({"error": str(error.args[0])}, status=404)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)

    return call


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).stats())


async def _operations(request: web.Request) -> web.Response:
    return web.json_response(
        [
            {**dataclasses.asdict(operation), "expiration_time": str(operation.expiration_time)}
            for operation in _sim(request).pending_operations()
        ]
    )


async def _operation_action(request: web.Request) -> web.Response:
    sim, operation_id = _sim(request), request.match_info["operation_id"]
    match request.match_info["action"]:
        case "approve":
            sim.approve(operation_id, (await _body(request)).get("deviceId"))
        case "cancel":
            sim.cancel(operation_id)
        case "expire":
            sim.expire_operation(operation_id)
        case action:
            raise KeyError(f"no operation action {action!r}")
    return web.json_response({"ok": True})


async def _messages(request: web.Request) -> web.Response:
    query = request.query
    messages = _sim(request).messages(
        query.get("device_id"),
        query.get("stream_group"),
        query.get("stream"),
        limit=int(query.get("limit", "100")),
    )
    return web.json_response([_jsonable(message) for message in messages])


async def _dead_letters(request: web.Request) -> web.Response:
    letters = _sim(request).dead_letters
    return web.json_response(
        [
            {**dataclasses.asdict(letter), "payload": base64.b64encode(letter.payload).decode()}
            for letter in letters
        ]
    )


async def _completions(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).completions)


async def _devices(request: web.Request) -> web.Response:
    sim = _sim(request)
    connected = sim.connected_devices()
    return web.json_response(
        [
            {
                "device_id": device_id,
                "connected": device_id in connected,
                "connections": sim.connection_count(device_id),
                "desired": sim.desired(device_id),
                "reported": sim.reported(device_id),
            }
            for device_id in sim.device_ids()
        ]
    )


async def _device_action(request: web.Request) -> web.Response:
    sim, device_id = _sim(request), request.match_info["device_id"]
    sim.desired(device_id)  # 404 for an unknown device
    match request.match_info["action"]:
        case "desired":
            return web.json_response({"version": sim.set_desired(device_id, await _body(request))})
        case "expire-sas":
            sim.expire_sas(device_id)
        case "revoke":
            sim.revoke_registration(device_id)
        case "drop":
            sim.drop_connection(device_id)
        case action:
            raise KeyError(f"no device action {action!r}")
    return web.json_response({"ok": True})


async def _broker(request: web.Request) -> web.Response:
    sim = _sim(request)
    match request.match_info["action"]:
        case "stop":
            await sim.stop_broker()
        case "start":
            await sim.start_broker()
        case action:
            raise KeyError(f"no broker action {action!r}")
    return web.json_response({"running": sim.broker_running})


async def _workspace(request: web.Request) -> web.Response:
    body = await _body(request)
    sim = _sim(request)
    if "disabled" in body:
        sim.set_workspace_disabled(bool(body["disabled"]))
    if body.get("revoke_provisioning_token"):
        sim.revoke_provisioning_token()
    return web.json_response({"ok": True})


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="refresh" content="3">
<title>Spotflow platform simulator</title><style>
body{{font-family:sans-serif;margin:1em}}td,th{{border:1px solid #ccc;padding:2px 6px;
text-align:left;vertical-align:top}}table{{border-collapse:collapse}}pre{{margin:0;
white-space:pre-wrap;max-width:70em}}</style></head><body>
<h1>Spotflow platform simulator</h1><p>{summary}</p>
<h2>Pending provisioning operations</h2><table><tr><th>operation</th><th>device</th>
<th>verification code</th><th>expires</th><th></th></tr>{operations}</table>
<h2>Devices</h2><table><tr><th>device</th><th>connected</th><th>desired</th><th>reported</th>
</tr>{devices}</table>
<h2>Latest messages</h2><table><tr><th>received</th><th>device</th><th>group / stream</th>
<th>batch / message</th><th>payload</th></tr>{messages}</table>
<script>function act(path){{fetch(path,{{method:"POST"}}).then(()=>location.reload())}}</script>
</body></html>"""


def _row(*cells: object) -> str:
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


async def _page(request: web.Request) -> web.Response:
    sim = _sim(request)
    stats = sim.stats()
    esc = html.escape
    operations = "".join(
        _row(
            esc(operation.id),
            esc(operation.device_id or "(approver chooses)"),
            f"<b>{esc(operation.verification_code)}</b>",
            esc(str(operation.expiration_time)),
            f"<button onclick=\"act('/_control/operations/{esc(operation.id)}/approve')\">"
            "approve</button>",
        )
        for operation in sim.pending_operations()
    )
    connected = sim.connected_devices()
    devices = "".join(
        _row(
            esc(device_id),
            "yes" if device_id in connected else "no",
            f"<pre>{esc(json.dumps(sim.desired(device_id)))}</pre>",
            f"<pre>{esc(json.dumps(sim.reported(device_id)))}</pre>",
        )
        for device_id in sim.device_ids()
    )
    messages = "".join(
        _row(
            esc(str(message.received_at)),
            esc(message.device_id),
            esc(f"{message.stream_group} / {message.stream}"),
            esc(f"{message.batch_id} / {message.message_id}"),
            f"<pre>{esc(message.payload[:2000].decode(errors='replace'))}</pre>",
        )
        for message in reversed(sim.messages(limit=50))
    )
    summary = esc(
        f"workspace {sim.workspace_id}; API https://{sim.instance}; hub {sim.hub_host}"
        f" ({'running' if sim.broker_running else 'stopped'}); {stats['messages']} messages,"
        f" {stats['duplicates']} duplicates, {stats['dead_letters']} dead letters,"
        f" {stats['bytes']} bytes"
    )
    body = _PAGE.format(summary=summary, operations=operations, devices=devices, messages=messages)
    return web.Response(text=body, content_type="text/html")


def create_control(sim: PlatformSimulator) -> web.Application:
    """Return the control application for a simulator."""
    app = web.Application()
    app[_SIMULATOR] = sim
    routes: list[tuple[str, str, _Route]] = [
        ("GET", "/", _page),
        ("GET", "/_control/stats", _stats),
        ("GET", "/_control/operations", _operations),
        ("POST", "/_control/operations/{operation_id}/{action}", _operation_action),
        ("GET", "/_control/messages", _messages),
        ("GET", "/_control/dead-letters", _dead_letters),
        ("GET", "/_control/completions", _completions),
        ("GET", "/_control/devices", _devices),
        ("POST", "/_control/devices/{device_id}/{action}", _device_action),
        ("POST", "/_control/broker/{action}", _broker),
        ("POST", "/_control/workspace", _workspace),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _guarded(handler))
    return app
