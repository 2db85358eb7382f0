#!/usr/bin/python
"""Unpack a flat tar archive of files into a directory, each file put in place whole (written
beside its final name, then renamed over it): the node side of the dlstack_ship action."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: dlstack_unpack
short_description: Unpack a flat tar archive into a directory, file by file, atomically
description:
  - The node side of the M(dlstack_ship) action, which sends the files a node lacks as one
    archive instead of one transfer per file; not meant to be called on its own.
  - Every member of the archive must be a regular file with a plain name (no directory part,
    not starting with a dot); otherwise the module fails before it writes anything.
  - Each file is written to a hidden temporary file in O(dest), given its owner, group and
    mode, then renamed to its name, so that a reader (or an interrupted run) never sees a file
    half written under its final name. Temporary files an interrupted run left behind are
    removed first.
options:
  archive:
    description: The archive (uncompressed tar) on the node.
    type: path
    required: true
  dest:
    description: The directory to unpack into; it must exist.
    type: path
    required: true
  owner:
    description: The owner of the files.
    type: str
    required: true
  group:
    description: The group of the files.
    type: str
    required: true
  mode:
    description: The mode of the files, in octal.
    type: str
    required: true
author: dlstack
"""

EXAMPLES = r"""
- name: Unpack the wheels
  dlstack_unpack:
    archive: /root/.ansible/tmp/ship.tar
    dest: /var/lib/dlstack/wheelhouse
    owner: root
    group: root
    mode: "0644"
"""

RETURN = r"""
files:
  description: The names of the files put in place, in the archive's order.
  returned: always
  type: list
  elements: str
"""

# the prefix of the temporary files in dest (a leftover one is removed by the next run)
PARTIAL = ".dlstack-unpack-"


def plain_name(name: str) -> bool:
    """A file name without a directory part, not hidden, not '.' or '..'."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def members(archive: tarfile.TarFile) -> tuple[list[tarfile.TarInfo], list[str]]:
    """The archive's members, and a line for each one that is not a regular file with a plain name."""
    found = archive.getmembers()
    bad = [f"{m.name!r} is not a regular file" if not m.isreg() else f"{m.name!r} is not a plain file name"
           for m in found if not (m.isreg() and plain_name(m.name))]
    return found, bad


def remove_partials(dest: str) -> list[str]:
    """Remove the temporary files an interrupted unpack left in ``dest``; their names."""
    gone = []
    for name in sorted(os.listdir(dest)):
        path = os.path.join(dest, name)
        if name.startswith(PARTIAL) and os.path.isfile(path) and not os.path.islink(path):
            os.unlink(path)
            gone.append(name)
    return gone


def unpack(archive_path: str, dest: str, uid: int, gid: int, mode: int) -> list[str]:
    """Put every member of the archive in ``dest``, each whole (temporary file, then rename)."""
    done = []
    with tarfile.open(archive_path, mode="r:") as archive:
        found, bad = members(archive)
        if bad:
            raise ValueError(f"{archive_path}: " + "; ".join(bad))
        for member in found:
            source = archive.extractfile(member)
            if source is None:
                raise ValueError(f"{archive_path}: {member.name!r} cannot be read")
            fd, partial = tempfile.mkstemp(prefix=PARTIAL, dir=dest)
            try:
                with os.fdopen(fd, "wb") as out, source:
                    shutil.copyfileobj(source, out, 1 << 20)
                    os.fchown(out.fileno(), uid, gid)
                    os.fchmod(out.fileno(), mode)
                os.replace(partial, os.path.join(dest, member.name))
            except BaseException:
                if os.path.exists(partial):
                    os.unlink(partial)
                raise
            done.append(member.name)
    return done


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "archive": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "owner": {"type": "str", "required": True},
            "group": {"type": "str", "required": True},
            "mode": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    if not os.path.isdir(params["dest"]):
        module.fail_json(msg=f"dlstack_unpack: {params['dest']} is not a directory")
    try:
        mode = int(params["mode"], 8)
    except ValueError:
        module.fail_json(msg=f"dlstack_unpack: mode {params['mode']!r} is not an octal number")
    uid = _id(module, "user", params["owner"])
    gid = _id(module, "group", params["group"])
    if module.check_mode:
        with tarfile.open(params["archive"], mode="r:") as archive:
            found, bad = members(archive)
        if bad:
            module.fail_json(msg=f"dlstack_unpack: {params['archive']}: " + "; ".join(bad))
        module.exit_json(changed=bool(found), files=[m.name for m in found])
    remove_partials(params["dest"])
    try:
        files = unpack(params["archive"], params["dest"], uid, gid, mode)
    except (OSError, ValueError, tarfile.TarError) as err:
        module.fail_json(msg=f"dlstack_unpack: {err}")
    module.exit_json(changed=bool(files), files=files)


def _id(module: AnsibleModule, kind: str, name: str) -> int:
    """The numeric id of a user (kind 'user') or group (kind 'group'), given by name or number."""
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid if kind == "user" else grp.getgrnam(name).gr_gid
    except KeyError:
        module.fail_json(msg=f"dlstack_unpack: no {kind} {name!r}")
        raise  # not reached: fail_json exits


if __name__ == "__main__":
    main()
