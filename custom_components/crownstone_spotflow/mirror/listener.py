"""The hot path: every state change Home Assistant makes, turned into one outbox record.

The listener runs on the event loop for every state change, so it does as little as it can: one
cached filter decision and one list append. A flush scheduled once per loop iteration encodes
what was heard and hands it to the outbox in one call, with a watermark (the newest change's
`last_updated`, and the windows still to catch up: a `Coverage`) that the outbox commits together
with the records.

Records carry the epoch of the mirror's start (milliseconds since 1970, so later starts have
larger epochs) and a `seq` that counts from 1 within that epoch: a consumer sees every restart,
and a number lost in a crash is never handed out again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
from homeassistant.helpers.json import json_encoder_default
import orjson
import voluptuous as vol

from custom_components.crownstone_spotflow.const import LOGGER
from custom_components.crownstone_spotflow.spotflow import (
    DesiredProperties,
    StreamSender,
)

from .catch_up import CatchUp, Coverage, Window, iso
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
        self.catch_up = CatchUp.NOT_NEEDED
        self._entity_filter = convert_filter(entity_filter_config(settings.entity_filter))
        self._entity_registry = er.async_get(hass)
        self._decisions: dict[str, bool] = {}
        # (problem, entity) pairs already warned of.
        self._warned: set[tuple[str, str]] = set()
        self._sender: StreamSender | None = None
        self._unsubs: list[CALLBACK_TYPE] = []
        # Heard but not yet encoded: the listener only appends; one flush per loop iteration
        # encodes the batch.
        self._heard: list[EventStateChangedData] = []
        self._flush_scheduled = False
        # Stored with every record as the watermark: "every change up to here is held, except
        # in the windows still to catch up".
        self._coverage = Coverage(0.0)
        self._attached_at = 0.0
        # Live changes inside the window being caught up (an odd clock can put some there).
        self._boundary: set[tuple[str, float]] = set()

    @callback
    def async_attach(self, sender: StreamSender, coverage: Coverage) -> list[Window]:
        """Start a new epoch: hear every state change from now on, then snapshot.

        `coverage` is what the outbox holds; return the windows, oldest first, that it lacks and
        the listener did not hear, to catch up from the recorder.
        """
        self._sender = sender
        self._attached_at = time.time()
        self.epoch = int(self._attached_at * 1000)
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
        gaps = coverage.gaps
        if coverage.held_to < self._attached_at:
            gaps = (*gaps, Window(coverage.held_to, self._attached_at))
        self._coverage = Coverage(max(coverage.held_to, self._attached_at), gaps)
        if gaps:
            self.catch_up = CatchUp.PENDING
        # Stored at once: a crash before the catch-up ends leaves these windows to the next start.
        self.async_snapshot()
        return list(gaps)

    @callback
    def async_detach(self) -> None:
        """Hear nothing more; what was heard goes to the outbox before it closes."""
        while self._unsubs:
            self._unsubs.pop()()
        self._async_flush()
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
        """Remember one state change; runs on the loop for every mirrored change.

        Only an append: encoding and the outbox's bookkeeping run once per loop iteration, for
        every change heard in it, so no single change waits for them.
        """
        self._heard.append(event.data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.hass.loop.call_soon(self._async_flush)

    @callback
    def _async_flush(self) -> None:
        """Encode what was heard and hand it to the outbox in one call."""
        self._flush_scheduled = False
        heard, self._heard = self._heard, []
        if self._sender is None or not heard:
            return
        changes = [(data["entity_id"], data["new_state"]) for data in heard]
        coverage = self._coverage
        newest = max(
            [state.last_updated_timestamp for _, state in changes if state is not None],
            default=coverage.held_to,
        )
        if coverage.gaps:
            self._boundary.update(
                (entity_id, state.last_updated_timestamp)
                for entity_id, state in changes
                if state is not None and state.last_updated_timestamp <= self._attached_at
            )
        self._coverage = Coverage(max(coverage.held_to, newest), coverage.gaps)
        self._sender.enqueue_records_nowait(
            self._encode(changes), watermark=self._coverage.watermark()
        )

    def _encode(
        self, changes: Iterable[tuple[str, State | None]], flag: str | None = None
    ) -> list[bytes]:
        """Return the records of some changes, numbered on.

        A record too large to ever be sent is left out, with one warning per entity. One loop
        with everything in locals: the flush runs it for every change Home Assistant makes.
        """
        assert self._sender is not None
        limit = self._sender.max_record_bytes
        with_attributes = self.settings.include_attributes
        epoch, seq = self.epoch, self.sequence
        dumps = orjson.dumps
        records: list[bytes] = []
        for entity_id, state in changes:
            seq += 1
            record: dict[str, Any]
            if state is None:
                record = {"epoch": epoch, "seq": seq, "entity_id": entity_id, "removed": True}
            else:
                record = {
                    "epoch": epoch,
                    "seq": seq,
                    "entity_id": entity_id,
                    "state": state.state,
                    "attributes": state.attributes,
                    "last_changed": state.last_changed,
                    "last_updated": state.last_updated,
                }
                if not with_attributes:
                    del record["attributes"]
            if flag is not None:
                record[flag] = True
            try:
                # orjson without options or default takes 40 % less time than Home Assistant's
                # `json_bytes`, and writes the same bytes whenever it succeeds.
                encoded = dumps(record)
            except TypeError:
                encoded = self._encode_odd(entity_id, record)
            if len(encoded) > limit:
                seq -= 1
                self._warn_once(
                    "too large",
                    entity_id,
                    "Not mirroring states of %s into Spotflow: the record has %d bytes; the"
                    " limit is %d",
                    len(encoded),
                    limit,
                )
                continue
            records.append(encoded)
        self.sequence = seq
        return records

    def _encode_odd(self, entity_id: str, record: dict[str, Any]) -> bytes:
        """Encode a record plain orjson refused; an attribute must never cost the state."""
        try:
            # A key that is not text, a type of its own: encoded as Home Assistant does.
            return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=_json_default)
        except TypeError as err:
            # An integer beyond 64 bits, a cycle: nothing encodes these attributes.
            self._warn_once(
                "unencodable",
                entity_id,
                "Mirroring states of %s into Spotflow without their attributes: %s",
                err,
            )
            record.pop("attributes", None)
            record["attributes_unencodable"] = True
            return orjson.dumps(record)

    def _warn_once(self, problem: str, entity_id: str, message: str, *args: object) -> None:
        """Warn of a problem with an entity's states the first time it shows."""
        if (problem, entity_id) not in self._warned:
            self._warned.add((problem, entity_id))
            LOGGER.warning(message, entity_id, *args)

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

    @callback
    def async_snapshot(self) -> None:
        """Mirror every wanted state, so the stream holds the complete picture."""
        if self._sender is None or self.paused:
            return
        # What was heard before goes first.
        self._async_flush()
        records = self._encode(
            (
                (state.entity_id, state)
                for state in self.hass.states.async_all()
                if self._async_filter_entity(state.entity_id)
            ),
            "snapshot",
        )
        # Every change up to now was heard (and flushed above), or is in a window to catch up.
        coverage = self._coverage
        self._coverage = Coverage(max(coverage.held_to, time.time()), coverage.gaps)
        self._sender.enqueue_records_nowait(records, watermark=self._coverage.watermark())

    async def async_enqueue_caught_up(
        self, states: list[State], window: Window, *, last: bool, gap: CatchUp | None = None
    ) -> None:
        """Store what the recorder holds of part of the window the listener did not hear.

        The states come oldest first; `gap` says why the recorder could not tell (a record says
        so instead). The parts come in order, so the windows are caught up to the part's end.
        """
        if self._sender is None:
            return
        if last:
            # The changes heard so far reach the disk no later than the watermark below.
            self._async_flush()
        records = self._encode(
            (
                (state.entity_id, state)
                for state in states
                if (state.entity_id, state.last_updated_timestamp) not in self._boundary
                and self.wanted(state.entity_id)
            ),
            "caught_up",
        )
        if gap is not None:
            records.append(self._gap_record(window, gap))
        self._coverage = self._coverage.caught_up_to(window.end)
        if last:
            self._boundary.clear()
            self.catch_up = gap or CatchUp.DONE
        await self._sender.enqueue_records(records, watermark=self._coverage.watermark())

    def _gap_record(self, window: Window, reason: CatchUp) -> bytes:
        self.sequence += 1
        return orjson.dumps(
            {
                "epoch": self.epoch,
                "seq": self.sequence,
                "gap_possible": True,
                "gap_from": iso(window.start),
                "gap_to": iso(window.end),
                "reason": reason.value,
            }
        )

    @callback
    def async_skip_catch_up(self, reason: CatchUp) -> None:
        """Catch nothing up (paused: resuming sends a snapshot); the watermark moves on."""
        self._coverage = Coverage(self._coverage.held_to)
        self._boundary.clear()
        self.catch_up = reason
        if self._sender is not None:
            self._sender.enqueue_records_nowait([], watermark=self._coverage.watermark())

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
