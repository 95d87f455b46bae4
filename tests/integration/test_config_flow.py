"""Tests for the config flow, against the cloud simulator."""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_USER, ConfigEntryState, ConfigFlowResult
from homeassistant.const import CONF_EMAIL, CONF_PASSWORD
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
import voluptuous as vol

from custom_components.crownstone_spotflow.const import (
    CONF_CLOUD_URL,
    CONF_PASSWORD_SHA1,
    CONF_SSE_URL,
    DOMAIN,
    SECTION_ADVANCED,
)
from custom_components.crownstone_spotflow.crownstone import (
    DEFAULT_BASE_URL,
    DEFAULT_SSE_URL,
    CrownstoneCloud,
)
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator

BOB_EMAIL = "bob@example.com"
BOB_PASSWORD = "bob-password"


def _user_input(
    cloud: CloudSimulator,
    *,
    email: str = DEMO_EMAIL,
    password: str | None = DEMO_PASSWORD,
    cloud_url: str | None = None,
) -> dict[str, Any]:
    """Return the form's input; no password (None) leaves the field out."""
    user_input: dict[str, Any] = {
        CONF_EMAIL: email,
        SECTION_ADVANCED: {CONF_CLOUD_URL: cloud_url or cloud.url, CONF_SSE_URL: cloud.sse_url},
    }
    if password is not None:
        user_input[CONF_PASSWORD] = password
    return user_input


def _entry_data(cloud: CloudSimulator, password: str = DEMO_PASSWORD) -> dict[str, Any]:
    """Return the entry data the flow stores: the password's sha1, never the password."""
    return {
        CONF_EMAIL: DEMO_EMAIL,
        CONF_PASSWORD_SHA1: hashlib.sha1(password.encode()).hexdigest(),
        CONF_CLOUD_URL: cloud.url,
        CONF_SSE_URL: cloud.sse_url,
    }


async def _async_start_account_flow(hass: HomeAssistant) -> ConfigFlowResult:
    """Open the add dialog and choose a Crownstone account from the menu."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.MENU
    assert result["menu_options"] == ["account", "mirror"]
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {"next_step_id": "account"}
    )


async def test_user_flow(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """The account is checked before the entry is created."""
    result = await _async_start_account_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "account"
    assert result["errors"] == {}
    # The advanced section defaults to the public cloud.
    defaults = {
        str(key): key.default()
        for key in result["data_schema"].schema[SECTION_ADVANCED].schema.schema
    }
    assert defaults == {CONF_CLOUD_URL: DEFAULT_BASE_URL, CONF_SSE_URL: DEFAULT_SSE_URL}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], _user_input(cloud))

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"Crownstone ({DEMO_EMAIL})"
    assert result["data"] == _entry_data(cloud)
    assert result["result"].unique_id == cloud.user_id(DEMO_EMAIL)
    await hass.async_block_till_done()
    assert result["result"].state is ConfigEntryState.LOADED


@pytest.mark.parametrize(
    ("break_it", "field", "error"),
    [
        (lambda cloud, user_input: user_input.update(password="wrong"), "password", "invalid_auth"),
        # Not valid Unicode, yet possible through the JSON API.
        (
            lambda cloud, user_input: user_input.update(password="pass\ud800word"),
            "password",
            "invalid_auth",
        ),
        (
            lambda cloud, user_input: cloud.set_email_verified(DEMO_EMAIL, False),
            "email",
            "email_not_verified",
        ),
        (lambda cloud, user_input: cloud.inject_fault("http_503"), "base", "cannot_connect"),
        (lambda cloud, user_input: cloud.inject_fault("html"), "base", "cannot_connect"),
        (
            lambda cloud, user_input: cloud.inject_fault("malformed_json"),
            "base",
            "cannot_connect",
        ),
        # A wrong cloud URL answers 404: the cloud is not where the URL points.
        (
            lambda cloud, user_input: user_input[SECTION_ADVANCED].update(
                cloud_url=f"{cloud.url}/nope"
            ),
            "base",
            "cannot_connect",
        ),
    ],
)
async def test_user_flow_errors_recover(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    caplog: pytest.LogCaptureFixture,
    break_it: Any,
    field: str,
    error: str,
) -> None:
    """Every error is shown on the form, and the same flow then succeeds."""
    result = await _async_start_account_flow(hass)
    user_input = _user_input(cloud)
    break_it(cloud, user_input)

    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)

    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "account"
    assert result["errors"] == {field: error}
    # Expected trouble is no bug: no traceback in the log.
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]

    cloud.clear_faults()
    cloud.set_email_verified(DEMO_EMAIL, True)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], _user_input(cloud))
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_unexpected_error_recovers(
    hass: HomeAssistant, cloud: CloudSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug (nothing the cloud can provoke) is logged with its traceback, never the password."""
    result = await _async_start_account_flow(hass)
    with patch.object(CrownstoneCloud, "async_login", side_effect=RuntimeError("a bug")):
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], _user_input(cloud)
        )
    assert result["errors"] == {"base": "unknown"}
    assert "RuntimeError: a bug" in caplog.text
    assert DEMO_PASSWORD not in caplog.text

    result = await hass.config_entries.flow.async_configure(result["flow_id"], _user_input(cloud))
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_unreachable_cloud_url(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """A cloud URL where nothing listens is a connection error."""
    result = await _async_start_account_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(cloud, cloud_url="http://127.0.0.1:9/api")
    )
    assert result["errors"] == {"base": "cannot_connect"}


