"""The options flow: provisioning with approval, its failures and recoveries, plain changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er, issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.forwarder import (
    OPTIONS_KEY,
    async_get_forwarder,
    outbox_path,
)
from custom_components.crownstone_spotflow.forwarder_repairs import ForwarderIssue, issue_id
from simulators.crownstone_cloud import CloudSimulator
from simulators.spotflow_platform import PlatformSimulator

from .conftest import demo_account_entry, forwarder_options, wait_for, wait_for_records


@pytest.fixture
def auto_approve() -> bool:
    """A person approves (or not) in these tests."""
    return False


@pytest.fixture
async def loaded_entry(
    hass: HomeAssistant, cloud: CloudSimulator, platform: PlatformSimulator
) -> AsyncGenerator[MockConfigEntry]:
    """Return the demo account's entry, set up (without platforms, for speed)."""
    entry = demo_account_entry(cloud)
    entry.add_to_hass(hass)
    with patch("custom_components.crownstone_spotflow.PLATFORMS", []):
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        yield entry
        await hass.async_block_till_done()
        await hass.config_entries.async_unload(entry.entry_id)
        await hass.async_block_till_done()


def form_input(platform: PlatformSimulator, **changes: Any) -> dict[str, Any]:
    """Return what a person enters to mirror into the simulator."""
    return {
        "enabled": True,
        "provisioning_token": platform.provisioning_token,
        "device_id": "ha-flow",
        "instance": platform.instance,
        "compression": "fastest",
        "include_attributes": True,
        "entities": {"include_domains": ["light"]},
        "advanced": {"ca_certificate": platform.ca_file.read_text()},
        **changes,
    }


