"""Options flow: mirror entity states into a Spotflow stream, provisioning the device first."""

from __future__ import annotations

import asyncio
from dataclasses import replace
import json
from pathlib import Path
import re
import ssl
from typing import Any, Final

from homeassistant.config_entries import ConfigFlowResult, OptionsFlow
from homeassistant.core import callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers import instance_id
from homeassistant.helpers.selector import (
    BooleanSelector,
    EntitySelector,
    EntitySelectorConfig,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
from homeassistant.util import dt as dt_util, slugify
import voluptuous as vol

from .const import LOGGER
from .forwarder import (
    DEVICE_ID_PATTERN,
    FILTER_KEYS,
    OPTIONS_KEY,
    ForwarderSettings,
    async_get_forwarder,
    async_start_client,
    entity_filter_config,
    new_outbox_name,
    outbox_path,
    remove_outbox_files,
)
from .spotflow import (
    Compression,
    ProvisioningOperation,
    ProvisioningOperationCancelledError,
    ProvisioningOperationExpiredError,
    ProvisioningTokenInvalidError,
    SpotflowError,
    WorkspaceDisabledError,
)

CONF_ENABLED: Final = "enabled"
CONF_PROVISIONING_TOKEN: Final = "provisioning_token"
CONF_DEVICE_ID: Final = "device_id"
CONF_INSTANCE: Final = "instance"
CONF_STREAM_GROUP: Final = "stream_group"
CONF_STREAM: Final = "stream"
CONF_COMPRESSION: Final = "compression"
CONF_INCLUDE_ATTRIBUTES: Final = "include_attributes"
CONF_CA_CERTIFICATE: Final = "ca_certificate"
SECTION_ENTITIES: Final = "entities"
SECTION_ADVANCED: Final = "advanced"

# A platform instance is a host name, optionally with a port.
INSTANCE_PATTERN: Final = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
DOMAIN_PATTERN: Final = re.compile(r"[a-z0-9_]+")
PEM_MARKER: Final = "-----BEGIN CERTIFICATE-----"

_PROVISIONING_ERRORS: Final[tuple[tuple[type[SpotflowError], str, str], ...]] = (
    (ProvisioningTokenInvalidError, CONF_PROVISIONING_TOKEN, "invalid_provisioning_token"),
    (ProvisioningOperationCancelledError, "base", "provisioning_cancelled"),
    (ProvisioningOperationExpiredError, "base", "provisioning_expired"),
    (WorkspaceDisabledError, "base", "workspace_disabled"),
)


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


def _read_ca_certificate(value: str) -> str:
    """Return the PEM text of a CA certificate given as PEM or as a path; raise ValueError."""
    pem = value if PEM_MARKER in value else Path(value).read_text(encoding="ascii")
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as err:
        raise ValueError("not a PEM CA certificate") from err
    return pem.strip() + "\n"


class ForwarderOptionsFlow(OptionsFlow):
    """Configure mirroring into Spotflow; provision the device when its identity changes."""

    def __init__(self) -> None:
        """Initialize the flow."""
        self._user_input: dict[str, Any] | None = None
        self._entered_token: str | None = None
        self._errors: dict[str, str] = {}
        self._candidate: ForwarderSettings | None = None
        self._new_outbox = False
        self._saved = False
        self._provisioning: asyncio.Task[str] | None = None
        self._operation: ProvisioningOperation | None = None
        self._news: asyncio.Future[None] | None = None
        self._waiter: asyncio.Task[None] | None = None

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show the settings; save them, or provision a device with them first."""
        current = ForwarderSettings.from_entry(self.config_entry)
        if user_input is not None:
            self._user_input = user_input
            if not user_input[CONF_ENABLED]:
                return self._async_save(replace(current, enabled=False))
            candidate = await self._async_validate(user_input, current)
            if candidate is not None:
                if current.same_registration(candidate):
                    return self._async_save(replace(candidate, outbox=current.outbox))
                # Provisioning again in the outbox in use keeps the records waiting in it.
                self._new_outbox = current.outbox is None
                self._candidate = replace(
                    candidate, outbox=current.outbox or new_outbox_name(self.config_entry.entry_id)
                )
                return await self.async_step_provision()
        suggested = dict(self._user_input or await self._async_suggested_values(current))
        suggested.pop(CONF_PROVISIONING_TOKEN, None)
        forwarder = async_get_forwarder(self.hass, self.config_entry.entry_id)
        desired = forwarder.desired if forwarder else None
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(self._schema(), suggested),
            errors=self._errors,
            description_placeholders={
                "platform_settings": json.dumps(desired.values if desired else {}),
            },
        )

    async def _async_validate(
        self, user_input: dict[str, Any], current: ForwarderSettings
    ) -> ForwarderSettings | None:
        """Return the settings the input describes, or None with self._errors set."""
        self._errors = {}
        if entered_token := user_input.get(CONF_PROVISIONING_TOKEN, "").strip():
            self._entered_token = entered_token
        token = self._entered_token or current.provisioning_token
        if not token:
            self._errors[CONF_PROVISIONING_TOKEN] = "provisioning_token_required"
        device_id = user_input[CONF_DEVICE_ID].strip()
        if not DEVICE_ID_PATTERN.fullmatch(device_id):
            self._errors[CONF_DEVICE_ID] = "invalid_device_id"
        instance = user_input[CONF_INSTANCE].strip()
        if not INSTANCE_PATTERN.fullmatch(instance):
            self._errors[CONF_INSTANCE] = "invalid_instance"
        entities = user_input[SECTION_ENTITIES]
        for key in FILTER_KEYS:
            if "domains" in key and not all(map(DOMAIN_PATTERN.fullmatch, entities.get(key, []))):
                self._errors["base"] = "invalid_domain"
        ca_certificate: str | None = None
        if ca_input := user_input[SECTION_ADVANCED].get(CONF_CA_CERTIFICATE, "").strip():
            try:
                ca_certificate = await self.hass.async_add_executor_job(
                    _read_ca_certificate, ca_input
                )
            except (OSError, ValueError, UnicodeDecodeError):
                self._errors["base"] = "invalid_ca_certificate"
        if self._errors:
            return None
        return ForwarderSettings(
            enabled=True,
            provisioning_token=token,
            device_id=device_id,
            instance=instance,
            stream_group=user_input.get(CONF_STREAM_GROUP, "").strip() or None,
            stream=user_input.get(CONF_STREAM, "").strip() or None,
            compression=Compression(user_input[CONF_COMPRESSION]),
            include_attributes=user_input[CONF_INCLUDE_ATTRIBUTES],
            entity_filter=entity_filter_config(entities),
            ca_certificate=ca_certificate,
        )

    async def async_step_provision(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Provision the device: show the verification code until someone approves."""
        assert self._candidate is not None
        if self._provisioning is None:
            self._operation = None
            # Background tasks: Home Assistant does not wait for a person at shutdown.
            self._provisioning = self.hass.async_create_background_task(
                self._async_provision(self._candidate),
                f"{self.handler} spotflow provisioning",
                eager_start=False,
            )
            self._provisioning.add_done_callback(lambda _: self._async_tell_news())
        if self._provisioning.done():
            return self.async_show_progress_done(next_step_id=self._async_provisioning_outcome())
        # The progress step comes back here when provisioning ends or a new code appears.
        if self._waiter is None or self._waiter.done():
            self._news = self.hass.loop.create_future()
            self._waiter = self.hass.async_create_background_task(
                self._async_wait(self._news), f"{self.handler} spotflow provisioning progress"
            )
        waiter = self._waiter
        if (operation := self._operation) is None:
            return self.async_show_progress(
                step_id="provision", progress_action="start_provisioning", progress_task=waiter
            )
        return self.async_show_progress(
            step_id="provision",
            progress_action="wait_for_approval",
            description_placeholders={
                "device_id": self._candidate.device_id,
                "verification_code": operation.verification_code,
                "expiration_time": dt_util.as_local(operation.expiration_time).isoformat(
                    timespec="minutes"
                ),
            },
            progress_task=waiter,
        )

    async def async_step_finish(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Save the settings of the newly provisioned device."""
        assert self._candidate is not None
        return self._async_save(self._candidate)

    @callback
    def async_remove(self) -> None:
        """Stop provisioning when the person closes the flow, and undo what it left."""
        if self._saved or self._candidate is None:
            return
        if (provisioning := self._provisioning) is not None:
            provisioning.cancel()
        self.hass.async_create_background_task(
            self._async_undo(provisioning, self._candidate),
            f"{self.handler} spotflow provisioning cleanup",
        )

    async def _async_undo(
        self, provisioning: asyncio.Task[str] | None, candidate: ForwarderSettings
    ) -> None:
        if provisioning is not None:
            # It closes the outbox first.
            await asyncio.gather(provisioning, return_exceptions=True)
        if not self._new_outbox:
            # Provisioning stopped the forwarder; it starts again as it was.
            self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)
            return
        assert candidate.outbox is not None
        await self.hass.async_add_executor_job(
            remove_outbox_files, outbox_path(self.hass, candidate.outbox)
        )

    async def _async_provision(self, settings: ForwarderSettings) -> str:
        """Provision in the outbox; return the device id the approver settled on."""
        assert settings.outbox is not None
        db = outbox_path(self.hass, settings.outbox)
        if not self._new_outbox and (
            forwarder := async_get_forwarder(self.hass, self.config_entry.entry_id)
        ):
            # One client at a time uses an outbox; the entry reloads when the flow ends.
            await forwarder.async_stop()
        try:
            client = await async_start_client(
                self.hass, settings, db, on_operation=self._async_on_operation
            )
            try:
                return client.device_id
            finally:
                await client.close()
        except BaseException:
            if self._new_outbox:
                await self.hass.async_add_executor_job(remove_outbox_files, db)
            raise

    @callback
    def _async_on_operation(self, operation: ProvisioningOperation) -> None:
        self._operation = operation
        self._async_tell_news()

    @callback
    def _async_tell_news(self) -> None:
        if self._news is not None and not self._news.done():
            self._news.set_result(None)

    @staticmethod
    async def _async_wait(news: asyncio.Future[None]) -> None:
        await news

    @callback
    def _async_provisioning_outcome(self) -> str:
        """Return the step after provisioning: finish, or back to the form with the error."""
        assert self._provisioning is not None
        assert self._candidate is not None
        provisioning, self._provisioning = self._provisioning, None
        try:
            device_id = provisioning.result()
        except SpotflowError as err:
            for error_type, field, error in _PROVISIONING_ERRORS:
                if isinstance(err, error_type):
                    self._errors = {field: error}
                    break
            else:
                LOGGER.warning("Provisioning the Spotflow device failed: %s", err)
                self._errors = {"base": "cannot_provision"}
            if isinstance(err, ProvisioningTokenInvalidError):
                self._entered_token = None
            return "init"
        except Exception:
            LOGGER.exception("Unexpected error while provisioning the Spotflow device")
            self._errors = {"base": "unknown"}
            return "init"
        self._candidate = replace(self._candidate, device_id=device_id)
        return "finish"

    @callback
    def _async_save(self, settings: ForwarderSettings) -> ConfigFlowResult:
        self._saved = True
        forwarder = async_get_forwarder(self.hass, self.config_entry.entry_id)
        return async_save_options_and_reload(
            self,
            {**self.config_entry.options, OPTIONS_KEY: settings.as_options()},
            # Submitting again is how the repairs say to retry a start that failed.
            reload=settings.enabled and (forwarder is None or forwarder.client is None),
        )

    async def _async_suggested_values(self, current: ForwarderSettings) -> dict[str, Any]:
        return {
            CONF_ENABLED: current.enabled,
            CONF_DEVICE_ID: current.device_id or await self._async_default_device_id(),
            CONF_INSTANCE: current.instance,
            CONF_STREAM_GROUP: current.stream_group or "",
            CONF_STREAM: current.stream or "",
            CONF_COMPRESSION: str(current.compression),
            CONF_INCLUDE_ATTRIBUTES: current.include_attributes,
            SECTION_ENTITIES: dict(current.entity_filter),
            SECTION_ADVANCED: {CONF_CA_CERTIFICATE: current.ca_certificate or ""},
        }

    async def _async_default_device_id(self) -> str:
        """Return `ha-<location>-<instance>`: readable, and unique across installations."""
        location = slugify(self.hass.config.location_name, separator="-")
        unique = (await instance_id.async_get(self.hass))[:8]
        return "-".join(part for part in ("ha", location[:72], unique) if part)

    def _schema(self) -> vol.Schema:
        text = TextSelector()
        texts = TextSelector(TextSelectorConfig(multiple=True))
        entities = EntitySelector(EntitySelectorConfig(multiple=True))
        domains = SelectSelector(
            SelectSelectorConfig(
                options=sorted(
                    {
                        entity_id.split(".", 1)[0]
                        for entity_id in self.hass.states.async_entity_ids()
                    }
                ),
                multiple=True,
                custom_value=True,
                sort=True,
            )
        )
        return vol.Schema(
            {
                vol.Required(CONF_ENABLED): BooleanSelector(),
                vol.Optional(CONF_PROVISIONING_TOKEN): TextSelector(
                    TextSelectorConfig(type=TextSelectorType.PASSWORD)
                ),
                vol.Required(CONF_DEVICE_ID): text,
                vol.Required(CONF_INSTANCE): text,
                vol.Optional(CONF_STREAM_GROUP): text,
                vol.Optional(CONF_STREAM): text,
                vol.Required(CONF_COMPRESSION): SelectSelector(
                    SelectSelectorConfig(
                        options=[str(compression) for compression in Compression],
                        mode=SelectSelectorMode.DROPDOWN,
                        translation_key=CONF_COMPRESSION,
                    )
                ),
                vol.Required(CONF_INCLUDE_ATTRIBUTES): BooleanSelector(),
                vol.Required(SECTION_ENTITIES): section(
                    vol.Schema(
                        {
                            vol.Optional(key): (
                                domains
                                if "domains" in key
                                else texts
                                if "globs" in key
                                else entities
                            )
                            for key in FILTER_KEYS
                        }
                    )
                ),
                vol.Required(SECTION_ADVANCED): section(
                    vol.Schema(
                        {
                            vol.Optional(CONF_CA_CERTIFICATE): TextSelector(
                                TextSelectorConfig(multiline=True)
                            )
                        }
                    ),
                    {"collapsed": True},
                ),
            }
        )
