"""Waiting, with a timeout, for state that synchronous code changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Changes:
    """Wakes every waiter whenever `notify()` is called, so each can re-check its condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Tell waiters that something changed."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for[T](self, condition: Callable[[], T | None], timeout: float, what: str) -> T:  # noqa: ASYNC109
        """Return the first truthy value of `condition()`; TimeoutError naming `what` if none."""
        try:
            async with asyncio.timeout(timeout):
                while not (result := condition()):
                    await self._event.wait()
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}") from None
        return result
