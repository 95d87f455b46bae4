"""Upgrading from 1.2, which kept the mirror in a Crownstone account's options."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.crownstone_spotflow.const import CONF_PASSWORD_SHA1, DOMAIN
from custom_components.crownstone_spotflow.crownstone import hash_password
from custom_components.crownstone_spotflow.mirror.settings import (
    MIRROR_DATA,
    MirrorSettings,
    outbox_path,
)
from custom_components.crownstone_spotflow.spotflow import DeviceClient
from simulators.crownstone_cloud import DEMO_PASSWORD, CloudSimulator
from simulators.spotflow_platform import PlatformSimulator

from .conftest import (
    DEVICE_ID,
    FAST_OUTBOX,
    demo_account_entry,
    mirror_options,
    records,
    wait_for,
    wait_for_records,
)

BACKLOG = 25


async def test_account_of_release_1_2_with_a_backlog(
    hass: HomeAssistant, cloud: CloudSimulator, platform: PlatformSimulator
) -> None:
    """The first start turns an account that mirrored into an account plus a mirror entry with
    the same outbox and registration: no new approval, and the backlog is delivered."""
    legacy = demo_account_entry(cloud)
    data = {key: value for key, value in legacy.data.items() if key != "password"}
    data[CONF_PASSWORD_SHA1] = hash_password(DEMO_PASSWORD)
    options = mirror_options(platform, legacy.entry_id)
    account = MockConfigEntry(
        domain=DOMAIN,
        title=legacy.title,
        unique_id=legacy.unique_id,
        data=data,
        options={"spotflow": options},
        version=1,
        minor_version=2,
    )
    account.add_to_hass(hass)
    old_device = dr.async_get(hass).async_get_or_create(
        config_entry_id=account.entry_id, identifiers={(DOMAIN, f"{account.entry_id}_spotflow")}
    )

    # What 1.2 left behind: a registered device with records that never reached the platform.
    settings = MirrorSettings.from_options(options)
    assert settings.outbox is not None
    db = outbox_path(hass, settings.outbox)
    ca_file = db.with_name("legacy-ca.pem")
    ca_file.write_text(platform.ca_file.read_text())
    client = await DeviceClient.start(
        DEVICE_ID,
        settings.provisioning_token,
        db,
        instance=settings.instance,
        websession=async_get_clientsession(hass),
        ca_file=ca_file,
        outbox=FAST_OUTBOX,
    )
    await wait_for(lambda: client.connected)
    await platform.stop_broker()
    await wait_for(lambda: not client.connected)
    sender = client.create_stream_sender()
    for value in range(BACKLOG):
        sender.enqueue_record_nowait(f'{{"seq": {value + 1}, "state": "{value}"}}'.encode())
    await client.close()
    await platform.start_broker()
    operations = len(platform.pending_operations())
    assert records(platform) == []

    assert await hass.config_entries.async_setup(account.entry_id)
    await hass.async_block_till_done()
    assert account.state is ConfigEntryState.LOADED
    assert (account.version, account.minor_version) == (1, 3)
    assert "spotflow" not in account.options
    assert dr.async_get(hass).async_get(old_device.id) is None

    await wait_for(
        lambda: any(
            entry.data == MIRROR_DATA for entry in hass.config_entries.async_entries(DOMAIN)
        )
    )
    mirror = next(e for e in hass.config_entries.async_entries(DOMAIN) if e.data == MIRROR_DATA)
    assert mirror.options["outbox"] == settings.outbox
    await wait_for(lambda: mirror.state is ConfigEntryState.LOADED)
    found = await wait_for_records(platform, lambda found: len(found) >= BACKLOG)
    assert [record["state"] for record in found[:BACKLOG]] == [str(v) for v in range(BACKLOG)]
    assert len(platform.pending_operations()) == operations
    await hass.config_entries.async_unload(mirror.entry_id)
    await hass.config_entries.async_unload(account.entry_id)
