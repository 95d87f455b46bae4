"""Crownstones (smart plugs, built-in switches, dongles) of a sphere, and switching them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

from .client import CloudClient, path
from .collection import CloudCollection
from .const import DIMMING_ABILITY, MIN_BRIGHTNESS, STONES_INCLUDE_FILTER, SWITCHING_STONE_TYPES
from .errors import CrownstoneAbilityError, CrownstoneBrightnessError, CrownstoneError
from .parsing import (
    JsonObject,
    as_object,
    flag,
    integer,
    objects,
    optional_objects,
    optional_text,
    switch_state,
    text,
)

type SwitchType = Literal["TURN_ON", "TURN_OFF", "PERCENTAGE"]


def check_brightness(percentage: int) -> None:
    """Refuse what the cloud would refuse, before any request: outside 0..100 and 1..9 %."""
    if not 0 <= percentage <= 100:
        raise CrownstoneBrightnessError(f"Brightness {percentage} % is outside 0..100 %")
    if 0 < percentage < MIN_BRIGHTNESS:
        raise CrownstoneBrightnessError(
            f"Brightness {percentage} % is refused by the cloud: dimming below "
            f"{MIN_BRIGHTNESS} % is not allowed (use 0 to turn off)"
        )


@dataclass(frozen=True, slots=True)
class SwitchCommand:
    """One Crownstone's part of a multi-switch request; validated when created."""

    crownstone_id: str
    type: SwitchType
    percentage: int | None = None

    def __post_init__(self) -> None:
        """Refuse unknown types and unacceptable percentages before they reach the cloud."""
        if self.type not in get_args(SwitchType.__value__):
            raise CrownstoneError(f"Unknown switch command type {self.type!r}")
        if self.type == "PERCENTAGE":
            if self.percentage is None:
                raise CrownstoneBrightnessError("A PERCENTAGE command needs a percentage")
            check_brightness(self.percentage)

    def as_cloud_json(self) -> JsonObject:
        """Return the command as the cloud's switchCrownstones endpoint takes it."""
        command: JsonObject = {"stoneId": self.crownstone_id, "type": self.type}
        if self.type == "PERCENTAGE":
            command["percentage"] = self.percentage
        return command


class CrownstoneAbility:
    """An ability of a Crownstone (dimming, switchcraft, tapToToggle) and its settings."""

    def __init__(self, data: JsonObject) -> None:
        """Read one ability row of the cloud."""
        self.type = text(data, "type", "ability")
        self.enabled = flag(data, "enabled", "ability", default=False)
        self.synced_to_crownstone = flag(data, "syncedToCrownstone", "ability", default=False)
        self.properties: dict[str, str] = {
            text(item, "type", "ability property"): str(item.get("value", ""))
            for item in optional_objects(data, "properties", "ability")
        }


