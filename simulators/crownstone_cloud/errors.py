"""LoopBack 3 error envelopes: `{"error": {"statusCode", "name", "message", "code"}}`."""

from __future__ import annotations

from functools import partial
import json
from typing import Any

from aiohttp import web

# JSON.stringify's compact form, as the Node servers send it.
compact_dumps = partial(json.dumps, separators=(",", ":"))


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON answer in the servers' compact encoding."""
    return web.json_response(body, status=status, dumps=compact_dumps)


def no_content() -> web.Response:
    """A void remote method's answer: 204, no body, but labelled JSON.

    strong-remoting's `HttpContext.done` sets `Content-Type: application/json` (Express adds the
    charset) before it ends a void method with 204, so every 204 of the API carries it.
    """
    return web.Response(status=204, content_type="application/json", charset="utf-8")


class ApiError(Exception):
    """An error the REST API answers with a LoopBack envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.details = details

    def response(self) -> web.Response:
        """The HTTP answer."""
        error: dict[str, Any] = {
            "statusCode": self.status,
            "name": "Error",
            "message": self.message,
        }
        if self.code is not None:
            error["code"] = self.code
        if self.details is not None:
            error["details"] = self.details
        return json_response({"error": error}, status=self.status)


def authorization_required() -> ApiError:
    """No token, an unknown token, or no right to the resource (LoopBack says 401, not 403)."""
    return ApiError(401, "Authorization Required", code="AUTHORIZATION_REQUIRED")


def invalid_token() -> ApiError:
    """First use of an expired token (the server deletes it)."""
    return ApiError(401, "Invalid Access Token", code="INVALID_TOKEN")


def remote_method_error(message: str) -> ApiError:
    """A remote method that calls back with a bare string: LoopBack makes it a 500 with no code."""
    return ApiError(500, message)
