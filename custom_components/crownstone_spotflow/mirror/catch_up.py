"""What the mirror could not hear, read back from Home Assistant's recorder.

Between the last change the outbox holds (its watermark, stored in the same commit as the
records) and the moment the listener is attached, state changes happen that nobody handed to the
mirror: the end of a run that crashed or stopped, and the start of this one. The recorder holds
them (except its own last commit window, `commit_interval`, when Home Assistant crashed), so the
mirror reads them back through the recorder's history API.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from itertools import pairwise
import json
import logging
from typing import TYPE_CHECKING, Final

from homeassistant.core import HomeAssistant, State
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.recorder import DATA_RECORDER, get_instance, session_scope
from homeassistant.util import dt as dt_util
from sqlalchemy.exc import SQLAlchemyError

from custom_components.crownstone_spotflow.const import DOMAIN, LOGGER
from custom_components.crownstone_spotflow.spotflow import Watermark

if TYPE_CHECKING:
    from .listener import StateListener

# The recorder is read in windows of this length, so a long window never sits in memory at once.
CHUNK: Final = timedelta(minutes=10)
EDGE: Final = timedelta(microseconds=1)
# Fired before the recorder is read; the recorder writes it behind every earlier change.
EVENT_CATCH_UP: Final = f"{DOMAIN}_catch_up"


class CatchUp(StrEnum):
    """How the window the mirror could not hear was covered (shown in diagnostics)."""

    NOT_NEEDED = "not_needed"  # a new outbox: the snapshot is the whole picture
    PENDING = "pending"
    DONE = "done"
    PAUSED = "paused"  # the platform asked for nothing while it could not hear
    NO_RECORDER = "no_recorder"
    RECORDER_FAILED = "recorder_failed"
    PURGED = "purged"  # the window starts before what the recorder keeps


@dataclass(frozen=True, slots=True)
class Window:
    """The changes with `start < last_updated <= end` (POSIX timestamps)."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the outbox holds: every change up to `held_to`, except those in the `gaps`.

    It is the outbox's watermark, stored in the commit that stores the records it speaks of. A
    start adds what it could not hear as a gap, and a part caught up from the recorder leaves the
    gaps in the commit that stores its records. A crash before a catch-up ends so leaves the next
    start that window, and not the changes heard live meanwhile (they would be mirrored twice).
    """

    held_to: float
    gaps: tuple[Window, ...] = ()

    @classmethod
    def from_watermark(cls, watermark: Watermark) -> Coverage:
        """Return what a stored watermark says (a number: no gaps, as earlier versions stored)."""
        if isinstance(watermark, str):
            data = json.loads(watermark)
            return cls(float(data["held_to"]), tuple(Window(*gap) for gap in data["gaps"]))
        return cls(float(watermark))

    def watermark(self) -> Watermark:
        """Return what to store (a number while nothing waits, readable by earlier versions)."""
        if not self.gaps:
            return self.held_to
        gaps = [[gap.start, gap.end] for gap in self.gaps]
        return json.dumps({"held_to": self.held_to, "gaps": gaps})

    def caught_up_to(self, end: float) -> Coverage:
        """Return the coverage once every gap is caught up to `end` (gaps are caught up in
        order)."""
        gaps = tuple(Window(max(gap.start, end), gap.end) for gap in self.gaps if gap.end > end)
        return Coverage(self.held_to, gaps)


class RecorderUnavailableError(Exception):
    """The recorder cannot tell what happened in the window; the reason is a CatchUp."""

    def __init__(self, reason: CatchUp) -> None:
        """Keep the reason."""
        super().__init__(reason.value)
        self.reason = reason


async def async_recorder_ready(hass: HomeAssistant) -> None:
    """Wait until the recorder holds every change made so far; raise if it cannot."""
    if DATA_RECORDER not in hass.data:
        raise RecorderUnavailableError(CatchUp.NO_RECORDER)
    if not await hass.data[DATA_RECORDER].db_connected:
        raise RecorderUnavailableError(CatchUp.RECORDER_FAILED)
    # Waiting for the recorder commits what is queued (a task commits the session before it
    # runs), so the history read in another session sees every change up to now. But it returns
    # at once when the queue is empty and the session clean, also while the recorder's thread
    # still writes the last change it took from the queue: the read would miss that change, and
    # the watermark would then pass it for good. An event of ours, queued behind that change,
    # makes it wait.
    hass.bus.async_fire(EVENT_CATCH_UP)
    await get_instance(hass).async_block_till_done()


def purged_before(hass: HomeAssistant) -> float:
    """Return the time before which the recorder may have purged states."""
    return (dt_util.utcnow() - timedelta(days=get_instance(hass).keep_days)).timestamp()


async def async_recorded_entities(hass: HomeAssistant) -> list[str]:
    """Return every entity id the recorder has states of (also entities gone since)."""
    instance = get_instance(hass)

    def read() -> list[str]:
        with session_scope(hass=hass, read_only=True) as session:
            return list(instance.states_meta_manager.get_metadata_id_to_entity_id(session).values())

    return await instance.async_add_executor_job(read)


async def async_recorded_states(
    hass: HomeAssistant,
    window: Window,
    entity_ids: list[str],
    *,
    attributes: bool,
) -> list[State]:
    """Return the recorded states of the entities changed in the window, oldest first."""
    # Imported here: the recorder's modules load only where the recorder is used.
    from homeassistant.components.recorder import history

    if not entity_ids:
        return []
    # The recorder keeps last_updated as the float Home Assistant set, but is asked in datetimes
    # (rounded to the microsecond) and leaves out the end: asked a microsecond wider on each
    # side, the exact window is chosen below.
    start = dt_util.utc_from_timestamp(window.start) - EDGE
    end = dt_util.utc_from_timestamp(window.end) + EDGE

    def read() -> list[State]:
        found = history.get_significant_states(
            hass,
            start,
            end,
            entity_ids,
            include_start_time_state=False,
            significant_changes_only=False,
            no_attributes=not attributes,
        )
        return [
            state
            for states in found.values()
            for state in states
            if isinstance(state, State)
            and window.start < state.last_updated_timestamp <= window.end
        ]

    states = await get_instance(hass).async_add_executor_job(read)
    states.sort(key=lambda state: state.last_updated_timestamp)
    return states


def chunks(window: Window) -> list[Window]:
    """Split a window into recorder reads of at most CHUNK each."""
    step = CHUNK.total_seconds()
    edges = [window.start]
    while edges[-1] + step < window.end:
        edges.append(edges[-1] + step)
    edges.append(window.end)
    return [Window(start, end) for start, end in pairwise(edges)]


def iso(timestamp: float) -> str:
    """Return a timestamp as the records show times."""
    return dt_util.utc_from_timestamp(timestamp).isoformat()


async def async_catch_up(
    hass: HomeAssistant, listener: StateListener, windows: list[Window], *, fresh: bool
) -> None:
    """Store what the recorder holds of the windows, or records saying a gap is possible.

    The windows come oldest first. A `fresh` outbox never held a change: its window starts when
    the entry was made (no earlier than what the recorder keeps), and without a recorder the
    snapshot stands for it (no stream ever had those changes).
    """
    for window in windows:
        LOGGER.debug(
            "Catching up the state changes from %s to %s (%r, %r]",
            iso(window.start),
            iso(window.end),
            window.start,
            window.end,
        )
    try:
        await async_recorder_ready(hass)
    except RecorderUnavailableError as err:
        for window in windows:
            _warn(err.reason, window)
        if fresh:
            listener.async_skip_catch_up(err.reason)
            return
        for index, window in enumerate(windows):
            last = index == len(windows) - 1
            await listener.async_enqueue_caught_up([], window, last=last, gap=err.reason)
        return
    if listener.paused:
        listener.async_skip_catch_up(CatchUp.PAUSED)
        return
    steps = _steps(windows, purged_before(hass), fresh=fresh)
    done = 0
    try:
        entity_ids = [
            entity_id
            for entity_id in await async_recorded_entities(hass)
            if listener.wanted(entity_id)
        ]
        for part, gap in steps:
            states = []
            if gap is None:
                states = await async_recorded_states(
                    hass, part, entity_ids, attributes=listener.settings.include_attributes
                )
            last = done == len(steps) - 1
            await listener.async_enqueue_caught_up(states, part, last=last, gap=gap)
            # Counted once stored: a failure before leaves this part to the gap record below.
            done += 1
            LOGGER.debug(
                "Caught up %d state changes from %s to %s",
                len(states),
                iso(part.start),
                iso(part.end),
            )
    except (SQLAlchemyError, HomeAssistantError, ValueError) as err:
        LOGGER.warning(
            "Could not read the recorder's history for what the Spotflow mirror missed: %s", err
        )
        rest = Window(steps[done][0].start if steps else windows[0].start, windows[-1].end)
        await listener.async_enqueue_caught_up([], rest, last=True, gap=CatchUp.RECORDER_FAILED)


def _steps(
    windows: list[Window], purged: float, *, fresh: bool
) -> list[tuple[Window, CatchUp | None]]:
    """Return the recorder reads, oldest first, and the parts it no longer keeps (PURGED)."""
    steps: list[tuple[Window, CatchUp | None]] = []
    for window in windows:
        readable = window
        if purged > window.start and fresh:
            # Nothing was promised before a new outbox's first start.
            readable = Window(min(purged, window.end), window.end)
        elif purged > window.start:
            gone = Window(window.start, min(purged, window.end))
            steps.append((gone, CatchUp.PURGED))
            if gone.end == window.end:
                continue
            readable = Window(gone.end, window.end)
        steps.extend((part, None) for part in chunks(readable))
    return steps


def _warn(reason: CatchUp, window: Window) -> None:
    LOGGER.log(
        logging.WARNING,
        "The Spotflow mirror cannot catch up the state changes from %s to %s (%s): %s",
        iso(window.start),
        iso(window.end),
        reason.value,
        "the recorder is not set up"
        if reason is CatchUp.NO_RECORDER
        else "the recorder's database is not available",
    )
