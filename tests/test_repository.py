"""What hassfest and HACS would check, offline, without starting Home Assistant.

Neither tool runs here (both need the network), and Home Assistant's own validators skip custom
integrations, so this test re-checks the cheap parts: the repository layout, `manifest.json`,
`hacs.json`, `translations/en.json` against the flows and the code that uses translation keys,
`icons.json`, and `quality_scale.yaml` with mechanical checks for the rules marked done.
Flows and translation keys are read from the source (ast), names resolved by importing the module.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
import importlib
import importlib.metadata
import json
from pathlib import Path
import re
import struct
from typing import Any

from awesomeversion import AwesomeVersion, AwesomeVersionStrategy
import homeassistant
from homeassistant.const import Platform, __version__ as HA_VERSION
from homeassistant.util.yaml import load_yaml_dict
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
import pytest

from tests.flow_modules import flow_modules

ROOT = Path(__file__).parent.parent
DOMAIN = "crownstone_spotflow"
PACKAGE = ROOT / "custom_components" / DOMAIN
LIBRARIES = ("crownstone", "spotflow")
PLATFORMS = {platform.value for platform in Platform}


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations() -> None:
    """Replace the conftest fixture: these checks need no Home Assistant instance."""


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _integration_paths() -> list[Path]:
    """The integration's own modules: the Home Assistant glue and the mirror's package."""
    return sorted([*PACKAGE.glob("*.py"), *PACKAGE.glob("mirror/*.py")])


def _integration_modules() -> dict[str, ast.Module]:
    """The integration's own modules (not the libraries), by module name below the package."""
    return {
        ".".join(path.relative_to(PACKAGE).with_suffix("").parts): ast.parse(
            path.read_text(encoding="utf-8"), str(path)
        )
        for path in _integration_paths()
    }


def _package_source() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in _integration_paths())


def _en() -> dict[str, Any]:
    en: dict[str, Any] = _json(PACKAGE / "translations" / "en.json")
    return en


def _lookup(tree: dict[str, Any], *path: str) -> Any:
    node: Any = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _base_names(cls: ast.ClassDef) -> list[str]:
    return [
        base.id if isinstance(base, ast.Name) else base.attr
        for base in cls.bases
        if isinstance(base, ast.Name | ast.Attribute)
    ]


class _Resolver:
    """Turns an expression naming a string (or strings) into values, importing the module."""

    def __init__(self, stem: str) -> None:
        self.module = importlib.import_module(f"custom_components.{DOMAIN}.{stem}")

    def strings(self, node: ast.expr, bound: dict[str, ast.expr] | None = None) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.Name) and bound and node.id in bound:
            return self.strings(bound[node.id])
        if isinstance(node, ast.Name) and hasattr(self.module, node.id):
            value = getattr(self.module, node.id)
            if isinstance(value, str):
                return [value]
            if isinstance(value, tuple | list | frozenset | set) or (
                isinstance(value, type) and issubclass(value, StrEnum)
            ):
                return sorted(str(item) for item in value)
        if isinstance(node, ast.Call) and _call_name(node) == "str" and node.args:
            return self.strings(node.args[0], bound)
        raise AssertionError(
            f"{self.module.__name__}: cannot resolve {ast.unparse(node)!r} to a string"
        )

    def enum_values(self) -> list[str]:
        """Every value of the module's StrEnums: for keys computed from one of its members."""
        return sorted(
            str(member)
            for value in vars(self.module).values()
            if isinstance(value, type)
            and issubclass(value, StrEnum)
            and value.__module__ == self.module.__name__
            for member in value
        )


# --- Repository layout, manifest.json, hacs.json ------------------------------------------


def test_repository_layout() -> None:
    """HACS wants hacs.json, a README, a license and exactly one integration folder."""
    for name in ("hacs.json", "README.md", "LICENSE"):
        assert (ROOT / name).is_file(), f"{name} is missing"
    integrations = [
        path.name
        for path in (ROOT / "custom_components").iterdir()
        if path.is_dir() and not path.name.startswith(("_", "."))
    ]
    assert integrations == [DOMAIN]
    assert (PACKAGE / "__init__.py").is_file()
    assert (PACKAGE / "manifest.json").is_file()


