"""Which modules make up the config, options and reauth flows: `scripts/test` holds them to 100 %.

A flow module is one whose name ends in `flow.py`, or one that only flow modules import (the
mirror's form and provisioning helpers). Found from the source, so a new flow module cannot slip
out of the gate. `python -m tests.flow_modules` prints them, comma-separated, for coverage.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "custom_components" / "crownstone_spotflow"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """The package modules a module imports (relative imports only: that is our style)."""
    here = _module_name(path).split(".")[:-1]
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - node.level + 1]
            target = [*base, *(node.module.split(".") if node.module else [])]
            imported.add(".".join(target))
            imported.update(".".join([*target, alias.name]) for alias in node.names)
    return imported


def flow_modules() -> list[Path]:
    """Return the flow modules of the package."""
    paths = {
        _module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    importers: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for imported in _imports(path):
            if imported in importers and imported != name:
                importers[imported].add(name)
    flows = {name for name in paths if name.endswith("flow")}
    # Grow the set with modules that only flow modules use, until nothing changes.
    while True:
        more = {
            name
            for name, users in importers.items()
            if name not in flows and users and users <= flows
        }
        if not more:
            return sorted(paths[name] for name in flows)
        flows |= more


if __name__ == "__main__":
    print(",".join(f"*/{path.relative_to(PACKAGE.parent.parent)}" for path in flow_modules()))
