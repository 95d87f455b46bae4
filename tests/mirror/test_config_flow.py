"""Adding the mirror: the menu, provisioning with the code in the first progress step, failures
shown on the form and recovered from, abandoned flows, one mirror per Home Assistant."""

from __future__ import annotations

import asyncio
from pathlib import Path
import socket
import ssl
import struct
from typing import Any

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.config_flow import CrownstoneConfigFlow
from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.mirror.form import _read_ca_certificate
from custom_components.crownstone_spotflow.mirror.settings import MIRROR_DATA
from simulators.spotflow_platform import PlatformSimulator

from .conftest import code_shown_later, supervisor_of, wait_for


@pytest.fixture
def auto_approve() -> bool:
    """A person approves (or not) in these tests."""
    return False


def mirror_input(platform: PlatformSimulator, **changes: Any) -> dict[str, Any]:
    """Return what a person enters to mirror into the simulator."""
    return {
        "provisioning_token": platform.provisioning_token,
        "device_id": "ha-flow",
        "instance": platform.instance,
        "advanced": {"ca_certificate": platform.ca_file.read_text()},
        **changes,
    }


async def start(hass: HomeAssistant) -> str:
    """Open the add dialog and choose the mirror; return the flow id."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["account", "mirror"]
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "mirror"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "mirror"
    return result["flow_id"]


async def submit(
    hass: HomeAssistant, platform: PlatformSimulator, flow_id: str, user_input: dict[str, Any]
) -> str:
    """Submit; the very first progress step carries the code. Return the operation id."""
    result = await hass.config_entries.flow.async_configure(flow_id, user_input)
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    assert result["progress_action"] == "wait_for_approval"
    operation = (await platform.wait_for_operation()).id
    code = next(op for op in platform.pending_operations() if op.id == operation)
    assert result["description_placeholders"]["verification_code"] == code.verification_code
    return operation


async def outcome(hass: HomeAssistant, flow_id: str) -> dict[str, Any]:
    """Wait until the progress step ends (Home Assistant moves the flow on), return the result."""
    await wait_for(
        lambda: not any(
            flow["flow_id"] == flow_id and flow["step_id"] == "mirror_provision"
            for flow in hass.config_entries.flow.async_progress()
        )
    )
    result = await hass.config_entries.flow.async_configure(flow_id)
    return dict(result)


async def test_add_the_mirror(hass: HomeAssistant, platform: PlatformSimulator) -> None:
    """The code is on the first progress step; approval creates the entry, which mirrors."""
    flow_id = await start(hass)
    operation = await submit(hass, platform, flow_id, mirror_input(platform))
    platform.approve(operation, device_id="ha-renamed")
    result = await outcome(hass, flow_id)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    assert entry.data == MIRROR_DATA
    assert entry.options["device_id"] == "ha-renamed"
    assert not any(entry.options["entity_filter"].values())
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    supervisor = supervisor_of(entry)  # type: ignore[arg-type]
    await wait_for(lambda: supervisor.client is not None and supervisor.client.connected)
    assert supervisor.client is not None
    assert supervisor.client.device_id == "ha-renamed"

    # One mirror per Home Assistant.
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "mirror"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "single_instance_allowed"
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("act", "error"),
    [("cancel", "provisioning_cancelled"), ("expire_operation", "provisioning_expired")],
)
async def test_unapproved_then_recover(
    hass: HomeAssistant, platform: PlatformSimulator, act: str, error: str
) -> None:
    """A cancelled or expired request returns to the form; submitting again recovers."""
    flow_id = await start(hass)
    operation = await submit(hass, platform, flow_id, mirror_input(platform))
    getattr(platform, act)(operation)
    result = await outcome(hass, flow_id)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": error}
    assert list(Path(hass.config.path(".storage")).glob("*.spotflow.*")) == []
    platform.approve(await submit(hass, platform, flow_id, mirror_input(platform)))
    assert (await outcome(hass, flow_id))["type"] is FlowResultType.CREATE_ENTRY
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


@pytest.mark.parametrize(
    ("changes", "setup", "errors"),
    [
        (
            {"provisioning_token": "nope"},
            None,
            {"provisioning_token": "invalid_provisioning_token"},
        ),
        ({}, "set_workspace_disabled", {"base": "workspace_disabled"}),
        # No extra CA: the simulator's certificate is not trusted.
        ({"advanced": {}}, None, {"base": "untrusted_certificate"}),
    ],
)
async def test_refusals_are_form_errors(
    hass: HomeAssistant,
    platform: PlatformSimulator,
    changes: dict[str, Any],
    setup: str | None,
    errors: dict[str, str],
) -> None:
    """What the platform refuses at once is an error on the form, with no spinner and nothing
    left on disk; fixing it recovers."""
    if setup is not None:
        getattr(platform, setup)(True)
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, mirror_input(platform, **changes)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    assert list(Path(hass.config.path(".storage")).glob("*.spotflow.*")) == []
    if setup is not None:
        getattr(platform, setup)(False)
    await submit(hass, platform, flow_id, mirror_input(platform))
    hass.config_entries.flow.async_abort(flow_id)
    await wait_for(lambda: not list(Path(hass.config.path(".storage")).glob("*.spotflow.*")))


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"device_id": "no"}, {"device_id": "invalid_device_id"}),
        ({"instance": "https://x"}, {"instance": "invalid_instance"}),
        (
            {"advanced": {"ca_certificate": "/nonexistent/ca.pem"}},
            {"base": "invalid_ca_certificate"},
        ),
        ({"provisioning_token": ""}, {"provisioning_token": "provisioning_token_required"}),
    ],
)
async def test_invalid_input(
    hass: HomeAssistant,
    platform: PlatformSimulator,
    changes: dict[str, Any],
    errors: dict[str, str],
) -> None:
    """Input the platform would refuse is caught in the form; the token is never shown again."""
    hass.config.location_name = "Beach House"
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, mirror_input(platform, **changes)
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == errors
    suggested = {
        str(key.schema): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }
    assert "provisioning_token" not in suggested


async def test_suggested_device_id(hass: HomeAssistant, platform: PlatformSimulator) -> None:
    """The form suggests a device id made from the location and the instance id."""
    hass.config.location_name = "Beach House"
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "mirror"}
    )
    suggested = {
        str(key.schema): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }
    assert suggested["device_id"].startswith("ha-beach-house-")
    assert 4 <= len(suggested["device_id"]) <= 90


async def test_closing_the_dialog_stops_at_once(
    hass: HomeAssistant, platform: PlatformSimulator
) -> None:
    """Closing the dialog while waiting for approval stops asking the platform and removes
    the unsaved outbox; an open dialog never holds Home Assistant up."""
    flow_id = await start(hass)
    operation = await submit(hass, platform, flow_id, mirror_input(platform))
    storage = Path(hass.config.path(".storage"))
    assert list(storage.glob("*.spotflow.db"))
    # A guard, not a wait: a dialog holding Home Assistant up would block until approval.
    async with asyncio.timeout(30):
        await hass.async_block_till_done()
    hass.config_entries.flow.async_abort(flow_id)
    await wait_for(lambda: not list(storage.glob("*.spotflow.*")))
    # Home Assistant 2026.10 keeps plain futures there too, which have no name.
    await wait_for(
        lambda: not any(
            isinstance(task, asyncio.Task) and "spotflow provisioning" in task.get_name()
            for task in hass._background_tasks
        )
    )
    # Approving now creates nothing.
    platform.approve(operation)
    await hass.async_block_till_done()
    assert hass.config_entries.async_entries(DOMAIN) == []


async def test_platform_slow_to_give_a_code(
    hass: HomeAssistant, platform: PlatformSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A platform that takes longer than the wait for the code gets a progress step without
    one; the code follows as soon as it is known."""
    monkeypatch.setattr("custom_components.crownstone_spotflow.mirror.config_flow.CODE_WAIT", 0)
    flow_id = await start(hass)
    manager = hass.config_entries.flow
    result = await manager.async_configure(flow_id, mirror_input(platform))
    platform.approve(await code_shown_later(hass, manager, flow_id, result, platform))
    assert (await outcome(hass, flow_id))["type"] is FlowResultType.CREATE_ENTRY
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_outbox_that_cannot_be_written(
    hass: HomeAssistant, platform: PlatformSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure no form field explains (here the outbox cannot be created) is reported on the
    form and logged; submitting again once it is fixed works."""
    flow_id = await start(hass)
    storage = Path(hass.config.path(".storage"))
    storage.mkdir(exist_ok=True)
    blocked = storage.with_name(".storage-moved")
    storage.rename(blocked)
    storage.write_text("not a folder")
    try:
        result = await hass.config_entries.flow.async_configure(flow_id, mirror_input(platform))
    finally:
        storage.unlink()
        blocked.rename(storage)
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_provision"}
    assert "Provisioning the Spotflow device failed" in caplog.text
    platform.approve(await submit(hass, platform, flow_id, mirror_input(platform)))
    assert (await outcome(hass, flow_id))["type"] is FlowResultType.CREATE_ENTRY
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


def test_ca_certificate_that_is_not_one() -> None:
    """PEM-looking text that is no certificate is refused like an unreadable file."""
    with pytest.raises(ValueError, match="not a PEM CA certificate"):
        _read_ca_certificate("-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----")


def test_only_the_mirror_has_options(hass: HomeAssistant) -> None:
    """Crownstone accounts have nothing to configure; the mirror has its options."""
    account = MockConfigEntry(domain=DOMAIN, data={"email": "a@b.c"})
    mirror = MockConfigEntry(domain=DOMAIN, data=MIRROR_DATA)
    assert not CrownstoneConfigFlow.async_supports_options_flow(account)
    assert CrownstoneConfigFlow.async_supports_options_flow(mirror)


async def test_two_dialogs_at_once(hass: HomeAssistant, platform: PlatformSimulator) -> None:
    """A dialog left open elsewhere (a closed browser tab) does not block adding the mirror; the
    first approved creates it, and the other ends, leaving nothing behind."""
    first = await start(hass)
    second = await start(hass)
    first_operation = await submit(hass, platform, first, mirror_input(platform))
    result = await hass.config_entries.flow.async_configure(
        second, mirror_input(platform, device_id="ha-second")
    )
    code = result["description_placeholders"]["verification_code"]
    (second_operation,) = (
        op.id for op in platform.pending_operations() if op.verification_code == code
    )
    platform.approve(first_operation)
    assert (await outcome(hass, first))["type"] is FlowResultType.CREATE_ENTRY
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    # Home Assistant ends the other dialog; it stops asking and removes its outbox.
    assert second not in {flow["flow_id"] for flow in hass.config_entries.flow.async_progress()}
    storage = Path(hass.config.path(".storage"))
    await wait_for(
        lambda: [path.name for path in storage.glob("*.spotflow.db")] == [entry.options["outbox"]]
    )
    platform.approve(second_operation)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_connection_reset_during_the_handshake_is_the_peers_business(
    hass: HomeAssistant, platform: PlatformSimulator
) -> None:
    """A client that gives up on a TLS connection before the handshake ends (a dialog closed
    while it connected) is no failure of the simulator that shares the test's loop."""
    host, port = platform.instance.rsplit(":", 1)
    abandoned = socket.socket()
    abandoned.setblocking(False)
    await hass.loop.sock_connect(abandoned, (host, int(port)))
    # Closing with a zero linger sends a reset instead of an orderly end.
    abandoned.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    abandoned.close()
    # A whole handshake after it takes several turns of the loop, so the server has met the
    # reset by the time it ends.
    context = ssl.create_default_context(cafile=platform.ca_file)
    _, writer = await asyncio.open_connection(host, int(port), ssl=context)
    writer.close()
    await writer.wait_closed()
