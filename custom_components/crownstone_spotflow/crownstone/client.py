"""HTTP transport of the Crownstone cloud: login, status checks, one re-login on token expiry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any
from urllib.parse import quote

import aiohttp

from .const import TOKEN_REJECTED_CODES
from .errors import (
    CrownstoneAbilityError,
    CrownstoneAuthenticationError,
    CrownstoneConnectionError,
    CrownstoneCredentialsError,
    CrownstoneEmailNotVerifiedError,
    CrownstoneInvalidResponseError,
    CrownstoneServerError,
    CrownstoneUnknownError,
)
from .parsing import as_object, text

_LOGGER = logging.getLogger(__name__)

# Server messages end up in our exceptions; keep them short.
_MAX_SERVER_MESSAGE = 200

# What LoopBack says for a 500 that carries no reason of its own (a crash, or our simulator's
# fault injection): that one stays a connection error even for a command.
_GENERIC_SERVER_ERROR = "Internal Server Error"


class _TokenRejectedError(Exception):
    """A 401 that a fresh login may cure."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def path(*segments: str) -> str:
    """Join path segments, quoting the ids the cloud handed us."""
    return "".join(f"/{quote(segment, safe='')}" for segment in segments)


def hash_password(password: str) -> str:
    """Return what the cloud expects for a password: its sha1, in hex."""
    # A lone surrogate (possible through JSON) cannot be UTF-8: it makes a wrong password,
    # not a crash.
    return hashlib.sha1(password.encode("utf-8", "surrogatepass")).hexdigest()


