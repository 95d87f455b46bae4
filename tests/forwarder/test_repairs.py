"""Repair issues of provisioning at start: shown with the code, cleared when resolved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.forwarder import async_unload_forwarder
from custom_components.crownstone_spotflow.forwarder_repairs import ForwarderIssue, issue_id
from simulators.spotflow_platform import PlatformSimulator

from .conftest import DEVICE_ID, wait_for, wait_for_records
from .test_forwarder import own_entity


@pytest.fixture
def auto_approve() -> bool:
    """A person approves (or cancels) in these tests."""
    return False


def has_issue(hass: HomeAssistant, entry: MockConfigEntry, issue: ForwarderIssue) -> bool:
    """Return whether the entry has the issue open."""
    return ir.async_get(hass).async_get_issue(DOMAIN, issue_id(entry.entry_id, issue)) is not None


async def test_provisioning_repairs(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """Starting without a registration asks for approval; a cancel is an issue to act on."""
    await start_forwarder(wait=False)
    operation = await platform.wait_for_operation()
    await wait_for(lambda: has_issue(hass, entry, ForwarderIssue.PROVISIONING_REQUIRED))
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, issue_id(entry.entry_id, ForwarderIssue.PROVISIONING_REQUIRED)
    )
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["verification_code"] == operation.verification_code
    platform.cancel(operation.id)
    await wait_for(lambda: has_issue(hass, entry, ForwarderIssue.PROVISIONING_CANCELLED))
    assert not has_issue(hass, entry, ForwarderIssue.PROVISIONING_REQUIRED)

    # Trying again (a reload) and approving clears it.
    await async_unload_forwarder(hass, entry)
    forwarder = await start_forwarder(wait=False)
    platform.approve((await platform.wait_for_operation()).id)
    await wait_for(lambda: forwarder.client is not None)
    assert not has_issue(hass, entry, ForwarderIssue.PROVISIONING_CANCELLED)


async def test_registration_revoked_while_running(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A revoked registration is an issue at once; approving again delivers the kept backlog."""
    lamp = own_entity(hass, entry, "lamp")
    forwarder = await start_forwarder(wait=False)
    platform.approve((await platform.wait_for_operation()).id)
    await wait_for(lambda: forwarder.client is not None and forwarder.client.connected)
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    for value in range(20):
        hass.states.async_set(lamp, str(value))
    await wait_for(lambda: forwarder.client.stats.backlog_records == 20)

    platform.revoke_registration(DEVICE_ID)
    await platform.start_broker()
    await wait_for(lambda: has_issue(hass, entry, ForwarderIssue.REGISTRATION_REVOKED))
    operation = await platform.wait_for_operation()
    await wait_for(lambda: has_issue(hass, entry, ForwarderIssue.PROVISIONING_REQUIRED))
    assert forwarder.client is None

    platform.approve(operation.id)
    found = await wait_for_records(platform, lambda found: len(found) >= 21)
    assert [r["state"] for r in found[:20]] == [str(value) for value in range(20)]
    assert found[20]["snapshot"] is True
    assert not has_issue(hass, entry, ForwarderIssue.REGISTRATION_REVOKED)
    assert not has_issue(hass, entry, ForwarderIssue.PROVISIONING_REQUIRED)
