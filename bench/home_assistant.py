"""A bare Home Assistant for the benchmarks, as the test plugin's fixtures make one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
import tempfile
from unittest.mock import patch

from aiohttp import ThreadedResolver
from homeassistant import loader
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import async_test_home_assistant


@asynccontextmanager
async def home_assistant() -> AsyncIterator[HomeAssistant]:
    """Run a test Home Assistant in a temporary folder, loading custom_components/."""
    with (
        tempfile.TemporaryDirectory() as folder,
        # A bare test instance has no zeroconf resolver; the simulator is an IP address.
        patch(
            "homeassistant.helpers.aiohttp_client._async_make_resolver",
            return_value=ThreadedResolver(),
        ),
    ):
        config_dir = Path(folder) / "config"
        (config_dir / ".storage").mkdir(parents=True)
        async with async_test_home_assistant(config_dir=str(config_dir)) as hass:
            # What the test plugin's enable_custom_integrations fixture does.
            hass.data.pop(loader.DATA_CUSTOM_COMPONENTS)
            try:
                yield hass
            finally:
                await hass.async_stop(force=True)