def test_manifest() -> None:
    """Keys in hassfest's order, everything a custom integration needs, the right values."""
    manifest = _json(PACKAGE / "manifest.json")
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"], "domain and name come first"
    assert keys[2:] == sorted(keys[2:]), "the keys after domain and name are alphabetical"
    required = {
        "codeowners",
        "config_flow",
        "documentation",
        "integration_type",
        "iot_class",
        "issue_tracker",
        "requirements",
        "version",
    }
    assert not required - set(keys), f"missing: {sorted(required - set(keys))}"
    assert manifest["domain"] == PACKAGE.name
    assert manifest["name"]
    assert manifest["config_flow"] is True
    assert manifest["integration_type"] == "hub"
    assert manifest["iot_class"] == "cloud_push"
    assert manifest["codeowners"]
    assert all(owner.startswith("@") for owner in manifest["codeowners"])
    for url_key in ("documentation", "issue_tracker"):
        assert manifest[url_key].startswith("https://"), url_key
    # Home Assistant refuses to load a custom integration whose version it cannot parse.
    version = AwesomeVersion(
        manifest["version"],
        ensure_strategy=[
            AwesomeVersionStrategy.CALVER,
            AwesomeVersionStrategy.SEMVER,
            AwesomeVersionStrategy.SIMPLEVER,
            AwesomeVersionStrategy.BUILDVER,
            AwesomeVersionStrategy.PEP440,
        ],
    )
    assert version.valid


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    """The requirements of a requirements file or list, by normalized name."""
    requirements = [
        Requirement(line)
        for raw in lines
        if (line := raw.split("#", 1)[0].strip()) and not line.startswith("-")
    ]
    return {canonicalize_name(requirement.name): requirement for requirement in requirements}


def test_manifest_requirements() -> None:
    """Ranges with a floor, what the tests run on inside them, nothing core already ships."""
    requirements = _requirements(_json(PACKAGE / "manifest.json")["requirements"])
    for name, requirement in requirements.items():
        assert any(spec.operator in {">=", "=="} for spec in requirement.specifier), name
        installed = importlib.metadata.version(name)
        assert requirement.specifier.contains(installed), f"tests run {name} {installed}"
    core = {
        canonicalize_name(Requirement(requirement).name)
        for requirement in importlib.metadata.requires("homeassistant") or []
    }
    shipped = sorted(set(requirements) & (core | {"voluptuous"}))
    assert not shipped, f"Home Assistant core already ships {shipped}"


