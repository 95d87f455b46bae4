"""Sessions: shared between accounts, closed only when owned; the synchronous helper."""

from __future__ import annotations

import asyncio

import aiohttp

from custom_components.crownstone_spotflow.crownstone import CrownstoneCloud
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator


async def test_two_accounts_share_one_session(
    cloud_sim: CloudSimulator, websession: aiohttp.ClientSession
) -> None:
    """Each account keeps its own token and tree on the same session."""
    ann = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, websession, base_url=cloud_sim.url)
    bob = CrownstoneCloud("bob@example.com", "bob-password", websession, base_url=cloud_sim.url)
    await asyncio.gather(ann.async_initialize(), bob.async_initialize())
    assert ann.access_token != bob.access_token
    assert ann.user_id != bob.user_id
    assert len(ann.cloud_data) == 2
    assert len(bob.cloud_data) == 1
    assert ann.websession is bob.websession is websession
    await ann.async_close_session()
    await bob.async_close_session()
    assert not websession.closed
    await bob.async_synchronize()


async def test_owned_session_is_closed(cloud_sim: CloudSimulator) -> None:
    """Without a session the library makes one, and closes it on request."""
    cloud = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, base_url=cloud_sim.url + "/")
    assert cloud.base_url == cloud_sim.url
    await cloud.async_initialize()
    session = cloud.websession
    await cloud.async_close_session()
    assert session.closed
    await cloud.async_close_session()
