"""Adding the mirror: provision a Spotflow device (with a person's approval), then create the entry.

One mirror per Home Assistant. Its steps are mixed into the domain's config flow, whose first step
offers a choice between a Crownstone account and the mirror.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
from homeassistant.core import callback

from custom_components.crownstone_spotflow.const import LOGGER
from custom_components.crownstone_spotflow.spotflow import DEFAULT_INSTANCE

from .form import (
    CONF_DEVICE_ID,
    CONF_INSTANCE,
    CONF_PROVISIONING_TOKEN,
    async_default_device_id,
    async_validate,
    identity_schema,
)
from .options_flow import MirrorOptionsFlow
from .provisioning import CODE_WAIT, Provisioning
from .settings import MIRROR_DATA, MIRROR_UNIQUE_ID, MirrorSettings, new_outbox_name

MIRROR_TITLE: Final = "Mirror to Spotflow"


class MirrorConfigFlowSteps(ConfigFlow):
    """The steps that add the mirror entry; the domain's config flow inherits them."""

    _mirror_input: dict[str, Any] | None = None
    _mirror_errors: dict[str, str] | None = None
    _mirror_candidate: MirrorSettings | None = None
    _mirror_provisioning: Provisioning | None = None
    _mirror_progress_shown = False

    async def async_step_mirror(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the provisioning token and the device's name; then provision it."""
        # Not raise_on_progress: a dialog left open in a closed browser tab must not keep anyone
        # from adding the mirror. The first to finish wins; Home Assistant then ends the others.
        await self.async_set_unique_id(MIRROR_UNIQUE_ID, raise_on_progress=False)
        self._abort_if_unique_id_configured(error="single_instance_allowed")
        errors = self._mirror_errors or {}
        self._mirror_errors = None
        if user_input is not None:
            self._mirror_input = user_input
            token = user_input.get(CONF_PROVISIONING_TOKEN, "").strip()
            candidate, errors = await async_validate(self.hass, user_input, MirrorSettings(), token)
            if not errors:
                self._mirror_candidate = candidate = replace(
                    candidate, outbox=new_outbox_name(self.flow_id)
                )
                self._mirror_provisioning = Provisioning(
                    self.hass,
                    candidate,
                    new_outbox=True,
                    name=f"{self.handler} spotflow provisioning {self.flow_id}",
                )
                self._mirror_progress_shown = False
                return await self.async_step_mirror_provision()
        suggested = dict(
            self._mirror_input or {CONF_DEVICE_ID: await async_default_device_id(self.hass)}
        )
        suggested.pop(CONF_PROVISIONING_TOKEN, None)
        return self.async_show_form(
            step_id="mirror",
            data_schema=self.add_suggested_values_to_schema(
                identity_schema(), {CONF_INSTANCE: DEFAULT_INSTANCE, **suggested}
            ),
            errors=errors,
        )

    async def async_step_mirror_provision(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show the verification code until someone approves the device."""
        assert self._mirror_provisioning is not None
        provisioning = self._mirror_provisioning
        if not self._mirror_progress_shown:
            # The first progress step the frontend sees must already carry the code.
            await provisioning.async_wait_for_news(CODE_WAIT)
        if provisioning.task.done():
            next_step = self._async_mirror_outcome(provisioning)
            if self._mirror_progress_shown:
                self._mirror_progress_shown = False
                return self.async_show_progress_done(next_step_id=next_step)
            return await (
                self.async_step_mirror_finish()
                if next_step == "mirror_finish"
                else self.async_step_mirror()
            )
        self._mirror_progress_shown = True
        waiter = self.hass.async_create_background_task(
            provisioning.async_wait_for_news(), f"{self.handler} spotflow provisioning progress"
        )
        if provisioning.operation is None:
            return self.async_show_progress(
                step_id="mirror_provision",
                progress_action="start_provisioning",
                progress_task=waiter,
            )
        return self.async_show_progress(
            step_id="mirror_provision",
            progress_action="wait_for_approval",
            description_placeholders=provisioning.placeholders(),
            progress_task=waiter,
        )

    @callback
    def _async_mirror_outcome(self, provisioning: Provisioning) -> str:
        assert self._mirror_candidate is not None
        self._mirror_provisioning = None
        try:
            if (error := provisioning.error()) is not None:
                field, key = error
                self._mirror_errors = {field: key}
                return "mirror"
        except Exception:
            LOGGER.exception("Provisioning the Spotflow device failed")
            self._mirror_errors = {"base": "cannot_provision"}
            return "mirror"
        self._mirror_candidate = replace(
            self._mirror_candidate, device_id=provisioning.task.result()
        )
        return "mirror_finish"

    async def async_step_mirror_finish(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Create the mirror entry for the provisioned device."""
        assert self._mirror_candidate is not None
        settings, self._mirror_candidate = self._mirror_candidate, None
        return self.async_create_entry(
            title=MIRROR_TITLE, data=MIRROR_DATA, options=settings.as_options()
        )

    async def async_step_import(self, import_data: dict[str, Any]) -> ConfigFlowResult:
        """Take over the mirror settings of a release that kept them in an account's options."""
        await self.async_set_unique_id(MIRROR_UNIQUE_ID)
        self._abort_if_unique_id_configured(error="single_instance_allowed")
        settings = MirrorSettings.from_options(import_data)
        return self.async_create_entry(
            title=MIRROR_TITLE, data=MIRROR_DATA, options=settings.as_options()
        )

    @callback
    def async_remove(self) -> None:
        """Stop provisioning when the person closes the dialog, and delete its new outbox."""
        if (provisioning := self._mirror_provisioning) is not None:
            self._mirror_provisioning = None
            provisioning.async_abandon()


__all__ = ["MIRROR_TITLE", "MirrorConfigFlowSteps", "MirrorOptionsFlow"]
