"""Live events from the Crownstone cloud over its server-sent event stream.

The server sends no event IDs and replays nothing, so every reconnect loses what happened while
the stream was down: consumers re-read the state whenever the connection listener says True
again. The server keeps the stream alive with pings; silence means a dead stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
import logging
import random

import aiohttp
from yarl import URL

from .cloud import CrownstoneCloud
from .const import DEFAULT_SSE_URL
from .errors import CrownstoneAuthenticationError, CrownstoneConnectionError, CrownstoneError
from .events import Event, SystemEvent, SystemEventType, parse_event

_LOGGER = logging.getLogger(__name__)

_TOKEN_REJECTED = frozenset(
    {
        SystemEventType.TOKEN_EXPIRED,
        SystemEventType.INVALID_ACCESS_TOKEN,
        SystemEventType.NO_ACCESS_TOKEN,
    }
)
# Events are small JSON documents; a longer line means a broken server, not a big event.
MAX_LINE_BYTES = 65_536
# Beyond this many doublings the delay is pinned to backoff_max anyway; stops float overflow.
_MAX_DOUBLINGS = 32


class CrownstoneEventStream:
    """Keeps one event stream open, reconnecting with backoff, and hands events to listeners.

    Silence longer than ping_interval + ping_margin counts as a dead stream. Waits between
    attempts grow from backoff_initial to backoff_max (full jitter) and shrink back only after
    a stream stayed up for a ping interval; reconnect_now() cuts the current wait short. A
    refused token costs one login and an immediate reconnect; when that login is
    refused, the stream stops and reports the error.
    """

    def __init__(
        self,
        cloud: CrownstoneCloud,
        sse_url: str = DEFAULT_SSE_URL,
        *,
        websession: aiohttp.ClientSession | None = None,
        project_name: str = "HomeAssistant",
        ping_interval: float = 30.0,
        ping_margin: float = 5.0,
        backoff_initial: float = 1.0,
        # Full jitter under a 30 s cap: on average 15 s, at most 30 s, from the cloud's return
        # to live updates (sooner when a poll succeeds), while a cloud refusing everyone sees
        # each client only every 15 s on average.
        backoff_max: float = 30.0,
        connect_timeout: float = 10.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """Prepare the stream; nothing connects before start().

        websession defaults to the cloud's. jitter returns the fraction in [0, 1) of the
        current backoff cap to wait.
        """
        self._cloud = cloud
        self._sse_url = sse_url
        self._websession = websession
        self._project_name = project_name
        self._ping_interval = ping_interval
        self._liveness = ping_interval + ping_margin
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._jitter = jitter
        self._event_listeners: list[Callable[[Event], None]] = []
        self._connection_listeners: list[Callable[[bool], None]] = []
        self._error_listeners: list[Callable[[CrownstoneError], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._retry_now = asyncio.Event()
        self._connected = False
        self._connected_since: float | None = None
        self._login_needed = False
        # Set by a restart after the cloud refused to log in: try the credentials again.
        self._fresh_login = False
        self._token: str | None = None
        # Connection attempts after the first one, failed or not.
        self.reconnect_count = 0
        self.last_event_time: datetime | None = None
        # Why the stream gave up; None while it runs.
        self.last_error: CrownstoneError | None = None

    @property
    def connected(self) -> bool:
        """Return True while the stream is open and the server has started it."""
        return self._connected

    def add_event_listener(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call listener with every event read, system events and pings included.

        Return a function that unsubscribes.
        """
        return _subscribe(self._event_listeners, listener)

    def add_connection_listener(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call listener with True when a stream starts and False when it is lost.

        Events sent while no stream was open are gone: re-read the state on every True after
        the first. stop() does not report False.
        """
        return _subscribe(self._connection_listeners, listener)

    def add_error_listener(self, listener: Callable[[CrownstoneError], None]) -> Callable[[], None]:
        """Call listener when the stream gives up for good: the cloud refused a new login."""
        return _subscribe(self._error_listeners, listener)

    def reconnect_now(self) -> None:
        """Cut the current wait between attempts short.

        For a caller that has just heard from the cloud: the stream need not wait out a delay
        that grew while the cloud was away. The backoff keeps growing should this attempt fail
        too. Does nothing while connected or stopped.
        """
        if self._task is not None and not self._task.done() and not self._connected:
            self._retry_now.set()

    async def start(self) -> None:
        """Start reading in the background; return at once."""
        if self._task is not None and not self._task.done():
            return
        self._fresh_login = self.last_error is not None
        self.last_error = None
        self._task = asyncio.create_task(self._run(), name="crownstone_event_stream")

    async def stop(self) -> None:
        """Close the stream and stop reconnecting."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Swallow only the cancellation we asked for, never our caller's.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        finally:
            self._connected = False
            self._connected_since = None

    async def _run(self) -> None:
        failures = 0
        relogged_in_since_healthy = False
        while True:
            token_rejected = False
            self._retry_now.clear()
            try:
                token_rejected = await self._connect_and_read()
            except CrownstoneAuthenticationError as err:
                self._give_up(err)
                return
            except (CrownstoneError, aiohttp.ClientError, TimeoutError) as err:
                _LOGGER.debug("Event stream failed: %s", self._describe(err))
            if self._stayed_healthy():
                failures = 0
                relogged_in_since_healthy = False
            self._set_connected(False)
            if token_rejected:
                self._login_needed = True
                if not relogged_in_since_healthy:
                    relogged_in_since_healthy = True
                    self.reconnect_count += 1
                    continue
            delay = self._jitter() * min(
                self._backoff_max, self._backoff_initial * 2 ** min(failures, _MAX_DOUBLINGS)
            )
            failures += 1
            _LOGGER.debug("Event stream reconnecting in %.2f s", delay)
            with suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._retry_now.wait()
                _LOGGER.debug("Event stream reconnecting now: the cloud answers again")
            self.reconnect_count += 1

    async def _connect_and_read(self) -> bool:
        """Read one stream until it ends; return True if the server refused the token."""
        if self._fresh_login:
            _LOGGER.debug("Logging in again for the event stream")
            await self._cloud.async_login()
        elif self._login_needed or not self._cloud.access_token:
            # The REST side may have logged in already; then its new token is taken as it is.
            await self._cloud.async_renew_token(self._token)
        self._fresh_login = self._login_needed = False
        token = self._cloud.access_token
        assert token is not None  # a successful login always leaves a token
        self._token = token
        _LOGGER.debug("Opening event stream %s", URL(self._sse_url).with_query(None))
        watchdog = _SilenceWatchdog(self._liveness)
        async with (
            watchdog,
            self._session.get(
                self._sse_url,
                params={"projectName": self._project_name},
                # In the header, not the query: a URL ends up in access logs and error texts.
                # The server takes it bare, without "Bearer".
                headers={"Accept": "text/event-stream", "Authorization": token},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
                # A redirect counts as a failed attempt: followed to another origin, it would
                # arrive without the token (aiohttp drops the header) and look like a refusal.
                allow_redirects=False,
            ) as response,
        ):
            if response.status != 200:
                raise CrownstoneConnectionError(f"Event stream answered HTTP {response.status}")
            data_lines: list[str] = []
            async for line in _lines(response.content, watchdog):
                if line:
                    # Only data lines carry anything; the server sends no id or event fields.
                    if line.startswith("data:"):
                        data_lines.append(line.removeprefix("data:").removeprefix(" "))
                    continue
                if data_lines and self._handle("\n".join(data_lines)):
                    return True
                data_lines.clear()
        return False

    def _handle(self, data: str) -> bool:
        """Dispatch one event; return True if it says the server refused the token."""
        if (event := parse_event(data)) is None:
            return False
        self.last_event_time = datetime.now(UTC)
        token_rejected = False
        if isinstance(event, SystemEvent):
            if event.sub_type == SystemEventType.STREAM_START:
                self._set_connected(True)
            elif event.sub_type in _TOKEN_REJECTED:
                _LOGGER.debug("Event stream refused the access token (%s)", event.sub_type)
                token_rejected = True
            else:
                _LOGGER.debug("Event stream closing: %s (%s)", event.sub_type, event.code)
        _notify(self._event_listeners, event)
        return token_rejected

    @property
    def _session(self) -> aiohttp.ClientSession:
        return self._websession or self._cloud.websession

    def _stayed_healthy(self) -> bool:
        """Whether the stream that just ended stayed up long enough to reset the backoff.

        A server that starts streams and ends them at once must not make us reconnect in a loop.
        """
        return (
            self._connected_since is not None
            and asyncio.get_running_loop().time() - self._connected_since >= self._ping_interval
        )

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        _LOGGER.debug("Event stream %s", "connected" if connected else "disconnected")
        self._connected = connected
        self._connected_since = asyncio.get_running_loop().time() if connected else None
        _notify(self._connection_listeners, connected)

    def _give_up(self, err: CrownstoneAuthenticationError) -> None:
        _LOGGER.warning("Event stream stopped: the cloud refused to log in again")
        self.last_error = err
        _notify(self._error_listeners, err)

    def _describe(self, err: BaseException) -> str:
        """Name an error for the log, with the access token cut out of its message."""
        message = str(err)
        if self._token:
            message = message.replace(self._token, "**REDACTED**")
        return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _subscribe[T](listeners: list[T], listener: T) -> Callable[[], None]:
    listeners.append(listener)

    def unsubscribe() -> None:
        listeners.remove(listener)

    return unsubscribe


class _SilenceWatchdog:
    """Ends the enclosed block with TimeoutError once nothing was heard for `limit` seconds.

    Unlike an asyncio.timeout rescheduled on every line, a line costs no timer, and the silence
    is measured when the timer fires: a timer run early (as tests do to move the clock) does not
    end a stream that is alive.
    """

    def __init__(self, limit: float) -> None:
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._last_heard = self._loop.time()
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    def heard(self) -> None:
        self._last_heard = self._loop.time()

    async def __aenter__(self) -> None:
        self._task = asyncio.current_task()
        self._arm()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            assert self._task is not None
            if self._task.uncancel() == 0:
                raise TimeoutError("The event stream went silent") from exc

    def _arm(self) -> None:
        self._timer = self._loop.call_at(self._last_heard + self._limit, self._check)

    def _check(self) -> None:
        if self._loop.time() - self._last_heard < self._limit:
            self._arm()
            return
        self._expired = True
        assert self._task is not None
        self._task.cancel()


def _notify[T](listeners: Sequence[Callable[[T], None]], value: T) -> None:
    # A faulty listener must not take the stream (or the other listeners) down with it.
    for listener in tuple(listeners):
        try:
            listener(value)
        except Exception:
            _LOGGER.exception("Error in event stream listener")


async def _lines(content: aiohttp.StreamReader, watchdog: _SilenceWatchdog) -> AsyncIterator[str]:
    """Yield the stream's lines, without their line ends.

    The lines are split here rather than by aiohttp's readline: how aiohttp treats a line longer
    than its buffer changed between the versions Home Assistant ships (an error on some, an
    endless wait on others). Here an over-long line always ends the stream at once.
    """
    pending = bytearray()
    async for chunk in content.iter_any():
        watchdog.heard()
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield pending[start:end].decode(errors="replace").rstrip("\r")
            start = end + 1
        del pending[:start]
        if len(pending) > MAX_LINE_BYTES:
            raise CrownstoneConnectionError(
                f"Event stream sent a line longer than {MAX_LINE_BYTES} bytes"
            )