async def submit_and_wait_for_code(
    hass: HomeAssistant, platform: PlatformSimulator, flow_id: str, user_input: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Submit the form; return the operation id and the progress step showing its code."""
    result = await hass.config_entries.options.async_configure(flow_id, user_input)
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    operation = await platform.wait_for_operation()
    # The frontend fetches the flow again whenever it progressed; so does the test.
    for _ in range(500):
        result = await hass.config_entries.options.async_configure(flow_id)
        if result.get("progress_action") == "wait_for_approval":
            break
        await asyncio.sleep(0.01)
    assert result["progress_action"] == "wait_for_approval"
    assert result["description_placeholders"]["verification_code"] == (operation.verification_code)
    return operation.id, result


async def finish(hass: HomeAssistant, flow_id: str) -> dict[str, Any]:
    """Let provisioning end and return the flow's next result."""
    # Provisioning runs as a background task: the frontend polls, and so does the test.
    async with asyncio.timeout(10):
        while True:
            result = await hass.config_entries.options.async_configure(flow_id)
            if result["type"] is not FlowResultType.SHOW_PROGRESS:
                break
            await asyncio.sleep(0.01)
    if result["type"] is FlowResultType.SHOW_PROGRESS_DONE:
        result = await hass.config_entries.options.async_configure(flow_id)
    return result  # type: ignore[return-value]


async def test_enable_with_approval(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """Enabling provisions the device, shows the code, and saves once approved."""
    coordinator = loaded_entry.runtime_data
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    assert result["description_placeholders"] == {"platform_settings": "{}"}

    operation_id, _ = await submit_and_wait_for_code(
        hass, platform, result["flow_id"], form_input(platform)
    )
    platform.approve(operation_id, device_id="ha-renamed")
    result = await finish(hass, result["flow_id"])
    assert result["type"] is FlowResultType.CREATE_ENTRY

    stored = loaded_entry.options[OPTIONS_KEY]
    assert stored["enabled"] is True
    assert stored["device_id"] == "ha-renamed"
    assert stored["compression"] == "fastest"
    assert stored["entity_filter"]["include_domains"] == ["light"]
    assert outbox_path(hass, stored["outbox"]).exists()
    await hass.async_block_till_done()
    # Applied by reloading the entry.
    assert loaded_entry.state is ConfigEntryState.LOADED
    assert loaded_entry.runtime_data is not coordinator
    # The reloaded forwarder starts from the registration under the approver's device id.
    forwarder = async_get_forwarder(hass, loaded_entry.entry_id)
    assert forwarder is not None
    await wait_for(lambda: forwarder.client is not None and forwarder.client.connected)
    assert forwarder.client.device_id == "ha-renamed"
    assert platform.pending_operations() == []


@pytest.mark.parametrize(
    ("act", "field", "error"),
    [
        ("cancel", "base", "provisioning_cancelled"),
        ("expire_operation", "base", "provisioning_expired"),
    ],
)
async def test_unapproved_operation_then_recover(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    platform: PlatformSimulator,
    act: str,
    field: str,
    error: str,
) -> None:
    """A cancelled or expired operation returns to the form; submitting again recovers."""
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    flow_id = result["flow_id"]
    operation_id, _ = await submit_and_wait_for_code(hass, platform, flow_id, form_input(platform))
    getattr(platform, act)(operation_id)
    result = await finish(hass, flow_id)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: error}
    # The token entered before is remembered (and never sent back to the browser).
    assert "provisioning_token" not in {
        key.schema for key in result["data_schema"].schema if key.description
    }
    operation_id, _ = await submit_and_wait_for_code(
        hass, platform, flow_id, form_input(platform, provisioning_token="")
    )
    platform.approve(operation_id)
    result = await finish(hass, flow_id)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options[OPTIONS_KEY]["device_id"] == "ha-flow"


async def test_bad_token_then_recover(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """A token the platform refuses is an error on its field; a good one recovers."""
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    flow_id = result["flow_id"]
    result = await hass.config_entries.options.async_configure(
        flow_id, form_input(platform, provisioning_token="not-the-token")
    )
    result = await finish(hass, flow_id)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"provisioning_token": "invalid_provisioning_token"}
    # The refused token is forgotten: an empty field is now an error.
    result = await hass.config_entries.options.async_configure(
        flow_id, form_input(platform, provisioning_token="")
    )
    assert result["errors"] == {"provisioning_token": "provisioning_token_required"}
    operation_id, _ = await submit_and_wait_for_code(hass, platform, flow_id, form_input(platform))
    platform.approve(operation_id)
    result = await finish(hass, flow_id)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_workspace_disabled(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """A disabled workspace is a clear error."""
    platform.set_workspace_disabled(True)
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    await hass.config_entries.options.async_configure(result["flow_id"], form_input(platform))
    result = await finish(hass, result["flow_id"])
    assert result["errors"] == {"base": "workspace_disabled"}


async def test_closing_the_flow_stops_provisioning(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """Closing the dialog while waiting cancels provisioning and removes its outbox; an open
    dialog never holds Home Assistant up."""
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    await submit_and_wait_for_code(hass, platform, result["flow_id"], form_input(platform))
    async with asyncio.timeout(2):
        await hass.async_block_till_done()
    hass.config_entries.options.async_abort(result["flow_id"])
    storage = Path(hass.config.path(".storage"))
    await wait_for(lambda: not list(storage.glob("*.spotflow.*")))
    assert OPTIONS_KEY not in loaded_entry.options


async def test_closing_the_flow_after_approval_removes_the_outbox(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """A device approved but never saved leaves no outbox behind when the dialog closes."""
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    operation_id, _ = await submit_and_wait_for_code(
        hass, platform, result["flow_id"], form_input(platform)
    )
    platform.approve(operation_id)
    await wait_for(
        lambda: not any(
            task.get_coro().__qualname__ == "ForwarderOptionsFlow._async_provision"  # type: ignore[union-attr]
            for task in asyncio.all_tasks()
        )
    )
    storage = Path(hass.config.path(".storage"))
    assert list(storage.glob("*.spotflow.db"))
    hass.config_entries.options.async_abort(result["flow_id"])
    await wait_for(lambda: not list(storage.glob("*.spotflow.*")))
    assert OPTIONS_KEY not in loaded_entry.options


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"device_id": "no"}, {"device_id": "invalid_device_id"}),
        ({"device_id": "bad id!"}, {"device_id": "invalid_device_id"}),
        ({"instance": "https://x"}, {"instance": "invalid_instance"}),
        ({"entities": {"include_domains": ["Light!"]}}, {"base": "invalid_domain"}),
        (
            {"advanced": {"ca_certificate": "-----BEGIN CERTIFICATE-----\nnope"}},
            {"base": "invalid_ca_certificate"},
        ),
        (
            {"advanced": {"ca_certificate": "/nonexistent/ca.pem"}},
            {"base": "invalid_ca_certificate"},
        ),
        ({"provisioning_token": ""}, {"provisioning_token": "provisioning_token_required"}),
    ],
)
async def test_invalid_input(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    platform: PlatformSimulator,
    changes: dict[str, Any],
    errors: dict[str, str],
) -> None:
    """Input the platform would refuse is caught in the form."""
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form_input(platform, **changes)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors


