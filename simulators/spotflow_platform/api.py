"""The platform's HTTPS device API: provisioning, registration and token refresh."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
import json
from typing import Any

from aiohttp import web

from .workspace import ProblemError, Workspace, rfc3339

_Handler = Callable[[web.Request, Workspace, str, dict[str, Any]], Awaitable[web.Response]]


def _problem(request: web.Request, error: ProblemError) -> web.Response:
    body = {
        "type": error.problem_type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": request.path,
    }
    return web.json_response(body, status=error.status, content_type="application/problem+json")


def _bad_request(detail: str) -> ProblemError:
    return ProblemError(400, "/problems/validation", "Bad Request", detail)


def _device_call(handler: _Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wrap a handler with the checks every call shares: the DeviceToken and a JSON object."""

    async def call(request: web.Request) -> web.Response:
        workspace: Workspace = request.app[WORKSPACE]
        try:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme != "DeviceToken" or not token:
                raise ProblemError(
                    401,
                    "/problems/unauthorized",
                    "Unauthorized",
                    "Authorization: DeviceToken <token> is required",
                )
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise _bad_request("The body must be a JSON object")
            return await handler(request, workspace, token, body)
        except ProblemError as error:
            return _problem(request, error)

    return call


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise _bad_request(f"{key} must be a non-empty string")
    return value


async def _init(
    request: web.Request, workspace: Workspace, token: str, body: dict[str, Any]
) -> web.Response:
    device_id = body.get("deviceId")
    if device_id is not None and not isinstance(device_id, str):
        raise _bad_request("deviceId must be a string")
    operation = workspace.init_operation(token, device_id)
    return web.json_response(
        {
            "provisioningOperationId": operation.id,
            "verificationCode": operation.verification_code,
            "expirationTime": rfc3339(operation.expiration_time.timestamp()),
        }
    )


async def _complete(
    request: web.Request, workspace: Workspace, token: str, body: dict[str, Any]
) -> web.Response:
    registration = workspace.complete_operation(token, _string(body, "provisioningOperationId"))
    if registration is None:
        return web.Response(status=202)
    registration_token, expires_at = registration
    return web.json_response(
        {"registrationToken": registration_token, "expirationTime": rfc3339(expires_at)}
    )


async def _register(
    request: web.Request, workspace: Workspace, token: str, body: dict[str, Any]
) -> web.Response:
    return web.json_response(workspace.register(token, body.get("connectionStringType")))


async def _refresh(
    request: web.Request, workspace: Workspace, token: str, body: dict[str, Any]
) -> web.Response:
    registration_token, expires_at = workspace.refresh(token, _string(body, "registrationToken"))
    return web.json_response(
        {"registrationToken": registration_token, "expirationTime": rfc3339(expires_at)}
    )


@dataclass(frozen=True, slots=True)
class ApiFault:
    """An answer served instead of the real one: any status, any body, after a delay."""

    status: int
    body: bytes
    delay: float


class ApiFaults:
    """Faults queued per path; each answers one request, in order."""

    def __init__(self) -> None:
        self._queued: defaultdict[str, deque[ApiFault]] = defaultdict(deque)

    def add(
        self,
        path: str,
        status: int,
        body: bytes | str | dict[str, Any] | None,
        count: int,
        delay: float,
    ) -> None:
        """Queue `count` faulty answers to `path`."""
        if isinstance(body, dict):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body or b""
        self._queued[path].extend([ApiFault(status, data, delay)] * count)

    def take(self, path: str) -> ApiFault | None:
        """Return the next fault for `path`, if one is queued."""
        queued = self._queued.get(path)
        return queued.popleft() if queued else None


WORKSPACE = web.AppKey("workspace", Workspace)
FAULTS = web.AppKey("faults", ApiFaults)


@web.middleware
async def _inject_faults(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if (fault := request.app[FAULTS].take(request.path)) is None:
        return await handler(request)
    await asyncio.sleep(fault.delay)
    return web.Response(status=fault.status, body=fault.body, content_type="application/json")


def create_api(workspace: Workspace, faults: ApiFaults) -> web.Application:
    """Return the device API application."""
    app = web.Application(middlewares=[_inject_faults])
    app[WORKSPACE] = workspace
    app[FAULTS] = faults
    app.router.add_post("/provisioning-operations/init", _device_call(_init))
    app.router.add_put("/provisioning-operations/complete", _device_call(_complete))
    app.router.add_put("/devices/register", _device_call(_register))
    app.router.add_put("/devices/registration-tokens/refresh", _device_call(_refresh))
    return app
