#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Read the NVIDIA driver's APT state and work out what the nvidia_driver role must install and hold."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_driver_apt_state
short_description: The NVIDIA driver's installed, held and available versions, and the change the role makes
description:
  - Runs C(dpkg-query) (installed packages and their holds) and C(apt-cache policy) (the versions
    the sources offer) once, and compares them with what the nvidia_driver role wants. Read-only;
    it always reports C(changed=false).
  - The driver's packages (O(main)) and Fabric Manager with NSCQ (O(fabric)) must all be at one
    exact version, the RV(target) (O(version) when given; otherwise the installed version while it
    is of the branch and every package offers it (unless O(upgrade)); otherwise the newest version of
    the branch that every one of them offers). Packages built from other sources (O(aux), such as
    nvidia-persistenced) take the target when they have it and the newest of the branch otherwise.
  - Installed driver packages (names starting with one of O(prefixes)) that none of those lists
    name, such as the driver's dependencies and leftovers of an earlier branch, move to the target
    when the sources offer it, else to the newest of the branch when they are not of it.
  - When a package offers no fitting version, RV(problems) names it and the versions it has; when
    Fabric Manager or NSCQ cannot match the driver's version, the message names both.
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  main:
    description: The driver's packages, installed at the target version exactly; the first one's version is the driver's.
    type: list
    elements: str
    required: true
  fabric:
    description: Fabric Manager and NSCQ, which must match the driver's version exactly (NVSwitch systems).
    type: list
    elements: str
    default: []
  aux:
    description: Packages that follow the branch but not every release (nvidia-persistenced).
    type: list
    elements: str
    default: []
  extra:
    description: Further packages installed without a version (nvidia_driver_extra_packages).
    type: list
    elements: str
    default: []
  branch:
    description: The driver branch, such as C(580).
    type: str
    required: true
  version:
    description: An exact driver version of the branch (C(580.95.05)); empty for the newest.
    type: str
    default: ""
  upgrade:
    description: Move to the newest version of the branch even when an older one is installed.
    type: bool
    default: false
  hold:
    description: Whether the installed driver packages of the branch are to be held (for RV(to_hold), RV(to_release)).
    type: bool
    default: true
  prefixes:
    description: Name prefixes of every driver package, under any distribution's names.
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - The versions of a package are compared as apt lists them (newest first); C(580.95.05) matches any
    revision (C(580.95.05-1), C(580.95.05-0ubuntu1)).
"""

EXAMPLES = r"""
- name: Read the driver's APT state
  nvidia_driver_apt_state:
    main: [nvidia-driver-cuda, nvidia-kernel-open-dkms]
    fabric: [nvidia-fabricmanager-580, libnvidia-nscq]
    aux: [nvidia-persistenced]
    branch: "580"
    prefixes: [nvidia-, libnvidia-, libcuda1, cuda-drivers]
  register: driver_state

- name: Install what must change
  ansible.builtin.apt:
    name: "{{ driver_state.install }}"
  when: driver_state.change
"""

RETURN = r"""
installed:
  description: Installed driver packages (names starting with a prefix), each C(name), C(version), C(want) (C(hold) when held).
  type: list
  elements: dict
  returned: always
installed_version:
  description: Installed version of the first O(main) package, or C("").
  type: str
  returned: always
  sample: 580.95.05-1
held:
  description: Names of the held driver packages.
  type: list
  elements: str
  returned: always
target:
  description: The version the driver's packages are to be at, or C("") when the sources do not offer one.
  type: str
  returned: always
  sample: 580.105.08-1
status:
  description: One entry per O(main), O(fabric) and O(aux) package, with C(name), C(installed), C(target) and C(ok).
  type: list
  elements: dict
  returned: always
sync:
  description: Other installed driver packages that move, each C([name, version]).
  type: list
  elements: list
  returned: always
change:
  description: Whether any package is not at its target.
  type: bool
  returned: always
install:
  description: What to pass to apt, C(name=version) for each package (and O(extra) as given).
  type: list
  elements: str
  returned: always
problems:
  description: One message per package the sources cannot satisfy; empty when the target is installable.
  type: list
  elements: str
  returned: always
to_hold:
  description: Installed driver packages of the branch not held yet (empty with O(hold=false)).
  type: list
  elements: str
  returned: always
