"""Options of the mirror entry: on/off, stream, compression, attributes, entity filter.

A new token, device ID or instance provisions the device again in the outbox in use, so the
records waiting in it are delivered afterwards. Everything else is saved at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from homeassistant.config_entries import ConfigFlowResult, OptionsFlow
from homeassistant.core import callback

from custom_components.crownstone_spotflow.const import LOGGER

from .form import (
    CONF_ENABLED,
    CONF_PROVISIONING_TOKEN,
    async_validate,
    describe_desired,
    options_schema,
    suggested_values,
)
from .provisioning import CODE_WAIT, Provisioning
from .settings import MirrorSettings

if TYPE_CHECKING:
    from . import MirrorConfigEntry
    from .supervisor import MirrorSupervisor


@callback
def async_save_options_and_reload(
    flow: OptionsFlow, options: dict[str, Any], *, reload: bool = False
) -> ConfigFlowResult:
    """Finish an options flow and apply the new options by reloading the entry.

    `OptionsFlowWithReload` does not exist in Home Assistant 2025.4, and update listeners are
    deprecated in newer releases; updating the entry and scheduling its reload here does the same
    on every release (the flow manager then finds the options unchanged). `reload` reloads even
    when the options did not change.
    """
    hass = flow.hass
    entry = flow.config_entry
    if hass.config_entries.async_update_entry(entry, options=options) or reload:
        hass.config_entries.async_schedule_reload(entry.entry_id)
    return flow.async_create_entry(data=options)


class MirrorOptionsFlow(OptionsFlow):
    """Change the mirror's settings; provision the device when its identity changes."""

    def __init__(self) -> None:
        """Initialize the flow."""
        self._user_input: dict[str, Any] | None = None
        self._entered_token: str | None = None
        self._errors: dict[str, str] = {}
        self._candidate: MirrorSettings | None = None
        self._provisioning: Provisioning | None = None
        self._progress_shown = False
        self._saved = False
        # Set once an attempt stopped the mirror: closing the dialog must start it again.
        self._mirror_stopped = False

    @property
    def _supervisor(self) -> MirrorSupervisor | None:
        """Return the running supervisor of the mirror entry, if mirroring is on."""
        entry: MirrorConfigEntry = self.config_entry
        # An entry that is not loaded (its setup failed, or it is reloading) has no runtime data.
        runtime = getattr(entry, "runtime_data", None)
        return runtime.supervisor if runtime is not None else None

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show the settings; save them, or provision a device with them first."""
        current = MirrorSettings.from_entry(self.config_entry)
        if user_input is not None:
            self._user_input = user_input
            if not user_input[CONF_ENABLED]:
                return self._async_save(replace(current, enabled=False))
            if entered := user_input.get(CONF_PROVISIONING_TOKEN, "").strip():
                self._entered_token = entered
            token = self._entered_token or current.provisioning_token
            candidate, self._errors = await async_validate(self.hass, user_input, current, token)
            if not self._errors:
                if current.same_registration(candidate):
                    return self._async_save(candidate)
                return await self._async_provision(candidate, current)
        suggested = dict(self._user_input or suggested_values(current))
        suggested.pop(CONF_PROVISIONING_TOKEN, None)
        supervisor = self._supervisor
        desired = supervisor.desired if supervisor else None
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(options_schema(self.hass), suggested),
            errors=self._errors,
            description_placeholders={
                "platform_settings": describe_desired(desired.values if desired else {}),
            },
        )

    async def _async_provision(
        self, candidate: MirrorSettings, current: MirrorSettings
    ) -> ConfigFlowResult:
        # Provisioning again in the outbox in use keeps the records waiting in it.
        assert current.outbox is not None
        self._candidate = candidate
        supervisor = self._supervisor
        self._mirror_stopped = True
        # One client at a time uses an outbox; the entry reloads when the flow ends.
        self._provisioning = Provisioning(
            self.hass,
            candidate,
            new_outbox=False,
            name=f"{self.handler} spotflow provisioning",
            before=supervisor.async_stop if supervisor else None,
        )
        self._progress_shown = False
        return await self.async_step_provision()

    async def async_step_provision(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Provision the device: show the verification code until someone approves."""
        assert self._provisioning is not None
        provisioning = self._provisioning
        if not self._progress_shown:
            await provisioning.async_wait_for_news(CODE_WAIT)
        if provisioning.task.done():
            next_step = self._async_outcome(provisioning)
            if self._progress_shown:
                self._progress_shown = False
                return self.async_show_progress_done(next_step_id=next_step)
            return await (
                self.async_step_finish() if next_step == "finish" else self.async_step_init()
            )
        self._progress_shown = True
        waiter = self.hass.async_create_background_task(
            provisioning.async_wait_for_news(), f"{self.handler} spotflow provisioning progress"
        )
        if provisioning.operation is None:
            return self.async_show_progress(
                step_id="provision", progress_action="start_provisioning", progress_task=waiter
            )
        return self.async_show_progress(
            step_id="provision",
            progress_action="wait_for_approval",
            description_placeholders=provisioning.placeholders(),
            progress_task=waiter,
        )

    async def async_step_finish(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Save the settings of the newly provisioned device."""
        assert self._candidate is not None
        return self._async_save(self._candidate)

    @callback
    def _async_outcome(self, provisioning: Provisioning) -> str:
        """Return the step after provisioning: finish, or back to the form with the error."""
        assert self._candidate is not None
        self._provisioning = None
        try:
            if (error := provisioning.error()) is not None:
                field, key = error
                self._errors = {field: key}
                if key == "invalid_provisioning_token":
                    self._entered_token = None
                return "init"
        except Exception:
            LOGGER.exception("Provisioning the Spotflow device failed")
            self._errors = {"base": "cannot_provision"}
            return "init"
        self._candidate = replace(self._candidate, device_id=provisioning.task.result())
        return "finish"

    @callback
    def async_remove(self) -> None:
        """Stop provisioning when the person closes the flow; the mirror starts as it was."""
        if self._saved or not self._mirror_stopped:
            return
        entry_id = self.config_entry.entry_id
        if (provisioning := self._provisioning) is None:
            # The last attempt already ended (refused, cancelled, failed): nothing to abandon.
            self.hass.config_entries.async_schedule_reload(entry_id)
            return
        cleanup = provisioning.async_abandon()
        cleanup.add_done_callback(
            lambda _: self.hass.config_entries.async_schedule_reload(entry_id)
        )

    @callback
    def _async_save(self, settings: MirrorSettings) -> ConfigFlowResult:
        self._saved = True
        supervisor = self._supervisor
        return async_save_options_and_reload(
            self,
            settings.as_options(),
            # Submitting again is how the repairs say to retry a start that failed; after
            # provisioning the client must start again too.
            reload=settings.enabled and (supervisor is None or supervisor.client is None),
        )
