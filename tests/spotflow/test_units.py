"""Pure helpers: wire formats, sealing, merge patches, error translation."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from custom_components.crownstone_spotflow.spotflow import (
    DeviceClient,
    OutboxStorageError,
    ProvisioningTokenInvalidError,
)
from custom_components.crownstone_spotflow.spotflow.api import parse_registration
from custom_components.crownstone_spotflow.spotflow.client import _merge_patch
from custom_components.crownstone_spotflow.spotflow.sealing import derive_key, seal, unseal
from custom_components.crownstone_spotflow.spotflow.store import storage_error
from custom_components.crownstone_spotflow.spotflow.topics import (
    parse_desired_patch_version,
    parse_twin_response,
    property_bag,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import FAST_OUTBOX


def test_registration_parsing() -> None:
    """A connection string without a device ID is malformed; the token's lifetime is not read."""
    registration = parse_registration(
        {
            "connectionString": "HostName=h;DeviceId=ws:dev;SharedAccessSignature=x",
            "connectionStringExpiration": "2026-01-01T00:00:00Z",
            "tokenRemainingLifetime": "a week or so",
        }
    )
    assert registration.client_id == "ws:dev"
    with pytest.raises(ValueError):  # noqa: PT011
        parse_registration(
            {
                "connectionString": "HostName=h;DeviceId=;SharedAccessSignature=x",
                "connectionStringExpiration": "2026-01-01T00:00:00Z",
            }
        )


def test_topics() -> None:
    """Property bags are URL-encoded in order; odd topics are recognised as such."""
    assert (
        property_bag(
            stream_group="g", stream=None, batch_id="a b", message_id="e/1", compressed=True
        )
        == "stream-group-name=g&batch-id=a%20b&message-id=e%2F1&content-encoding=br"
    )
    assert parse_twin_response("$iothub/twin/res/204/?$rid=7&$version=3") == (204, 7)
    assert parse_twin_response("$iothub/twin/res/abc/?$rid=7") is None
    assert parse_twin_response("devices/x") is None
    assert parse_desired_patch_version("$iothub/twin/PATCH/properties/desired/?$version=4") == 4
    assert parse_desired_patch_version("$iothub/twin/PATCH/properties/desired/?x=1") is None
    assert parse_desired_patch_version("devices/x") is None


def test_sealing() -> None:
    """Sealed secrets open only with the right key and unaltered."""
    key = derive_key("provisioning", b"salt")
    sealed = seal(key, "registration-token")
    assert b"registration-token" not in sealed
    assert unseal(key, sealed) == "registration-token"
    assert unseal(derive_key("other", b"salt"), sealed) is None
    assert unseal(key, sealed[:-1] + bytes([sealed[-1] ^ 1])) is None


def test_merge_patch() -> None:
    """RFC 7386: null removes, objects merge, other values replace."""
    assert _merge_patch({"a": {"b": 1}, "c": 2}, {"a": {"d": 3}, "c": None, "e": [1]}) == {
        "a": {"b": 1, "d": 3},
        "e": [1],
    }
    assert _merge_patch({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}


def test_storage_error_from_os_error() -> None:
    """A full disk seen as OSError is an OutboxStorageError naming the cause."""
    error = storage_error(OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(error, OutboxStorageError)
    assert "No space left" in str(error)


async def test_provisioning_token_revoked_while_waiting(
    tmp_path: Path, socket_enabled: None
) -> None:
    """A provisioning token revoked during the wait is reported as invalid."""
    sim = PlatformSimulator(tmp_path / "p")
    await sim.start()
    try:
        task = asyncio.create_task(
            DeviceClient.start(
                "dev-1",
                sim.provisioning_token,
                tmp_path / "d.db",
                instance=sim.instance,
                ca_file=sim.ca_file,
                provisioning_poll_interval=0.05,
                outbox=FAST_OUTBOX,
            )
        )
        await sim.wait_for_operation()
        sim.revoke_provisioning_token()
        with pytest.raises(ProvisioningTokenInvalidError):
            await task
    finally:
        await sim.stop()
