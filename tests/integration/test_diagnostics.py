"""Tests for diagnostics and for keeping secrets out of logs."""

from __future__ import annotations

import json
import logging

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator
from syrupy.assertion import SnapshotAssertion
from syrupy.filters import props

from custom_components.crownstone_spotflow.crownstone import hash_password
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

from . import async_poll
from .conftest import SnapshotForEveryRelease


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """One snapshot for both test legs: diagnostics do not depend on the release."""
    return snapshot.use_extension(SnapshotForEveryRelease)


def _secrets(cloud: CloudSimulator, entry: MockConfigEntry) -> list[str]:
    """Everything that must never show: password, token, e-mails, names, MACs, keys."""
    secrets = [DEMO_PASSWORD, hash_password(DEMO_PASSWORD)]
    secrets += ["ann@example.com", "bob@example.com", "Ann", "Admin", "Cleo"]
    secrets.append(str(entry.runtime_data.cloud.access_token))
    for sphere in cloud.state.spheres.values():
        secrets.append(sphere.authorization_token)
        secrets.extend(stone.address for stone in sphere.stones.values())
    return secrets


async def test_diagnostics(
    hass: HomeAssistant,
    hass_client: ClientSessionGenerator,
    cloud: CloudSimulator,
    init_integration: MockConfigEntry,
    snapshot: SnapshotAssertion,
) -> None:
    """Diagnostics describe the account's tree with every secret redacted."""
    assert await async_setup_component(hass, "diagnostics", {})
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)

    # The simulator listens on a new port every run; events arrive whenever they do.
    assert diagnostics == snapshot(exclude=props("cloud_url", "sse_url", "last_event_time"))
    assert diagnostics["stream"]["last_event_time"] is not None
    assert diagnostics["entry"]["data"]["cloud_url"] == cloud.url
    dumped = json.dumps(diagnostics)
    for secret in _secrets(cloud, init_integration):
        assert secret not in dumped


@pytest.fixture
def platforms() -> list[Platform]:
    """Set up every platform."""
    return [Platform.BINARY_SENSOR, Platform.LIGHT, Platform.SENSOR, Platform.SWITCH]


async def test_no_secret_in_logs(
    hass: HomeAssistant, cloud: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Debug logs of setup, polls, failures and token renewal never carry a secret."""
    caplog.set_level(logging.DEBUG)
    entry = MockConfigEntry(
        domain="crownstone_spotflow",
        unique_id=cloud.user_id(DEMO_EMAIL),
        data={
            "email": DEMO_EMAIL,
            "password": DEMO_PASSWORD,
            "cloud_url": cloud.url,
            "sse_url": cloud.sse_url,
        },
    )
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    token = str(entry.runtime_data.cloud.access_token)

    cloud.expire_tokens()
    await async_poll(hass)
    cloud.inject_fault("http_500")
    await async_poll(hass)
    cloud.clear_faults()
    cloud.change_password(DEMO_EMAIL, "changed-elsewhere")
    cloud.expire_tokens()
    await async_poll(hass)

    for record in caplog.records:
        message = record.getMessage()
        for secret in (DEMO_PASSWORD, "changed-elsewhere", token):
            assert secret not in message
