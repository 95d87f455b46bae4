"""Config flow for the Crownstone + Spotflow integration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_EMAIL, CONF_PASSWORD
from homeassistant.core import callback
from homeassistant.data_entry_flow import section
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import voluptuous as vol

from .const import (
    CONF_CLOUD_URL,
    CONF_PASSWORD_SHA1,
    CONF_SSE_URL,
    DOMAIN,
    LOGGER,
    SECTION_ADVANCED,
)
from .crownstone import (
    DEFAULT_BASE_URL,
    DEFAULT_SSE_URL,
    CrownstoneAuthenticationError,
    CrownstoneCloud,
    CrownstoneConnectionError,
    CrownstoneEmailNotVerifiedError,
    CrownstoneInvalidResponseError,
    CrownstoneUnknownError,
    hash_password,
)
from .mirror import MirrorConfigEntry, is_mirror_entry
from .mirror.config_flow import MirrorConfigFlowSteps, MirrorOptionsFlow

_PASSWORD_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))
_URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))


def _account_schema(*, cloud_url: str, sse_url: str, password_required: bool = True) -> vol.Schema:
    password = vol.Required if password_required else vol.Optional
    return vol.Schema(
        {
            vol.Required(CONF_EMAIL): TextSelector(
                TextSelectorConfig(type=TextSelectorType.EMAIL, autocomplete="username")
            ),
            password(CONF_PASSWORD): _PASSWORD_SELECTOR,
            # Only a self-hosted cloud (or a simulator) needs these.
            vol.Required(SECTION_ADVANCED): section(
                vol.Schema(
                    {
                        vol.Required(CONF_CLOUD_URL, default=cloud_url): _URL_SELECTOR,
                        vol.Required(CONF_SSE_URL, default=sse_url): _URL_SELECTOR,
                    }
                ),
                {"collapsed": True},
            ),
        }
    )


def _without_password(user_input: Mapping[str, Any]) -> dict[str, Any]:
    """Return what a form may show again: never the password."""
    return {key: value for key, value in user_input.items() if key != CONF_PASSWORD}


def _entry_data(user_input: Mapping[str, Any], password_sha1: str) -> dict[str, Any]:
    """Flatten the form's advanced section into the entry data."""
    return {
        CONF_EMAIL: user_input[CONF_EMAIL],
        CONF_PASSWORD_SHA1: password_sha1,
        CONF_CLOUD_URL: user_input[SECTION_ADVANCED][CONF_CLOUD_URL],
        CONF_SSE_URL: user_input[SECTION_ADVANCED][CONF_SSE_URL],
    }


class CrownstoneConfigFlow(MirrorConfigFlowSteps, ConfigFlow, domain=DOMAIN):
    """Add a Crownstone account (any number), or the mirror to Spotflow (one).

    The cloud hands out no refresh token, so an account's entry keeps what logging in again needs
    when an access token expires: the sha1 of the password, which is all the cloud ever sees.
    The mirror's steps come from its own package.
    """

    VERSION = 1
    # 1.3: the mirror settings moved from an account's options into an entry of their own.
    MINOR_VERSION = 3

    @classmethod
    @callback
    def async_supports_options_flow(cls, config_entry: ConfigEntry) -> bool:
        """Only the mirror has options."""
        return is_mirror_entry(config_entry)

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: MirrorConfigEntry) -> MirrorOptionsFlow:
        """Return the mirror's options flow."""
        return MirrorOptionsFlow()

    async def _async_login(
        self, data: Mapping[str, Any], errors: dict[str, str], *, email_field: str = CONF_EMAIL
    ) -> str | None:
        """Log in; return the account's user id, or None with the reason in `errors`.

        `email_field` is where the form shows an unverified address: "base" on a form that has
        no e-mail field, or the error would not be shown at all.
        """
        cloud = CrownstoneCloud(
            data[CONF_EMAIL],
            websession=async_get_clientsession(self.hass),
            password_sha1=data[CONF_PASSWORD_SHA1],
            base_url=data[CONF_CLOUD_URL],
        )
        try:
            return await cloud.async_login()
        except CrownstoneEmailNotVerifiedError:
            errors[email_field] = "email_not_verified"
        except CrownstoneAuthenticationError:
            errors[CONF_PASSWORD] = "invalid_auth"
        # A refusal other than 401 (a 404 from a wrong cloud URL, say) is no bug of ours either.
        except (
            CrownstoneConnectionError,
            CrownstoneInvalidResponseError,
            CrownstoneUnknownError,
        ):
            errors["base"] = "cannot_connect"
        except Exception:
            LOGGER.exception("Unexpected error while logging in to the Crownstone cloud")
            errors["base"] = "unknown"
        return None

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask what to add: a Crownstone account, or the mirror to Spotflow."""
        return self.async_show_menu(step_id="user", menu_options=["account", "mirror"])

    async def async_step_account(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the account."""
        errors: dict[str, str] = {}
        if user_input is not None:
            data = _entry_data(user_input, hash_password(user_input[CONF_PASSWORD]))
            if user_id := await self._async_login(data, errors):
                await self.async_set_unique_id(user_id)
                self._abort_if_unique_id_configured()
                return self.async_create_entry(title=f"Crownstone ({data[CONF_EMAIL]})", data=data)

        return self.async_show_form(
            step_id="account",
            data_schema=self.add_suggested_values_to_schema(
                _account_schema(cloud_url=DEFAULT_BASE_URL, sse_url=DEFAULT_SSE_URL),
                _without_password(user_input or {}),
            ),
            errors=errors,
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """Start over when the cloud refuses the stored password."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Ask for the password again."""
        errors: dict[str, str] = {}
        entry = self._get_reauth_entry()
        if user_input is not None:
            data = {**entry.data, CONF_PASSWORD_SHA1: hash_password(user_input[CONF_PASSWORD])}
            if user_id := await self._async_login(data, errors, email_field="base"):
                await self.async_set_unique_id(user_id)
                self._abort_if_unique_id_mismatch(reason="wrong_account")
                return self.async_update_reload_and_abort(entry, data=data)

        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_PASSWORD): _PASSWORD_SELECTOR}),
            description_placeholders={CONF_EMAIL: entry.data[CONF_EMAIL]},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the password or the cloud's addresses of the same account."""
        errors: dict[str, str] = {}
        entry = self._get_reconfigure_entry()
        if user_input is not None:
            # An empty password keeps the stored one, so changing a URL needs no password.
            password = user_input.get(CONF_PASSWORD)
            data = _entry_data(
                user_input, hash_password(password) if password else entry.data[CONF_PASSWORD_SHA1]
            )
            if user_id := await self._async_login(data, errors):
                await self.async_set_unique_id(user_id)
                self._abort_if_unique_id_mismatch(reason="wrong_account")
                return self.async_update_reload_and_abort(
                    entry, title=f"Crownstone ({data[CONF_EMAIL]})", data=data
                )

        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                _account_schema(
                    cloud_url=entry.data[CONF_CLOUD_URL],
                    sse_url=entry.data[CONF_SSE_URL],
                    password_required=False,
                ),
                _without_password(user_input or {CONF_EMAIL: entry.data[CONF_EMAIL]}),
            ),
            errors=errors,
        )
