"""The mirror's forms: their fields, and what the entered values mean as settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
import json
from pathlib import Path
import re
import ssl
from typing import Any, Final

from homeassistant.core import HomeAssistant
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
from homeassistant.util import slugify
import voluptuous as vol

from custom_components.crownstone_spotflow.spotflow import Compression

from .settings import DEVICE_ID_PATTERN, FILTER_KEYS, MirrorSettings, entity_filter_config

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


def _read_ca_certificate(value: str) -> str:
    """Return the PEM text of a CA certificate given as PEM or as a path; raise ValueError."""
    pem = value if PEM_MARKER in value else Path(value).read_text(encoding="ascii")
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as err:
        raise ValueError("not a PEM CA certificate") from err
    return pem.strip() + "\n"


async def async_validate(
    hass: HomeAssistant, user_input: dict[str, Any], current: MirrorSettings, token: str
) -> tuple[MirrorSettings, dict[str, str]]:
    """Return the settings the input describes (over `current`), and the form's errors.

    `token` is the provisioning token to use: the one entered, else the one stored.
    """
    errors: dict[str, str] = {}
    if not token:
        errors[CONF_PROVISIONING_TOKEN] = "provisioning_token_required"
    device_id = user_input[CONF_DEVICE_ID].strip()
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        errors[CONF_DEVICE_ID] = "invalid_device_id"
    instance = user_input[CONF_INSTANCE].strip()
    if not INSTANCE_PATTERN.fullmatch(instance):
        errors[CONF_INSTANCE] = "invalid_instance"
    entities = user_input.get(SECTION_ENTITIES, current.entity_filter)
    for key in FILTER_KEYS:
        if "domains" in key and not all(map(DOMAIN_PATTERN.fullmatch, entities.get(key, []))):
            errors["base"] = "invalid_domain"
    ca_certificate: str | None = None
    if ca_input := user_input[SECTION_ADVANCED].get(CONF_CA_CERTIFICATE, "").strip():
        try:
            ca_certificate = await hass.async_add_executor_job(_read_ca_certificate, ca_input)
        except (OSError, ValueError, UnicodeDecodeError):
            errors["base"] = "invalid_ca_certificate"
    if errors:
        return current, errors
    return replace(
        current,
        enabled=True,
        provisioning_token=token,
        device_id=device_id,
        instance=instance,
        stream_group=user_input.get(CONF_STREAM_GROUP, current.stream_group or "").strip() or None,
        stream=user_input.get(CONF_STREAM, current.stream or "").strip() or None,
        compression=Compression(user_input.get(CONF_COMPRESSION, current.compression)),
        include_attributes=user_input.get(CONF_INCLUDE_ATTRIBUTES, current.include_attributes),
        entity_filter=entity_filter_config(entities),
        ca_certificate=ca_certificate,
    ), errors


async def async_default_device_id(hass: HomeAssistant) -> str:
    """Return `ha-<location>-<instance>`: readable, and unique across installations."""
    location = slugify(hass.config.location_name, separator="-")
    unique = (await instance_id.async_get(hass))[:8]
    return "-".join(part for part in ("ha", location[:72], unique) if part)


def suggested_values(settings: MirrorSettings) -> dict[str, Any]:
    """Return what the options form shows for stored settings (never the token)."""
    return {
        CONF_ENABLED: settings.enabled,
        CONF_DEVICE_ID: settings.device_id,
        CONF_INSTANCE: settings.instance,
        CONF_STREAM_GROUP: settings.stream_group or "",
        CONF_STREAM: settings.stream or "",
        CONF_COMPRESSION: str(settings.compression),
        CONF_INCLUDE_ATTRIBUTES: settings.include_attributes,
        SECTION_ENTITIES: dict(settings.entity_filter),
        SECTION_ADVANCED: {CONF_CA_CERTIFICATE: settings.ca_certificate or ""},
    }


def _advanced_section() -> section:
    return section(
        vol.Schema(
            {vol.Optional(CONF_CA_CERTIFICATE): TextSelector(TextSelectorConfig(multiline=True))}
        ),
        {"collapsed": True},
    )


def identity_schema() -> vol.Schema:
    """Return the fields that identify the device: changing one provisions it again."""
    text = TextSelector()
    return vol.Schema(
        {
            vol.Optional(CONF_PROVISIONING_TOKEN): TextSelector(
                TextSelectorConfig(type=TextSelectorType.PASSWORD)
            ),
            vol.Required(CONF_DEVICE_ID): text,
            vol.Required(CONF_INSTANCE): text,
            vol.Required(SECTION_ADVANCED): _advanced_section(),
        }
    )


def options_schema(hass: HomeAssistant) -> vol.Schema:
    """Return every field of the options form."""
    text = TextSelector()
    texts = TextSelector(TextSelectorConfig(multiple=True))
    entities = EntitySelector(EntitySelectorConfig(multiple=True))
    domains = SelectSelector(
        SelectSelectorConfig(
            options=sorted(
                {entity_id.split(".", 1)[0] for entity_id in hass.states.async_entity_ids()}
            ),
            multiple=True,
            custom_value=True,
            sort=True,
        )
    )
    identity = identity_schema().schema
    return vol.Schema(
        {
            vol.Required(CONF_ENABLED): BooleanSelector(),
            **{key: value for key, value in identity.items() if key != SECTION_ADVANCED},
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
                            domains if "domains" in key else texts if "globs" in key else entities
                        )
                        for key in FILTER_KEYS
                    }
                )
            ),
            vol.Required(SECTION_ADVANCED): _advanced_section(),
        }
    )


def describe_desired(values: Mapping[str, Any]) -> str:
    """Say in the options dialog what the platform sets through desired properties."""
    if not values:
        return "none"
    return ", ".join(f"`{key}` = `{json.dumps(value)}`" for key, value in sorted(values.items()))
