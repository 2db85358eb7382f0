#!/usr/bin/python
"""Write one user's config files and directories as that user, in one module call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_user_config_files
short_description: Write a user's files and directories as that user, in one call
description:
  - Creates directories and writes files for one user, B(as that user) -- a forked child sets
    the user's groups, gid and uid before it touches any path, so root never writes into a
    home (which may be NFS with root_squash) and a link the user planted can only lead where
    the user could write anyway.
  - Refuses symbolic links and wrong file types at the managed paths instead of following them.
  - Files are replaced atomically (a temporary file in the same directory, then a rename);
    with O(files[].backup) the previous content is kept as C(PATH.PID.YYYY-MM-DD@HH:MM:SS~),
    as C(ansible.builtin.copy) does.
  - Nothing that is already right is touched. Supports check mode and diff mode.
  - One call replaces a C(file), C(copy), C(copy) and C(file) task per user, which matters
    when one user is added across a whole fleet.
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  user:
    description: The account to write as. Needs root unless it is the module's own user.
    type: str
    required: true
  dirs:
    description: Directories to create (with parents) or fix the mode of, in order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      mode:
        description: Octal mode as a string, such as C('0700').
        type: str
        required: true
  files:
    description: Files to write, in order (after O(dirs)).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      content:
        description: The whole text of the file.
        type: str
        required: true
      mode:
        description: Octal mode as a string, such as C('0644').
        type: str
        required: true
      backup:
        description: Keep the previous content when it changes.
        type: bool
        default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Write alice's keras.json and .theanorc as alice
  dl_user_config_files:
    user: alice
    dirs:
      - {path: /home/alice/.keras, mode: "0755"}
      - {path: /var/tmp/theano-alice, mode: "0700"}
    files:
      - {path: /home/alice/.keras/keras.json, content: "{}\n", mode: "0644", backup: true}
"""

RETURN = r"""
results:
  description: One entry per directory and file, with C(path), C(changed), C(action) and C(backup_file) where one was made.
  returned: always
  type: list
  elements: dict
  sample: [{path: /home/alice/.keras/keras.json, changed: true, action: updated,
            backup_file: "/home/alice/.keras/keras.json.4242.2026-11-22@00:10:00~"}]
"""

import datetime
import os
import pwd
import shutil
import stat as stat_mod
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dlstack_as_user import SwitchError, run_as_user


class Refused(Exception):
    """A managed path is a link or of the wrong type: nothing is written there."""


