"""The hot path: every state change Home Assistant makes, turned into one outbox record.

The listener runs on the event loop for every state change, so it does as little as it can: one
cached filter decision, one orjson call, one append to the outbox's in-memory buffer.

Records carry the epoch of the mirror's start (milliseconds since 1970, so later starts have
larger epochs) and a `seq` that counts from 1 within that epoch: a consumer sees every restart,
and a number lost in a crash is never handed out again.
"""

from __future__ import annotations

from collections.abc import Mapping
import time
from typing import Any

from homeassistant.const import EVENT_STATE_CHANGED
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    State,
    callback,
)
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entityfilter import EntityFilter, convert_filter
from homeassistant.helpers.json import json_bytes, json_encoder_default
import orjson
import voluptuous as vol

from custom_components.crownstone_spotflow.const import LOGGER
from custom_components.crownstone_spotflow.spotflow import (
    DesiredProperties,
    PayloadTooLargeError,
    StreamSender,
)

from .settings import MirrorSettings, entity_filter_config

DESIRED_PAUSED = "paused"
DESIRED_ENTITY_FILTER = "entityFilter"


def _json_default(value: Any) -> Any:
    """Encode what orjson refused like Home Assistant does, else as text."""
    try:
        return json_encoder_default(value)
    except TypeError:
        return str(value)


class StateListener:
    """Hand the wanted state changes to one stream sender."""

    def __init__(self, hass: HomeAssistant, entry_id: str, settings: MirrorSettings) -> None:
        """Initialize; nothing is heard until `async_attach`."""
        self.hass = hass
        self.entry_id = entry_id
        self.settings = settings
        self.epoch = 0
        self.sequence = 0
        self.paused = False
        self.platform_filter: EntityFilter | None = None
        self._entity_filter = convert_filter(entity_filter_config(settings.entity_filter))
        self._entity_registry = er.async_get(hass)
        self._decisions: dict[str, bool] = {}
        self._too_large: set[str] = set()
        self._sender: StreamSender | None = None
        self._unsubs: list[CALLBACK_TYPE] = []

    @callback
    def async_attach(self, sender: StreamSender) -> None:
        """Start a new epoch: hear every state change from now on, then snapshot."""
        self._sender = sender
        self.epoch = time.time_ns() // 1_000_000
        self.sequence = 0
        self._unsubs.extend(
            (
                self.hass.bus.async_listen(
                    EVENT_STATE_CHANGED, self._async_on_state_changed, self._async_filter
                ),
                self.hass.bus.async_listen(
                    er.EVENT_ENTITY_REGISTRY_UPDATED, self._async_on_registry_updated
                ),
            )
        )
        self.async_snapshot()

    @callback
    def async_detach(self) -> None:
        """Hear nothing more; no record may reach an outbox that is closing."""
        while self._unsubs:
            self._unsubs.pop()()
        self._sender = None

    @callback
    def _async_filter(self, data: EventStateChangedData) -> bool:
        """Decide whether to mirror a state change; runs on the loop for every change."""
        if self.paused:
            return False
        entity_id = data["entity_id"]
        try:
            return self._decisions[entity_id]
        except KeyError:
            wanted = self._decisions[entity_id] = self.wanted(entity_id)
            return wanted

    @callback
    def _async_on_state_changed(self, event: Event[EventStateChangedData]) -> None:
        """Hand one state change to the outbox; runs on the loop for every mirrored change."""
        data = event.data
        self._async_enqueue(data["entity_id"], data["new_state"])

    @callback
    def _async_enqueue(
        self, entity_id: str, state: State | None, *, snapshot: bool = False
    ) -> None:
        assert self._sender is not None
        try:
            self._sender.enqueue_record_nowait(self._record(entity_id, state, snapshot=snapshot))
        except PayloadTooLargeError as err:
            if entity_id not in self._too_large:
                self._too_large.add(entity_id)
                LOGGER.warning("Not mirroring states of %s into Spotflow: %s", entity_id, err)
            return
        self.sequence += 1

    def wanted(self, entity_id: str) -> bool:
        """Return whether the filter in force mirrors an entity."""
        entry = self._entity_registry.async_get(entity_id)
        if entry is not None and entry.config_entry_id == self.entry_id:
            # Mirroring the mirror's own counters would feed back on itself.
            return False
        entity_filter = (
            self._entity_filter if self.platform_filter is None else self.platform_filter
        )
        return entity_filter(entity_id)

    def _record(self, entity_id: str, state: State | None, *, snapshot: bool) -> bytes:
        record: dict[str, Any] = {
            "epoch": self.epoch,
            "seq": self.sequence + 1,
            "entity_id": entity_id,
        }
        if state is None:
            record["removed"] = True
        else:
            record["state"] = state.state
            if self.settings.include_attributes:
                record["attributes"] = state.attributes
            record["last_changed"] = state.last_changed
            record["last_updated"] = state.last_updated
        if snapshot:
            record["snapshot"] = True
        try:
            return json_bytes(record)
        except TypeError:
            # An attribute Home Assistant cannot encode must not cost the whole state.
            return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=_json_default)

    @callback
    def async_snapshot(self) -> None:
        """Mirror every wanted state, so the stream holds the complete picture."""
        if self._sender is None or self.paused:
            return
        for state in self.hass.states.async_all():
            if self._async_filter_entity(state.entity_id):
                self._async_enqueue(state.entity_id, state, snapshot=True)

    @callback
    def _async_filter_entity(self, entity_id: str) -> bool:
        return self._async_filter({"entity_id": entity_id, "old_state": None, "new_state": None})

    @callback
    def _async_on_registry_updated(self, event: Event[er.EventEntityRegistryUpdatedData]) -> None:
        data = event.data
        self._decisions.pop(data["entity_id"], None)
        if data["action"] == "update" and "old_entity_id" in data:
            self._decisions.pop(data["old_entity_id"], None)

    @callback
    def async_apply_desired(self, desired: DesiredProperties) -> bool:
        """Apply what the platform asks: pause or resume, and an entity filter.

        Return whether what is mirrored changed (resumed, or another filter).
        """
        before = (self.paused, self.platform_filter and self.platform_filter.config)
        self.paused = desired.values.get(DESIRED_PAUSED) is True
        platform_filter = desired.values.get(DESIRED_ENTITY_FILTER)
        self.platform_filter = None
        if isinstance(platform_filter, Mapping):
            try:
                self.platform_filter = convert_filter(entity_filter_config(platform_filter))
            except vol.Invalid as err:
                LOGGER.warning("Ignoring the entity filter the Spotflow platform set: %s", err)
        elif platform_filter is not None:
            LOGGER.warning("Ignoring the entity filter the Spotflow platform set: not an object")
        self._decisions.clear()
        return (self.paused, self.platform_filter and self.platform_filter.config) != before

    def mirrored_entities(self) -> int:
        """Return how many of the current entities are mirrored."""
        return sum(1 for entity_id in self.hass.states.async_entity_ids() if self.wanted(entity_id))