async def test_form_never_shows_the_password_again(
    hass: HomeAssistant, cloud: CloudSimulator
) -> None:
    """After an error the form keeps the e-mail address but not the password."""
    result = await _async_start_account_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(cloud, password="wrong")
    )
    suggested = {
        str(key): (key.description or {}).get("suggested_value")
        for key in result["data_schema"].schema
    }
    assert suggested[CONF_EMAIL] == DEMO_EMAIL
    assert suggested[CONF_PASSWORD] is None


async def test_duplicate_account(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """The same account cannot be added twice, whatever the e-mail's case."""
    mock_config_entry.add_to_hass(hass)
    result = await _async_start_account_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(cloud, email=DEMO_EMAIL.upper())
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_reauth(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """A password changed elsewhere is entered again; an error on the way is recoverable."""
    mock_config_entry.add_to_hass(hass)
    cloud.change_password(DEMO_EMAIL, "new-password")

    result = await mock_config_entry.start_reauth_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["description_placeholders"][CONF_EMAIL] == DEMO_EMAIL

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PASSWORD: DEMO_PASSWORD}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {CONF_PASSWORD: "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PASSWORD: "new-password"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert mock_config_entry.data == _entry_data(cloud, password="new-password")
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.LOADED


@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        # The reauth form has no e-mail field, so the error must be on the form itself.
        (lambda cloud: cloud.set_email_verified(DEMO_EMAIL, False), "email_not_verified"),
        (lambda cloud: cloud.inject_fault("http_503", path="/users/login"), "cannot_connect"),
    ],
)
async def test_reauth_errors_recover(
    hass: HomeAssistant,
    cloud: CloudSimulator,
    mock_config_entry: MockConfigEntry,
    break_it: Any,
    error: str,
) -> None:
    """Errors other than a wrong password are shown on the reauth form, then it succeeds."""
    mock_config_entry.add_to_hass(hass)
    cloud.change_password(DEMO_EMAIL, "new-password")
    break_it(cloud)

    result = await mock_config_entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PASSWORD: "new-password"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reauth_confirm"
    assert result["errors"] == {"base": error}

    cloud.clear_faults()
    cloud.set_email_verified(DEMO_EMAIL, True)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PASSWORD: "new-password"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert mock_config_entry.data == _entry_data(cloud, password="new-password")


async def test_reauth_wrong_account(hass: HomeAssistant, cloud: CloudSimulator) -> None:
    """An account re-created under the same e-mail address is another account."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id="the-deleted-account",
        data=_entry_data(cloud, password="old"),
        minor_version=2,
    )
    entry.add_to_hass(hass)

    result = await entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_PASSWORD: DEMO_PASSWORD}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"
    assert entry.data == _entry_data(cloud, password="old")


async def test_reconfigure(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """The password and the URLs change for the same account; errors are recoverable."""
    mock_config_entry.add_to_hass(hass)
    cloud.change_password(DEMO_EMAIL, "new-password")

    result = await mock_config_entry.start_reconfigure_flow(hass)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "reconfigure"
    suggested = {
        str(key): (key.description or {}).get("suggested_value")
        for key in result["data_schema"].schema
    }
    assert suggested[CONF_EMAIL] == DEMO_EMAIL

    cloud.inject_fault("reset", count=1)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(cloud, password="new-password")
    )
    assert result["errors"] == {"base": "cannot_connect"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(cloud, password="new-password")
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert mock_config_entry.data == _entry_data(cloud, password="new-password")
    await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.LOADED


@pytest.mark.parametrize("password", [None, ""])
async def test_reconfigure_without_password(
    hass: HomeAssistant, cloud: CloudSimulator, password: str | None
) -> None:
    """Changing only a URL keeps the stored password, which still has to log in."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        unique_id=cloud.user_id(DEMO_EMAIL),
        data={**_entry_data(cloud), CONF_SSE_URL: "http://127.0.0.1:9/sse"},
        minor_version=2,
    )
    entry.add_to_hass(hass)

    result = await entry.start_reconfigure_flow(hass)
    password_key = next(key for key in result["data_schema"].schema if key == CONF_PASSWORD)
    assert isinstance(password_key, vol.Optional)

    # The stored password is checked before anything is saved.
    cloud.inject_fault("http_503", path="/users/login", count=1)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(cloud, password=password)
    )
    assert result["errors"] == {"base": "cannot_connect"}
    assert entry.data[CONF_SSE_URL] == "http://127.0.0.1:9/sse"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(cloud, password=password)
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data == _entry_data(cloud)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_wrong_account(
    hass: HomeAssistant, cloud: CloudSimulator, mock_config_entry: MockConfigEntry
) -> None:
    """Another account's credentials abort the reconfiguration and change nothing."""
    mock_config_entry.add_to_hass(hass)

    result = await mock_config_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], _user_input(cloud, email=BOB_EMAIL, password=BOB_PASSWORD)
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_account"
    assert mock_config_entry.data == _entry_data(cloud)
