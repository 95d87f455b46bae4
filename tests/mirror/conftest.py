"""Fixtures of the mirror tests: a real Spotflow platform simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from contextlib import contextmanager
import json
from pathlib import Path
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_EMAIL, CONF_PASSWORD
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowManager, FlowResultType
from homeassistant.helpers import entity_registry as er
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import CONF_CLOUD_URL, CONF_SSE_URL, DOMAIN
from custom_components.crownstone_spotflow.mirror import settings as mirror_settings
from custom_components.crownstone_spotflow.mirror.settings import (
    MIRROR_DATA,
    MIRROR_UNIQUE_ID,
    MirrorSettings,
    new_outbox_name,
)
from custom_components.crownstone_spotflow.mirror.supervisor import MirrorSupervisor
from custom_components.crownstone_spotflow.spotflow import OutboxConfig
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator
from simulators.spotflow_platform import PlatformSimulator

DEVICE_ID = "ha-test"
# Commits and packs quickly, so records reach the simulator within a test's patience.
FAST_OUTBOX = OutboxConfig(commit_interval=0.01, pack_linger=0.01, synchronous="NORMAL")
# What asyncio's debug mode reports when a server's incoming connection ends before it is set up.
ABANDONED_INCOMING_CONNECTION = "Error on transport creation for incoming connection"


@pytest.fixture(autouse=True)
def config_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """Keep outbox files in the test's own folder (never in the test plugin's config)."""
    hass.config.config_dir = str(tmp_path / "config")
    (tmp_path / "config" / ".storage").mkdir(parents=True)
    return tmp_path / "config"


@pytest.fixture(autouse=True)
def fast_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll for approval and retry the platform quickly; commit and pack quickly."""
    monkeypatch.setattr(mirror_settings, "PROVISIONING_POLL_INTERVAL", 0.05)
    monkeypatch.setattr(mirror_settings, "RETRY_INTERVAL", 0.2)
    monkeypatch.setattr(mirror_settings, "OUTBOX_CONFIG", FAST_OUTBOX)


@pytest.fixture
def auto_approve() -> bool:
    """Return whether the platform approves provisioning by itself."""
    return True


@pytest.fixture
async def cloud(hass: HomeAssistant, socket_enabled: None) -> AsyncGenerator[CloudSimulator]:
    """Run the Crownstone demo home, for tests that set the integration's entry up."""
    simulator = CloudSimulator(phone_delay=0.01, ping_interval=1.0)
    await simulator.start(host="127.0.0.1", port=0)
    yield simulator
    await simulator.stop()


@pytest.fixture
def registration_token_ttl() -> float:
    """Return how long the platform's registration tokens live, in seconds."""
    return 7 * 86400


