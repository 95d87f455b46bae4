"""Switching: single calls, the multi-switch call, and what is refused before any request."""

from __future__ import annotations

import aiohttp
import pytest

from custom_components.crownstone_spotflow.crownstone import (
    CrownstoneAbilityError,
    CrownstoneBrightnessError,
    CrownstoneCloud,
    CrownstoneError,
    CrownstoneNotFoundError,
    Sphere,
    SwitchCommand,
)
from simulators.crownstone_cloud import CloudSimulator

from .scripted import SPHERE_ID, STONE_ID, ScriptedCloud


def _home(cloud: CrownstoneCloud) -> Sphere:
    sphere = cloud.cloud_data.find("Home")
    assert sphere is not None
    return sphere


async def test_turn_on_off_and_dim(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """Each call is one POST answered 204; the stored state waits for the phone."""
    lamp = synced_cloud.get_crownstone("Desk lamp")
    await lamp.async_turn_off()
    await lamp.async_turn_on()
    await lamp.async_set_brightness(50)
    await lamp.async_set_brightness(0)
    assert cloud_sim.requests == [("POST", f"/api/Stones/{lamp.cloud_id}/switch")] * 4
    assert lamp.state == 100


async def test_phone_executes_the_switch(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """With a phone in range, the next refresh reads the new state."""
    cloud_sim.set_phone(0.0)
    lamp = synced_cloud.get_crownstone("Desk lamp")
    await lamp.async_set_brightness(30)
    await lamp.async_turn_off()
    await synced_cloud.async_synchronize()
    assert lamp.state == 0


@pytest.mark.parametrize("percentage", [1, 5, 9, -1, 101])
async def test_refused_brightness(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator, percentage: int
) -> None:
    """1..9 % and values outside 0..100 never reach the cloud."""
    lamp = synced_cloud.get_crownstone("Desk lamp")
    with pytest.raises(CrownstoneBrightnessError, match=str(percentage)):
        await lamp.async_set_brightness(percentage)
    assert cloud_sim.request_count() == 0


async def test_dimming_not_enabled(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """10..99 % needs the dimming ability; 0 and 100 % are plain off and on."""
    for name in ("Kitchen spots", "Coffee machine", "Hallway plug"):
        stone = synced_cloud.get_crownstone(name)
        with pytest.raises(CrownstoneAbilityError, match="not enabled") as caught:
            await stone.async_set_brightness(50)
        assert not isinstance(caught.value, CrownstoneBrightnessError)
    assert cloud_sim.request_count() == 0
    coffee = synced_cloud.get_crownstone("Coffee machine")
    await coffee.async_set_brightness(100)
    await coffee.async_set_brightness(0)
    assert cloud_sim.request_count("POST", "/switch") == 2


async def test_switch_many_in_one_request(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """One POST /Spheres/{id}/switchCrownstones carries every command."""
    cloud_sim.set_phone(0.0)
    home = _home(synced_cloud)
    lamp = synced_cloud.get_crownstone("Desk lamp")
    ceiling = synced_cloud.get_crownstone("Ceiling light")
    coffee = synced_cloud.get_crownstone("Coffee machine")
    await home.async_switch_crownstones(
        [
            SwitchCommand(lamp.cloud_id, "PERCENTAGE", 40),
            SwitchCommand(ceiling.cloud_id, "TURN_OFF"),
            SwitchCommand(coffee.cloud_id, "TURN_ON"),
        ]
    )
    assert cloud_sim.requests == [("POST", f"/api/Spheres/{home.cloud_id}/switchCrownstones")]
    await synced_cloud.async_synchronize()
    assert (lamp.state, ceiling.state, coffee.state) == (40, 0, 100)
    await home.async_switch_crownstones([])
    assert cloud_sim.request_count("POST") == 1


async def test_switch_many_refusals(
    synced_cloud: CrownstoneCloud, cloud_sim: CloudSimulator
) -> None:
    """Unknown stones, missing dimming and bad percentages are refused before any request."""
    home = _home(synced_cloud)
    spots = synced_cloud.get_crownstone("Kitchen spots")
    cabin_lamp = synced_cloud.get_crownstone("Cabin lamp")
    with pytest.raises(CrownstoneNotFoundError):
        await home.async_switch_crownstones([SwitchCommand(cabin_lamp.cloud_id, "TURN_ON")])
    with pytest.raises(CrownstoneAbilityError):
        await home.async_switch_crownstones([SwitchCommand(spots.cloud_id, "PERCENTAGE", 50)])
    with pytest.raises(CrownstoneBrightnessError):
        SwitchCommand(spots.cloud_id, "PERCENTAGE", 5)
    with pytest.raises(CrownstoneBrightnessError):
        SwitchCommand(spots.cloud_id, "PERCENTAGE")
    with pytest.raises(CrownstoneError, match="Unknown switch command type"):
        SwitchCommand(spots.cloud_id, "TOGGLE")  # type: ignore[arg-type]
    assert cloud_sim.request_count() == 0


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json", id="labelled-json-as-loopback-sends-it"),
        pytest.param(None, id="unlabelled"),
    ],
)
async def test_both_forms_of_the_empty_204_are_success(
    scripted: ScriptedCloud, websession: aiohttp.ClientSession, content_type: str | None
) -> None:
    """The real cloud labels its empty 204 as JSON; a bare 204 is success all the same."""
    if content_type is not None:
        for path in ("/switchCrownstones", "/switch"):
            scripted.break_path(path, b"", status=204, content_type=content_type)
    cloud = CrownstoneCloud("a@b.c", "pw", websession, base_url=scripted.url)
    await cloud.async_initialize()
    stone = cloud.get_crownstone_by_id(STONE_ID)
    await stone.async_turn_on()
    await stone.async_set_brightness(50)
    sphere = cloud.cloud_data.find_by_id(SPHERE_ID)
    assert sphere is not None
    await sphere.async_switch_crownstones([SwitchCommand(STONE_ID, "TURN_OFF")])
    assert [path for method, path in scripted.requests if method == "POST"][-3:] == [
        f"/api/Stones/{STONE_ID}/switch",
        f"/api/Stones/{STONE_ID}/switch",
        f"/api/Spheres/{SPHERE_ID}/switchCrownstones",
    ]


async def test_switch_command_json(scripted: ScriptedCloud) -> None:
    """Only PERCENTAGE commands carry a percentage."""
    assert SwitchCommand("s1", "TURN_ON", 50).as_cloud_json() == {
        "stoneId": "s1",
        "type": "TURN_ON",
    }
    assert SwitchCommand("s1", "PERCENTAGE", 0).as_cloud_json() == {
        "stoneId": "s1",
        "type": "PERCENTAGE",
        "percentage": 0,
    }
