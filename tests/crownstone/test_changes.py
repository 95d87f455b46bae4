"""What events and reads change in the data tree, and which objects the library says changed."""

from __future__ import annotations

import asyncio

from custom_components.crownstone_spotflow.crownstone import (
    AbilityChangeEvent,
    Changes,
    CrownstoneCloud,
    DataChangeSubType,
    PresenceEvent,
    PresenceSubType,
    SwitchStateUpdateEvent,
)
from simulators.crownstone_cloud import DEMO_EMAIL, CloudSimulator


async def test_events_report_what_they_changed(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A switch state names its stone, presence its rooms, sphere and person; no request."""
    home = cloud_sim.sphere_id("Home")
    lamp = cloud_sim.stone_id("Desk lamp")
    kitchen = cloud_sim.location_id("Kitchen")
    living = cloud_sim.location_id("Living room")
    ann = cloud_sim.user_id(DEMO_EMAIL)
    bob = cloud_sim.user_id("bob@example.com")

    switch_off = SwitchStateUpdateEvent(home, lamp, 1, 0)
    assert synced_cloud.apply_event(switch_off) == Changes(objects={lamp})
    # Told again, it changes nothing.
    assert not synced_cloud.apply_event(switch_off)
    dimming_off = AbilityChangeEvent(home, lamp, "dimming", False, False)
    assert synced_cloud.apply_event(dimming_off) == Changes(objects={lamp})
    assert not synced_cloud.apply_event(dimming_off)

    # Ann moves from the living room to the kitchen: both rooms, not the sphere.
    enter = PresenceEvent(PresenceSubType.ENTER_LOCATION, home, ann, "Ann", kitchen)
    assert synced_cloud.apply_event(enter) == Changes(objects={kitchen, living})
    # Bob was in the sphere, in no known room.
    enter = PresenceEvent(PresenceSubType.ENTER_LOCATION, home, bob, "Bob", kitchen)
    assert synced_cloud.apply_event(enter) == Changes(objects={kitchen})
    # Leaving the sphere: the room, the sphere and his presence in the sphere.
    leave = PresenceEvent(PresenceSubType.EXIT_SPHERE, home, bob, "Bob", None)
    assert synced_cloud.apply_event(leave) == Changes(objects={home, kitchen}, people={(home, bob)})
    assert cloud_sim.request_count() == 0


async def test_reads_report_what_they_changed(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A read names only what differs from before it; renames and removals change the shape."""
    assert not await synced_cloud.async_synchronize()

    lamp = cloud_sim.stone_id("Desk lamp")
    cloud_sim.set_switch_state(lamp, 0)
    assert await synced_cloud.async_synchronize() == Changes(objects={lamp})

    cloud_sim.rename_stone(lamp, "Reading lamp")
    home = cloud_sim.sphere_id("Home")
    changes = await synced_cloud.async_read_part((home, DataChangeSubType.STONES))
    assert changes == Changes(objects={lamp}, structure=True)

    cloud_sim.remove_location(cloud_sim.location_id("Bedroom"))
    changes = await synced_cloud.async_read_part((home, DataChangeSubType.LOCATIONS))
    assert changes.structure
    assert not changes.objects


async def test_events_heard_during_a_read_are_replayed(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """A read that answers with the state from before an event does not undo the event."""
    home = cloud_sim.sphere_id("Home")
    lamp = cloud_sim.stone_id("Desk lamp")
    cloud_sim.latency = 0.05
    read = synced_cloud.async_synchronize()
    # The cloud still says 100 %: the event happens after it answered, before the read ends.
    switch_off = SwitchStateUpdateEvent(home, lamp, 1, 0)

    async def read_with_event() -> Changes:
        task = asyncio.ensure_future(read)
        await asyncio.sleep(0)
        synced_cloud.apply_event(switch_off)
        return await task

    changes = await read_with_event()
    stone = synced_cloud.get_crownstone_by_id(lamp)
    assert (stone.state, lamp in changes.objects) == (0, True)
