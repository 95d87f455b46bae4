"""Contract tests run plain asyncio code against the simulators on 127.0.0.1."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def loopback_sockets(socket_enabled: None) -> None:
    """Home Assistant's test plugin blocks sockets; the simulator needs 127.0.0.1."""


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """These tests need no Home Assistant instance (overrides the suite-wide fixture)."""