def test_manifest_requirements_meet_core_constraints() -> None:
    """Home Assistant installs a custom integration's requirements under its own constraints.

    An exact pin that contradicts `package_constraints.txt` fails to install, and the integration
    does not load ("Requirements ... not found"). Checked against the installed Home Assistant,
    so each test leg checks its own.
    """
    constraints = _requirements(
        (Path(homeassistant.__file__).parent / "package_constraints.txt")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    for name, requirement in _requirements(
        _json(PACKAGE / "manifest.json")["requirements"]
    ).items():
        if (constraint := constraints.get(name)) is None:
            continue
        # The lowest (or only) version core allows must be one we allow too.
        for spec in constraint.specifier:
            if spec.operator in {"==", ">=", "~="}:
                assert requirement.specifier.contains(spec.version), (
                    f"manifest {requirement} refuses core's {constraint}"
                )


def test_hacs_json() -> None:
    """Only the keys HACS allows, a name, and a minimum version we actually test on."""
    hacs = _json(ROOT / "hacs.json")
    allowed = {
        "name",
        "content_in_root",
        "country",
        "filename",
        "hacs",
        "hide_default_branch",
        "homeassistant",
        "persistent_directory",
        "render_readme",
        "zip_release",
    }
    assert not set(hacs) - allowed, f"keys HACS rejects: {sorted(set(hacs) - allowed)}"
    assert hacs.get("name")
    if "homeassistant" in hacs:
        minimum = AwesomeVersion(hacs["homeassistant"])
        assert minimum.strategy is AwesomeVersionStrategy.CALVER, hacs["homeassistant"]
        assert minimum <= AwesomeVersion(HA_VERSION), "the minimum is newer than the tested HA"


# --- Flows: steps, fields, errors and aborts against en.json ------------------------------

_FIELD_MARKERS = {"Required", "Optional", "Exclusive", "Inclusive"}
_ABORT_DEFAULTS = {
    "_abort_if_unique_id_configured": "already_configured",
    "_async_abort_entries_match": "already_configured",
    "_abort_if_unique_id_mismatch": "unique_id_mismatch",
}


@dataclass
class _Step:
    fields: set[str] = field(default_factory=set)
    sections: dict[str, set[str]] = field(default_factory=dict)
    form: bool = False


@dataclass
class _Flow:
    steps: dict[str, _Step] = field(default_factory=dict)
    errors: set[str] = field(default_factory=set)
    aborts: set[str] = field(default_factory=set)
    progress_actions: set[str] = field(default_factory=set)


class _SchemaReader:
    """Collects the fields of a `data_schema` expression, following the module's own helpers."""

    def __init__(self, tree: ast.Module, resolver: _Resolver) -> None:
        self.resolver = resolver
        self.functions = {
            node.name: node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }

    def read(self, node: ast.AST, step: _Step, visited: frozenset[str] = frozenset()) -> None:
        if isinstance(node, ast.Dict | ast.DictComp) and self._read_dict(node, step):
            return
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in self.functions and name not in visited:
                for statement in self.functions[name].body:
                    self.read(statement, step, visited | {name})
        for child in ast.iter_child_nodes(node):
            self.read(child, step, visited)

    def _read_dict(self, node: ast.Dict | ast.DictComp, step: _Step) -> bool:
        if isinstance(node, ast.DictComp):
            bound = {
                generator.target.id: generator.iter
                for generator in node.generators
                if isinstance(generator.target, ast.Name)
            }
            pairs = [(node.key, node.value)]
        else:
            bound = {}
            pairs = [(key, value) for key, value in zip(node.keys, node.values, strict=True) if key]
        markers = [
            (key, value)
            for key, value in pairs
            if isinstance(key, ast.Call) and _call_name(key) in _FIELD_MARKERS and key.args
        ]
        if not markers:
            return False
        for key, value in markers:
            assert isinstance(key, ast.Call)
            names = self.resolver.strings(key.args[0], bound)
            if isinstance(value, ast.Call) and _call_name(value) == "section":
                inner = _Step()
                self.read(value.args[0], inner)
                for name in names:
                    step.sections.setdefault(name, set()).update(inner.fields)
            else:
                step.fields.update(names)
                self.read(value, step)
        return True


def _flows() -> dict[str, _Flow]:
    """The config and options flows of the package, read from their source."""
    flows: dict[str, _Flow] = {}
    for stem, tree in _integration_modules().items():
        local = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
        classes = {
            cls: kind for cls in local.values() if (kind := _flow_kind(cls.name, local)) is not None
        }
        if not classes:
            continue
        resolver = _Resolver(stem)
        schemas = _SchemaReader(tree, resolver)
        for cls, kind in classes.items():
            flow = flows.setdefault(kind, _Flow())
            _read_flow_class(cls, flow, resolver, schemas)
        # Module-level helpers (outside any flow class) may set errors for the module's flows.
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for kind in set(classes.values()):
                    flows[kind].errors |= _errors_set_in(node, resolver)
    return flows


def _flow_kind(name: str, local: dict[str, ast.ClassDef]) -> str | None:
    """`config` or `options`, following the module's own base classes (e.g. a compat shim)."""
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in local and current not in seen:
            seen.add(current)
            pending.extend(_base_names(local[current]))
        elif current.startswith("OptionsFlow"):
            return "options"
        elif current == "ConfigFlow":
            return "config"
    return None


def _errors_set_in(node: ast.AST, resolver: _Resolver) -> set[str]:
    """`errors[...] = "key"` (any variable or attribute named like errors)."""
    keys: set[str] = set()
    for assign in ast.walk(node):
        if isinstance(assign, ast.Assign):
            for target in assign.targets:
                if isinstance(target, ast.Subscript) and "errors" in ast.unparse(target.value):
                    keys.update(resolver.strings(assign.value))
    return keys


def _read_flow_class(
    cls: ast.ClassDef, flow: _Flow, resolver: _Resolver, schemas: _SchemaReader
) -> None:
    flow.errors |= _errors_set_in(cls, resolver)
    for method in cls.body:
        if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for call in ast.walk(method):
            if not isinstance(call, ast.Call):
                continue
            name = _call_name(call)
            step_id = _keyword(call, "step_id")
            if name == "async_show_form" and step_id is not None:
                step = flow.steps.setdefault(resolver.strings(step_id)[0], _Step())
                step.form = True
                if (schema := _keyword(call, "data_schema")) is not None:
                    schemas.read(schema, step)
            elif name == "async_show_progress" and step_id is not None:
                flow.steps.setdefault(resolver.strings(step_id)[0], _Step())
                if (action := _keyword(call, "progress_action")) is not None:
                    flow.progress_actions.update(resolver.strings(action))
            elif "abort" in name:
                reason = _keyword(call, "reason")
                if reason is not None:
                    flow.aborts.update(resolver.strings(reason))
                elif name in _ABORT_DEFAULTS:
                    flow.aborts.add(_ABORT_DEFAULTS[name])
                elif name == "async_update_reload_and_abort":
                    for source in ("reauth", "reconfigure"):
                        if source in method.name:
                            flow.aborts.add(f"{source}_successful")


def test_flows_found() -> None:
    """The reader sees the config flow, so the checks below cannot pass vacuously."""
    config = _flows()["config"]
    # "user" is a menu: a Crownstone account or the mirror.
    assert {"account", "mirror"} <= config.steps.keys()
    assert config.steps["account"].fields
    assert config.errors
    assert config.aborts


@pytest.mark.parametrize("kind", ["config", "options"])
def test_flow_steps_translated(kind: str) -> None:
    """Every form step has a title, and a label and a description for every field."""
    flow = _flows().get(kind)
    if flow is None:
        pytest.skip(f"no {kind} flow")
    en = _en()
    problems = []
    for step_id, step in flow.steps.items():
        if not step.form:
            continue  # a progress step: its text is progress.<action>, checked below
        strings = _lookup(en, kind, "step", step_id)
        if strings is None:
            problems.append(f"{kind}.step.{step_id} is missing")
            continue
        if not strings.get("title"):
            problems.append(f"{kind}.step.{step_id}.title is missing")
        groups = [((), step.fields)] + [
            (("sections", name), fields) for name, fields in step.sections.items()
        ]
        for prefix, fields in groups:
            if prefix and not _lookup(strings, *prefix, "name"):
                problems.append(f"{kind}.step.{step_id}.{'.'.join(prefix)}.name is missing")
            for part in ("data", "data_description"):
                for name in sorted(fields):
                    if not _lookup(strings, *prefix, part, name):
                        path = ".".join((kind, "step", step_id, *prefix, part, name))
                        problems.append(f"{path} is missing")
    for action in sorted(flow.progress_actions):
        if not _lookup(en, kind, "progress", action):
            problems.append(f"{kind}.progress.{action} is missing")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", ["config", "options"])
def test_flow_errors_and_aborts_translated(kind: str) -> None:
    """Every error and abort reason the flow can show is written out in en.json."""
    flow = _flows().get(kind)
    if flow is None:
        pytest.skip(f"no {kind} flow")
    en = _en()
    missing = [
        f"{kind}.error.{key}" for key in sorted(flow.errors) if not _lookup(en, kind, "error", key)
    ]
    missing += [
        f"{kind}.abort.{key}" for key in sorted(flow.aborts) if not _lookup(en, kind, "abort", key)
    ]
    assert not missing, f"missing in en.json: {missing}"


# --- translation_key= in the code, icons.json ---------------------------------------------

_EXCEPTIONS = re.compile(r"(Error|Failed|NotReady|Exception)$")


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _platform_of(name: str, classes: dict[str, ast.ClassDef], suffix: str) -> str | None:
    """The platform a (possibly local) class belongs to, from Home Assistant's base class name."""
    seen = set()
    pending = [name]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        if current in classes:
            pending.extend(_base_names(classes[current]))
        elif current.endswith(suffix) and _camel_to_snake(current[: -len(suffix)]) in PLATFORMS:
            return _camel_to_snake(current[: -len(suffix)])
    return None


@dataclass(frozen=True)
class _Key:
    path: tuple[str, ...]  # where en.json must hold it
    where: str
    needs_icon: bool = False


def _translation_keys() -> Iterator[_Key]:
    """Every translation key the integration's code uses, with the en.json section it lives in."""
    for stem, tree in _integration_modules().items():
        resolver = _Resolver(stem)
        classes = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        module_platform = stem if stem in PLATFORMS else None
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and (value := _keyword(node, "translation_key")):
                yield from _keys_of_call(node, value, stem, resolver, classes, module_platform)
        for cls in classes.values():
            for node in ast.walk(cls):
                if isinstance(node, ast.Assign) and any(
                    ast.unparse(target).endswith("_attr_translation_key") for target in node.targets
                ):
                    platform = _platform_of(cls.name, classes, "Entity") or module_platform
                    assert platform, f"{stem}.{cls.name}: which platform is this entity?"
                    for key in resolver.strings(node.value):
                        yield _Key(("entity", platform, key), f"{stem}.{cls.name}")


def _keys_of_call(
    call: ast.Call,
    value: ast.expr,
    stem: str,
    resolver: _Resolver,
    classes: dict[str, ast.ClassDef],
    module_platform: str | None,
) -> Iterator[_Key]:
    name = _call_name(call)
    where = f"{stem}.py:{call.lineno} {name}"
    try:
        keys = resolver.strings(value)
    except AssertionError:
        # A key computed from an enum member (str(issue)): every member must be translated.
        keys = resolver.enum_values()
        assert keys, f"{where}: cannot resolve translation_key={ast.unparse(value)}"
    for key in keys:
        if name.endswith("EntityDescription"):
            platform = _platform_of(name, classes, "EntityDescription") or module_platform
            assert platform, f"{where}: which platform is this description for?"
            needs_icon = _keyword(call, "device_class") is None
            yield _Key(("entity", platform, key), where, needs_icon)
        elif name == "DeviceInfo":
            yield _Key(("device", key, "name"), where)
        elif name.endswith("SelectorConfig"):
            yield _Key(("selector", key, "options"), where)
        elif name in {"async_create_issue", "create_issue"}:
            yield _Key(("issues", key, "title"), where)
        elif _EXCEPTIONS.search(name):
            yield _Key(("exceptions", key, "message"), where)
        else:
            raise AssertionError(f"{where}: unknown kind of translation_key; extend this test")


def test_translation_keys_found() -> None:
    """The reader sees entity and exception keys, so the next test cannot pass vacuously."""
    sections = {key.path[0] for key in _translation_keys()}
    assert {"entity", "exceptions"} <= sections


def test_translation_keys_in_code_translated() -> None:
    """Every translation_key in the code is written out in the right section of en.json."""
    en = _en()
    missing = sorted(
        f"{'.'.join(key.path)} (used in {key.where})"
        for key in set(_translation_keys())
        if not _lookup(en, *key.path)
    )
    assert not missing, "missing in en.json:\n" + "\n".join(missing)


def test_translations_fully_written() -> None:
    """Custom integrations read only en.json: no [%key:...%] references, no empty strings."""

    def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from leaves(value, f"{path}.{key}" if path else key)
        else:
            yield path, node

    bad = [
        path
        for path, text in leaves(_en())
        if not isinstance(text, str) or not text.strip() or "[%key:" in text
    ]
    assert not bad, f"not written out: {bad}"


def test_icons() -> None:
    """icons.json is valid, its entity keys are translated, and translated entities have icons."""
    icons = _json(PACKAGE / "icons.json")
    en = _en()

    def icon_strings(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            for value in node.values():
                yield from icon_strings(value)
        else:
            yield node

    assert all(isinstance(icon, str) and icon.startswith("mdi:") for icon in icon_strings(icons)), (
        "every icon is an mdi: string"
    )
    for platform, entities in icons.get("entity", {}).items():
        assert platform in PLATFORMS, platform
        for key, entity_icons in entities.items():
            assert "default" in entity_icons, f"entity.{platform}.{key} has no default icon"
            assert _lookup(en, "entity", platform, key), f"entity.{platform}.{key} not in en.json"
    # Entities without a device class get no icon from Home Assistant: icons.json gives one.
    iconless = sorted(
        ".".join(key.path)
        for key in _translation_keys()
        if key.needs_icon and not _lookup(icons, *key.path, "default")
    )
    assert not iconless, f"translated entities without a device class and without icon: {iconless}"
    services = icons.get("services", {})
    if services:
        declared = load_yaml_dict(PACKAGE / "services.yaml")
        assert set(services) <= set(declared), "icons for services that do not exist"


# --- quality_scale.yaml -------------------------------------------------------------------

TIERS: dict[str, set[str]] = {
    "bronze": {
        "action-setup", "appropriate-polling", "brands", "common-modules", "config-flow",
        "config-flow-test-coverage", "dependency-transparency", "docs-actions",
        "docs-conditions", "docs-triggers", "docs-high-level-description",
        "docs-installation-instructions", "docs-removal-instructions", "entity-event-setup",
        "entity-unique-id", "has-entity-name", "runtime-data", "test-before-configure",
        "test-before-setup", "unique-config-entry",
    },
    "silver": {
        "action-exceptions", "config-entry-unloading", "docs-configuration-parameters",
        "docs-installation-parameters", "entity-unavailable", "integration-owner",
        "log-when-unavailable", "parallel-updates", "reauthentication-flow", "test-coverage",
    },
    "gold": {
        "devices", "diagnostics", "discovery", "discovery-update-info", "docs-data-update",
        "docs-examples", "docs-known-limitations", "docs-supported-devices",
        "docs-supported-functions", "docs-troubleshooting", "docs-use-cases", "dynamic-devices",
        "entity-category", "entity-device-class", "entity-disabled-by-default",
        "entity-translations", "exception-translations", "icon-translations",
        "reconfiguration-flow", "repair-issues", "stale-devices",
    },
    "platinum": {"async-dependency", "inject-websession", "strict-typing"},
}  # fmt: skip
RULES = set().union(*TIERS.values())


def _quality_scale() -> dict[str, Any]:
    loaded = load_yaml_dict(PACKAGE / "quality_scale.yaml")
    assert set(loaded) == {"rules"}
    rules: dict[str, Any] = loaded["rules"]
    return rules


def _status(value: Any) -> str:
    return str(value if isinstance(value, str) else value["status"])


def test_quality_scale_shape() -> None:
    """Every rule exactly once, each `done`, `todo` or a status mapping; exemptions explained."""
    rules = _quality_scale()
    assert set(rules) == RULES, (
        f"missing: {sorted(RULES - set(rules))}, unknown: {sorted(set(rules) - RULES)}"
    )
    for rule, value in rules.items():
        if isinstance(value, str):
            assert value in {"done", "todo"}, f"{rule}: {value!r}"
            continue
        assert isinstance(value, dict), f"{rule}: {value!r}"
        assert set(value) <= {"status", "comment"}, f"{rule}: {sorted(value)}"
        assert value.get("status") in {"exempt", "todo", "done"}, f"{rule}: {value!r}"
        if value["status"] == "exempt":
            assert str(value.get("comment", "")).strip(), f"{rule}: an exemption needs a comment"


_USER_FACING_EXCEPTIONS = {
    "HomeAssistantError",
    "ServiceValidationError",
    "UpdateFailed",
    "ConfigEntryAuthFailed",
    "ConfigEntryNotReady",
    "ConfigEntryError",
}


def _found(pattern: str) -> bool:
    return re.search(pattern, _package_source()) is not None


def _needs(pattern: str, problem: str) -> Callable[[], list[str]]:
    """A check that the integration's code contains `pattern`."""
    return lambda: [] if _found(pattern) else [problem]


def _assigned_at_module_level(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names.update(ast.unparse(target) for target in node.targets)
        elif isinstance(node, ast.AnnAssign):
            names.add(ast.unparse(node.target))
    return names


def _check_parallel_updates() -> list[str]:
    platforms = {stem: tree for stem, tree in _integration_modules().items() if stem in PLATFORMS}
    assert platforms, "no platform modules"
    return [
        f"{stem}.py has no module-level PARALLEL_UPDATES"
        for stem, tree in platforms.items()
        if "PARALLEL_UPDATES" not in _assigned_at_module_level(tree)
    ]


def _check_brands() -> list[str]:
    icon = PACKAGE / "brand" / "icon.png"
    if not icon.is_file():
        return ["brand/icon.png is missing"]
    header = icon.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        return ["brand/icon.png is not a PNG"]
    size = struct.unpack(">II", header[16:24])
    return [] if size == (256, 256) else [f"brand/icon.png is {size}, not 256x256"]


def _check_strict_typing() -> list[str]:
    problems = _check_typed_requirements() + [
        f"{library}/py.typed is missing"
        for library in LIBRARIES
        if not (PACKAGE / library / "py.typed").is_file()
    ]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    if not re.search(r"(?m)^strict\s*=\s*true", pyproject):
        problems.append("mypy strict is not on in pyproject.toml")
    return problems


def _check_exception_translations() -> list[str]:
    """Exceptions raised to the user carry a translation key, never a hard-coded message."""
    return [
        f"{stem}.py:{node.lineno} raises without translation_key"
        for stem, tree in _integration_modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Raise)
        and isinstance(node.exc, ast.Call)
        and _call_name(node.exc) in _USER_FACING_EXCEPTIONS
        and _keyword(node.exc, "translation_key") is None
    ]


def _check_diagnostics() -> list[str]:
    diagnostics = PACKAGE / "diagnostics.py"
    if not diagnostics.is_file():
        return ["diagnostics.py is missing"]
    return (
        [] if "async_redact_data" in diagnostics.read_text(encoding="utf-8") else ["no redaction"]
    )


def _check_icon_translations() -> list[str]:
    problems = ["_attr_icon or icon= in the code"] if _found(r"_attr_icon\b|\bicon=") else []
    return problems + ([] if (PACKAGE / "icons.json").is_file() else ["icons.json is missing"])


def _check_inject_websession() -> list[str]:
    problems = [] if _found(r"async_get_clientsession\(") else ["no async_get_clientsession"]
    return problems + (["creates a ClientSession"] if _found(r"ClientSession\(") else [])


def _check_runtime_data() -> list[str]:
    """Typed runtime data, and nothing of ours in `hass.data` (Home Assistant's own validator)."""
    problems = [] if _found(r"type \w+ = ConfigEntry\[") else ["no `type X = ConfigEntry[...]`"]
    problems += [] if _found(r"\.runtime_data\b") else ["runtime_data unused"]
    for stem, tree in _integration_modules().items():
        for node in ast.walk(tree):
            if _stores_in_hass_data(node):
                problems.append(f"{stem}.py:{node.lineno} keeps something in hass.data")
            if isinstance(node, ast.FunctionDef) and node.name == "async_get_options_flow":
                annotation = node.args.args[0].annotation if node.args.args else None
                if annotation is None or ast.unparse(annotation) == "ConfigEntry":
                    problems.append(f"{stem}.py: async_get_options_flow takes an untyped entry")
    return problems


def _is_hass_data(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "data"
        and isinstance(node.value, ast.Name)
        and node.value.id == "hass"
    )


def _stores_in_hass_data(node: ast.AST) -> bool:
    """Whether a node puts something in hass.data or reads our own key from it.

    Reading what Home Assistant keeps there (the recorder's data, say) is not ours to move.
    """
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
        targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        return any(isinstance(t, ast.Subscript) and _is_hass_data(t.value) for t in targets)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and _is_hass_data(node.func.value)
        and node.func.attr in {"setdefault", "pop", "update"}
    ):
        return True
    if isinstance(node, ast.Subscript) and _is_hass_data(node.value):
        return ast.unparse(node.slice) in {"DOMAIN", repr(DOMAIN)}
    return False


def _check_flow_coverage() -> list[str]:
    """Every flow module, error paths included, is held to 100 % by scripts/test."""
    flow_classes = {
        stem
        for stem, tree in _integration_modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base).endswith(("ConfigFlow", "OptionsFlow")) for base in node.bases)
    }
    gated = {".".join(path.relative_to(PACKAGE).with_suffix("").parts) for path in flow_modules()}
    problems = [f"{stem}.py has a flow but is not gated" for stem in sorted(flow_classes - gated)]
    script = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    if "tests.flow_modules" not in script or "--fail-under=100" not in script:
        problems.append("scripts/test does not hold the flow modules to 100 %")
    return problems


