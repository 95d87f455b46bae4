"""Fixtures for the integration tests: a real cloud simulator on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import PropertyMock, patch

from homeassistant.const import CONF_EMAIL, Platform, __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.syrupy import HomeAssistantSnapshotExtension
from syrupy.assertion import SnapshotAssertion
from syrupy.location import PyTestLocation

from custom_components.crownstone_spotflow.const import (
    CONF_CLOUD_URL,
    CONF_PASSWORD_SHA1,
    CONF_SSE_URL,
    DOMAIN,
)
from custom_components.crownstone_spotflow.crownstone import CrownstoneEventStream, hash_password
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

from . import async_wait_for_stream


@pytest.fixture
async def cloud(hass: HomeAssistant, socket_enabled: None) -> AsyncGenerator[CloudSimulator]:
    """Run the demo home on a simulated cloud, on the hass fixture's loop.

    The test plugin still refuses connections to any host but 127.0.0.1.
    """
    simulator = CloudSimulator(phone_delay=0.01, ping_interval=1.0)
    await simulator.start(host="127.0.0.1", port=0)
    yield simulator
    await simulator.stop()


# Production waits up to 30 s between attempts; tests wait milliseconds. The simulator
# pings every second (see `cloud`), so a silent stream is noticed after 1.5 s.
FAST_STREAM = {
    "ping_interval": 1.0,
    "ping_margin": 0.5,
    "backoff_initial": 0.05,
    "backoff_max": 0.4,
}


@pytest.fixture
def stream_options() -> dict[str, Any]:
    """Return the event stream settings for the test (a test module may override it)."""
    return FAST_STREAM


@pytest.fixture(autouse=True)
def fast_stream(stream_options: dict[str, Any]) -> Generator[None]:
    """Make the integration's event stream reconnect quickly."""
    with patch(
        "custom_components.crownstone_spotflow.coordinator.CrownstoneEventStream",
        partial(CrownstoneEventStream, **stream_options),
    ):
        yield


@pytest.fixture
def mock_config_entry(cloud: CloudSimulator) -> MockConfigEntry:
    """Return the config entry of the demo account."""
    return MockConfigEntry(
        domain=DOMAIN,
        title=f"Crownstone ({DEMO_EMAIL})",
        unique_id=cloud.user_id(DEMO_EMAIL),
        data={
            CONF_EMAIL: DEMO_EMAIL,
            CONF_PASSWORD_SHA1: hash_password(DEMO_PASSWORD),
            CONF_CLOUD_URL: cloud.url,
            CONF_SSE_URL: cloud.sse_url,
        },
        minor_version=2,
    )


@pytest.fixture
def platforms() -> list[Platform]:
    """Return the platforms to set up (all unless a test module narrows it)."""
    return [Platform.BINARY_SENSOR, Platform.LIGHT, Platform.SENSOR, Platform.SWITCH]


@pytest.fixture
async def init_integration(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, platforms: list[Platform]
) -> MockConfigEntry:
    """Set up the integration against the simulator."""
    mock_config_entry.add_to_hass(hass)
    with patch("custom_components.crownstone_spotflow.PLATFORMS", platforms):
        assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    # Pushed changes are only heard once the event stream is up.
    await async_wait_for_stream(mock_config_entry.runtime_data)
    await hass.async_block_till_done()
    return mock_config_entry


@pytest.fixture
def entity_registry_enabled_by_default() -> Generator[None]:
    """Create entities that are disabled by default as enabled."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


class _SnapshotPerHomeAssistantYear(HomeAssistantSnapshotExtension):
    """Keeps snapshots per test leg: registry entries and entity ids differ between releases.

    2025.4 entity ids are device + entity name; from 2026 they start with the area, and the
    registry entries carry more fields.
    """

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(Path(test_location.filepath).parent / "snapshots" / f"ha{HA_VERSION[:4]}")


class SnapshotForEveryRelease(HomeAssistantSnapshotExtension):
    """For output that does not depend on the release (diagnostics).

    A folder of its own: syrupy looks for snapshots below its folder, and would take the other
    leg's snapshots for unused ones (and delete them with --snapshot-update).
    """

    @classmethod
    def dirname(cls, *, test_location: PyTestLocation) -> str:
        return str(Path(test_location.filepath).parent / "snapshots" / "every-release")


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Serialize like Home Assistant does, into tests/integration/snapshots/ha<year>/."""
    return snapshot.use_extension(_SnapshotPerHomeAssistantYear)
