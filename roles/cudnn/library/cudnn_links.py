#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Link the files of an unpacked cuDNN archive into a CUDA toolkit directory."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cudnn_links
short_description: Link an unpacked cuDNN archive's headers or libraries into a CUDA directory
description:
  - For every entry of O(src) whose name matches one of O(patterns), makes O(dest)/NAME a
    symbolic link. A regular file gets an absolute link to it; a link of the archive to a
    name in the same directory (C(libcudnn.so.9 -> libcudnn.so.9.3.0)) is reproduced as the
    same relative link, which is what C(ldconfig) expects of soname links, so that C(ldconfig)
    never rewrites them.
  - Links in O(dest) that match O(patterns) and are not wanted any more are removed when they
    point under O(owned_prefix) (an older archive) or are relative links to a name in the same
    directory that is not wanted either (dangling soname links).
  - Never replaces a regular file or a link pointing elsewhere; fails listing them instead
    (another cuDNN was copied into the CUDA directory by hand).
  - Supports check mode and reports what it created, updated and removed.
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  src:
    description: Directory of the unpacked archive (its C(include) or C(lib)).
    type: path
    required: true
  dest:
    description: Directory of the CUDA release to link into (its C(include) or C(lib64)); links are followed.
    type: path
    required: true
  patterns:
    description: Shell patterns of the names to link.
    type: list
    elements: str
    required: true
  owned_prefix:
    description: Links pointing under this directory are the role's own and may be replaced or removed.
    type: path
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Link cuDNN's libraries into CUDA 12.5
  cudnn_links:
    src: /opt/nvidia/cudnn/cudnn-linux-x86_64-9.3.0.75_cuda12-archive/lib
    dest: /usr/local/cuda-12.5/lib64
    patterns: ["libcudnn*"]
    owned_prefix: /opt/nvidia/cudnn
"""

RETURN = r"""
created:
  description: Names linked that did not exist.
  type: list
  elements: str
  returned: always
updated:
  description: Names whose link target changed.
  type: list
  elements: str
  returned: always
removed:
  description: Stale links removed.
  type: list
  elements: str
  returned: always
"""

import fnmatch
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _under(path: str, prefix: str) -> bool:
    prefix = os.path.normpath(prefix)
    return os.path.normpath(path) == prefix or os.path.normpath(path).startswith(prefix + os.sep)


def wanted_links(src: str, patterns: list[str]) -> dict[str, str]:
    """Name -> link target for every matching entry of src."""
    wanted: dict[str, str] = {}
    for name in sorted(os.listdir(src)):
        if not _matches(name, patterns):
            continue
        path = os.path.join(src, name)
        if os.path.islink(path):
            target = os.readlink(path)
            if "/" not in target:
                wanted[name] = target            # a soname link within the directory
                continue
        if os.path.isdir(path) and not os.path.islink(path):
            continue
        wanted[name] = path
    return wanted


def plan(src: str, dest: str, patterns: list[str], owned_prefix: str) -> dict[str, Any]:
    """What to create, update and remove in dest, and the conflicts that stop the module."""
    wanted = wanted_links(src, patterns)
    result: dict[str, Any] = {"create": {}, "update": {}, "remove": [], "conflicts": []}
    existing = sorted(n for n in os.listdir(dest) if _matches(n, patterns))
    for name, target in wanted.items():
        path = os.path.join(dest, name)
        if not os.path.lexists(path):
            result["create"][name] = target
        elif os.path.islink(path):
            current = os.readlink(path)
            if current == target:
                continue
            if "/" not in current or _under(current, owned_prefix):
                result["update"][name] = target
            else:
                result["conflicts"].append(f"{path} -> {current}")
        else:
            result["conflicts"].append(f"{path} (a {'directory' if os.path.isdir(path) else 'file'})")
    for name in existing:
        if name in wanted:
            continue
        path = os.path.join(dest, name)
        if not os.path.islink(path):
            continue
        current = os.readlink(path)
        # ours, into another archive than src; or a soname link whose name is no longer
        # wanted and whose target is not a plain file here
        stale = _under(current, owned_prefix) and not _under(current, src)
        orphan = "/" not in current and current not in wanted and not (
            os.path.isfile(os.path.join(dest, current)) and not os.path.islink(os.path.join(dest, current)))
        if stale or orphan:
            result["remove"].append(name)
    return result


def apply(dest: str, todo: dict[str, Any]) -> None:
    for name in todo["remove"]:
        os.unlink(os.path.join(dest, name))
    for name, target in list(todo["update"].items()) + list(todo["create"].items()):
        path = os.path.join(dest, name)
        tmp = os.path.join(dest, f".{name}.dlstack-tmp")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "patterns": {"type": "list", "elements": "str", "required": True},
            "owned_prefix": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    src, dest = module.params["src"], module.params["dest"]
    if not os.path.isdir(src):
        module.fail_json(msg=f"cudnn_links: {src} is not a directory (the unpacked cuDNN archive)")
    if not os.path.isdir(dest):
        module.fail_json(msg=f"cudnn_links: {dest} is not a directory (is the CUDA release installed?)")
    todo = plan(src, dest, module.params["patterns"], module.params["owned_prefix"])
    if todo["conflicts"]:
        module.fail_json(
            msg=(f"cudnn_links: {dest} already has cuDNN files that dlstack did not install: "
                 f"{', '.join(todo['conflicts'])}. Remove them (another cuDNN was copied there by hand) and re-run."),
            conflicts=todo["conflicts"])
    changed = bool(todo["create"] or todo["update"] or todo["remove"])
    if changed and not module.check_mode:
        try:
            apply(dest, todo)
        except OSError as exc:
            module.fail_json(msg=f"cudnn_links: cannot link into {dest}: {exc}")
    module.exit_json(changed=changed, created=sorted(todo["create"]), updated=sorted(todo["update"]),
                     removed=sorted(todo["remove"]))


if __name__ == "__main__":
    main()
