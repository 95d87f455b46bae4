"""Repair issues of provisioning at start: shown with the code, cleared when resolved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.mirror.repairs import MirrorIssue, issue_id
from custom_components.crownstone_spotflow.mirror.supervisor import (
    STATS_INTERVAL,
    MirrorSupervisor,
)
from simulators.spotflow_platform import PlatformSimulator

from .conftest import DEVICE_ID, wait_for, wait_for_records


@pytest.fixture
def auto_approve() -> bool:
    """A person approves (or cancels) in these tests."""
    return False


def has_issue(hass: HomeAssistant, entry: MockConfigEntry, issue: MirrorIssue) -> bool:
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
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.PROVISIONING_REQUIRED))
    issue = ir.async_get(hass).async_get_issue(
        DOMAIN, issue_id(entry.entry_id, MirrorIssue.PROVISIONING_REQUIRED)
    )
    assert issue is not None
    assert issue.translation_placeholders is not None
    assert issue.translation_placeholders["verification_code"] == operation.verification_code
    platform.cancel(operation.id)
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.PROVISIONING_CANCELLED))
    assert not has_issue(hass, entry, MirrorIssue.PROVISIONING_REQUIRED)

    # Trying again (a reload) and approving clears it.
    assert await hass.config_entries.async_unload(entry.entry_id)
    forwarder = await start_forwarder(wait=False)
    platform.approve((await platform.wait_for_operation()).id)
    await wait_for(lambda: forwarder.client is not None and forwarder.client.connected)
    assert not has_issue(hass, entry, MirrorIssue.PROVISIONING_CANCELLED)


async def test_registration_revoked_while_running(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A revoked registration is an issue at once; changes made while the device waits for a new
    approval are kept on disk; approving delivers them after the backlog."""
    lamp = "light.lamp"
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
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.REGISTRATION_REVOKED))
    operation = await platform.wait_for_operation()
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.PROVISIONING_REQUIRED))
    for value in range(20, 30):
        hass.states.async_set(lamp, str(value))
    # 20, a snapshot, a record saying that (without a recorder) the time between the two
    # clients cannot be caught up, and 10.
    await wait_for(lambda: forwarder.client.stats.backlog_records == 32)
    assert not forwarder.client.connected

    platform.approve(operation.id)
    found = await wait_for_records(platform, lambda found: len(found) >= 32)
    assert [r["state"] for r in found[:20]] == [str(value) for value in range(20)]
    # The restart mirrors a snapshot, then what changed while waiting for approval.
    assert (found[20]["snapshot"], found[20]["state"]) == (True, "19")
    assert (found[21]["gap_possible"], found[21]["reason"]) == (True, "no_recorder")
    assert [r["state"] for r in found[22:]] == [str(value) for value in range(20, 30)]
    # The restart began a new epoch; numbers count from 1 in it.
    assert [r["seq"] for r in found] == [*range(1, 21), *range(1, 13)]
    assert found[20]["epoch"] > found[19]["epoch"]
    assert not has_issue(hass, entry, MirrorIssue.REGISTRATION_REVOKED)
    assert not has_issue(hass, entry, MirrorIssue.PROVISIONING_REQUIRED)


async def approved(
    platform: PlatformSimulator, start_forwarder: Callable[..., Any]
) -> MirrorSupervisor:
    """Start the forwarder, approve its device and return it once connected."""
    forwarder: MirrorSupervisor = await start_forwarder(wait=False)
    platform.approve((await platform.wait_for_operation()).id)
    await wait_for(lambda: forwarder.client is not None and forwarder.client.connected)
    return forwarder


async def test_registration_revoked_at_start(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A registration revoked while Home Assistant was off asks for approval at once, as the
    issue says; approving clears both issues."""
    await approved(platform, start_forwarder)
    assert await hass.config_entries.async_unload(entry.entry_id)
    platform.revoke_registration(DEVICE_ID)

    forwarder = await start_forwarder(wait=False)
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.REGISTRATION_REVOKED))
    platform.approve((await platform.wait_for_operation()).id)
    await wait_for(lambda: forwarder.client is not None and forwarder.client.connected)
    assert not has_issue(hass, entry, MirrorIssue.REGISTRATION_REVOKED)
    assert not has_issue(hass, entry, MirrorIssue.PROVISIONING_REQUIRED)


@pytest.mark.parametrize("registration_token_ttl", [3.0])
async def test_provisioning_token_rejected_while_running(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A provisioning token the platform rejects when the registration is refreshed is an issue;
    changes are still kept on disk for the new token."""
    lamp = "light.lamp"
    forwarder = await approved(platform, start_forwarder)
    platform.revoke_provisioning_token()
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.PROVISIONING_TOKEN_INVALID))
    assert not forwarder.client.connected
    hass.states.async_set(lamp, "on")
    await wait_for(lambda: forwarder.client.stats.backlog_records == 1)


async def test_workspace_disabled_after_provisioning(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """A disabled workspace keeps a registered device offline: an issue, which clears itself
    once the workspace is enabled and the device connects."""
    await approved(platform, start_forwarder)
    assert await hass.config_entries.async_unload(entry.entry_id)
    platform.set_workspace_disabled(True)

    forwarder = await start_forwarder(wait=False)
    await wait_for(lambda: forwarder.client is not None and forwarder.client.last_error is not None)
    async_fire_time_changed(hass, dt_util.utcnow() + STATS_INTERVAL)
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.WORKSPACE_DISABLED))

    platform.set_workspace_disabled(False)
    await wait_for(lambda: forwarder.client.connected)
    assert not has_issue(hass, entry, MirrorIssue.WORKSPACE_DISABLED)


async def test_unloading_clears_delivery_issues(
    hass: HomeAssistant,
    entry: MockConfigEntry,
    platform: PlatformSimulator,
    start_forwarder: Callable[..., Any],
) -> None:
    """An approval request means nothing once the forwarder is unloaded."""
    await start_forwarder(wait=False)
    await platform.wait_for_operation()
    await wait_for(lambda: has_issue(hass, entry, MirrorIssue.PROVISIONING_REQUIRED))
    assert await hass.config_entries.async_unload(entry.entry_id)
    assert not has_issue(hass, entry, MirrorIssue.PROVISIONING_REQUIRED)
