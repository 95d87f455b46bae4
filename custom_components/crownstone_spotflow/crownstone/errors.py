"""Exceptions of the Crownstone cloud library; messages never carry secrets."""

from __future__ import annotations

_AUTHENTICATION_MESSAGES = {
    "LOGIN_FAILED": "Wrong e-mail address or password",
    "LOGIN_FAILED_EMAIL_NOT_VERIFIED": "The e-mail address of this account is not verified yet",
    "USERNAME_EMAIL_REQUIRED": "E-mail address or password missing",
    "INVALID_TOKEN": "The access token was rejected",
    "AUTHORIZATION_REQUIRED": "The cloud requires a valid access token for this request",
}


class CrownstoneError(Exception):
    """Base of every error the library raises."""


class CrownstoneAuthenticationError(CrownstoneError):
    """The cloud refused the credentials or the access token; `type` holds the server code."""

    def __init__(self, type: str, message: str | None = None) -> None:
        """Keep the server code; fall back to a readable message for the known codes."""
        super().__init__(
            message or _AUTHENTICATION_MESSAGES.get(type, f"Authentication failed ({type})")
        )
        self.type = type


class CrownstoneCredentialsError(CrownstoneAuthenticationError):
    """The cloud refused to log in with the e-mail address and password.

    Other authentication errors (a token refused again right after a successful login, when
    the account just lost access to a sphere, say) leave the credentials in doubt.
    """


class CrownstoneEmailNotVerifiedError(CrownstoneCredentialsError):
    """The account exists but its e-mail address has not been confirmed."""


class CrownstoneConnectionError(CrownstoneError):
    """The cloud could not be reached or is in trouble (network, timeout, 5xx, HTML pages)."""


class CrownstoneServerError(CrownstoneConnectionError):
    """The cloud was reached and answered with a server error (5xx, 429, an HTML page)."""


class CrownstoneInvalidResponseError(CrownstoneError):
    """The cloud answered something that is not the JSON this library expects."""


class CrownstoneNotFoundError(CrownstoneError):
    """No Crownstone (or other item) matches the lookup."""


class CrownstoneAbilityError(CrownstoneError):
    """The command needs an ability the Crownstone does not have enabled."""


class CrownstoneBrightnessError(CrownstoneAbilityError):
    """The brightness is outside what the cloud accepts (0, or 10..100 %)."""


class CrownstoneUnknownError(CrownstoneError):
    """The cloud refused the request for another reason (a 4xx other than 401)."""
