"""The mirror's options: plain changes just save; a new identity provisions again in the same
outbox (the backlog is kept); closing the dialog restarts the mirror as it was."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.mirror.repairs import MirrorIssue, issue_id
from simulators.spotflow_platform import PlatformSimulator

from .conftest import DEVICE_ID, code_shown_later, supervisor_of, wait_for, wait_for_records


@pytest.fixture
def auto_approve() -> bool:
    """A person approves (or not) in these tests."""
    return False


@pytest.fixture
async def loaded_entry(
    hass: HomeAssistant, entry: MockConfigEntry, platform: PlatformSimulator
) -> AsyncGenerator[MockConfigEntry]:
    """Return the mirror entry, set up, approved and connected."""
    assert await hass.config_entries.async_setup(entry.entry_id)
    platform.approve((await platform.wait_for_operation()).id)
    await wait_connected(entry)
    return entry


async def wait_connected(entry: MockConfigEntry, device_id: str = DEVICE_ID) -> None:
    """Wait until the (maybe reloaded) mirror is connected under a device id."""

    def connected() -> bool:
        if entry.state is not ConfigEntryState.LOADED:
            return False
        client = supervisor_of(entry).client
        return client is not None and client.connected and client.device_id == device_id

    await wait_for(connected)


def form_input(platform: PlatformSimulator, **changes: Any) -> dict[str, Any]:
    """Return what a person enters in the options (the stored token kept)."""
    return {
        "enabled": True,
        "provisioning_token": "",
        "device_id": DEVICE_ID,
        "instance": platform.instance,
        "compression": "fastest",
        "include_attributes": True,
        "entities": {},
        "advanced": {"ca_certificate": platform.ca_file.read_text()},
        **changes,
    }


async def provision(
    hass: HomeAssistant, platform: PlatformSimulator, entry: MockConfigEntry, **changes: Any
) -> tuple[str, str]:
    """Submit a new identity; the first progress step carries the code. Return flow, operation."""
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form_input(platform, **changes)
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    assert result["progress_action"] == "wait_for_approval"
    operation = await platform.wait_for_operation()
    assert result["description_placeholders"]["verification_code"] == (operation.verification_code)
    return result["flow_id"], operation.id


async def finish(hass: HomeAssistant, flow_id: str) -> dict[str, Any]:
    """Wait until the progress step ends, then take the next step as the frontend does."""
    await wait_for(
        lambda: not any(
            flow["flow_id"] == flow_id and flow["step_id"] == "provision"
            for flow in hass.config_entries.options.async_progress()
        )
    )
    return dict(await hass.config_entries.options.async_configure(flow_id))


async def test_plain_changes_and_disable_without_provisioning(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """Only the identity provisions; filter, stream and compression changes just save."""
    outbox = loaded_entry.options["outbox"]
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    assert result["description_placeholders"] == {"platform_settings": "none"}
    # The stored token stays out of the form; the CA can be given as a path.
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        form_input(
            platform,
            stream="states",
            compression="smallest_size",
            entities={"exclude_entity_globs": ["sensor.*_debug"]},
            advanced={"ca_certificate": str(platform.ca_file)},
        ),
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    stored = loaded_entry.options
    assert stored["outbox"] == outbox
    assert stored["stream"] == "states"
    assert stored["compression"] == "smallest_size"
    assert stored["entity_filter"]["exclude_entity_globs"] == ["sensor.*_debug"]
    assert platform.pending_operations() == []
    await wait_connected(loaded_entry)

    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form_input(platform, entities={"include_domains": ["Light!"]})
    )
    assert result["errors"] == {"base": "invalid_domain"}
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form_input(platform, enabled=False)
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    stored = loaded_entry.options
    assert stored["enabled"] is False
    # Kept, so enabling again needs no new approval.
    assert stored["outbox"] == outbox
    assert stored["provisioning_token"] == platform.provisioning_token
    await wait_for(lambda: loaded_entry.state is ConfigEntryState.LOADED)
    await hass.async_block_till_done()
    assert loaded_entry.runtime_data.supervisor is None


async def test_new_token_keeps_the_backlog(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    platform: PlatformSimulator,
    tmp_path: Path,
) -> None:
    """Entering a new provisioning token and device id provisions again in the same outbox: the
    records waiting from an outage are delivered afterwards, once each."""
    supervisor = supervisor_of(loaded_entry)
    await platform.stop_broker()
    await wait_for(lambda: not supervisor.client.connected)
    for value in range(20):
        hass.states.async_set("light.lamp", str(value))
    await wait_for(lambda: supervisor.client.stats.backlog_records >= 20)

    # The workspace now accepts only another token (same data, same address).
    await platform.stop()
    rotated = PlatformSimulator(
        tmp_path / "platform",
        api_port=int(platform.instance.rpartition(":")[2]),
        provisioning_token="rotated-token",
    )
    await rotated.start()
    try:
        flow_id, operation = await provision(
            hass, rotated, loaded_entry, provisioning_token="rotated-token", device_id="ha-flow"
        )
        rotated.approve(operation)
        assert (await finish(hass, flow_id))["type"] is FlowResultType.CREATE_ENTRY
        assert loaded_entry.options["device_id"] == "ha-flow"
        await wait_connected(loaded_entry, "ha-flow")
        found = await wait_for_records(rotated, lambda found: len(found) >= 22, device_id="ha-flow")
        changes = [r["state"] for r in found if r.get("entity_id") == "light.lamp"]
        assert changes[:20] == [str(value) for value in range(20)]
        # The new client's snapshot, then (no recorder here) the time between the two clients.
        assert found[20]["snapshot"] is True
        assert found[21]["gap_possible"] is True
        assert rotated.pending_operations() == []
    finally:
        await hass.config_entries.async_unload(loaded_entry.entry_id)
        await rotated.stop()


async def test_closing_the_dialog_restarts_the_mirror_as_it_was(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """Closing the dialog while a new identity waits for approval stops asking the platform;
    the mirror starts again from its outbox, which stays."""
    options = dict(loaded_entry.options)
    flow_id, _ = await provision(hass, platform, loaded_entry, device_id="ha-other")
    hass.config_entries.options.async_abort(flow_id)
    await wait_connected(loaded_entry)
    assert loaded_entry.options == options
    assert Path(hass.config.path(".storage"), options["outbox"]).exists()


async def test_submitting_again_restarts_a_stopped_mirror(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """After a cancelled approval at runtime, submitting the unchanged options starts again,
    as the repair says."""
    supervisor = supervisor_of(loaded_entry)
    platform.revoke_registration(DEVICE_ID)
    platform.cancel((await platform.wait_for_operation()).id)
    cancelled = issue_id(loaded_entry.entry_id, MirrorIssue.PROVISIONING_CANCELLED)
    await wait_for(lambda: ir.async_get(hass).async_get_issue(DOMAIN, cancelled) is not None)
    assert supervisor.client is None

    options = dict(loaded_entry.options)
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form_input(platform, compression="uncompressed")
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert loaded_entry.options["outbox"] == options["outbox"]
    platform.approve((await platform.wait_for_operation()).id)
    await wait_connected(loaded_entry)
    assert ir.async_get(hass).async_get_issue(DOMAIN, cancelled) is None


async def test_unchanged_options_change_nothing(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """Submitting the options as they are keeps the running mirror: no reload, no approval."""

    async def submit_the_form_as_it_is() -> None:
        result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], form_input(platform)
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        await hass.async_block_till_done()

    # The first time writes the form's own shape of the options (an empty filter spelled out).
    await submit_the_form_as_it_is()
    await wait_connected(loaded_entry)
    supervisor = supervisor_of(loaded_entry)
    options = dict(loaded_entry.options)

    await submit_the_form_as_it_is()
    assert dict(loaded_entry.options) == options
    assert supervisor_of(loaded_entry) is supervisor
    assert platform.pending_operations() == []


async def test_refused_token_then_recover(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """A token the platform refuses is a form error at once (and is not kept in the form);
    the right one provisions."""
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], form_input(platform, provisioning_token="nope", device_id="ha-other")
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"provisioning_token": "invalid_provisioning_token"}
    suggested = {
        str(key.schema): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }
    assert suggested.get("provisioning_token") in (None, "")
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        form_input(platform, provisioning_token=platform.provisioning_token, device_id="ha-other"),
    )
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    platform.approve((await platform.wait_for_operation()).id)
    assert (await finish(hass, result["flow_id"]))["type"] is (FlowResultType.CREATE_ENTRY)
    await wait_connected(loaded_entry, "ha-other")


async def test_cancelled_approval_returns_to_the_form(
    hass: HomeAssistant, loaded_entry: MockConfigEntry, platform: PlatformSimulator
) -> None:
    """A request cancelled in the portal is an error on the form; closing the dialog then
    restarts the mirror as it was."""
    options = dict(loaded_entry.options)
    flow_id, operation = await provision(hass, platform, loaded_entry, device_id="ha-other")
    platform.cancel(operation)
    result = await finish(hass, flow_id)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "provisioning_cancelled"}
    hass.config_entries.options.async_abort(flow_id)
    await wait_connected(loaded_entry)
    assert loaded_entry.options == options


async def test_platform_slow_to_give_a_code(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    platform: PlatformSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a code within the wait, the progress step says it is asking; the code follows."""
    monkeypatch.setattr("custom_components.crownstone_spotflow.mirror.options_flow.CODE_WAIT", 0)
    manager = hass.config_entries.options
    result = await manager.async_init(loaded_entry.entry_id)
    flow_id = result["flow_id"]
    result = await manager.async_configure(flow_id, form_input(platform, device_id="ha-other"))
    platform.approve(await code_shown_later(hass, manager, flow_id, result, platform))
    assert (await finish(hass, flow_id))["type"] is FlowResultType.CREATE_ENTRY
    await wait_connected(loaded_entry, "ha-other")


async def test_outbox_that_cannot_be_written(
    hass: HomeAssistant,
    loaded_entry: MockConfigEntry,
    platform: PlatformSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure no form field explains is reported on the form and logged."""
    options = dict(loaded_entry.options)
    result = await hass.config_entries.options.async_init(loaded_entry.entry_id)
    storage = Path(hass.config.path(".storage"))
    blocked = storage.with_name(".storage-moved")
    storage.rename(blocked)
    storage.write_text("not a folder")
    try:
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], form_input(platform, device_id="ha-other")
        )
    finally:
        storage.unlink()
        blocked.rename(storage)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_provision"}
    assert "Provisioning the Spotflow device failed" in caplog.text
    hass.config_entries.options.async_abort(result["flow_id"])
    await wait_connected(loaded_entry)
    assert loaded_entry.options == options
