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
  who:
    description: Prefix of the message, e.g. C(common on gpu01).
    type: str
    default: dlstack
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
"""

from ansible.module_utils.basic import AnsibleModule


def installed(module: AnsibleModule, names: list[str]) -> set[str]:
    """The names dpkg knows as installed (a package dpkg has never seen is not)."""
    query = ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n", *(n.split("=")[0] for n in names)]
    rc, out, _err = module.run_command(query)
    # dpkg-query exits 1 when some name is unknown; its output still lists the known ones
    if rc not in (0, 1):
        module.fail_json(msg=f"dpkg-query failed with exit {rc}")
    return {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}


def message(who: str, missing: list[str]) -> str:
    what = f"installs {', '.join(missing)} (not installed now)" if missing else "finds every package installed already"
    return (f"{who}: no APT package lists yet, so check mode cannot resolve packages or predict their versions; "
            f"the real run downloads the lists first and {what}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "names": {"type": "list", "elements": "str", "required": True},
            "who": {"type": "str", "default": "dlstack"},
        },
        supports_check_mode=True,
    )
    names = list(dict.fromkeys(module.params["names"]))
    have = installed(module, names) if names else set()
    missing = [name for name in names if name.split("=")[0] not in have]
    msg = message(module.params["who"], missing)
    if missing:
        module.warn(msg)
    module.exit_json(changed=bool(missing), missing=missing, msg=msg)


if __name__ == "__main__":
    main()
