"""Act as another user from a module running as root (shared by the dl_user_config modules).

One mechanism, two forms: a forked child takes the user's groups, gid and uid before it does
anything, then either calls a function (:func:`run_as_user`: file work in a home, whatever
its permissions or links) or runs a program (:func:`command_as_user`, Python's own
``subprocess`` switch: the Theano seed build). dl-verify switches the same way for its probes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any


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


def command_as_user(name: str, uid: int, gid: int, argv: list[str], env: dict[str, str], cwd: str,
                    timeout: float) -> tuple[int | None, str, str]:
    """Run ``argv`` as the user (the same switch as :func:`run_as_user`: the user's groups, gid
    and uid, set in the forked child before the program starts), in a session of its own;
    on timeout the whole session is killed. Returns (exit status or None on timeout, stdout,
    stderr). Needs root."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, text=True, errors="replace", start_new_session=True,
                            user=uid, group=gid, extra_groups=os.getgrouplist(name, gid), umask=0o022)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        out, err = proc.communicate()
        return None, out, err
