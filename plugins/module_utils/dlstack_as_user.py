# -*- coding: utf-8 -*-
"""Act as another user from a process running as root: the project's one way to do it.

A forked child takes the user's supplementary groups, gid and uid (in that order, and umask
022) before it does anything, then either calls a function (:func:`run_as_user`: file work
in a home, whatever its permissions or links) or runs a program (:func:`run_command`, with
Python's own ``subprocess`` switch). No sudo, runuser or PAM session is involved.

Used by the dl_user_config modules (Ansible imports it as ``ansible.module_utils.dlstack_as_user``
from plugins/module_utils, ansible.cfg's ``module_utils``) and by dl-verify on the node, which
the dl_verify role installs it beside (PREFIX/lib/dl-verify/): standard library only, Python 3.9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SwitchError(Exception):
    """The child could not become the user, or the function raised there."""


@dataclass
class Completed:
    """What a program run by :func:`run_command` left: its exit status (the negative signal
    number when it was killed), its output, and whether it ran out of time."""

    rc: int
    out: str
    err: str
    timed_out: bool = False


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


def run_command(argv: list[str], timeout: float, env: dict[str, str] | None = None, cwd: str | None = None,
                as_user: tuple[str, int, int] | None = None) -> Completed:
    """Run ``argv`` in a session of its own, as ``as_user`` (name, uid, gid) when given: the
    same switch as :func:`run_as_user` (the user's groups, gid and uid, umask 022), made in
    the forked child before the program starts, which needs root. On timeout the whole
    session is killed. Raises OSError or subprocess.SubprocessError when the program cannot
    be started (or the switch fails)."""
    switch: dict[str, Any] = {}
    if as_user is not None:
        name, uid, gid = as_user
        switch = {"user": uid, "group": gid, "extra_groups": os.getgrouplist(name, gid), "umask": 0o022}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, text=True, errors="replace", start_new_session=True, **switch)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Completed(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        out, err = proc.communicate()
        return Completed(proc.returncode, out, err, timed_out=True)
