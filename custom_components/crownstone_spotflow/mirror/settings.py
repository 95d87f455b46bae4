"""The mirror entry's settings, and where its outbox lives.

A mirror entry's data only says what kind of entry it is; everything the person chooses lives in
its options, so the options flow can change any of it without a new entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
import re
import secrets
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.entityfilter import (
    BASE_FILTER_SCHEMA,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_ENTITY_GLOBS,
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_ENTITY_GLOBS,
)
from homeassistant.helpers.storage import STORAGE_DIR
import voluptuous as vol

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.spotflow import (
    DEFAULT_INSTANCE,
    Compression,
    DesiredProperties,
    DeviceClient,
    OutboxConfig,
    ProvisioningOperation,
)

# What tells a mirror entry from a Crownstone account's entry (whose data has no such key).
CONF_KIND: Final = "kind"
KIND_MIRROR: Final = "mirror"
MIRROR_DATA: Final = {CONF_KIND: KIND_MIRROR}
MIRROR_UNIQUE_ID: Final = "spotflow_mirror"

FILTER_KEYS: Final = (
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_ENTITY_GLOBS,
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_ENTITY_GLOBS,
)
DEVICE_ID_PATTERN: Final = re.compile(r"[0-9A-Za-z._-]{4,90}")

# How often the client asks whether provisioning was approved, and retries the platform.
PROVISIONING_POLL_INTERVAL = 5.0
RETRY_INTERVAL = 30.0
# The outbox's tuning; None is the library's default (tests commit and pack faster).
OUTBOX_CONFIG: OutboxConfig | None = None


def is_mirror_entry(entry: ConfigEntry) -> bool:
    """Return whether a config entry is the mirror (else it is a Crownstone account)."""
    return entry.data.get(CONF_KIND) == KIND_MIRROR


@dataclass(frozen=True, kw_only=True)
class MirrorSettings:
    """What the flows stored about mirroring into Spotflow."""

    enabled: bool = True
    provisioning_token: str = ""
    device_id: str = ""
    instance: str = DEFAULT_INSTANCE
    stream_group: str | None = None
    stream: str | None = None
    compression: Compression = Compression.UNCOMPRESSED
    include_attributes: bool = True
    # Empty: every entity, like the recorder.
    entity_filter: Mapping[str, list[str]] = field(default_factory=dict)
    ca_certificate: str | None = None
    # The outbox file in .storage; set once a device was provisioned into it.
    outbox: str | None = None

    @classmethod
    def from_options(cls, stored: Mapping[str, Any]) -> MirrorSettings:
        """Read the settings from stored options."""
        settings = cls(**{key: stored[key] for key in cls.__dataclass_fields__ if key in stored})
        return replace(settings, compression=Compression(settings.compression))

    @classmethod
    def from_entry(cls, entry: ConfigEntry) -> MirrorSettings:
        """Read the settings of a mirror entry."""
        return cls.from_options(entry.options)

    def as_options(self) -> dict[str, Any]:
        """Return the settings as stored in the options."""
        options = asdict(self)
        options["compression"] = str(self.compression)
        options["entity_filter"] = dict(self.entity_filter)
        return options

    def same_registration(self, other: MirrorSettings) -> bool:
        """Return whether `other` can start from the registration stored in this outbox.

        Another CA only changes whom the client trusts; the registration stays valid.
        """
        return self.outbox is not None and (
            self.provisioning_token,
            self.device_id,
            self.instance,
        ) == (other.provisioning_token, other.device_id, other.instance)


def entity_filter_config(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Return a complete entity filter configuration; raise vol.Invalid when malformed."""
    try:
        validated: dict[str, list[str]] = BASE_FILTER_SCHEMA(
            {key: config[key] for key in FILTER_KEYS if key in config}
        )
    except (TypeError, AttributeError) as err:
        # Config validation assumes strings; the platform may send any JSON.
        raise vol.Invalid(f"not a list of strings: {err}") from err
    return validated


def outbox_path(hass: HomeAssistant, name: str) -> Path:
    """Return where an outbox file lives: Home Assistant's .storage folder."""
    return Path(hass.config.path(STORAGE_DIR, name))


def new_outbox_name(entry_id: str) -> str:
    """Return a fresh outbox file name; every provisioning gets its own file."""
    return f"{DOMAIN}.{entry_id}.{secrets.token_hex(4)}.spotflow.db"


def _ca_file(db: Path) -> Path:
    return db.with_name(db.name.removesuffix(".db") + ".ca.pem")


def remove_outbox_files(db: Path) -> None:
    """Delete an outbox with its SQLite side files, CA file and corrupt copies (blocking)."""
    for path in db.parent.glob(f"{db.name}*"):
        path.unlink(missing_ok=True)
    _ca_file(db).unlink(missing_ok=True)


async def async_start_client(
    hass: HomeAssistant,
    settings: MirrorSettings,
    db: Path,
    *,
    on_operation: Callable[[ProvisioningOperation], None] | None = None,
    on_desired: Callable[[DesiredProperties], None] | None = None,
    on_outbox_ready: Callable[[DeviceClient], None] | None = None,
) -> DeviceClient:
    """Start a Spotflow device client on an outbox; provision first if it holds no device."""
    ca_file: str | None = None
    if settings.ca_certificate:
        ca_path = _ca_file(db)
        await hass.async_add_executor_job(ca_path.write_text, settings.ca_certificate)
        ca_file = str(ca_path)
    return await DeviceClient.start(
        settings.device_id,
        settings.provisioning_token,
        str(db),
        instance=settings.instance,
        display_provisioning_operation_callback=on_operation,
        desired_properties_updated_callback=on_desired,
        outbox_ready_callback=on_outbox_ready,
        websession=async_get_clientsession(hass),
        ca_file=ca_file,
        outbox=OUTBOX_CONFIG,
        provisioning_poll_interval=PROVISIONING_POLL_INTERVAL,
        retry_interval=RETRY_INTERVAL,
    )
