"""Tests for live updates through the cloud's event stream: pushed changes, no requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from homeassistant.components.light import ATTR_SUPPORTED_COLOR_MODES, ColorMode
from homeassistant.const import (
    ATTR_ENTITY_ID,
    CONF_EMAIL,
    EVENT_HOMEASSISTANT_STOP,
    EVENT_STATE_CHANGED,
    EVENT_STATE_REPORTED,
    STATE_OFF,
    STATE_ON,
    STATE_UNAVAILABLE,
)
from homeassistant.core import Event as HassEvent, HomeAssistant, callback
from homeassistant.helpers import device_registry as dr, entity_registry as er
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.crownstone_spotflow.const import (
    CONF_CLOUD_URL,
    CONF_PASSWORD_SHA1,
    CONF_SSE_URL,
    DOMAIN,
    SCAN_INTERVAL,
    SCAN_INTERVAL_WITHOUT_STREAM,
)
from custom_components.crownstone_spotflow.crownstone import Crownstone, hash_password
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator, generated_home
from simulators.crownstone_cloud.scenario import add_stone

from . import async_poll, async_wait_for_stream, async_wait_until, entity_id_of, get_device


def _live_updates(hass: HomeAssistant) -> str:
    return entity_id_of(hass, "cloud", "live_updates")


def _entity(hass: HomeAssistant, cloud_id: str, key: str) -> str | None:
    """Return the entity id of a cloud object's entity, or None while it is not registered."""
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    unique_id = f"{entry.unique_id}_{cloud_id}_{key}"
    return next(
        (
            registered.entity_id
            for registered in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
            if registered.unique_id == unique_id
        ),
        None,
    )


def _state(hass: HomeAssistant, entity_id: str) -> str | None:
    state = hass.states.get(entity_id)
    return None if state is None else state.state


def _device(hass: HomeAssistant, cloud_id: str) -> dr.DeviceEntry | None:
    return get_device(hass, cloud_id)


@pytest.mark.usefixtures("init_integration")
async def test_switch_state_pushed(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A Crownstone switched by hand shows up at once, without a single request."""
    cloud.reset_counters()
    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 30)
    await async_wait_until(
        hass,
        lambda: hass.states.get(
            entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")
        ).attributes.get("brightness")
        == 76,
    )
    cloud.set_switch_state(cloud.stone_id("Coffee machine"), 100)
    await async_wait_until(
        hass,
        lambda: _state(hass, entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet"))
        == STATE_ON,
    )
    cloud.set_switch_state(cloud.stone_id("Desk lamp"), 0)
    await async_wait_until(
        hass,
        lambda: _state(hass, entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")) == STATE_OFF,
    )

    assert cloud.request_count() == 0


@pytest.mark.usefixtures("init_integration")
async def test_push_confirms_a_command(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """The stone's report ends the optimistic window at once."""
    coordinator = init_integration.runtime_data
    await hass.services.async_call(
        "light",
        "turn_on",
        {
            ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light"),
            "brightness": 128,
        },
        blocking=True,
    )
    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light")).attributes[
            "brightness"
        ]
        == 128
    )
    await async_wait_until(hass, lambda: not coordinator._pending)

    assert coordinator.crownstone(cloud.stone_id("Cabin lamp")).state == 50
    assert (
        hass.states.get(entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light")).attributes[
            "brightness"
        ]
        == 128
    )