async def test_filter_change_and_disable_without_provisioning(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """Only the identity provisions; filter, stream and compression changes just save."""
    options = forwarder_options(platform, loaded_entry.entry_id, device_id="ha-flow")
    hass.config_entries.async_update_entry(loaded_entry, options=options)
    await hass.async_block_till_done()
    outbox = options[OPTIONS_KEY]["outbox"]

    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    # The stored token stays out of the form; the CA can be given as a path.
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        form_input(
            platform,
            provisioning_token="",
            stream="states",
            compression="smallest_size",
            entities={"exclude_entity_globs": ["sensor.*_debug"]},
            advanced={"ca_certificate": str(platform.ca_file)},
        ),
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    stored = loaded_entry.options[OPTIONS_KEY]
    assert stored["outbox"] == outbox
    assert stored["stream"] == "states"
    assert stored["compression"] == "smallest_size"
    assert stored["entity_filter"]["exclude_entity_globs"] == ["sensor.*_debug"]
    assert platform.pending_operations() == []

    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    assert result["data_schema"]({**form_input(platform), "enabled": False})
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form_input(platform, enabled=False)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    stored = loaded_entry.options[OPTIONS_KEY]
    assert stored["enabled"] is False
    # Kept, so enabling again needs no new approval.
    assert stored["outbox"] == outbox
    assert stored["provisioning_token"] == platform.provisioning_token


async def test_suggested_device_id(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """The form suggests a device id made from the location and the instance id."""
    hass.config.location_name = "Beach House"
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    suggested = {
        str(key.schema): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }
    assert suggested["device_id"].startswith("ha-beach-house-")
    assert 4 <= len(suggested["device_id"]) <= 90
    assert "provisioning_token" not in suggested


async def enable(
    hass: HomeAssistant, entry: MockConfigEntry, platform: PlatformSimulator
) -> dict[str, Any]:
    """Enable mirroring through the flow, approve, and return the connected forwarder."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    operation_id, _ = await submit_and_wait_for_code(
        hass, platform, result["flow_id"], form_input(platform, entities={})
    )
    platform.approve(operation_id)
    assert (await finish(hass, result["flow_id"]))["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    forwarder = async_get_forwarder(hass, entry.entry_id)
    assert forwarder is not None
    await wait_for(lambda: forwarder.client is not None and forwarder.client.connected)
    return dict(entry.options[OPTIONS_KEY])


async def test_new_token_keeps_the_backlog(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    platform: PlatformSimulator,
    tmp_path: Path,
) -> None:
    """Entering a new provisioning token provisions again in the same outbox: the records
    waiting from an outage are delivered afterwards, once each."""
    stored = await enable(hass, loaded_entry, platform)
    lamp = (
        er.async_get(hass)
        .async_get_or_create("light", DOMAIN, "lamp", config_entry=loaded_entry)
        .entity_id
    )
    forwarder = async_get_forwarder(hass, loaded_entry.entry_id)
    assert forwarder is not None
    await platform.stop_broker()
    await wait_for(lambda: not forwarder.client.connected)
    for value in range(20):
        hass.states.async_set(lamp, str(value))
    await wait_for(lambda: forwarder.client.stats.backlog_records == 20)

    # The workspace now accepts only another token (same data, same address).
    await platform.stop()
    rotated = PlatformSimulator(
        tmp_path / "platform",
        api_port=int(platform.instance.rpartition(":")[2]),
        provisioning_token="rotated-token",
    )
    await rotated.start()
    try:
        result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
        operation_id, _ = await submit_and_wait_for_code(
            hass,
            rotated,
            result["flow_id"],
            form_input(rotated, provisioning_token="rotated-token", entities={}),
        )
        rotated.approve(operation_id)
        assert (await finish(hass, result["flow_id"]))["type"] is FlowResultType.CREATE_ENTRY
        assert loaded_entry.options[OPTIONS_KEY]["outbox"] == stored["outbox"]
        await hass.async_block_till_done()
        found = await wait_for_records(rotated, lambda found: len(found) >= 21, device_id="ha-flow")
        assert [r["state"] for r in found[:20]] == [str(value) for value in range(20)]
        assert found[20]["snapshot"] is True
        assert [r["seq"] for r in found] == list(range(1, 22))
        assert rotated.pending_operations() == []
    finally:
        await hass.config_entries.async_unload(loaded_entry.entry_id)
        await rotated.stop()


async def test_submitting_again_restarts_a_stopped_forwarder(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """After a cancelled approval at runtime, submitting the unchanged options starts again,
    as the repair says."""
    await enable(hass, loaded_entry, platform)
    forwarder = async_get_forwarder(hass, loaded_entry.entry_id)
    assert forwarder is not None
    platform.revoke_registration("ha-flow")
    platform.cancel((await platform.wait_for_operation()).id)
    cancelled = issue_id(loaded_entry.entry_id, ForwarderIssue.PROVISIONING_CANCELLED)
    await wait_for(lambda: ir.async_get(hass).async_get_issue(DOMAIN, cancelled) is not None)
    assert forwarder.client is None

    options = dict(loaded_entry.options)
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form_input(platform, provisioning_token="", entities={})
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options == options
    platform.approve((await platform.wait_for_operation()).id)
    await hass.async_block_till_done()
    restarted = async_get_forwarder(hass, loaded_entry.entry_id)
    assert restarted is not None
    await wait_for(lambda: restarted.client is not None and restarted.client.connected)
    assert ir.async_get(hass).async_get_issue(DOMAIN, cancelled) is None
