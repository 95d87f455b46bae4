"""The provisioning attempt a dialog runs, and what the dialog shows of it."""

from __future__ import annotations

from homeassistant.core import HomeAssistant
import pytest

from custom_components.crownstone_spotflow.mirror.form import describe_desired
from custom_components.crownstone_spotflow.mirror.provisioning import Provisioning
from custom_components.crownstone_spotflow.mirror.settings import MirrorSettings
from simulators.spotflow_platform import PlatformSimulator

from .conftest import mirror_options


@pytest.fixture
def auto_approve() -> bool:
    """A person approves in these tests."""
    return False


async def test_news_nobody_waited_for(hass: HomeAssistant, platform: PlatformSimulator) -> None:
    """The code and the end of the attempt both arrive while no dialog waits: the end is not
    lost, and the placeholders read as a person would say them."""
    settings = MirrorSettings.from_options(mirror_options(platform, "entry"))
    provisioning = Provisioning(hass, settings, new_outbox=True, name="test provisioning")
    operation = await platform.wait_for_operation()
    platform.approve(operation.id)
    assert await provisioning.task == settings.device_id
    await provisioning.async_wait_for_news()
    assert provisioning.error() is None
    placeholders = provisioning.placeholders()
    assert placeholders["verification_code"] == operation.verification_code
    assert placeholders["expires_in"].isdigit()
    assert len(placeholders["expiration_time"]) == len("14:32")


def test_desired_properties_in_words() -> None:
    """The options dialog says what the platform sets, never a bare `{}`."""
    assert describe_desired({}) == "none"
    assert describe_desired({"paused": True, "entityFilter": {"include_domains": ["light"]}}) == (
        '`entityFilter` = `{"include_domains": ["light"]}`, `paused` = `true`'
    )
