"""Faults injected into REST answers, to test how clients cope with a misbehaving cloud."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import socket
import struct
from typing import Literal

from aiohttp import web

from .errors import ApiError, authorization_required

type FaultKind = Literal[
    "latency",
    "slow_answer",
    "http_500",
    "http_503",
    "html",
    "reset",
    "malformed_json",
    "non_json",
    "timeout_hang",
    "unauthorized",
]

_BAD_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass
class Fault:
    """A fault for requests whose path contains `path` (None: all), `count` times (None: always)."""

    kind: FaultKind
    path: str | None
    count: int | None
    seconds: float

    def matches(self, path: str) -> bool:
        """Whether this fault applies to a request for `path`."""
        return self.path is None or self.path in path


class FaultInjector:
    """Holds active faults and turns the first that matches into a broken answer."""

    def __init__(self, closing: asyncio.Event) -> None:
        self._faults: list[Fault] = []
        self._closing = closing

    def add(self, fault: Fault) -> None:
        """Activate a fault."""
        if fault.count is not None and fault.count < 1:
            raise ValueError("count must be at least 1")
        self._faults.append(fault)

    def clear(self) -> None:
        """Deactivate every fault."""
        self._faults.clear()

    def take(self, path: str) -> Fault | None:
        """The fault for this request, counting it down."""
        for fault in self._faults:
            if fault.matches(path):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                return fault
        return None

    async def apply(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        """The broken answer, or None when the request should go on (after latency)."""
        match fault.kind:
            case "latency":
                await asyncio.sleep(fault.seconds)
                return None
            case "slow_answer":
                # Delayed after the answer is made (see the middleware).
                return None
            case "http_500":
                return ApiError(500, "Internal Server Error").response()
            case "http_503":
                return ApiError(503, "Service Unavailable").response()
            case "unauthorized":
                # What a token without the right to a resource gets, a fresh one included.
                return authorization_required().response()
            case "html":
                return web.Response(status=502, text=_BAD_GATEWAY_PAGE, content_type="text/html")
            case "malformed_json":
                return web.Response(
                    status=200, text='[{"id": "5f1b2c', content_type="application/json"
                )
            case "non_json":
                return web.Response(
                    status=200, text="upstream connect error", content_type="text/plain"
                )
            case "reset":
                return _abort(request)
            case "timeout_hang":
                # Never answers; the connection is cut when the simulator stops.
                await self._closing.wait()
                return _abort(request)


def _abort(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        reset_connection(request.transport)
    # aiohttp needs a response object; it cannot be written to the aborted connection.
    return web.Response(status=500)


def reset_connection(transport: asyncio.Transport) -> None:
    """Close with a TCP RST (linger 0) instead of a FIN, as a crashed proxy does."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
