"""The SSE server: `GET /sse`, always 200, `data:<json>` lines, errors as system events."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
import json
from typing import Any, Literal

from aiohttp import web

from .faults import reset_connection
from .tokens import TokenStore

type StreamFault = Literal["no_connection", "end_on_connect", "invalid_token"]
type DropMode = Literal["reset", "end", "silence"]

_END = None


def encode(event: dict[str, Any]) -> bytes:
    """One SSE message as the server writes it: no space after the colon, compact JSON."""
    return b"data:" + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def system_event(code: int, sub_type: str, message: str) -> dict[str, Any]:
    """A `system` event (stream start, or an error that ends the stream)."""
    return {"type": "system", "subType": sub_type, "code": code, "message": message}


TOKEN_EXPIRED = system_event(401, "TOKEN_EXPIRED", "Token Expired.")


class _Client:
    """One open stream: what it may see and what is queued for it."""

    def __init__(self, token_id: str, sphere_ids: frozenset[str], request: web.Request) -> None:
        self.token_id = token_id
        self.sphere_ids = sphere_ids
        self.request = request
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.silenced = False

    def close(self, final: dict[str, Any] | None = None) -> None:
        if final is not None:
            self.queue.put_nowait(encode(final))
        self.queue.put_nowait(_END)


class EventStream:
    """Routes events to open streams by the spheres each could access when it opened."""

    def __init__(
        self,
        tokens: TokenStore,
        spheres_of_user: Callable[[str], frozenset[str]],
        ping_interval: float,
    ) -> None:
        self._tokens = tokens
        self._spheres_of_user = spheres_of_user
        self.ping_interval = ping_interval
        self._clients: list[_Client] = []
        self.connections = 0
        self.fault: StreamFault | None = None

    @property
    def open_streams(self) -> int:
        """Streams currently connected."""
        return len(self._clients)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one stream until it ends, the client leaves or the simulator stops."""
        self.connections += 1
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "Connection": "keep-alive",
                "X-Accel-Buffering": "no",
            },
        )
        await response.prepare(request)
        token_id = (
            request.query.get("accessToken")
            or request.query.get("access_token")
            or request.headers.get("access_token")
            or request.headers.get("Authorization")
        )
        token = self._tokens.peek(token_id) if token_id else None
        refusal: dict[str, Any] | None = None
        if not token_id:
            refusal = system_event(400, "NO_ACCESS_TOKEN", "No accessToken provided...")
        elif self.fault == "no_connection":
            refusal = system_event(
                500, "NO_CONNECTION", "Not connected to cloud service. Try again later..."
            )
        elif self.fault == "invalid_token" or token is None:
            refusal = system_event(401, "INVALID_ACCESS_TOKEN", "Invalid accessToken provided...")
        if refusal is not None or token is None:
            return await _finish(response, refusal)

        await response.write(encode(system_event(200, "STREAM_START", "Stream Starting.")))
        if self.fault == "end_on_connect":
            return await _finish(response, None)
        if token.is_expired:
            return await _finish(response, TOKEN_EXPIRED)

        client = _Client(token.id, self._spheres_of_user(token.user_id), request)
        self._clients.append(client)
        try:
            await self._pump(client, response)
        except ConnectionError:
            return response
        finally:
            if client in self._clients:
                self._clients.remove(client)
        return await _finish(response, None)

    async def _pump(self, client: _Client, response: web.StreamResponse) -> None:
        # Pings on a fixed clock, whatever else is sent, as the real server's setInterval does.
        loop = asyncio.get_running_loop()
        pings = 0
        next_ping = loop.time() + self.ping_interval
        while True:
            # Checked before reading: a queue that never empties never lets a timeout fire.
            if loop.time() >= next_ping:
                next_ping += self.ping_interval
                if not client.silenced:
                    await response.write(encode({"type": "ping", "counter": pings}))
                    pings += 1
                continue
            try:
                async with asyncio.timeout_at(next_ping):
                    message = await client.queue.get()
            except TimeoutError:
                continue
            if message is _END:
                return
            await response.write(message)

    def dispatch(self, event: dict[str, Any], *, sphere_id: str | None) -> None:
        """Send an event to every stream that may see `sphere_id` (None: to every stream)."""
        data = encode(event)
        for client in list(self._clients):
            if sphere_id is not None and sphere_id not in client.sphere_ids:
                continue
            token = self._tokens.peek(client.token_id)
            # The server checks the token's life on every dispatch, as the real one does.
            if token is None or token.is_expired:
                self._clients.remove(client)
                client.close(TOKEN_EXPIRED)
            elif not client.silenced:
                client.queue.put_nowait(data)

    def expire(self) -> None:
        """Tokens were expired: every open stream says so and ends."""
        for client in self._clients:
            client.close(TOKEN_EXPIRED)
        self._clients.clear()

    def drop(self, mode: DropMode) -> None:
        """Break every open stream: TCP reset, clean end, or silence (connection stays open)."""
        for client in list(self._clients):
            if mode == "silence":
                client.silenced = True
                continue
            self._clients.remove(client)
            if mode == "reset" and client.request.transport is not None:
                reset_connection(client.request.transport)
            client.close()

    def close_all(self) -> None:
        """The server stops: STREAM_CLOSED to every stream."""
        for client in self._clients:
            client.close(system_event(500, "STREAM_CLOSED", "Event stream has been closed."))
        self._clients.clear()


async def _finish(response: web.StreamResponse, final: dict[str, Any] | None) -> web.StreamResponse:
    with suppress(ConnectionError):
        if final is not None:
            await response.write(encode(final))
        await response.write_eof()
    return response
