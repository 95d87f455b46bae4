"""Shared fixtures.

Importing the package here makes `custom_components` resolve to this repository before the
`hass` fixture runs (otherwise the test plugin's own testing_config wins).
"""

from __future__ import annotations

from collections.abc import Generator
import logging

import pytest

import custom_components.crownstone_spotflow  # noqa: F401


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load integrations from custom_components/."""


class _FrameReports(logging.Handler):
    """Collects what Home Assistant's frame helper says about deprecated use."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Detected that ", "Detected code that ")):
            self.reports.append(message)


@pytest.fixture(autouse=True)
def fail_on_deprecated_use() -> Generator[None]:
    """Fail a test in which our code or the test itself used a deprecated Home Assistant API.

    Home Assistant only logs most of these for custom integrations ("Detected that custom
    integration ... This will stop working in ..."): in a later release they break.
    """
    handler = _FrameReports()
    frame_logger = logging.getLogger("homeassistant.helpers.frame")
    frame_logger.addHandler(handler)
    try:
        yield
    finally:
        frame_logger.removeHandler(handler)
    assert not handler.reports, "deprecated Home Assistant API used:\n" + "\n".join(handler.reports)