to_release:
  description: Held driver packages of another branch, or every held one with O(hold=false).
  type: list
  elements: str
  returned: always
offered:
  description: The versions the sources offer for the first O(main) package, newest first (for messages).
  type: list
  elements: str
  returned: always
"""

from collections.abc import Iterable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DPKG_FORMAT = "${db:Status-Abbrev}|${db:Status-Want}|${Package}|${Version}\n"


def upstream(version: str) -> str:
    """'1:580.95.05-1' -> '580.95.05'."""
    version = version.split(":", 1)[-1]
    return version.rsplit("-", 1)[0] if "-" in version else version


def parse_apt_policy(stdout: str) -> dict[str, dict[str, Any]]:
    """Parse ``apt-cache policy PKG...``: {name: {installed, candidate, versions}} (versions newest first)."""
    result: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    in_table = False
    for line in (stdout or "").splitlines():
        if not line.strip():
            continue
        if not line[0].isspace() and line.rstrip().endswith(":"):
            name = line.rstrip()[:-1].split(":", 1)[0] if line.count(":") > 1 else line.rstrip()[:-1]
            current = {"installed": None, "candidate": None, "versions": []}
            result[name] = current
            in_table = False
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("Installed:"):
            value = stripped.split(":", 1)[1].strip()
            current["installed"] = None if value == "(none)" else value
        elif stripped.startswith("Candidate:"):
            value = stripped.split(":", 1)[1].strip()
            current["candidate"] = None if value == "(none)" else value
        elif stripped.startswith("Version table:"):
            in_table = True
        elif in_table:
            # ' *** 580.95.05-1 1001' or '     580.95.05-1 500' is a version; the deeper indented
            # lines below it name its origins ('        500 http://... Packages')
            fields = stripped.split()
            if fields[0] == "***":
                fields = fields[1:]
            indent = len(line) - len(line.lstrip())
            if len(fields) == 2 and fields[1].lstrip("-").isdigit() and (indent <= 5 or line.lstrip().startswith("***")):
                current["versions"].append(fields[0])
    return result


def parse_dpkg(stdout: str, prefixes: Iterable[str]) -> list[dict[str, str]]:
    """Installed packages (status not ``n``/``c`` in its second letter) whose name starts with a prefix."""
    prefixes = tuple(prefixes)
    packages = []
    for line in (stdout or "").splitlines():
        parts = line.split("|")
        if len(parts) != 4:
            continue
        status, want, name, version = (p.strip() for p in parts)
        if len(status) < 2 or status[1] in ("n", "c") or not version:
            continue
        name = name.split(":", 1)[0]
        if name.startswith(prefixes):
            packages.append({"name": name, "version": version, "want": want})
    return sorted(packages, key=lambda p: p["name"])


def plan(policy: dict[str, dict[str, Any]], installed: list[dict[str, str]], main: list[str], fabric: list[str],
         aux: list[str], extra: list[str], branch: str, version: str, upgrade: bool, hold: bool) -> dict[str, Any]:
    """Compare the APT state with the wanted driver; see the module's documentation."""
    def in_branch(v: str | None) -> bool:
        return bool(v) and upstream(v).startswith(branch + ".")

    def wanted(v: str | None) -> bool:
        return bool(v) and (upstream(v) == version if version else in_branch(v))

    pattern = f"{version}-*" if version else f"{branch}.*"
    have = {p["name"]: p for p in installed}
    exact = list(dict.fromkeys(main + fabric))
    fitting = {name: [v for v in policy.get(name, {}).get("versions", []) if wanted(v)] for name in exact}
    problems: list[str] = []
    for name in exact:
        if name not in policy:
            problems.append(f"{name} is unknown to apt")
        elif not fitting[name]:
            offered = ", ".join(policy[name]["versions"]) or "none"
            problems.append(f"{name} has no version {pattern} (available: {offered})")

    def common_of(names: list[str]) -> list[str]:
        if not names or any(not fitting[n] for n in names):
            return []
        return [v for v in fitting[names[0]] if all(v in fitting[n] for n in names[1:])]

    common = common_of(exact)
    driver_common = common_of(list(dict.fromkeys(main)))
    if not problems and not common:
        for name in fabric:
            problems.append(
                f"{name} has no version {driver_common[0] if driver_common else pattern} of the driver "
                f"(it has {', '.join(fitting[name])}): Fabric Manager and NSCQ must be at exactly the driver's "
                f"version, or Fabric Manager refuses to start; set nvidia_driver_version to a release both offer"
                + (f" (the driver offers {', '.join(driver_common)})" if driver_common else ""))
        if not problems:
            problems.append(f"the packages {', '.join(exact)} offer no common version {pattern}")

    current = have.get(main[0], {}).get("version") if main else None
    target = ""
    if common:
        keep = (current and wanted(current) and not upgrade
                and all(have.get(n, {}).get("version") == current or current in fitting[n] for n in exact))
        target = current if keep else common[0]

    status = [{"name": n, "installed": have.get(n, {}).get("version"), "target": target,
               "ok": bool(target) and have.get(n, {}).get("version") == target} for n in exact]
    install = [f"{n}={target}" for n in exact] if target else []
    for name in aux:
        versions = policy.get(name, {}).get("versions", [])
        if target and target in versions:
            aux_target, fits = target, (lambda v, t=target: v == t)
        elif any(in_branch(v) for v in versions):
            aux_target, fits = next(v for v in versions if in_branch(v)), in_branch
        else:
            problems.append(f"{name} has no version {target or pattern} or {branch}.* "
                            f"(available: {', '.join(versions) or 'none'})" if name in policy else f"{name} is unknown to apt")
            continue
        now = have.get(name, {}).get("version")
        ok = bool(now) and fits(now) and (not upgrade or now == aux_target)
        status.append({"name": name, "installed": now, "target": aux_target, "ok": ok})
        install.append(f"{name}={aux_target}")

    named = set(exact) | set(aux) | set(extra)
    sync: list[list[str]] = []
    for package in installed:
        name, now = package["name"], package["version"]
        versions = policy.get(name, {}).get("versions", [])
        if name in named or not versions:
            continue
        if target and target in versions:
            if now != target:
                sync.append([name, target])
        elif not in_branch(now) and any(in_branch(v) for v in versions):
            sync.append([name, next(v for v in versions if in_branch(v))])
    install += [f"{n}={v}" for n, v in sync] + list(extra)

    held = sorted(p["name"] for p in installed if p["want"] == "hold")
    return {
        "installed": installed,
        "installed_version": have.get(main[0], {}).get("version", "") if main else "",
        "held": held,
        "target": target,
        "status": status,
        "sync": sync,
        "change": bool(target) and (any(not s["ok"] for s in status) or bool(sync)),
        "install": install,
        "problems": problems,
        "to_hold": sorted(p["name"] for p in installed if hold and in_branch(p["version"]) and p["want"] != "hold"),
        "to_release": sorted(p["name"] for p in installed
                             if p["want"] == "hold" and (not hold or not in_branch(p["version"]))),
        "offered": policy.get(main[0], {}).get("versions", []) if main else [],
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "main": {"type": "list", "elements": "str", "required": True},
            "fabric": {"type": "list", "elements": "str", "default": []},
            "aux": {"type": "list", "elements": "str", "default": []},
            "extra": {"type": "list", "elements": "str", "default": []},
            "branch": {"type": "str", "required": True},
            "version": {"type": "str", "default": ""},
            "upgrade": {"type": "bool", "default": False},
            "hold": {"type": "bool", "default": True},
            "prefixes": {"type": "list", "elements": "str", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["main"]:
        module.fail_json(msg="main must name at least one package")
    rc, out, err = module.run_command(["dpkg-query", "-W", "-f", DPKG_FORMAT])
    if rc not in (0, 1):
        module.fail_json(msg=f"dpkg-query failed: {err.strip()}")
    installed = parse_dpkg(out, p["prefixes"])
    names = list(dict.fromkeys(p["main"] + p["fabric"] + p["aux"] + [i["name"] for i in installed]))
    rc, out, err = module.run_command(["apt-cache", "policy", *names])
    if rc != 0:
        module.fail_json(msg=f"apt-cache policy failed: {err.strip()}")
    result = plan(parse_apt_policy(out), installed, p["main"], p["fabric"], p["aux"], p["extra"],
                  str(p["branch"]).strip(), str(p["version"] or "").strip(), p["upgrade"], p["hold"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