def _check_typed_requirements() -> list[str]:
    """Every requirement ships type information (py.typed), as the strict-typing rule asks."""
    problems = []
    for name in _requirements(_json(PACKAGE / "manifest.json")["requirements"]):
        files = importlib.metadata.files(name) or []
        if not any(str(file).endswith(("py.typed", ".pyi")) for file in files):
            problems.append(f"requirement {name} ships no type information")
    return problems


def _files(*names: str) -> Callable[[], list[str]]:
    return lambda: [f"{name} is missing" for name in names if not (PACKAGE / name).is_file()]


def _tests(pattern: str) -> Callable[[], list[str]]:
    return lambda: [] if any((ROOT / "tests").rglob(pattern)) else [f"no tests/**/{pattern}"]


RULE_CHECKS: dict[str, Callable[[], list[str]]] = {
    "action-exceptions": _check_exception_translations,
    "brands": _check_brands,
    "common-modules": _files("coordinator.py", "entity.py"),
    "config-entry-unloading": _needs(r"def async_unload_entry", "no async_unload_entry"),
    "config-flow": _files("config_flow.py"),
    "config-flow-test-coverage": _check_flow_coverage,
    "devices": _needs(r"DeviceInfo\(", "no DeviceInfo"),
    "diagnostics": _check_diagnostics,
    "entity-disabled-by-default": _needs(
        r"entity_registry_enabled_default\s*=\s*False", "nothing is disabled by default"
    ),
    "entity-translations": lambda: (
        ["_attr_name set to a literal"] if _found(r"_attr_name\s*=\s*['\"]") else []
    ),
    "exception-translations": _check_exception_translations,
    "has-entity-name": _needs(r"_attr_has_entity_name\s*=\s*True", "no has_entity_name"),
    "icon-translations": _check_icon_translations,
    "inject-websession": _check_inject_websession,
    "integration-owner": lambda: (
        [] if _json(PACKAGE / "manifest.json").get("codeowners") else ["no codeowners"]
    ),
    "parallel-updates": _check_parallel_updates,
    "reauthentication-flow": _needs(r"async_step_reauth\b", "no async_step_reauth"),
    "reconfiguration-flow": _needs(r"async_step_reconfigure\b", "no async_step_reconfigure"),
    "repair-issues": _needs(r"async_create_issue\(", "no repair issue is ever raised"),
    "runtime-data": _check_runtime_data,
    "stale-devices": _needs(
        r"async_remove_config_entry_device|remove_config_entry_id|async_remove_device",
        "stale devices are never removed",
    ),
    "strict-typing": _check_strict_typing,
    "test-coverage": _tests("test_*.py"),
    "unique-config-entry": _needs(
        r"_abort_if_unique_id_configured\(|_async_abort_entries_match\(", "no duplicate abort"
    ),
}


def test_manifest_claims_only_a_tier_it_meets() -> None:
    """The manifest's quality scale, if it names one, is met rule by rule (done or exempt)."""
    claimed = _json(PACKAGE / "manifest.json").get("quality_scale")
    if claimed is None:
        return
    tiers = list(TIERS)
    assert claimed in tiers, claimed
    rules = _quality_scale()
    unmet = sorted(
        rule
        for tier in tiers[: tiers.index(claimed) + 1]
        for rule in TIERS[tier]
        if _status(rules[rule]) == "todo"
    )
    assert not unmet, f"manifest claims {claimed}, but these are todo: {unmet}"


def test_rule_checks_are_known_rules() -> None:
    """A typo in a check's rule id would silently never run."""
    assert set(RULE_CHECKS) <= RULES


@pytest.mark.parametrize("rule", sorted(RULE_CHECKS))
def test_quality_scale_done_rules_hold(rule: str) -> None:
    """Rules marked done pass the cheap mechanical check of that rule."""
    value = _quality_scale().get(rule)
    if value is None or _status(value) != "done":
        pytest.skip(f"{rule} is not marked done")
    problems = RULE_CHECKS[rule]()
    assert not problems, f"{rule} is marked done, but: {problems}"
