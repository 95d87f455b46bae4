"""The platform's HTTPS API for provisioning and registration."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
import re
import ssl
from typing import Any

import aiohttp

from .errors import (
    ProvisioningOperationCancelledError,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    RegistrationTokenRevokedError,
    SpotflowCertificateError,
    SpotflowConnectionError,
    WorkspaceDisabledError,
)
from .models import ProvisioningOperation

CANCELLED_PROBLEM = "/problems/deviceProvisioning/provisioningOperationCancelled"


@dataclass(frozen=True)
class RegistrationToken:
    """A registration token and its expiry; the token itself stays out of reprs."""

    token: str = field(repr=False)
    expiration_time: datetime


@dataclass(frozen=True)
class Registration:
    """What registering gives: where and as whom to connect, and the SAS to connect with."""

    hub_host: str
    workspace_id: str
    device_id: str
    sas: str = field(repr=False)
    sas_expiration: datetime

    @property
    def client_id(self) -> str:
        """Return the MQTT client ID, `<workspace>:<device>`."""
        return f"{self.workspace_id}:{self.device_id}"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time; the platform writes up to seven fractional digits."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(text)


def parse_registration(body: dict[str, Any]) -> Registration:
    """Read the register response; raises KeyError or ValueError when it is malformed."""
    parts = dict(part.partition("=")[::2] for part in body["connectionString"].split(";"))
    workspace_id, _, device_id = parts["DeviceId"].partition(":")
    if not workspace_id or not device_id or not parts["SharedAccessSignature"]:
        raise ValueError("incomplete connection string")
    return Registration(
        hub_host=body.get("iotHubHostName") or parts["HostName"],
        workspace_id=workspace_id,
        device_id=device_id,
        sas=parts["SharedAccessSignature"],
        sas_expiration=parse_time(body["connectionStringExpiration"]),
    )


class PlatformApi:
    """Calls of the provisioning and registration API.

    Transient failures (network, timeouts, 5xx, malformed bodies) raise SpotflowConnectionError;
    the caller decides when to retry. Definitive answers raise their own error types.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        instance: str,
        ssl_context: ssl.SSLContext | None,
        *,
        request_timeout: float = 30.0,
    ) -> None:
        """Talk to https://<instance>."""
        self._session = session
        self._base_url = f"https://{instance}"
        self._ssl: ssl.SSLContext | bool = ssl_context or True
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    async def init_provisioning(
        self, provisioning_token: str, device_id: str
    ) -> ProvisioningOperation:
        """Start a provisioning operation."""
        status, body = await self._request(
            "POST", "/provisioning-operations/init", provisioning_token, {"deviceId": device_id}
        )
        if status == 401:
            raise ProvisioningTokenInvalidError("The provisioning token was rejected")
        self._raise_for_common(status, "Provisioning")
        try:
            return ProvisioningOperation(
                id=body["provisioningOperationId"],
                verification_code=body["verificationCode"],
                expiration_time=parse_time(body["expirationTime"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise SpotflowConnectionError("Malformed provisioning response") from err

    async def complete_provisioning(
        self, provisioning_token: str, operation_id: str
    ) -> RegistrationToken | None:
        """Ask whether the operation was approved; None while it is pending."""
        status, body = await self._request(
            "PUT",
            "/provisioning-operations/complete",
            provisioning_token,
            {"provisioningOperationId": operation_id},
        )
        if status == 202:
            return None
        if status == 401:
            raise ProvisioningTokenInvalidError("The provisioning token was rejected")
        if status == 410:
            if str(body.get("type", "")).endswith(CANCELLED_PROBLEM):
                raise ProvisioningOperationCancelledError(
                    "The provisioning operation was cancelled"
                )
            raise ProvisioningOperationExpiredError("The provisioning operation expired")
        self._raise_for_common(status, "Provisioning")
        return self._token(body)

    async def register(self, registration_token: str) -> Registration:
        """Register the device and get a connection string with a fresh SAS."""
        status, body = await self._request(
            "PUT",
            "/devices/register",
            registration_token,
            {"connectionStringType": "SharedAccessSignature"},
        )
        if status == 401:
            raise RegistrationTokenRevokedError("The registration token was rejected")
        self._raise_for_common(status, "Registration")
        try:
            return parse_registration(body)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SpotflowConnectionError("Malformed registration response") from err

    async def refresh_token(
        self, provisioning_token: str, registration_token: str
    ) -> RegistrationToken:
        """Exchange the registration token for a new one."""
        status, body = await self._request(
            "PUT",
            "/devices/registration-tokens/refresh",
            provisioning_token,
            {"registrationToken": registration_token},
        )
        if status in (403, 410, 412):
            raise RegistrationTokenRevokedError("The registration token is revoked or expired")
        if status == 401:
            raise ProvisioningTokenInvalidError("The provisioning token was rejected")
        self._raise_for_common(status, "Token refresh")
        return self._token(body)

    @staticmethod
    def _token(body: dict[str, Any]) -> RegistrationToken:
        try:
            return RegistrationToken(
                token=body["registrationToken"],
                expiration_time=parse_time(body["expirationTime"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SpotflowConnectionError("Malformed registration token response") from err

    @staticmethod
    def _raise_for_common(status: int, what: str) -> None:
        if status == 423:
            raise WorkspaceDisabledError("The workspace is disabled")
        if status not in (200, 201):
            raise SpotflowConnectionError(f"{what} failed with HTTP status {status}")

    async def _request(
        self, method: str, path: str, token: str, payload: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        try:
            async with self._session.request(
                method,
                self._base_url + path,
                json=payload,
                headers={"Authorization": f"DeviceToken {token}"},
                ssl=self._ssl,
                timeout=self._timeout,
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                return response.status, body if isinstance(body, dict) else {}
        except aiohttp.ClientConnectorCertificateError as err:
            raise SpotflowCertificateError(
                "The Spotflow platform's certificate is not trusted"
            ) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            # The exception text names the URL only; the token travels in a header.
            raise SpotflowConnectionError(
                f"Cannot reach the Spotflow platform: {type(err).__name__}"
            ) from err
