"""Shared fixtures.

Importing the package here makes `custom_components` resolve to this repository before the
`hass` fixture runs (otherwise the test plugin's own testing_config wins).
"""

from __future__ import annotations

import pytest

import custom_components.crownstone_spotflow  # noqa: F401


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load integrations from custom_components/."""
