"""Every module of the project (plugins/modules and each role's library) carries DOCUMENTATION,
EXAMPLES and RETURN that parse as YAML (what ansible-doc and ansible-lint read; a colon followed
by a space inside a plain scalar breaks it: dlstack_reachable's did, and only ansible-lint's log
said so, with the lint still passing)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted([*(ROOT / "plugins" / "modules").glob("*.py"), *ROOT.glob("roles/*/library/*.py")])


def test_modules_are_found() -> None:
    assert len(MODULES) >= 10, MODULES


def blocks(path: Path) -> dict[str, str]:
    found = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
                    found[target.id] = node.value.value
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_documentation_parses(path: Path) -> None:
    docs = blocks(path)
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, path
    documentation = yaml.safe_load(docs["DOCUMENTATION"])
    assert documentation["module"] == path.stem
    assert documentation["short_description"] and documentation["description"]
    assert isinstance(yaml.safe_load(docs["EXAMPLES"]), list)
    assert isinstance(yaml.safe_load(docs["RETURN"]), dict)