def ensure_dir(path: str, mode: int, check: bool) -> dict[str, Any]:
    """Create a directory (and its parents) or fix its mode; never through a link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not check:
            os.makedirs(path, mode=mode)
            os.chmod(path, mode)  # makedirs applies the umask
        return {"path": path, "changed": True, "action": "created"}
    if stat_mod.S_ISLNK(st.st_mode):
        raise Refused(f"{path} is a symbolic link (to {os.readlink(path)!r}); dlstack does not follow links here")
    if not stat_mod.S_ISDIR(st.st_mode):
        raise Refused(f"{path} exists and is not a directory")
    if st.st_uid != os.geteuid():
        # runs as the user: a directory of another account (one left by a deleted account
        # that had this name, or one planted in /var/tmp) would hold this user's files
        raise Refused(f"{path} belongs to uid {st.st_uid}, not to this user; remove it (or choose another "
                      "location) so that the user's own directory is created there")
    if stat_mod.S_IMODE(st.st_mode) != mode:
        if not check:
            os.chmod(path, mode)
        return {"path": path, "changed": True, "action": f"mode {stat_mod.S_IMODE(st.st_mode):04o} -> {mode:04o}"}
    return {"path": path, "changed": False, "action": "none"}


def backup_name(path: str, now: datetime.datetime | None = None) -> str:
    """PATH.PID.YYYY-MM-DD@HH:MM:SS~, the name ansible.builtin.copy gives its backups."""
    stamp = (now or datetime.datetime.now()).strftime("%Y-%m-%d@%H:%M:%S")
    return f"{path}.{os.getpid()}.{stamp}~"


def write_file(path: str, content: str, mode: int, backup: bool, check: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """Replace a file atomically when its content or mode differs; (result, diff)."""
    data = content.encode("utf-8")
    before = ""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat_mod.S_ISLNK(st.st_mode):
            raise Refused(f"{path} is a symbolic link (to {os.readlink(path)!r}); dlstack does not follow links here")
        if not stat_mod.S_ISREG(st.st_mode):
            raise Refused(f"{path} exists and is not a regular file")
        with open(path, "rb") as handle:
            old = handle.read()
        before = old.decode("utf-8", errors="replace")
        if old == data:
            if stat_mod.S_IMODE(st.st_mode) == mode:
                return {"path": path, "changed": False, "action": "none"}, {}
            if not check:
                os.chmod(path, mode)
            return ({"path": path, "changed": True, "action": f"mode {stat_mod.S_IMODE(st.st_mode):04o} -> {mode:04o}"},
                    {})
    result: dict[str, Any] = {"path": path, "changed": True, "action": "created" if st is None else "updated"}
    diff = {"before_header": path, "after_header": path, "before": before, "after": content}
    if check:
        return result, diff
    if st is not None and backup:
        result["backup_file"] = backup_name(path)
        shutil.copy2(path, result["backup_file"])
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.dlstack.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return result, diff


def apply(dirs: list[dict[str, Any]], files: list[dict[str, Any]], check: bool) -> dict[str, Any]:
    """Do the work (as whoever runs this); {'results', 'diff'} or {'error'}."""
    results: list[dict[str, Any]] = []
    diffs: list[dict[str, str]] = []
    try:
        for item in dirs:
            results.append(ensure_dir(item["path"], int(item["mode"], 8), check))
        for item in files:
            result, diff = write_file(item["path"], item["content"], int(item["mode"], 8), bool(item.get("backup")), check)
            results.append(result)
            if diff:
                diffs.append(diff)
    except Refused as exc:
        return {"error": str(exc), "results": results}
    except OSError as exc:
        return {"error": f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), "results": results}
    return {"results": results, "diff": diffs}


def apply_as(name: str, dirs: list[dict[str, Any]], files: list[dict[str, Any]], check: bool) -> dict[str, Any]:
    """apply() in a child switched to the user (root), or directly when the user is us."""
    entry = pwd.getpwnam(name)
    if os.geteuid() != 0:
        if os.geteuid() != entry.pw_uid:
            return {"error": f"cannot write as {name}: the module does not run as root", "results": []}
        return apply(dirs, files, check)
    try:
        return run_as_user(name, entry.pw_uid, entry.pw_gid, apply, dirs, files, check)
    except SwitchError as exc:
        return {"error": f"switching to {name} failed: {exc}", "results": []}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "user": {"type": "str", "required": True},
            "dirs": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True}, "mode": {"type": "str", "required": True}}},
            "files": {"type": "list", "elements": "dict", "default": [], "options": {
                "path": {"type": "path", "required": True}, "content": {"type": "str", "required": True},
                "mode": {"type": "str", "required": True}, "backup": {"type": "bool", "default": False}}},
        },
        supports_check_mode=True,
    )
    p = module.params
    for item in p["dirs"] + p["files"]:
        if not os.path.isabs(item["path"]):
            module.fail_json(msg=f"{item['path']}: an absolute path is needed")
        try:
            if not 0 <= int(item["mode"], 8) <= 0o7777:
                raise ValueError
        except ValueError:
            module.fail_json(msg=f"{item['path']}: mode {item['mode']!r} is not an octal mode such as '0644'")
    try:
        outcome = apply_as(p["user"], p["dirs"], p["files"], module.check_mode)
    except KeyError:
        module.fail_json(msg=f"no such user: {p['user']}")
    changed = any(r.get("changed") for r in outcome.get("results", []))
    if outcome.get("error"):
        module.fail_json(msg=f"as {p['user']}: {outcome['error']}", changed=changed, results=outcome.get("results", []))
    module.exit_json(changed=changed, results=outcome["results"], diff=outcome["diff"])


if __name__ == "__main__":
    main()
