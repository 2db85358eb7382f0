"""Contracts every dlstack role keeps: argument specs in sync with defaults and README.

Ansible validates a role's inputs against ``meta/argument_specs.yml``; a variable that is in
``defaults/main.yml`` but not in the spec (or the reverse) silently escapes that check, and
one missing from the README is invisible to admins. These tests make drift fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def spec_options(role: Path) -> dict[str, dict[str, Any]]:
    spec = load(role / "meta" / "argument_specs.yml")
    return spec["argument_specs"]["main"]["options"]


def defaults(role: Path) -> dict[str, Any]:
    path = role / "defaults" / "main.yml"
    return (load(path) or {}) if path.is_file() else {}


def test_there_are_roles() -> None:
    assert ROLES, "no role found under roles/"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_spec_covers_exactly_the_defaults(role: Path) -> None:
    options = spec_options(role)
    public_defaults = {k for k in defaults(role) if not k.startswith("__")}
    assert set(options) >= public_defaults, f"not in argument_specs: {public_defaults - set(options)}"
    extra = {k for k, v in options.items() if k not in public_defaults and not v.get("required")}
    assert not extra, f"in argument_specs but neither in defaults nor required: {extra}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_variables_carry_the_role_prefix(role: Path) -> None:
    bad = [k for k in spec_options(role) if not k.startswith(role.name + "_")]
    assert not bad, f"variables without the '{role.name}_' prefix: {bad}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_spec_defaults_equal_defaults_file(role: Path) -> None:
    values = defaults(role)
    for name, option in spec_options(role).items():
        assert option.get("description"), f"{name} has no description"
        if name not in values:
            continue
        value = values[name]
        templated = isinstance(value, str) and "{{" in value
        if templated:
            assert "default" not in option, f"{name}: templated default must not be restated in the spec"
        else:
            assert option.get("default") == value, f"{name}: spec default {option.get('default')!r} != {value!r}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_documents_every_variable(role: Path) -> None:
    readme = role / "README.md"
    assert readme.is_file(), f"{role.name} has no README.md"
    text = readme.read_text(encoding="utf-8")
    missing = [k for k in spec_options(role) if f"`{k}`" not in text]
    assert not missing, f"README of {role.name} does not document {missing}"