@contextmanager
def peers_may_abandon_connections(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Leave unreported a TLS connection a client gave up on before its handshake ended.

    In the tests' debug mode asyncio reports every such connection to a server on the loop as a
    loop error, which fails the test. For a server that is a peer going away (a dialog closed, a
    task cancelled, a certificate refused, a process killed); nothing else goes unreported.
    """
    report = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ABANDONED_INCOMING_CONNECTION and isinstance(
            context.get("exception"), OSError
        ):
            return
        if report is not None:
            report(loop, context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        loop.set_exception_handler(report)


@pytest.fixture
async def platform(
    hass: HomeAssistant,
    tmp_path: Path,
    socket_enabled: None,
    auto_approve: bool,
    registration_token_ttl: float,
) -> AsyncGenerator[PlatformSimulator]:
    """Run the Spotflow platform simulator on the hass fixture's loop."""
    with peers_may_abandon_connections(hass.loop):
        simulator = PlatformSimulator(
            tmp_path / "platform",
            auto_approve=auto_approve,
            registration_token_ttl=registration_token_ttl,
        )
        await simulator.start()
        yield simulator
        await simulator.stop()


def demo_account_entry(cloud: CloudSimulator) -> MockConfigEntry:
    """Return a config entry of the simulator's demo account, not yet added."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Crownstone (test)",
        unique_id=cloud.user_id(DEMO_EMAIL),
        data={
            CONF_EMAIL: DEMO_EMAIL,
            CONF_PASSWORD: DEMO_PASSWORD,
            CONF_CLOUD_URL: cloud.url,
            CONF_SSE_URL: cloud.sse_url,
        },
    )


def mirror_options(platform: PlatformSimulator, entry_id: str, **changes: Any) -> dict[str, Any]:
    """Return mirror entry options that mirror into the simulator."""
    settings = MirrorSettings(
        enabled=True,
        provisioning_token=platform.provisioning_token,
        device_id=DEVICE_ID,
        instance=platform.instance,
        ca_certificate=platform.ca_file.read_text(),
        outbox=new_outbox_name(entry_id),
    )
    return {**settings.as_options(), **changes}


def mirror_entry(options: dict[str, Any] | None = None) -> MockConfigEntry:
    """Return a mirror entry, not yet added."""
    return MockConfigEntry(
        domain=DOMAIN,
        title="Mirror to Spotflow",
        unique_id=MIRROR_UNIQUE_ID,
        data=MIRROR_DATA,
        options=options or {},
        version=1,
        minor_version=3,
    )


@pytest.fixture
async def entry(
    hass: HomeAssistant, platform: PlatformSimulator
) -> AsyncGenerator[MockConfigEntry]:
    """Return the mirror entry (not set up) that mirrors into the simulator.

    It is unloaded before the simulator stops.
    """
    entry = mirror_entry()
    entry.add_to_hass(hass)
    hass.config_entries.async_update_entry(entry, options=mirror_options(platform, entry.entry_id))
    yield entry
    if entry.state is ConfigEntryState.LOADED:
        assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


def supervisor_of(entry: MockConfigEntry) -> MirrorSupervisor:
    """Return the running supervisor of a loaded mirror entry."""
    supervisor = entry.runtime_data.supervisor
    assert isinstance(supervisor, MirrorSupervisor)
    return supervisor


@pytest.fixture
def start_forwarder(hass: HomeAssistant, entry: MockConfigEntry) -> Callable[..., Any]:
    """Return a function that sets the mirror entry up and waits until it is connected."""

    async def start(*, wait: bool = True) -> MirrorSupervisor:
        assert await hass.config_entries.async_setup(entry.entry_id)
        started = supervisor_of(entry)
        if wait:
            await wait_for(lambda: started.client is not None and started.client.connected)
        return started

    return start


def mirror_entity_id(hass: HomeAssistant, entry: MockConfigEntry, key: str) -> str:
    """Return the entity id of one of the mirror's own entities, found by unique id."""
    for platform in ("sensor", "binary_sensor"):
        entity_id = er.async_get(hass).async_get_entity_id(
            platform, DOMAIN, f"{entry.entry_id}_spotflow_{key}"
        )
        if entity_id is not None:
            return entity_id
    raise AssertionError(f"no mirror entity {key}")


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until a condition holds, polling the loop."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (conditions span the simulator and hass)
            await asyncio.sleep(0.01)


def records(platform: PlatformSimulator, device_id: str = DEVICE_ID) -> list[dict[str, Any]]:
    """Return every record the platform stored from the device, in order."""
    return [
        json.loads(line)
        for message in platform.messages(device_id)
        for line in message.payload.splitlines()
        if line
    ]


async def wait_for_records(
    platform: PlatformSimulator,
    condition: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 10.0,  # noqa: ASYNC109
    device_id: str = DEVICE_ID,
) -> list[dict[str, Any]]:
    """Wait until the stored records (of one device) satisfy a condition; return them."""
    await wait_for(lambda: condition(records(platform, device_id)), timeout)
    return records(platform, device_id)


async def code_shown_later(
    hass: HomeAssistant,
    manager: FlowManager,
    flow_id: str,
    result: Mapping[str, Any],
    platform: PlatformSimulator,
) -> str:
    """A progress step without a code gets one once the platform gives it; return the operation.

    The flow is read again the way the frontend does when a progress task ends.
    """
    assert result["type"] is FlowResultType.SHOW_PROGRESS
    assert result["progress_action"] == "start_provisioning"
    operation = await platform.wait_for_operation()
    async with asyncio.timeout(10):
        while result["progress_action"] != "wait_for_approval":
            await hass.async_block_till_done()
            result = await manager.async_configure(flow_id)
    assert result["description_placeholders"]["verification_code"] == (operation.verification_code)
    return operation.id
