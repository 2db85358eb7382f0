"""The dlstack_platform role's filters: which vars files a role may hold for a node, and the
one-line refusal of an unsupported platform that every role's preflight gives."""

from __future__ import annotations

from pathlib import Path

import plugin_loader
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "dlstack_platform"
F = plugin_loader.load_by_path("dlstack_platform_filters", ROLE / "filter_plugins" / "dlstack_platform.py")
SUPPORTED = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__dlstack_platform_supported"]
DEBIAN12 = {"os_family": "Debian", "distribution": "Debian", "distribution_major_version": "12",
            "distribution_version": "12.8", "architecture": "x86_64"}


def test_vars_files_general_to_specific_each_once() -> None:
    assert F.dlstack_platform_vars_files(DEBIAN12) == ["Debian.yml", "Debian_12.yml"]
    ubuntu = {"os_family": "Debian", "distribution": "Ubuntu", "distribution_major_version": "24"}
    assert F.dlstack_platform_vars_files(ubuntu) == ["Debian.yml", "Ubuntu.yml", "Ubuntu_24.yml"]


def test_vars_files_skip_names_built_from_missing_facts() -> None:
    assert F.dlstack_platform_vars_files({}) == []


def test_the_table_is_what_the_readme_says() -> None:
    assert SUPPORTED == {"Debian": ["12", "13"], "Ubuntu": ["22", "24"]}
    readme = (ROOT / "README.md").read_text()
    for dist, versions in SUPPORTED.items():
        assert dist in readme and all(v in readme for v in versions)


@pytest.mark.parametrize("facts", [DEBIAN12, {**DEBIAN12, "distribution_major_version": "13"},
                                   {**DEBIAN12, "distribution": "Ubuntu", "distribution_major_version": "22"},
                                   {**DEBIAN12, "architecture": "aarch64"}])
def test_supported_platforms_pass(facts: dict[str, str]) -> None:
    assert F.dlstack_platform_problem(facts, "common", "n1", SUPPORTED, ["x86_64", "aarch64"]) == ""


def test_an_old_release_is_refused_in_one_line() -> None:
    facts = {**DEBIAN12, "distribution_major_version": "11", "distribution_version": "11.9"}
    msg = F.dlstack_platform_problem(facts, "cudnn", "gpu07", SUPPORTED, [])
    assert msg == "cudnn: gpu07 runs Debian 11.9; supported are Debian 12/13, Ubuntu 22/24."
    assert "\n" not in msg


def test_another_distribution_is_refused() -> None:
    facts = {**DEBIAN12, "distribution": "Rocky", "distribution_major_version": "9", "distribution_version": "9.4"}
    assert F.dlstack_platform_problem(facts, "common", "n1", SUPPORTED).startswith("common: n1 runs Rocky 9.4; supported are")


def test_the_machine_counts_only_where_the_role_names_architectures() -> None:
    arm32 = {**DEBIAN12, "architecture": "armv7l"}
    assert F.dlstack_platform_problem(arm32, "common", "n1", SUPPORTED, []) == ""
    msg = F.dlstack_platform_problem(arm32, "nvidia_driver", "n1", SUPPORTED, ["x86_64", "aarch64"])
    assert msg == ("nvidia_driver: n1 runs Debian 12.8 on armv7l; supported are Debian 12/13, Ubuntu 22/24 "
                   "on x86_64, aarch64.")


def test_missing_facts_are_named_not_crashed_on() -> None:
    msg = F.dlstack_platform_problem({}, "common", "n1", SUPPORTED, ["x86_64"])
    assert msg == ("common: n1 runs an unknown distribution (release unknown) on an unknown machine; "
                   "supported are Debian 12/13, Ubuntu 22/24 on x86_64.")


@pytest.mark.parametrize("role", ["common", "nvidia_driver", "cuda_toolkit", "cudnn", "python_envs"])
def test_every_gpu_node_role_checks_its_platform_through_the_shared_role(role: str) -> None:
    """The check is written once: each role imports dlstack_platform and keeps no table of its own."""
    tasks_dir = ROOT / "roles" / role / "tasks"
    imports = [t for f in tasks_dir.glob("*.yml") for t in yaml.safe_load(f.read_text()) or []
               if (t.get("ansible.builtin.import_role") or {}).get("name") == "dlstack_platform"]
    assert len(imports) == 1, f"{role} imports dlstack_platform {len(imports)} times"
    assert "_supported:" not in (ROOT / "roles" / role / "vars" / "main.yml").read_text()