@pytest.mark.usefixtures("init_integration")
async def test_push_corrects_a_command(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A command no phone carried out is corrected as soon as the stone reports otherwise."""
    cloud.set_phone(None)
    await hass.services.async_call(
        "switch",
        "turn_on",
        {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")},
        blocking=True,
    )
    assert _state(hass, entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")) == STATE_ON

    # Well within the optimistic window.
    cloud.set_switch_state(cloud.stone_id("Coffee machine"), 0)
    await async_wait_until(
        hass,
        lambda: _state(hass, entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet"))
        == STATE_OFF,
    )


@pytest.mark.usefixtures("entity_registry_enabled_by_default", "init_integration")
async def test_presence_pushed(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """People entering and leaving spheres and rooms show up at once, without a request."""
    home = cloud.sphere_id("Home")
    ann = cloud.user_id(DEMO_EMAIL)
    bob = cloud.user_id("bob@example.com")
    kitchen = cloud.location_id("Kitchen")
    cloud.reset_counters()

    cloud.enter_location(bob, home, kitchen)
    await async_wait_until(
        hass,
        lambda: _state(hass, entity_id_of(hass, cloud.location_id("Kitchen"), "occupancy"))
        == STATE_ON,
    )
    assert _state(hass, entity_id_of(hass, cloud.location_id("Kitchen"), "people")) == "1"
    assert _state(hass, entity_id_of(hass, cloud.sphere_id("Home"), "people")) == "2"

    cloud.enter_location(ann, home, kitchen)
    await async_wait_until(
        hass,
        lambda: _state(hass, entity_id_of(hass, cloud.location_id("Kitchen"), "people")) == "2",
    )
    # Ann left the living room for the kitchen.
    assert (
        _state(hass, entity_id_of(hass, cloud.location_id("Living room"), "occupancy")) == STATE_OFF
    )

    cloud.exit_location(bob, home, kitchen)
    await async_wait_until(
        hass,
        lambda: _state(hass, entity_id_of(hass, cloud.location_id("Kitchen"), "people")) == "1",
    )
    assert (
        _state(
            hass,
            entity_id_of(
                hass, cloud.sphere_id("Home"), f"presence_{cloud.user_id('bob@example.com')}"
            ),
        )
        == STATE_ON
    )

    cloud.exit_sphere(ann, home)
    await async_wait_until(
        hass,
        lambda: _state(hass, entity_id_of(hass, cloud.location_id("Kitchen"), "occupancy"))
        == STATE_OFF,
    )
    assert (
        _state(
            hass,
            entity_id_of(hass, cloud.sphere_id("Home"), f"presence_{cloud.user_id(DEMO_EMAIL)}"),
        )
        == STATE_OFF
    )
    assert _state(hass, entity_id_of(hass, cloud.sphere_id("Home"), "people")) == "1"

    cloud.enter_sphere(ann, home)
    await async_wait_until(
        hass, lambda: _state(hass, entity_id_of(hass, cloud.sphere_id("Home"), "people")) == "2"
    )
    assert (
        _state(
            hass,
            entity_id_of(hass, cloud.sphere_id("Home"), f"presence_{cloud.user_id(DEMO_EMAIL)}"),
        )
        == STATE_ON
    )

    assert cloud.request_count() == 0


@pytest.mark.usefixtures("init_integration")
async def test_presence_of_a_stranger(
    hass: HomeAssistant, cloud: CloudSimulator, entity_registry: er.EntityRegistry
) -> None:
    """A person the integration does not know yet gets a presence entity; the users are read."""
    home = cloud.sphere_id("Home")
    # Joined without the stream telling (the data change went to nobody).
    dave = cloud.state.add_user("Dave", "Dee", "dave@example.com", "dave-password")
    cloud.sphere(home).roles[dave.id] = "member"
    cloud.reset_counters()

    cloud.enter_sphere(dave.id, home)
    await async_wait_until(hass, lambda: _entity(hass, home, f"presence_{dave.id}") is not None)
    assert _state(hass, entity_id_of(hass, cloud.sphere_id("Home"), "people")) == "3"
    assert cloud.request_count() == cloud.request_count("GET", f"/Spheres/{home}/users") == 1


@pytest.mark.usefixtures("init_integration")
async def test_ability_pushed(
    hass: HomeAssistant, cloud: CloudSimulator, entity_registry: er.EntityRegistry
) -> None:
    """Dimming switched off or on changes a light's color modes at once, never its platform."""
    cabin_lamp = cloud.stone_id("Cabin lamp")
    coffee_machine = cloud.stone_id("Coffee machine")
    lamp = entity_id_of(hass, cabin_lamp, "light")
    coffee = entity_id_of(hass, coffee_machine, "outlet")
    cloud.reset_counters()

    def modes() -> list[str]:
        return hass.states.get(lamp).attributes[ATTR_SUPPORTED_COLOR_MODES]

    cloud.set_ability(cabin_lamp, "dimming", False)
    await async_wait_until(hass, lambda: modes() == [ColorMode.ONOFF])
    cloud.set_ability(cabin_lamp, "dimming", True)
    await async_wait_until(hass, lambda: modes() == [ColorMode.BRIGHTNESS])

    # A stone without a dimming row gets one; a switch stays a switch.
    cloud.set_ability(coffee_machine, "dimming", True)
    cloud.set_ability(coffee_machine, "tapToToggle", True)
    await async_wait_until(
        hass,
        lambda: coordinator_stone(hass, coffee_machine).abilities.keys()
        >= {"dimming", "tapToToggle"},
    )
    assert entity_id_of(hass, coffee_machine, "outlet") == coffee
    assert len(er.async_entries_for_device(entity_registry, _device(hass, coffee_machine).id)) == 1

    assert cloud.request_count() == 0


def coordinator_stone(hass: HomeAssistant, stone_id: str) -> Crownstone:
    """Return the coordinator's copy of a stone."""
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    stone = entry.runtime_data.crownstone(stone_id)
    assert stone is not None
    return stone


@pytest.mark.usefixtures("init_integration")
async def test_stones_added_renamed_and_removed(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A data change reads the sphere's stones again (one request), devices follow."""
    home = cloud.sphere_id("Home")
    cloud.reset_counters()

    stone_id = cloud.add_stone(home, "Fan", location_id=cloud.location_id("Bedroom"))
    await async_wait_until(hass, lambda: _entity(hass, stone_id, "outlet") is not None)
    fan = entity_id_of(hass, stone_id, "outlet")
    await async_wait_until(hass, lambda: hass.states.get(fan) is not None)
    assert _state(hass, fan) == STATE_OFF
    assert _device(hass, stone_id).suggested_area == "Bedroom"
    assert cloud.request_count() == cloud.request_count("GET", f"/Spheres/{home}/ownedStones") == 1

    cloud.rename_stone(stone_id, "Ceiling fan")
    await async_wait_until(hass, lambda: _device(hass, stone_id).name == "Ceiling fan")
    # Entity ids stay; the friendly name follows the device.
    assert hass.states.get(fan).attributes["friendly_name"] == "Ceiling fan"

    cloud.remove_stone(stone_id)
    await async_wait_until(hass, lambda: _device(hass, stone_id) is None)
    assert hass.states.get(fan) is None


@pytest.mark.usefixtures("init_integration")
async def test_name_given_in_home_assistant_wins(
    hass: HomeAssistant, cloud: CloudSimulator, device_registry: dr.DeviceRegistry
) -> None:
    """A device the user renamed keeps that name when the cloud renames it."""
    stone_id = cloud.stone_id("Desk lamp")
    device = _device(hass, stone_id)
    device_registry.async_update_device(device.id, name_by_user="Reading lamp")

    cloud.rename_stone(stone_id, "Office lamp")
    await async_wait_until(hass, lambda: _device(hass, stone_id).name == "Office lamp")
    assert _device(hass, stone_id).name_by_user == "Reading lamp"
    assert hass.states.get(entity_id_of(hass, stone_id, "light")).attributes["friendly_name"] == (
        "Reading lamp"
    )


@pytest.mark.usefixtures("init_integration")
async def test_rooms_and_people_added_renamed_and_removed(
    hass: HomeAssistant, cloud: CloudSimulator, entity_registry: er.EntityRegistry
) -> None:
    """Rooms and people change with a targeted read."""
    home = cloud.sphere_id("Home")
    location_id = cloud.add_location(home, "Attic")
    await async_wait_until(hass, lambda: _entity(hass, location_id, "occupancy") is not None)

    cloud.rename_location(location_id, "Loft")
    await async_wait_until(hass, lambda: _device(hass, location_id).name == "Loft")

    living = entity_id_of(hass, cloud.location_id("Living room"), "occupancy")
    cloud.remove_location(cloud.location_id("Living room"))
    await async_wait_until(hass, lambda: hass.states.get(living) is None)
    # Ann was in the living room: she is still in the sphere.
    assert _state(hass, entity_id_of(hass, cloud.sphere_id("Home"), "people")) == "2"

    user_id = cloud.add_user(home, "Eve", "Ee", "eve@example.com", "eve-password")
    await async_wait_until(hass, lambda: _entity(hass, home, f"presence_{user_id}") is not None)
    cloud.remove_user(home, user_id)
    await async_wait_until(hass, lambda: _entity(hass, home, f"presence_{user_id}") is None)


@pytest.mark.usefixtures("entity_registry_enabled_by_default", "init_integration")
async def test_person_renamed(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A person renamed in the Crownstone app is renamed in Home Assistant, in every sphere."""
    entity_id = entity_id_of(
        hass, cloud.sphere_id("Home"), f"presence_{cloud.user_id('bob@example.com')}"
    )
    assert hass.states.get(entity_id).name == "Home Bob Member present"
    cloud.rename_user(cloud.user_id("bob@example.com"), "Robert", "Member")
    await async_wait_until(
        hass, lambda: hass.states.get(entity_id).name == "Home Robert Member present"
    )
    # Renamed, not replaced.
    assert hass.states.get(entity_id).state == STATE_ON


@pytest.mark.usefixtures("init_integration")
async def test_sphere_removed(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A sphere removed in the cloud leaves at once, with its rooms and Crownstones."""
    cabin = cloud.sphere_id("Cabin")
    lamp = entity_id_of(hass, cloud.stone_id("Cabin lamp"), "light")
    cloud.remove_sphere(cabin)
    await async_wait_until(hass, lambda: _device(hass, cabin) is None)
    assert hass.states.get(lamp) is None


async def test_new_sphere_reopens_the_stream(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """The stream only carries the spheres it opened with: a new one found by a poll reopens it."""
    sphere_id = cloud.add_sphere("Office", DEMO_EMAIL)
    stone_id = cloud.add_stone(sphere_id, "Beamer")
    connections = cloud.stream_connections
    # A poll (firing the time would also fire the stream's silence timer).
    await init_integration.runtime_data.async_refresh()
    await hass.async_block_till_done()
    assert _state(hass, entity_id_of(hass, stone_id, "outlet")) == STATE_OFF
    await async_wait_until(hass, lambda: cloud.stream_connections == connections + 1)
    await async_wait_for_stream(init_integration.runtime_data)

    cloud.set_switch_state(stone_id, 100)
    beamer = entity_id_of(hass, stone_id, "outlet")
    await async_wait_until(hass, lambda: _state(hass, beamer) == STATE_ON)


async def test_stream_not_back_after_reopening(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """A stream reopened for a new sphere that does not come back leaves polling in charge."""
    coordinator = init_integration.runtime_data
    assert coordinator.update_interval == SCAN_INTERVAL
    cloud.add_sphere("Office", DEMO_EMAIL)
    cloud.stream_fault("no_connection")
    await coordinator.async_refresh()

    await async_wait_until(hass, lambda: _state(hass, _live_updates(hass)) == STATE_OFF)
    assert coordinator.update_interval == SCAN_INTERVAL_WITHOUT_STREAM


@pytest.mark.usefixtures("init_integration")
async def test_informational_events_change_nothing(
    hass: HomeAssistant, cloud: CloudSimulator
) -> None:
    """Commands not yet carried out, unknown and system events leave every entity as it is."""
    before = {state.entity_id: state.state for state in hass.states.async_all()}
    stone_id = cloud.stone_id("Desk lamp")
    home = {"id": cloud.sphere_id("Home"), "name": "Home", "uid": 1}
    cloud.reset_counters()

    for event in (
        {
            "type": "command",
            "subType": "multiSwitch",
            "sphere": home,
            "switchData": [
                {"id": stone_id, "uid": 1, "name": "Desk lamp", "type": "TURN_OFF"},
            ],
        },
        {"type": "somethingNew", "sphere": home},
        {"type": "sphereTokensChanged", "operation": "update", "sphere": home},
        {"type": "invitationChange", "operation": "invited", "sphere": home, "email": "x@y"},
        {"type": "system", "subType": "SOMETHING", "code": 200, "message": ""},
        {"type": "ping", "counter": 99},
    ):
        cloud.emit_event(event)
    # A marker event after them: once it shows, the others were handled.
    cloud.set_switch_state(cloud.stone_id("Porch light"), 100)
    await async_wait_until(
        hass,
        lambda: _state(hass, entity_id_of(hass, cloud.stone_id("Porch light"), "switch"))
        == STATE_ON,
    )

    after = {state.entity_id: state.state for state in hass.states.async_all()}
    assert after == before | {entity_id_of(hass, cloud.stone_id("Porch light"), "switch"): STATE_ON}
    assert cloud.request_count() == 0


async def test_live_updates_entity_and_polling(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """The diagnostic entity shows the stream; polling relaxes while it is up."""
    coordinator = init_integration.runtime_data
    assert _state(hass, _live_updates(hass)) == STATE_ON
    assert coordinator.update_interval == SCAN_INTERVAL

    cloud.stream_fault("no_connection")
    cloud.drop_streams("reset")
    await async_wait_until(hass, lambda: _state(hass, _live_updates(hass)) == STATE_OFF)
    assert coordinator.update_interval == SCAN_INTERVAL_WITHOUT_STREAM
    # Polling takes over: the cloud is read within a minute.
    requests = cloud.request_count()
    await async_poll(hass, SCAN_INTERVAL_WITHOUT_STREAM)
    assert cloud.request_count() > requests
    # The cloud itself answers: only the live updates are off.
    assert _state(hass, entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")) == STATE_ON

    cloud.stream_fault(None)
    await async_wait_until(hass, lambda: _state(hass, _live_updates(hass)) == STATE_ON)
    assert coordinator.update_interval == SCAN_INTERVAL

    # (Firing the time here would fire the stream's silence timer too.)
    cloud.inject_fault("http_503")
    await coordinator.async_refresh()
    await hass.async_block_till_done()
    assert (
        _state(hass, entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")) == STATE_UNAVAILABLE
    )
    assert _state(hass, _live_updates(hass)) == STATE_ON


async def test_stream_closed_on_unload(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """Unloading closes the stream; no reconnect follows."""
    stream = init_integration.runtime_data.stream
    assert cloud.open_streams == 1
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert not stream.connected
    await async_wait_until(hass, lambda: cloud.open_streams == 0)


async def test_stream_closed_when_home_assistant_stops(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """Home Assistant stopping closes the stream, before the shared session goes."""
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await async_wait_until(hass, lambda: cloud.open_streams == 0)
    assert not init_integration.runtime_data.stream.connected


@pytest.mark.usefixtures("init_integration")
async def test_events_about_what_is_not_known_yet(
    hass: HomeAssistant, cloud: CloudSimulator
) -> None:
    """A report of a Crownstone or sphere we missed reads the cloud again."""
    home = cloud.sphere_id("Home")
    # Added without the stream telling.
    heater = add_stone(cloud.sphere(home), "Heater", stone_type="PLUG", switch_state=0)
    cloud.set_switch_state(heater.id, 100)
    await async_wait_until(hass, lambda: _entity(hass, heater.id, "outlet") is not None)
    await async_wait_until(
        hass, lambda: _state(hass, entity_id_of(hass, heater.id, "outlet")) == STATE_ON
    )

    stone = add_stone(cloud.sphere(home), "Lava lamp", stone_type="PLUG", switch_state=100)
    cloud.set_ability(stone.id, "dimming", True)
    await async_wait_until(hass, lambda: _entity(hass, stone.id, "light") is not None)
    await async_wait_until(
        hass, lambda: _state(hass, entity_id_of(hass, stone.id, "light")) == STATE_ON
    )

    # Both ask for a full refresh: one is made.
    unknown_sphere = {"id": "5f1b00000000000000000000", "name": "Elsewhere", "uid": 9}
    for event in (
        {
            "type": "presence",
            "subType": "enterSphere",
            "sphere": unknown_sphere,
            "user": {"id": cloud.user_id(DEMO_EMAIL), "name": "Ann Admin"},
        },
        {
            "type": "dataChange",
            "subType": "stones",
            "operation": "create",
            "sphere": unknown_sphere,
            "changedItem": {"id": "5f1b00000000000000000001", "name": "Far lamp"},
        },
    ):
        cloud.emit_event(event)
    requests = cloud.request_count("GET", "/spheres")
    await async_wait_until(hass, lambda: cloud.request_count("GET", "/spheres") > requests)


@pytest.mark.usefixtures("init_integration")
async def test_changes_in_a_burst_share_reads(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """Many changes at once cost a read or two, not one each."""
    home = cloud.sphere_id("Home")
    cloud.reset_counters()
    plugs = [cloud.add_stone(home, f"Plug {number}") for number in range(5)]
    await async_wait_until(hass, lambda: _entity(hass, plugs[-1], "outlet") is not None)
    assert cloud.request_count("GET", "/ownedStones") <= 2


@pytest.mark.usefixtures("init_integration")
async def test_a_failed_read_reads_everything(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """When the targeted read fails, a full refresh takes its place."""
    home = cloud.sphere_id("Home")
    cloud.inject_fault("http_503", path="/ownedStones", count=1)
    kettle = cloud.add_stone(home, "Kettle")
    await async_wait_until(hass, lambda: _entity(hass, kettle, "outlet") is not None)


async def test_unload_while_a_command_waits(
    hass: HomeAssistant, cloud: CloudSimulator, init_integration: MockConfigEntry
) -> None:
    """A command still waiting for its stone leaves no timer behind on unload."""
    cloud.set_phone(None)
    await hass.services.async_call(
        "switch",
        "turn_on",
        {ATTR_ENTITY_ID: entity_id_of(hass, cloud.stone_id("Coffee machine"), "outlet")},
        blocking=True,
    )
    coordinator = init_integration.runtime_data
    assert coordinator._pending
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    assert not coordinator._pending


@pytest.mark.usefixtures("init_integration")
async def test_switched_during_a_poll(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A poll that answers with the state from before a pushed change does not undo it."""
    polled = cloud.request_count(path_contains="/spheres")
    cloud.inject_fault("slow_answer", path="/spheres", count=1, seconds=0.3)
    async_fire_time_changed(hass, dt_util.utcnow() + SCAN_INTERVAL)
    # No async_block_till_done here: it would wait for the slow poll to end.
    async with asyncio.timeout(10):
        while cloud.request_count(path_contains="/spheres") == polled:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        cloud.set_switch_state(cloud.stone_id("Desk lamp"), 0)
        while _state(hass, entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")) != STATE_OFF:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await hass.async_block_till_done(wait_background_tasks=True)
    assert cloud.request_count(path_contains="/presentPeople") > 0  # the poll did end
    assert _state(hass, entity_id_of(hass, cloud.stone_id("Desk lamp"), "light")) == STATE_OFF


@pytest.fixture
def state_writes(hass: HomeAssistant) -> list[str]:
    """Record the entity id of every state written, changed or not."""
    writes: list[str] = []

    @callback
    def _record(event: HassEvent[Any]) -> None:
        writes.append(event.data["entity_id"])

    hass.bus.async_listen(EVENT_STATE_CHANGED, _record)
    # A write that changes nothing is reported, not changed.
    hass.bus.async_listen(EVENT_STATE_REPORTED, _record, event_filter=callback(lambda _: True))
    return writes


@pytest.mark.parametrize("spheres", [1, 5])
async def test_writes_do_not_grow_with_the_account(
    hass: HomeAssistant, socket_enabled: None, state_writes: list[str], spheres: int
) -> None:
    """An event, a command, its confirmation and a quiet poll write the same on any account.

    One Crownstone switched is one state written; a person entering a room writes the room's
    and the sphere's presence entities; a poll that finds nothing new writes nothing.
    """
    sim = CloudSimulator(
        generated_home(spheres=spheres, stones_per_sphere=30, rooms_per_sphere=6),
        phone_delay=None,
        ping_interval=1.0,
    )
    await sim.start(host="127.0.0.1", port=0)
    try:
        entry = MockConfigEntry(
            domain=DOMAIN,
            unique_id=sim.user_id(DEMO_EMAIL),
            data={
                CONF_EMAIL: DEMO_EMAIL,
                CONF_PASSWORD_SHA1: hash_password(DEMO_PASSWORD),
                CONF_CLOUD_URL: sim.url,
                CONF_SSE_URL: sim.sse_url,
            },
            minor_version=2,
        )
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        await async_wait_for_stream(entry.runtime_data)
        await hass.async_block_till_done()
        assert len(hass.states.async_entity_ids()) > 40 * spheres
        writes = await _count_writes(hass, sim, entry, state_writes)
        assert await hass.config_entries.async_unload(entry.entry_id)
    finally:
        await sim.stop()
    assert writes == {
        "switch state": 1,
        "command": 1,
        "confirmation": 1,
        "presence": 4,
        "quiet poll": 0,
    }


async def _count_writes(
    hass: HomeAssistant, sim: CloudSimulator, entry: MockConfigEntry, state_writes: list[str]
) -> dict[str, int]:
    coordinator = entry.runtime_data
    stone = next(
        stone
        for sphere in coordinator.data
        for stone in sphere.crownstones
        if stone.switches_power and stone.dimming_enabled
    )
    lamp = entity_id_of(hass, stone.cloud_id, "light")
    sphere = coordinator.sphere(stone.sphere_id)
    assert sphere is not None
    room = next(iter(sphere.locations))
    stranger = next(user for user in sphere.users if user.cloud_id not in room.present_people)
    counts: dict[str, int] = {}

    async def count(what: str, condition: Callable[[], bool]) -> None:
        await async_wait_until(hass, condition)
        counts[what] = len(state_writes)
        state_writes.clear()

    state_writes.clear()
    sim.set_switch_state(stone.cloud_id, 0 if stone.state else 100)
    await count("switch state", lambda: bool(state_writes))
    await hass.services.async_call(
        "light", "turn_on", {ATTR_ENTITY_ID: lamp, "brightness": 128}, blocking=True
    )
    await count("command", lambda: True)
    sim.set_switch_state(stone.cloud_id, 50)
    await count("confirmation", lambda: not coordinator._pending)
    sim.enter_location(stranger.cloud_id, sphere.cloud_id, room.cloud_id)
    await count("presence", lambda: stranger.cloud_id in room.present_people)
    await async_poll(hass)
    await count("quiet poll", lambda: True)
    return counts
