"""Unit tests for plugins/module_utils/dlstack_as_user.py, the project's one way to act as a
user (the dl_user_config modules and dl-verify use it). The switches need root."""

from __future__ import annotations

import os
import pwd
import sys
import time
from pathlib import Path

import pytest
from plugin_loader import SHARED_MODULE_UTILS, load_by_path

as_user = load_by_path("dlstack_as_user_under_test", SHARED_MODULE_UTILS / "dlstack_as_user.py")
REPO = Path(__file__).resolve().parents[2]
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def nobody() -> tuple[str, int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def whoami() -> list[int]:
    return [os.getuid(), os.getgid(), *sorted(os.getgroups()), os.umask(0o022)]


@root_only
def test_run_as_user_calls_the_function_as_the_user() -> None:
    name, uid, gid = nobody()
    assert as_user.run_as_user(name, uid, gid, whoami) == [uid, gid, *sorted(os.getgrouplist(name, gid)), 0o022]
    assert os.geteuid() == 0  # the parent stays root


@root_only
def test_run_as_user_reports_what_the_child_raised() -> None:
    name, uid, gid = nobody()
    with pytest.raises(as_user.SwitchError, match="Permission denied"):
        as_user.run_as_user(name, uid, gid, os.listdir, "/root")


@root_only
def test_run_command_as_the_user() -> None:
    done = as_user.run_command(["id"], 10, env={"PATH": "/usr/bin:/bin"}, cwd="/", as_user=nobody())
    name, uid, gid = nobody()
    assert done.rc == 0 and not done.timed_out
    assert done.out.startswith(f"uid={uid}({name}) gid={gid}") and "(root)" not in done.out


def test_run_command_as_the_caller() -> None:
    done = as_user.run_command([sys.executable, "-c", "import os, sys; print(os.getuid()); sys.exit(4)"], 10)
    assert (done.rc, done.out.strip(), done.timed_out) == (4, str(os.getuid()), False)


def test_run_command_kills_the_whole_session_on_timeout(tmp_path: Path) -> None:
    """A grandchild that outlives the program dies with it (the session is killed)."""
    mark = tmp_path / "late"
    script = f"sleep 5 & sleep 5; touch {mark}"
    started = time.monotonic()
    done = as_user.run_command(["sh", "-c", script], 0.5)
    assert done.timed_out and done.rc == -9 and time.monotonic() - started < 4
    time.sleep(0.2)
    assert not mark.exists()


def test_run_command_raises_when_the_program_cannot_start() -> None:
    with pytest.raises(OSError):
        as_user.run_command(["/nonexistent/program"], 10)


def test_no_other_way_to_switch_users_in_the_project_code() -> None:
    """Modules, filters and dl-verify switch through this module only: no setuid/setgroups or
    subprocess user= elsewhere, no runuser/sudo/su in what runs on the nodes. (Molecule's
    tests and the bench use runuser from outside, as an admin would; python_envs' YAML keeps
    become_user, see its README.)"""
    own = SHARED_MODULE_UTILS / "dlstack_as_user.py"
    code = [*REPO.glob("roles/*/library/*.py"), *REPO.glob("roles/*/filter_plugins/*.py"),
            *REPO.glob("roles/*/module_utils/*.py"), *REPO.glob("plugins/*/*.py"),
            REPO / "roles" / "dl_verify" / "files" / "dl-verify", REPO / "roles" / "dl_verify" / "files" / "dl_verify_probe.py"]
    words = ("os.setuid", "os.setgid", "os.setgroups", "extra_groups=", "\"runuser\"", "'runuser'", "setpriv")
    found = [(path.relative_to(REPO), word) for path in code if path != own
             for word in words if word in path.read_text()]
    assert found == []
