"""The workspace's state: provisioning operations, devices, registration tokens, SAS, twins."""

from __future__ import annotations

from collections.abc import Callable
import copy
from dataclasses import dataclass, field
import datetime as dt
import json
import math
import re
import secrets
import string
from typing import Any
import uuid

from .notify import Changes
from .sas import create_sas, parse_sas, signature_matches
from .store import Store, StoredDevice

DEVICE_ID = re.compile(r"[0-9A-Za-z\-_.]{4,90}")
MQTT_API_VERSION = "2018-06-30"
PROBLEM_CANCELLED = "/problems/deviceProvisioning/provisioningOperationCancelled"
PROBLEM_EXPIRED = "/problems/deviceProvisioning/provisioningOperationExpired"


class ProblemError(Exception):
    """A refusal the HTTPS API answers as RFC 7807 problem JSON."""

    def __init__(self, status: int, problem_type: str, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.problem_type = problem_type
        self.title = title
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Operation:
    """A provisioning operation as the approver sees it."""

    id: str
    device_id: str | None
    verification_code: str
    expiration_time: dt.datetime


@dataclass(slots=True)
class _OperationState:
    operation: Operation
    expires_at: float
    status: str = "pending"  # pending | approved | cancelled | expired
    device_id: str | None = None
    registration: tuple[str, float] | None = field(default=None, repr=False)

    def to_json(self) -> str:
        """Serialize for the store."""
        operation = self.operation
        return json.dumps(
            {
                "id": operation.id,
                "device_id": operation.device_id,
                "verification_code": operation.verification_code,
                "expires_at": self.expires_at,
                "status": self.status,
                "final_device_id": self.device_id,
                "registration": self.registration,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _OperationState:
        """Read what `to_json` wrote."""
        data = json.loads(text)
        registration = data["registration"]
        return cls(
            Operation(
                data["id"],
                data["device_id"],
                data["verification_code"],
                dt.datetime.fromtimestamp(data["expires_at"], dt.UTC),
            ),
            data["expires_at"],
            data["status"],
            data["final_device_id"],
            None if registration is None else (registration[0], registration[1]),
        )


@dataclass(slots=True)
class Device:
    """A registered device: its SAS signing key and twin (each part carries its `$version`)."""

    device_id: str
    key: bytes = field(repr=False)
    desired: dict[str, Any] = field(default_factory=lambda: {"$version": 1})
    reported: dict[str, Any] = field(default_factory=lambda: {"$version": 1})


@dataclass(slots=True)
class _Token:
    device_id: str
    expires_at: float
    revoked: bool = False


def rfc3339(timestamp: float) -> str:
    """Format a POSIX time as RFC 3339 in UTC."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat().replace("+00:00", "Z")


def timespan(seconds: float) -> str:
    """Format a duration as a .NET TimeSpan, `[-][d.]hh:mm:ss[.fffffff]`."""
    sign = "-" if seconds < 0 else ""
    ticks = round(abs(seconds) * 10_000_000)
    whole, fraction = divmod(ticks, 10_000_000)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}{f'{days}.' if days else ''}{hours:02}:{minutes:02}:{secs:02}"
    return f"{text}.{fraction:07}" if fraction else text


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a JSON merge patch (RFC 7386) in place; `$version` is the platform's to set."""
    for key, value in patch.items():
        if key == "$version":
            continue
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
            merge_patch(child, value)
        else:
            target[key] = copy.deepcopy(value)


_WORKSPACE_DISABLED = ProblemError(
    423, "/problems/workspaceDisabled", "Locked", "The workspace is disabled"
)


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "/problems/unauthorized", "Unauthorized", detail)


class Workspace:
    """Everything the HTTPS API and the broker decide; synchronous, persisted through `Store`."""

    def __init__(
        self,
        store: Store,
        changes: Changes,
        *,
        workspace_id: str,
        provisioning_token: str | None,
        registration_token_ttl: float,
        sas_ttl: float,
        operation_ttl: float,
        auto_approve: bool,
        auto_approve_delay: float,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._changes = changes
        self._clock = clock
        self.workspace_id = workspace_id
        self.registration_token_ttl = registration_token_ttl
        self.sas_ttl = sas_ttl
        self.operation_ttl = operation_ttl
        self.auto_approve = auto_approve
        self.auto_approve_delay = auto_approve_delay
        self.disabled = False
        self.provisioning_token_revoked = False
        # A data directory reused without a token keeps the one its devices were given.
        token = provisioning_token or store.get_meta("provisioning_token")
        self.provisioning_token = token or secrets.token_urlsafe(24)
        store.set_meta("provisioning_token", self.provisioning_token)
        self.hub_host = ""
        # Operations survive a restart: a device polling across it completes as approved.
        self._operations = {
            state.operation.id: state
            for state in map(_OperationState.from_json, store.operations())
        }
        self._devices = {
            stored.device_id: Device(
                stored.device_id,
                stored.key,
                json.loads(stored.desired),
                json.loads(stored.reported),
            )
            for stored in store.devices()
        }
        self._tokens = {
            token: _Token(device_id, expires_at, revoked)
            for token, device_id, expires_at, revoked in store.tokens()
        }

    # --- provisioning

    def _check_provisioning_token(self, token: str) -> None:
        if self.disabled:
            raise _WORKSPACE_DISABLED
        if self.provisioning_token_revoked or not secrets.compare_digest(
            token, self.provisioning_token
        ):
            raise _unauthorized("Provisioning token is invalid")

    def init_operation(self, token: str, device_id: str | None) -> Operation:
        """Start a provisioning operation."""
        self._check_provisioning_token(token)
        if device_id is not None and not DEVICE_ID.fullmatch(device_id):
            raise ProblemError(
                400,
                "/problems/validation",
                "Bad Request",
                "deviceId must be 4-90 characters of 0-9 a-z A-Z - _ .",
            )
        expires_at = self._clock() + self.operation_ttl
        operation = Operation(
            str(uuid.uuid4()),
            device_id,
            "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(6)),
            dt.datetime.fromtimestamp(expires_at, dt.UTC),
        )
        state = self._operations[operation.id] = _OperationState(operation, expires_at)
        self._store.save_operation(operation.id, state.to_json())
        if self.auto_approve and self.auto_approve_delay <= 0:
            self._approve(state, None)
        self._changes.notify()
        return operation

    def _operation(self, operation_id: str) -> _OperationState:
        state = self._operations.get(operation_id)
        if state is None:
            raise KeyError(f"no provisioning operation {operation_id!r}")
        now = self._clock()
        if state.status == "pending" and now >= state.expires_at:
            state.status = "expired"
        created_at = state.expires_at - self.operation_ttl
        if (
            state.status == "pending"
            and self.auto_approve
            and now >= created_at + self.auto_approve_delay
        ):
            # Approved late, as a person would: when the device next asks.
            self._approve(state, None)
        return state

    def complete_operation(self, token: str, operation_id: str) -> tuple[str, float] | None:
        """Return the registration token and its expiry once approved; None while pending."""
        self._check_provisioning_token(token)
        try:
            state = self._operation(operation_id)
        except KeyError:
            raise ProblemError(
                404, "/problems/notFound", "Not Found", "Provisioning operation not found"
            ) from None
        if state.status == "cancelled":
            raise ProblemError(
                410, PROBLEM_CANCELLED, "Gone", "Provisioning operation was cancelled"
            )
        if state.status == "expired":
            raise ProblemError(410, PROBLEM_EXPIRED, "Gone", "Provisioning operation expired")
        return state.registration

    def pending_operations(self) -> list[Operation]:
        """Return the operations waiting for approval, oldest first."""
        return [
            state.operation
            for state in list(self._operations.values())
            if self._operation(state.operation.id).status == "pending"
        ]

    def approve(self, operation_id: str, device_id: str | None = None) -> None:
        """Approve an operation, optionally overriding the device ID the device asked for."""
        state = self._operation(operation_id)
        if state.status != "pending":
            raise ValueError(f"operation {operation_id!r} is {state.status}, not pending")
        self._approve(state, device_id)

    def _approve(self, state: _OperationState, device_id: str | None) -> None:
        final_id = device_id or state.operation.device_id or f"device-{secrets.token_hex(4)}"
        if not DEVICE_ID.fullmatch(final_id):
            raise ValueError(f"invalid device ID {final_id!r}")
        device = self._devices.get(final_id)
        if device is None:
            device = self._devices[final_id] = Device(final_id, secrets.token_bytes(32))
        else:
            # A device provisioned again gets a fresh identity; its old SAS tokens stop working.
            device.key = secrets.token_bytes(32)
        self._save(device)
        state.status = "approved"
        state.device_id = final_id
        state.registration = self._issue_token(final_id)
        self._store.save_operation(state.operation.id, state.to_json())
        self._changes.notify()

    def cancel(self, operation_id: str) -> None:
        """Cancel a pending operation: the device's next poll gets 410 Cancelled."""
        state = self._operation(operation_id)
        if state.status != "pending":
            raise ValueError(f"operation {operation_id!r} is {state.status}, not pending")
        state.status = "cancelled"
        self._store.save_operation(operation_id, state.to_json())
        self._changes.notify()

    def expire_operation(self, operation_id: str) -> None:
        """Let a pending operation expire now."""
        state = self._operation(operation_id)
        if state.status != "pending":
            raise ValueError(f"operation {operation_id!r} is {state.status}, not pending")
        state.status = "expired"
        self._store.save_operation(operation_id, state.to_json())
        self._changes.notify()

    # --- registration

    def _issue_token(self, device_id: str) -> tuple[str, float]:
        token = secrets.token_urlsafe(32)
        expires_at = self._clock() + self.registration_token_ttl
        self._tokens[token] = _Token(device_id, expires_at)
        self._store.save_token(token, device_id, expires_at, revoked=False)
        return token, expires_at

    def refresh(self, provisioning_token: str, registration_token: str) -> tuple[str, float]:
        """Exchange a valid registration token for a new one (the old one stays valid)."""
        self._check_provisioning_token(provisioning_token)
        current = self._tokens.get(registration_token)
        if current is None:
            raise ProblemError(
                403, "/problems/forbidden", "Forbidden", "Unknown registration token"
            )
        if current.revoked:
            raise ProblemError(
                412,
                "/problems/registrationTokenRevoked",
                "Precondition Failed",
                "Registration token was revoked",
            )
        if self._clock() >= current.expires_at:
            raise ProblemError(
                410, "/problems/registrationTokenExpired", "Gone", "Registration token expired"
            )
        return self._issue_token(current.device_id)

    def register(self, registration_token: str, connection_string_type: object) -> dict[str, str]:
        """Answer `PUT /devices/register` with a fresh SAS connection string."""
        if self.disabled:
            raise _WORKSPACE_DISABLED
        current = self._tokens.get(registration_token)
        now = self._clock()
        if current is None or current.revoked or now >= current.expires_at:
            raise _unauthorized("Registration token is invalid, expired or revoked")
        if connection_string_type != "SharedAccessSignature":
            raise ProblemError(
                400,
                "/problems/validation",
                "Bad Request",
                "connectionStringType must be SharedAccessSignature",
            )
        device = self._devices[current.device_id]
        client_id = f"{self.workspace_id}:{device.device_id}"
        expiry = math.ceil(now + self.sas_ttl)
        sas = create_sas(device.key, f"{self.hub_host}/devices/{client_id}", expiry)
        return {
            "connectionString": f"HostName={self.hub_host};DeviceId={client_id};"
            f"SharedAccessSignature={sas}",
            "iotHubHostName": self.hub_host,
            "connectionStringType": "SharedAccessSignature",
            "connectionStringExpiration": rfc3339(expiry),
            "tokenRemainingLifetime": timespan(current.expires_at - now),
        }

    def revoke_registration(self, device_id: str) -> None:
        """Revoke every registration token and SAS of a device."""
        device = self.device(device_id)
        for token, state in self._tokens.items():
            if state.device_id == device_id and not state.revoked:
                state.revoked = True
                self._store.save_token(token, device_id, state.expires_at, revoked=True)
        device.key = secrets.token_bytes(32)
        self._save(device)

    def expire_sas(self, device_id: str) -> None:
        """Invalidate the device's SAS tokens (a new key); its registration token stays valid."""
        device = self.device(device_id)
        device.key = secrets.token_bytes(32)
        self._save(device)

    # --- MQTT

    def sas_expiry(self, client_id: str, username: str | None, password: str | None) -> int | None:
        """Return the expiry of valid MQTT credentials for `client_id`, None when refused."""
        workspace_id, _, device_id = client_id.partition(":")
        device = self._devices.get(device_id)
        if workspace_id != self.workspace_id or device is None:
            return None
        prefix = f"{self.hub_host}/{client_id}/?api-version={MQTT_API_VERSION}"
        if username is None or not (username == prefix or username.startswith(f"{prefix}&")):
            return None
        token = parse_sas(password or "")
        if (
            token is None
            or token.resource != f"{self.hub_host}/devices/{client_id}"
            or token.expiry <= self._clock()
            or not signature_matches(device.key, token)
        ):
            return None
        return token.expiry

    # --- twins

    def device(self, device_id: str) -> Device:
        """Return a registered device; KeyError when unknown."""
        try:
            return self._devices[device_id]
        except KeyError:
            raise KeyError(f"no device {device_id!r}") from None

    def device_ids(self) -> list[str]:
        """Return the IDs of all registered devices."""
        return sorted(self._devices)

    def _save(self, device: Device) -> None:
        self._store.save_device(
            StoredDevice(
                device.device_id,
                device.key,
                json.dumps(device.desired),
                json.dumps(device.reported),
            )
        )

    def set_desired(self, device_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge a patch into the desired properties; return the patch with its new `$version`."""
        device = self.device(device_id)
        merge_patch(device.desired, patch)
        device.desired["$version"] += 1
        self._save(device)
        return {**patch, "$version": device.desired["$version"]}

    def merge_reported(self, device_id: str, patch: dict[str, Any]) -> int:
        """Merge a device's reported patch; return the new reported `$version`."""
        device = self.device(device_id)
        merge_patch(device.reported, patch)
        device.reported["$version"] += 1
        self._save(device)
        return int(device.reported["$version"])
