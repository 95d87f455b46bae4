"""A real Home Assistant process for the crash test: its configuration, its token, its lifecycle.

The configuration holds only what the test needs (http on 127.0.0.1, api, recorder, logger) and a
pre-made mirror entry; `--skip-pip` and a stand-in frontend folder make the first start install
nothing (the frontend is set up on every start, and its package is not installed everywhere).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
import json
import os
from pathlib import Path
import secrets
import signal
import socket
import subprocess
import sys
from typing import Any
import uuid

import aiohttp
import jwt

from custom_components.crownstone_spotflow.const import DOMAIN
from custom_components.crownstone_spotflow.mirror.settings import (
    MIRROR_DATA,
    MIRROR_UNIQUE_ID,
    MirrorSettings,
    new_outbox_name,
)

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _store(key: str, data: dict[str, Any], minor_version: int = 1) -> str:
    return json.dumps({"version": 1, "minor_version": minor_version, "key": key, "data": data})


def write_config(config: Path, port: int, settings: MirrorSettings) -> str:
    """Write a configuration with a mirror entry and an admin; return an access token."""
    storage = config / ".storage"
    storage.mkdir(parents=True)
    (config / "custom_components").mkdir()
    (config / "custom_components" / DOMAIN).symlink_to(REPO / "custom_components" / DOMAIN)
    frontend = config / "frontend_stand_in"
    for folder in ("static", "frontend_latest", "frontend_es5"):
        (frontend / "hass_frontend" / folder).mkdir(parents=True)
    (config / "configuration.yaml").write_text(
        f"""homeassistant:
  name: Crash test
  latitude: 52.0
  longitude: 5.0
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
  currency: EUR
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
frontend:
  development_repo: {frontend}
recorder:
  commit_interval: 1
logger:
  default: warning
  logs:
    # Debug: the windows each start catches up, for a failure message.
    custom_components.crownstone_spotflow: debug
"""
    )
    entry_id = uuid.uuid4().hex
    options = {**settings.as_options(), "outbox": new_outbox_name(entry_id)}
    entry = {
        "entry_id": entry_id,
        "version": 1,
        "minor_version": 3,
        "domain": DOMAIN,
        "title": "Mirror to Spotflow",
        "data": MIRROR_DATA,
        "options": options,
        "pref_disable_new_entities": False,
        "pref_disable_polling": False,
        "source": "user",
        "unique_id": MIRROR_UNIQUE_ID,
        "disabled_by": None,
        "created_at": datetime.now(UTC).isoformat(),
        "modified_at": datetime.now(UTC).isoformat(),
    }
    (storage / "core.config_entries").write_text(
        _store("core.config_entries", {"entries": [entry]}, minor_version=3)
    )
    return _write_auth(storage)


def _write_auth(storage: Path) -> str:
    """Store an owner with a long-lived token, and return an access token for it."""
    user_id, token_id, jwt_key = uuid.uuid4().hex, uuid.uuid4().hex, secrets.token_hex(64)
    groups = [
        {"id": "system-admin", "name": "Administrators"},
        {"id": "system-users", "name": "Users"},
        {"id": "system-read-only", "name": "Read Only"},
    ]
    user = {
        "id": user_id,
        "group_ids": ["system-admin"],
        "is_owner": True,
        "is_active": True,
        "name": "Test",
        "system_generated": False,
        "local_only": False,
    }
    refresh_token = {
        "id": token_id,
        "user_id": user_id,
        "client_id": None,
        "client_name": "crash test",
        "client_icon": None,
        "token_type": "long_lived_access_token",
        "created_at": datetime.now(UTC).isoformat(),
        "access_token_expiration": 86400.0,
        "token": secrets.token_hex(64),
        "jwt_key": jwt_key,
        "last_used_at": None,
        "last_used_ip": None,
        "expire_at": None,
        "credential_id": None,
        "version": None,
    }
    (storage / "auth").write_text(
        _store(
            "auth",
            {
                "users": [user],
                "groups": groups,
                "credentials": [],
                "refresh_tokens": [refresh_token],
            },
        )
    )
    now = int(datetime.now(UTC).timestamp())
    return jwt.encode({"iss": token_id, "iat": now, "exp": now + 86400}, jwt_key, "HS256")


class HassProcess:
    """One `python -m homeassistant -c CONFIG` at a time, started and ended on request."""

    def __init__(self, config: Path, port: int, token: str) -> None:
        """Remember where Home Assistant lives; nothing runs yet."""
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = config / "hass-test.log"

    async def start(self, session: aiohttp.ClientSession, timeout: float = 60) -> None:  # noqa: ASYNC109
        """Start Home Assistant and wait until it runs (started: the recorder records).

        Changes made while Home Assistant still starts and stops before it started are lost by
        the recorder too (Home Assistant 2026.10 takes seconds to start here).
        """
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
                [sys.executable, "-m", "homeassistant", "-c", str(self.config), "--skip-pip"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.config,
                # Not measured: older pytest-cov would start coverage in the child from its cwd,
                # without the project's branch setting, and the data would not combine.
                env={k: v for k, v in os.environ.items() if not k.startswith("COV_CORE_")},
            )
        async with asyncio.timeout(timeout):
            while True:
                assert self.process.poll() is None, self.tail()
                try:
                    async with session.get(
                        f"{self.url}/api/config", headers=self.headers
                    ) as response:
                        if response.status == 200 and (await response.json())["state"] == "RUNNING":
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    async def stop(self, sig: signal.Signals, timeout: float = 60) -> None:  # noqa: ASYNC109
        """Send a signal and wait until the process ended."""
        assert self.process is not None
        self.process.send_signal(sig)
        async with asyncio.timeout(timeout):
            while self.process.poll() is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        self.process = None

    def log_lines(self, word: str) -> list[str]:
        """Return the lines of Home Assistant's log that hold a word (any case)."""
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if word.lower() in line.lower()]

    def tail(self) -> str:
        """Return the end of Home Assistant's log, for a failure message."""
        return self.log.read_text(errors="replace")[-5000:]