class Crownstone:
    """A Crownstone as the cloud knows it; update it in place from the event stream.

    `state` is the last reported switch state in 0..100 %; a stone that never reported has
    state 0 and `state_known` False. Switch calls do not change `state`: the cloud relays the
    command to a phone or hub in range, and the new state arrives later as an event.
    """

    CLOUD_FIELDS: ClassVar[tuple[str, ...]] = (
        "name",
        "unique_id",
        "type",
        "sw_version",
        "hardware_version",
        "mac_address",
        "icon",
        "location_id",
        "abilities",
        "_state",
        "state_known",
    )

    def __init__(self, client: CloudClient, data: JsonObject, sphere_id: str) -> None:
        """Read one stone of the cloud (with its switch state and abilities when included)."""
        self._client = client
        self.sphere_id = sphere_id
        self.cloud_id = text(data, "id", "stone")
        self.name = text(data, "name", "stone")
        self.unique_id = integer(data, "uid", "stone")
        self.type = text(data, "type", "stone")
        self.sw_version = optional_text(data, "firmwareVersion", "stone")
        self.hardware_version = optional_text(data, "hardwareVersion", "stone")
        self.mac_address = optional_text(data, "address", "stone")
        self.icon = optional_text(data, "icon", "stone")
        self.location_id = optional_text(data, "locationId", "stone")
        abilities = [CrownstoneAbility(row) for row in optional_objects(data, "abilities", "stone")]
        self.abilities: dict[str, CrownstoneAbility] = {item.type: item for item in abilities}
        reported = _reported_state(data)
        self._state = reported or 0
        self.state_known = reported is not None

    @property
    def state(self) -> int:
        """Return the last reported switch state, 0..100 %."""
        return self._state

    @state.setter
    def state(self, percentage: int) -> None:
        """Record a reported switch state (from the event stream); this switches nothing."""
        self._state = max(0, min(100, percentage))
        self.state_known = True

    @property
    def dimming_enabled(self) -> bool:
        """Tell whether the dimming ability exists and is enabled."""
        ability = self.abilities.get(DIMMING_ABILITY)
        return ability is not None and ability.enabled

    @property
    def switches_power(self) -> bool:
        """Tell whether this stone has a relay or dimmer (dongles and guidestones do not)."""
        return self.type in SWITCHING_STONE_TYPES

    async def async_turn_on(self) -> None:
        """Ask the cloud to turn this Crownstone on."""
        await self._async_switch({"type": "TURN_ON"})

    async def async_turn_off(self) -> None:
        """Ask the cloud to turn this Crownstone off."""
        await self._async_switch({"type": "TURN_OFF"})

    async def async_set_brightness(self, percentage: int) -> None:
        """Ask the cloud to set this Crownstone to 0 or 10..100 %.

        Raises CrownstoneBrightnessError for 1..9 % and values outside 0..100, and
        CrownstoneAbilityError for 10..99 % when dimming is not enabled, before any request.
        """
        check_brightness(percentage)
        self.check_dimming(percentage)
        await self._async_switch({"type": "PERCENTAGE", "percentage": percentage})

    def check_dimming(self, percentage: int) -> None:
        """Raise CrownstoneAbilityError for a dimmed percentage without the dimming ability.

        0 and 100 % are plain off and on, which every switching Crownstone accepts.
        """
        if 0 < percentage < 100 and not self.dimming_enabled:
            raise CrownstoneAbilityError(
                f"Dimming is not enabled for Crownstone {self.name!r}; "
                "enable it in the Crownstone app"
            )

    async def _async_switch(self, command: JsonObject) -> None:
        await self._client.async_request(
            "POST", path("Stones", self.cloud_id, "switch"), json_body=command, command=True
        )


def _reported_state(stone: JsonObject) -> int | None:
    """Return the stone's last reported state, or None when it never reported one."""
    current = stone.get("currentSwitchState")
    if current is None:
        return None
    current = as_object(current, "stone.currentSwitchState")
    return switch_state(current.get("switchState"), "stone.currentSwitchState.switchState")


class Crownstones(CloudCollection[Crownstone]):
    """The Crownstones of one sphere."""

    def __init__(self, client: CloudClient, sphere_id: str) -> None:
        """Start empty; a refresh fills the collection."""
        super().__init__()
        self._client = client
        self.sphere_id = sphere_id

    def find(self, crownstone_name: str) -> Crownstone | None:
        """Return the first Crownstone with this name, or None."""
        return next((stone for stone in self if stone.name == crownstone_name), None)

    def find_by_uid(self, crownstone_uid: int) -> Crownstone | None:
        """Return the Crownstone with this sphere-local uid, or None."""
        return next((stone for stone in self if stone.unique_id == crownstone_uid), None)

    async def async_update_crownstone_data(self) -> None:
        """Refresh the Crownstones of this sphere, with their switch states and abilities."""
        stones = await self._client.async_request(
            "GET",
            path("Spheres", self.sphere_id, "ownedStones"),
            params={"filter": STONES_INCLUDE_FILTER},
        )
        self.update_from_cloud(objects(stones, "the stones of a sphere"))

    def update_from_cloud(self, stones: list[JsonObject]) -> None:
        """Adopt a complete listing of the sphere's stones (validated before anything changes)."""
        self.adopt([Crownstone(self._client, stone, self.sphere_id) for stone in stones])
