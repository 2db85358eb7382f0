"""Contracts every dlstack role keeps: argument specs in sync with defaults and README.

Ansible validates a role's inputs against ``meta/argument_specs.yml``; a variable that is in
``defaults/main.yml`` but not in the spec (or the reverse) silently escapes that check, and
one missing from the README is invisible to admins. These tests make drift fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plugin_loader
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())
# internal roles (included by other roles, run under their tags): scripts/tags-alone owns the list
INTERNAL = plugin_loader.load_by_path("tags_alone", ROOT / "scripts" / "tags-alone").INTERNAL


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def entry_points(role: Path) -> dict[str, dict[str, Any]]:
    """Every entry point of the role's argument spec: name -> its spec."""
    return load(role / "meta" / "argument_specs.yml")["argument_specs"]


def spec_options(role: Path, entry: str = "main") -> dict[str, dict[str, Any]]:
    return entry_points(role)[entry].get("options") or {}


def all_options(role: Path) -> dict[str, dict[str, Any]]:
    """The options of all entry points (an option in several has the same type and default)."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in entry_points(role):
        for name, option in spec_options(role, entry).items():
            if name in merged:
                for key in ("type", "elements", "default", "choices"):
                    assert merged[name].get(key) == option.get(key), f"{name}: {key} differs in entry point {entry}"
            merged.setdefault(name, option)
    return merged


def defaults(role: Path) -> dict[str, Any]:
    path = role / "defaults" / "main.yml"
    return (load(path) or {}) if path.is_file() else {}


def test_there_are_roles() -> None:
    assert ROLES, "no role found under roles/"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_entry_point_is_a_tasks_file(role: Path) -> None:
    missing = [e for e in entry_points(role) if not (role / "tasks" / f"{e}.yml").is_file()]
    assert not missing, f"argument_specs entry points without tasks/<name>.yml: {missing}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_spec_covers_exactly_the_defaults(role: Path) -> None:
    options = all_options(role)
    public_defaults = {k for k in defaults(role) if not k.startswith("__")}
    assert set(options) >= public_defaults, f"not in argument_specs: {public_defaults - set(options)}"
    extra = {k for k, v in options.items() if k not in public_defaults and not v.get("required")}
    assert not extra, f"in argument_specs but neither in defaults nor required: {extra}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_variables_carry_the_role_prefix(role: Path) -> None:
    bad = [k for k in all_options(role) if not k.startswith(role.name + "_")]
    assert not bad, f"variables without the '{role.name}_' prefix: {bad}"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_spec_defaults_equal_defaults_file(role: Path) -> None:
    values = defaults(role)
    for name, option in all_options(role).items():
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
    missing = [k for k in all_options(role) if f"`{k}`" not in text]
    assert not missing, f"README of {role.name} does not document {missing}"


def main_tags(role: Path) -> list[str]:
    """The tags of the role's table of contents (tasks/main.yml)."""
    tasks = load(role / "tasks" / "main.yml") or []
    return sorted({tag for task in tasks for tag in task.get("tags") or []})


@pytest.mark.parametrize("role", [r for r in ROLES if r.name not in INTERNAL], ids=lambda p: p.name)
def test_readme_documents_every_tag(role: Path) -> None:
    """scripts/tags-alone runs each of these alone on the demo fleet; admins find them here."""
    text = (role / "README.md").read_text(encoding="utf-8")
    tags = main_tags(role)
    assert role.name in tags, f"tasks/main.yml of {role.name} does not tag its parts with {role.name!r}"
    missing = [t for t in tags if f"`{t}`" not in text]
    assert not missing, f"README of {role.name} does not document the tags {missing}"


@pytest.mark.parametrize("role", [r for r in ROLES if r.name in INTERNAL], ids=lambda p: p.name)
def test_internal_roles_have_no_tags_of_their_own(role: Path) -> None:
    """An internal role runs under the tags of the role that includes it, so it must not add its own."""
    assert not main_tags(role), f"{role.name} is internal (scripts/tags-alone) but tags its tasks: {main_tags(role)}"
