"""One provisioning attempt run for a flow: the code to show, the outcome, and the clean-up.

The frontend subscribes to a progress step only after drawing it, which can be most of a second
after Home Assistant announced it. So the flow asks for the verification code before it shows any
progress, and its first progress step already carries the code. A flow the person abandons stops
its attempt and removes the outbox it created, at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import math
from typing import Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.util import dt as dt_util

from custom_components.crownstone_spotflow.spotflow import (
    ProvisioningOperation,
    ProvisioningOperationCancelledError,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    SpotflowCertificateError,
    SpotflowError,
    WorkspaceDisabledError,
)

from .settings import MirrorSettings, async_start_client, outbox_path, remove_outbox_files

# How long a submitted form waits for the verification code before it shows a plain spinner;
# the platform answers in well under a second when it is reachable at all.
CODE_WAIT: Final = 15.0

# Failures shown on the form, as (field, error key).
FORM_ERRORS: Final[tuple[tuple[type[SpotflowError], str, str], ...]] = (
    (ProvisioningTokenInvalidError, "provisioning_token", "invalid_provisioning_token"),
    (ProvisioningOperationCancelledError, "base", "provisioning_cancelled"),
    (ProvisioningOperationExpiredError, "base", "provisioning_expired"),
    (WorkspaceDisabledError, "base", "workspace_disabled"),
    (SpotflowCertificateError, "base", "untrusted_certificate"),
)


class Provisioning:
    """Provision a device in an outbox; return the device id the approver settled on."""

    def __init__(
        self,
        hass: HomeAssistant,
        settings: MirrorSettings,
        *,
        new_outbox: bool,
        name: str,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Start at once; `before` runs first (it stops a client that uses the outbox)."""
        assert settings.outbox is not None
        self.hass = hass
        self.settings = settings
        self.new_outbox = new_outbox
        self.operation: ProvisioningOperation | None = None
        self._db = outbox_path(hass, settings.outbox)
        self._before = before
        self._news: asyncio.Future[None] = hass.loop.create_future()
        # A background task: Home Assistant does not wait for a person at shutdown.
        self.task = hass.async_create_background_task(self._async_run(), name)
        self.task.add_done_callback(lambda _: self._async_tell_news())

    async def _async_run(self) -> str:
        if self._before is not None:
            await self._before()
        try:
            client = await async_start_client(
                self.hass, self.settings, self._db, on_operation=self._async_on_operation
            )
            try:
                return client.device_id
            finally:
                await client.close()
        except BaseException:
            if self.new_outbox:
                await self.hass.async_add_executor_job(remove_outbox_files, self._db)
            raise

    @callback
    def _async_on_operation(self, operation: ProvisioningOperation) -> None:
        self.operation = operation
        self._async_tell_news()

    @callback
    def _async_tell_news(self) -> None:
        if not self._news.done():
            self._news.set_result(None)

    async def async_wait_for_news(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the code is known or the attempt ended (at most `timeout` seconds)."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._news)
        except TimeoutError:
            return
        if not self.task.done():
            # The next news can only be the end.
            self._news = self.hass.loop.create_future()

    def error(self) -> tuple[str, str] | None:
        """Return the form error of a failed attempt; raise what no form can show."""
        if (err := self.task.exception()) is None:
            return None
        for error_type, field, error in FORM_ERRORS:
            if isinstance(err, error_type):
                return field, error
        raise err

    @callback
    def async_abandon(self) -> asyncio.Task[None]:
        """Stop the attempt; remove the outbox it created (the device was never saved)."""
        self.task.cancel()
        return self.hass.async_create_background_task(
            self._async_remove_new_outbox(), f"{self.task.get_name()} cleanup"
        )

    async def _async_remove_new_outbox(self) -> None:
        # It closes the outbox first (and removes a new one when it fails).
        await asyncio.gather(self.task, return_exceptions=True)
        if self.new_outbox:
            await self.hass.async_add_executor_job(remove_outbox_files, self._db)

    def placeholders(self) -> dict[str, str]:
        """Return what the progress step shows: the device and its verification code."""
        assert self.operation is not None
        left = self.operation.expiration_time - dt_util.utcnow()
        return {
            "device_id": self.settings.device_id,
            "verification_code": self.operation.verification_code,
            # A clock time and a duration, not a timestamp: "at 14:32, in 15 minutes".
            "expiration_time": dt_util.as_local(self.operation.expiration_time).strftime("%H:%M"),
            "expires_in": str(max(math.ceil(left.total_seconds() / 60), 0)),
        }
