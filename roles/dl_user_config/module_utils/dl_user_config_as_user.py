# -*- coding: utf-8 -*-
"""Run a function as another user, in a forked child (shared by the dl_user_config modules)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable


class SwitchError(Exception):
    """The child could not become the user, or the function raised there."""


def run_as_user(name: str, uid: int, gid: int, func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func(*args)`` in a child that has taken the user's groups, gid and uid (and
    umask 022) before anything else, and return its result, which must be JSON data.

    Needs root. Whatever the function touches, it touches with the user's own permissions:
    a home on NFS with root_squash, a mode-0700 directory, a link the user planted.
    Raises SwitchError with the child's exception text when the switch or the call fails.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(read_fd)
            os.setgroups(os.getgrouplist(name, gid))
            os.setgid(gid)
            os.setuid(uid)
            os.umask(0o022)
            data = {"result": func(*args)}
        except Exception as exc:  # report, never raise into the parent's code
            data = {"error": str(exc)}
            code = 1
        with os.fdopen(write_fd, "w") as pipe:
            pipe.write(json.dumps(data))
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    data = json.loads(text or '{"error": "the child wrote nothing"}')
    if "error" in data:
        raise SwitchError(data["error"])
    return data["result"]
