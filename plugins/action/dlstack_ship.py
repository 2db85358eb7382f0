"""Action plugin dlstack_ship: send files from the controller into one directory of the node
as ONE archive (one transfer), unpacked there by dlstack_unpack, each file put in place whole
(see plugins/modules/dlstack_ship.py for the documentation)."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from typing import Any

from ansible import constants as C
from ansible.plugins.action import ActionBase


def problems(files: Any) -> list[str]:
    """One line per problem with the ``files`` argument (name -> the controller's path)."""
    if not isinstance(files, dict):
        return [f"files must be a mapping of file name to the controller's path, not {type(files).__name__}"]
    lines = []
    for name, path in sorted(files.items(), key=lambda item: str(item[0])):
        if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
            lines.append(f"{name!r} is not a plain file name (no directory part, not hidden)")
        elif not isinstance(path, str) or not os.path.isfile(path):
            lines.append(f"{name}: {path!r} is not a file on the controller")
    return lines


def pack(files: dict[str, str], archive: str) -> None:
    """Write an uncompressed tar of ``files`` (name -> path), each under its plain name, in name order."""
    with tarfile.open(archive, mode="w:", format=tarfile.PAX_FORMAT) as out:
        for name in sorted(files):
            out.add(files[name], arcname=name, recursive=False)


class ActionModule(ActionBase):
    """Check mode: reports the files it would send (changed when there are any) and sends
    nothing. Otherwise: packs them on the controller, transfers the archive once, and runs
    dlstack_unpack on the node. No files: nothing to do, not changed."""

    TRANSFERS_FILES = True

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        try:
            args = dict(self._task.args)
            files = args.get("files", {})
            missing = [key for key in ("dest", "owner", "group", "mode") if not args.get(key)]
            lines = [f"{key} is required" for key in missing] + problems(files)
            if lines:
                return {**result, "failed": True, "msg": "dlstack_ship: " + "; ".join(lines)}
            names = sorted(files)
            if not names or self._task.check_mode:
                return {**result, "changed": bool(names), "files": names}
            local = tempfile.mkdtemp(prefix="dlstack-ship-", dir=C.DEFAULT_LOCAL_TMP)
            try:
                archive = os.path.join(local, "ship.tar")
                pack(files, archive)
                remote = self._connection._shell.join_path(self._connection._shell.tmpdir, "ship.tar")
                self._transfer_file(archive, remote)
                self._fixup_perms2((self._connection._shell.tmpdir, remote))
                result.update(self._execute_module(
                    module_name="dlstack_unpack", task_vars=task_vars,
                    module_args={"archive": remote, "dest": args["dest"], "owner": str(args["owner"]),
                                 "group": str(args["group"]), "mode": str(args["mode"])}))
                return result
            finally:
                shutil.rmtree(local, ignore_errors=True)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
