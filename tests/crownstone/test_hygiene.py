"""The library stays free of Home Assistant and never shows a secret."""

from __future__ import annotations

import ast
import hashlib
import logging
from pathlib import Path

import aiohttp
import pytest

from custom_components.crownstone_spotflow import crownstone as library_package
from custom_components.crownstone_spotflow.crownstone import CrownstoneCloud, CrownstoneError
from simulators.crownstone_cloud import DEMO_EMAIL, DEMO_PASSWORD, CloudSimulator
from simulators.crownstone_cloud.faults import FaultKind

CLOUD_DIR = Path(library_package.__file__).parent


def test_no_module_imports_home_assistant() -> None:
    """Every module under crownstone/ could be published on its own."""
    modules = sorted(CLOUD_DIR.glob("*.py"))
    assert len(modules) > 5
    for module in modules:
        tree = ast.parse(module.read_text(), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "homeassistant" for name in names), module


async def test_secrets_never_show(
    cloud_sim: CloudSimulator,
    websession: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Password, its hash, tokens and keys appear in no log record, message or repr."""
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []

    def show_error(error: BaseException | None) -> None:
        while error is not None:
            shown.extend((str(error), repr(error)))
            error = error.__cause__ or error.__context__

    cloud = CrownstoneCloud(DEMO_EMAIL, DEMO_PASSWORD, websession, base_url=cloud_sim.url)
    await cloud.async_initialize()
    tokens = {cloud.access_token}
    keys = await cloud.async_get_keys()
    cloud_sim.expire_tokens()
    await cloud.async_synchronize(users=True)
    tokens.add(cloud.access_token)
    faults: tuple[FaultKind, ...] = ("http_500", "html", "reset", "malformed_json", "non_json")
    for fault in faults:
        cloud_sim.inject_fault(fault, path="/keysV2")
        with pytest.raises(CrownstoneError) as caught:
            await cloud.async_get_keys()
        show_error(caught.value)
        cloud_sim.clear_faults()
    cloud_sim.change_password(DEMO_EMAIL, "another secret")
    with pytest.raises(CrownstoneError) as caught:
        await cloud.async_synchronize()
    show_error(caught.value)

    shown.extend(record.getMessage() for record in caplog.records)
    shown.extend(str(record.args) for record in caplog.records)
    shown.extend((repr(cloud), str(cloud), repr(cloud._client), repr(keys)))
    shown.extend(repr(sphere_keys) for sphere_keys in keys.values())
    secrets = {
        DEMO_PASSWORD,
        hashlib.sha1(DEMO_PASSWORD.encode()).hexdigest(),
        *(token for token in tokens if token),
    }
    for sphere_keys in keys.values():
        secrets.update(sphere_keys.sphere_keys.values())
        secrets.add(sphere_keys.sphere_authorization_token or DEMO_PASSWORD)
        for stone_keys in sphere_keys.stone_keys.values():
            secrets.update(stone_keys.values())
    assert len(secrets) > 10
    assert any("keysV2" in text for text in shown)  # the debug log did record the calls
    leaks = [(secret, text) for secret in secrets for text in shown if secret in text]
    assert leaks == []
