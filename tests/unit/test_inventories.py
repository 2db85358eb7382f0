"""The shipped inventories (example, demo, the site scenario's) are consistent and valid.

* every variable they set belongs to a role (its ``meta/argument_specs.yml``), to Ansible's
  connection settings, or to the few playbook-level names listed here: a typo in an
  inventory otherwise passes silently, as the variable is simply never read;
* each host's users, combined over all/group/host levels by dl_user_config's own filters,
  pass dl_user_config's validation for the envs and GPUs that host will have.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugin_loader import load_by_path

ROOT = Path(__file__).resolve().parents[2]
# inventory -> the Debian release of each group's hosts, which decides the envs (python_envs vars)
INVENTORIES = {
    "inventory/example": {"gpu_nodes": 12, "workstations": 13},
    "inventory/demo": {"gpu_nodes": 12, "workstations": 13},
    "molecule/site/inventory": {"gpu_nodes": 12, "workstations": 13},
}


def served_backends(release: int) -> list[str]:
    """The Keras backends python_envs' default envs serve on Debian ``release``, read from the
    role (vars/Debian_N.yml lists the envs, vars/main.yml defines them)."""
    envs = ROOT / "roles" / "python_envs" / "vars"
    defined = yaml.safe_load((envs / "main.yml").read_text())
    backends: list[str] = []
    for ref in yaml.safe_load((envs / f"Debian_{release}.yml").read_text())["__python_envs_default_envs"]:
        match = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", ref)
        assert match, f"vars/Debian_{release}.yml: default env {ref!r} is not a reference to vars/main.yml"
        backends += [b for b in defined[match.group(1)]["backends"] if b not in backends]
    return backends


SERVED = {release: served_backends(release) for release in (12, 13)}
# names set in inventories that no role declares, and who reads them
PLAYBOOK_VARIABLES = {
    "dlstack_demo_image": "scripts/demo: the container image of a demo node",
    "dlstack_onboard_name": "playbooks/onboard_workstation.yml: this machine's inventory name",
}


ducf = load_by_path("dl_user_config_filters_inv", ROOT / "roles/dl_user_config/filter_plugins/dl_user_config.py")


def role_variables() -> set[str]:
    names: set[str] = set()
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names.update(entry.get("options", {}))
    return names


def inventory_list(inventory: str) -> dict[str, Any]:
    exe = shutil.which("ansible-inventory") or str(Path(sys.executable).with_name("ansible-inventory"))
    proc = subprocess.run([exe, "-i", str(ROOT / inventory), "--list"], capture_output=True, text=True,
                          check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def var_files(base: Path) -> list[Path]:
    return sorted(p for p in [*base.glob("group_vars/**/*.yml"), *base.glob("host_vars/**/*.yml")] if p.is_file())


def unknown_variables(base: Path) -> list[str]:
    known = role_variables() | set(PLAYBOOK_VARIABLES)
    return sorted(f"{p.relative_to(base)}: {k}" for p in var_files(base) for k in (yaml.safe_load(p.read_text()) or {})
                  if k not in known and not k.startswith("ansible_"))


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_variable_is_known(inventory: str) -> None:
    assert var_files(ROOT / inventory), f"{inventory} has no group_vars/host_vars"
    unknown = unknown_variables(ROOT / inventory)
    assert not unknown, f"variables no role or playbook reads: {unknown}"


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_groups_and_hosts(inventory: str) -> None:
    data = inventory_list(inventory)
    for group in INVENTORIES[inventory]:
        assert data[group]["hosts"], f"{inventory}: no host in {group}"
    hosts = data["gpu_nodes"]["hosts"] + data["workstations"]["hosts"]
    assert len(hosts) == len(set(hosts)), f"{inventory}: a host is both a GPU node and a workstation"


def host_users(hostvars: dict[str, Any]) -> list[dict[str, Any]]:
    defaults = yaml.safe_load((ROOT / "roles/dl_user_config/defaults/main.yml").read_text())
    users = ducf.merge_users(hostvars.get("dl_user_config_users"), hostvars.get("dl_user_config_group_users"),
                             hostvars.get("dl_user_config_host_users"))
    settings = ducf.merge_settings(defaults["dl_user_config_defaults"], hostvars.get("dl_user_config_all_settings"),
                                   hostvars.get("dl_user_config_group_settings"),
                                   hostvars.get("dl_user_config_host_settings"))
    return ducf.effective_users(users, settings, bool(hostvars.get("dl_user_config_create_users")))


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_users_are_valid_on_every_host(inventory: str) -> None:
    data = inventory_list(inventory)
    for group, release in INVENTORIES[inventory].items():
        for host in data[group]["hosts"]:
            hostvars = data["_meta"]["hostvars"][host]
            users = host_users(hostvars)
            assert users, f"{inventory}: {host} has no users"
            gpus = (hostvars.get("dl_verify_node_expect") or {}).get("gpu_count", 0)
            errors = ducf.user_errors(users, SERVED[release], gpus)
            assert not errors, f"{inventory}: {host}: {errors}"


def test_example_layers_every_level() -> None:
    """The example shows overrides at the all, group and host levels, for settings and users."""
    data = inventory_list("inventory/example")
    hv = data["_meta"]["hostvars"]
    alice = {h: next(u for u in host_users(hv[h]) if u["name"] == "alice") for h in hv}
    assert alice["gpu01.example.org"]["theano"]["device"] == "cuda0"        # all level
    assert alice["gpu07.example.org"]["theano"]["device"] == "cuda1"        # host level
    assert alice["ws-lab1.example.org"]["keras"]["backend"] == "tensorflow"  # group level
    bob = {h: next(u for u in host_users(hv[h]) if u["name"] == "bob") for h in hv}
    assert bob["gpu02.example.org"]["keras"]["floatx"] == "float32"
    assert bob["ws-lab1.example.org"]["keras"]["floatx"] == "float16"
    dave = next(u for u in host_users(hv["ws-lab1.example.org"]) if u["name"] == "dave")
    assert dave["keras"]["floatx"] == "float64"
    carol = next(u for u in host_users(hv["gpu01.example.org"]) if u["name"] == "carol")
    assert carol["theano"]["base_compiledir"] == "/scratch/theano-carol"


def test_served_backends_come_from_the_role() -> None:
    assert SERVED == {12: ["theano", "tensorflow"], 13: ["theano", "tensorflow"]}


def test_a_typo_is_caught(tmp_path: Path) -> None:
    """The variable check is not vacuous: a misspelt role variable is reported, by file."""
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("dl_user_config_user: []\nnvidia_driver_branch: '580'\n")
    (tmp_path / "host_vars" / "n1.yml").write_text("ansible_port: 22\npython_envs_ofline: true\n")
    assert unknown_variables(tmp_path) == ["group_vars/all.yml: dl_user_config_user",
                                           "host_vars/n1.yml: python_envs_ofline"]
