#!/usr/bin/python
"""Say what an APT install would do where check mode cannot ask APT: no package lists yet."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dlstack_apt_preview
short_description: Preview an APT install on a node that has no package lists yet
description:
  - In check mode, M(ansible.builtin.apt) resolves packages from the node's package lists,
    which a fresh node does not have (the real run downloads them first, check mode does
    not), so it fails with C(No package matching ...). Roles call this module instead in that
    one case - check mode on a node without lists - to say, in one line, which of the
    packages are not installed (from dpkg's database, which needs no lists) and that their
    versions cannot be predicted.
  - Reads only; reports C(changed) when any package is missing, so that check mode counts
    the install the real run will do, and then shows its line as a warning (a module's
    message is not printed on success).
options:
  names:
    description: The packages the role would install.
    type: list
    elements: str
    required: true
  debs:
    description:
      - Package files (C(.deb)) the role would install; for a file that is not on the node yet
        (the real run copies it first) the package name is taken from the file name.
    type: list
    elements: str
    default: []
  who:
    description: Prefix of the message, e.g. C(common on gpu01).
    type: str
    default: dlstack
  only_without_lists:
    description:
      - Do nothing (return O(blind=false)) when the node has package lists and every file of
        O(debs) is on it, so that the caller runs M(ansible.builtin.apt) itself; the
        M(dlstack_apt) action calls it so. A package file not on the node yet (check mode did
        not copy it) is previewed even where lists exist.
    type: bool
    default: false
author: dlstack
"""

EXAMPLES = r"""
- name: Say what the real run would install (check mode, no APT lists yet)
  dlstack_apt_preview:
    names: [curl, gnupg]
    who: "common on {{ inventory_hostname }}"
  when: ansible_check_mode and no_lists
"""

RETURN = r"""
missing:
  description: The packages that are not installed now.
  returned: always
  type: list
  elements: str
msg:
  description: The line to show.
  returned: always
  type: str
blind:
  description: Whether the node has no package lists (the preview was made).
  returned: always
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule


def installed(module: AnsibleModule, names: list[str]) -> set[str]:
    """The names dpkg knows as installed (a package dpkg has never seen is not)."""
    query = ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n", *(n.split("=")[0] for n in names)]
    rc, out, _err = module.run_command(query)
    # dpkg-query exits 1 when some name is unknown; its output still lists the known ones
    if rc not in (0, 1):
        module.fail_json(msg=f"dpkg-query failed with exit {rc}")
    return {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}


def has_lists(lists: str) -> bool:
    """Whether APT has downloaded any package index (a fresh image has none)."""
    try:
        return any("_Packages" in name for name in os.listdir(lists))
    except OSError:
        return False


def deb_package(module: AnsibleModule, path: str) -> str:
    """The package a .deb file holds, or the file's name when it is not on the node yet."""
    if os.path.isfile(path):
        rc, out, _err = module.run_command(["dpkg-deb", "-f", path, "Package"])
        if rc == 0 and out.strip():
            return out.strip()
    # not copied yet: Debian names package files PACKAGE_VERSION_ARCH.deb
    return os.path.basename(path).split("_")[0]


def message(who: str, missing: list[str], absent_debs: list[str] | None = None) -> str:
    """The line: why check mode cannot ask APT (no lists, or, with ``absent_debs``, package
    files the real run copies first) and what the real run installs."""
    what = f"installs {', '.join(missing)} (not installed now)" if missing else "finds every package installed already"
    if absent_debs:
        return (f"{who}: the package file {', '.join(absent_debs)} is not on the node yet, so check mode cannot "
                f"ask APT about it; the real run copies it first and {what}")
    return (f"{who}: no APT package lists yet, so check mode cannot resolve packages or predict their versions; "
            f"the real run downloads the lists first and {what}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "names": {"type": "list", "elements": "str", "required": True},
            "debs": {"type": "list", "elements": "str", "default": []},
            "who": {"type": "str", "default": "dlstack"},
            "only_without_lists": {"type": "bool", "default": False},
            "lists_dir": {"type": "path", "default": "/var/lib/apt/lists"},
        },
        supports_check_mode=True,
    )
    absent = [d for d in module.params["debs"] if not os.path.isfile(d)]
    lists = has_lists(module.params["lists_dir"])
    if module.params["only_without_lists"] and lists and not absent:
        module.exit_json(changed=False, blind=False, missing=[], msg="")
    names = list(dict.fromkeys([*module.params["names"], *(deb_package(module, d) for d in module.params["debs"])]))
    have = installed(module, names) if names else set()
    missing = [name for name in names if name.split("=")[0] not in have]
    msg = message(module.params["who"], missing, [os.path.basename(d) for d in absent] if lists else None)
    if missing:
        module.warn(msg)
    module.exit_json(changed=bool(missing), blind=True, missing=missing, msg=msg)


if __name__ == "__main__":
    main()
