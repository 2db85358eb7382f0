#!/usr/bin/python
# -*- coding: utf-8 -*-
"""List the APT sources of a node, from both file formats (one-line .list and deb822 .sources)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apt_sources_info
short_description: List the APT sources entries of a node (one-line and deb822 formats)
description:
  - Reads C({root}/etc/apt/sources.list) and every C(*.list) and C(*.sources) file in
    C({root}/etc/apt/sources.list.d) and returns one entry per source (its file, types, URIs,
    suites, components, C(Signed-By) and whether it is enabled).
  - One-line entries (C(deb [options] URI SUITE COMPONENT...)) and deb822 stanzas
    (C(Types:), C(URIs:), C(Suites:), C(Components:), C(Signed-By:), C(Enabled:)) give the same
    shape. Commented-out lines are skipped; a deb822 stanza with C(Enabled=no) is returned with
    C(enabled=false).
  - Read-only; never changes anything (C(changed=false)).
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  root:
    description: Root of the file system to read (point it at a recorded tree to test).
    type: path
    default: /
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - A flat repository (suite C(/), no components) is returned with C(suites=["/"]) and
    C(components=[]).
"""

EXAMPLES = r"""
- name: Read the node's APT sources
  apt_sources_info:
  register: sources

- name: Show the files that name a contrib component
  ansible.builtin.debug:
    msg: "{{ sources.entries | selectattr('components', 'contains', 'contrib') | map(attribute='file') | unique }}"
"""

RETURN = r"""
entries:
  description: The sources entries, in file order (sources.list first, then sources.list.d sorted by name).
  returned: always
  type: list
  elements: dict
  contains:
    file:
      description: Path of the file (without the root prefix).
      type: str
      sample: /etc/apt/sources.list.d/debian.sources
    format:
      description: C(one-line) or C(deb822).
      type: str
    types:
      description: C(deb) and/or C(deb-src).
      type: list
      elements: str
    uris:
      description: Repository URIs.
      type: list
      elements: str
      sample: [http://deb.debian.org/debian]
    suites:
      description: Suites (distributions), such as C(bookworm) and C(bookworm-updates).
      type: list
      elements: str
    components:
      description: Components, such as C(main) and C(contrib).
      type: list
      elements: str
    signed_by:
      description: The C(Signed-By) value (a keyring path or an inline key's first line), or C("").
      type: str
    enabled:
      description: False for a deb822 stanza with C(Enabled=no).
      type: bool
"""

import glob
import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

_OPTIONS_RE = re.compile(r"^\[(?P<options>[^\]]*)\]\s*")


def parse_one_line(text: str, path: str) -> list[dict[str, Any]]:
    """Entries of a one-line format file ('deb [signed-by=...] URI SUITE COMPONENT...')."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind not in ("deb", "deb-src"):
            continue
        rest = rest.strip()
        options: dict[str, str] = {}
        match = _OPTIONS_RE.match(rest)
        if match:
            for option in match.group("options").split():
                key, _, value = option.partition("=")
                options[key.strip()] = value.strip()
            rest = rest[match.end():]
        fields = rest.split()
        if len(fields) < 2:
            continue
        entries.append({
            "file": path, "format": "one-line", "types": [kind], "uris": [fields[0]], "suites": [fields[1]],
            "components": fields[2:], "signed_by": options.get("signed-by", ""), "enabled": True,
        })
    return entries


def parse_deb822(text: str, path: str) -> list[dict[str, Any]]:
    """Entries of a deb822 .sources file: one per stanza (paragraphs separated by blank lines)."""
    entries = []
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, last = {}, ""
            continue
        if raw[0].isspace() and last:
            current[last] += "\n" + raw.strip()
            continue
        key, _, value = raw.partition(":")
        last = key.strip().lower()
        current[last] = value.strip()
    for stanza in stanzas:
        if "types" not in stanza or "uris" not in stanza:
            continue
        signed_by = stanza.get("signed-by", "")
        entries.append({
            "file": path, "format": "deb822", "types": stanza["types"].split(), "uris": stanza["uris"].split(),
            "suites": stanza.get("suites", "").split(), "components": stanza.get("components", "").split(),
            "signed_by": signed_by.splitlines()[0] if signed_by else "",
            "enabled": stanza.get("enabled", "yes").strip().lower() not in ("no", "false", "0"),
        })
    return entries


def read_sources(root: str) -> list[dict[str, Any]]:
    """Every entry under {root}/etc/apt, sources.list first, then sources.list.d by name."""
    base = os.path.join(root, "etc", "apt")
    files = [os.path.join(base, "sources.list")]
    files += sorted(glob.glob(os.path.join(base, "sources.list.d", "*.list"))
                    + glob.glob(os.path.join(base, "sources.list.d", "*.sources")))
    entries: list[dict[str, Any]] = []
    for full in files:
        try:
            with open(full, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        shown = "/" + os.path.relpath(full, root)
        entries += parse_deb822(text, shown) if full.endswith(".sources") else parse_one_line(text, shown)
    return entries


def main() -> None:
    module = AnsibleModule(argument_spec={"root": {"type": "path", "default": "/"}}, supports_check_mode=True)
    root = module.params["root"]
    if not os.path.isdir(root):
        module.fail_json(msg=f"root must be an existing directory, got {root!r}")
    module.exit_json(changed=False, entries=read_sources(root))


if __name__ == "__main__":
    main()