class CloudClient:
    """Sends requests for one account; shares nothing with other accounts on the same session.

    The token travels in the `Authorization` header (never in the URL, so it cannot leak through
    URLs in logs or aiohttp's exception messages).
    """

    def __init__(
        self,
        email: str,
        password_sha1: str,
        websession: aiohttp.ClientSession | None,
        *,
        base_url: str,
        request_timeout: float,
    ) -> None:
        """Prepare the account, given the hash of its password (the cloud never sees more)."""
        self.email = email
        self._password_hash = password_sha1
        self._session = websession
        self._owns_session = websession is None
        self.base_url = base_url.rstrip("/")
        self.request_timeout = request_timeout
        self.access_token: str | None = None
        self.user_id: str | None = None
        self._login_lock = asyncio.Lock()
        self._refusal: tuple[str | None, CrownstoneAuthenticationError] | None = None

    def __repr__(self) -> str:
        """Show the account, never the password hash or the token."""
        return f"CloudClient(email={self.email!r}, base_url={self.base_url!r})"

    @property
    def session(self) -> aiohttp.ClientSession:
        """Return the session, creating one on first use when none was injected."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def async_close(self) -> None:
        """Close the session if this client created it; an injected session is the caller's."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def async_login(self) -> str:
        """Log in with the e-mail address and the sha1 of the password; return the user id."""
        body = await self._async_send(
            "POST",
            "/users/login",
            token=None,
            json_body={"email": self.email, "password": self._password_hash},
        )
        login = as_object(body, "the login response")
        self.access_token = text(login, "id", "login")
        self.user_id = text(login, "userId", "login")
        self._refusal = None
        _LOGGER.debug("Logged in to the Crownstone cloud as user %s", self.user_id)
        return self.user_id

    async def async_ensure_login(self) -> str:
        """Return the user id, logging in first if there is no token yet."""
        if self.access_token is not None and self.user_id is not None:
            return self.user_id
        return await self.async_renew_token(rejected=None)

    async def async_request(
        self,
        method: str,
        url_path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        command: bool = False,
    ) -> Any:
        """Send an authenticated request; an expired token costs one re-login and one retry.

        A `command` (a switch call) the cloud refuses with a 500 and a reason raises
        CrownstoneAbilityError (the reason is about dimming) or CrownstoneUnknownError, not
        CrownstoneConnectionError: asking again would not help.
        """
        await self.async_ensure_login()
        token = self.access_token
        options: dict[str, Any] = {"params": params, "json_body": json_body, "command": command}
        try:
            return await self._async_send(method, url_path, token=token, **options)
        except _TokenRejectedError:
            _LOGGER.debug("Access token rejected on %s %s; logging in again", method, url_path)
        await self.async_renew_token(rejected=token)
        try:
            return await self._async_send(method, url_path, token=self.access_token, **options)
        except _TokenRejectedError as err:
            raise CrownstoneAuthenticationError(err.code) from None

    async def async_renew_token(self, *, rejected: str | None) -> str:
        """Log in again unless the token the cloud rejected was replaced already.

        Requests (and the event stream) that failed together share one login: whoever comes
        second finds the new token, or the refusal of that login (credentials the cloud refused
        once stay refused until async_login is called again, instead of hammering the login
        endpoint).
        """
        async with self._login_lock:
            if self.access_token not in (None, rejected) and self.user_id is not None:
                return self.user_id
            if self._refusal is not None and self._refusal[0] == rejected:
                raise self._refusal[1]
            try:
                return await self.async_login()
            except CrownstoneAuthenticationError as err:
                self._refusal = (rejected, err)
                raise

    async def _async_send(
        self,
        method: str,
        url_path: str,
        *,
        token: str | None,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        command: bool = False,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = token
        if params is not None:
            # LoopBack filters travel as compact JSON in the query string.
            params = {
                name: json.dumps(value, separators=(",", ":")) for name, value in params.items()
            }
        try:
            async with (
                asyncio.timeout(self.request_timeout),
                self.session.request(
                    method,
                    f"{self.base_url}{url_path}",
                    params=params,
                    json=json_body,
                    headers=headers,
                ) as response,
            ):
                body = await response.read()
        except TimeoutError:
            raise CrownstoneConnectionError(
                f"The Crownstone cloud did not answer {method} {url_path} "
                f"within {self.request_timeout} s"
            ) from None
        except Exception as err:
            # Any failure before an answer, aiohttp's or a resolver's own (aiodns 3.2 on pycares 5
            # raised TypeError on every lookup), means the cloud was not reached.
            raise CrownstoneConnectionError(
                f"Could not reach the Crownstone cloud for {method} {url_path}: "
                f"{type(err).__name__}"
            ) from err
        _LOGGER.debug("%s %s -> %s (%d bytes)", method, url_path, response.status, len(body))
        return _decode(
            method, url_path, response, body, authenticated=token is not None, command=command
        )


def _decode(
    method: str,
    url_path: str,
    response: aiohttp.ClientResponse,
    body: bytes,
    *,
    authenticated: bool,
    command: bool,
) -> Any:
    """Turn a response into JSON or into the library's error for it."""
    status = response.status
    request = f"{method} {url_path}"
    if status >= 500 or status == 429:
        if command and status == 500:
            _raise_for_refused_command(request, body)
        raise CrownstoneServerError(
            f"The Crownstone cloud answered {request} with {status}{_detail(body)}"
        )
    if _looks_like_html(response, body):
        # Proxies and maintenance pages answer in HTML, whatever the status.
        raise CrownstoneServerError(
            f"The Crownstone cloud answered {request} with an HTML page ({status})"
        )
    if not 200 <= status < 300:
        _raise_for_error(request, status, body, authenticated=authenticated)
    if status == 204 or not body.strip():
        return None
    return _parse_json(request, body)


def _looks_like_html(response: aiohttp.ClientResponse, body: bytes) -> bool:
    return response.content_type == "text/html" or body.lstrip()[:1] == b"<"


def _parse_json(request: str, body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise CrownstoneInvalidResponseError(
            f"The Crownstone cloud answered {request} with a body that is not valid JSON"
        ) from None


def _raise_for_refused_command(request: str, body: bytes) -> None:
    """Raise the refusal a LoopBack 500 with a reason of its own stands for, if it is one.

    The server answers a command it refuses ("Dimming is not enabled for this Crownstone.",
    "Dimming below 10% is not allowed.") with a 500 whose message is the reason.
    """
    message = _error_details(body)[1]
    if message is None or message == _GENERIC_SERVER_ERROR:
        return
    error = CrownstoneAbilityError if "dimming" in message.lower() else CrownstoneUnknownError
    raise error(f"The Crownstone cloud refused {request}: {message}")


def _raise_for_error(request: str, status: int, body: bytes, *, authenticated: bool) -> None:
    """Raise the error a LoopBack error envelope describes (tolerating any other body)."""
    code = _error_details(body)[0]
    if status == 401 and authenticated:
        # LoopBack says AUTHORIZATION_REQUIRED for a missing, deleted or unauthorised token.
        code = code or "AUTHORIZATION_REQUIRED"
        if code in TOKEN_REJECTED_CODES:
            raise _TokenRejectedError(code)
    if code == "LOGIN_FAILED_EMAIL_NOT_VERIFIED":
        raise CrownstoneEmailNotVerifiedError(code)
    if status in (401, 403) or code in ("LOGIN_FAILED", "USERNAME_EMAIL_REQUIRED"):
        # Only a refused login says the e-mail address or password is wrong.
        error = CrownstoneAuthenticationError if authenticated else CrownstoneCredentialsError
        raise error(code or f"HTTP_{status}")
    raise CrownstoneUnknownError(
        f"The Crownstone cloud refused {request} with {status}{_detail(body)}"
    )


def _detail(body: bytes) -> str:
    """Return " (CODE: message)" from a LoopBack error envelope, or nothing."""
    detail = ": ".join(part for part in _error_details(body) if part)
    return f" ({detail})" if detail else ""


def _error_details(body: bytes) -> tuple[str | None, str | None]:
    try:
        envelope = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    error = envelope.get("error") if isinstance(envelope, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (
        code[:_MAX_SERVER_MESSAGE] if isinstance(code, str) else None,
        message[:_MAX_SERVER_MESSAGE] if isinstance(message, str) else None,
    )
