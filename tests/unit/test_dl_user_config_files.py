"""Unit tests for roles/dl_user_config/library/dl_user_config_files.py."""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plugin_loader
import pytest
from plugin_loader import load_by_path

ROLE = Path(__file__).resolve().parents[2] / "roles" / "dl_user_config"
AS_USER = plugin_loader.SHARED_MODULE_UTILS / "dlstack_as_user.py"
MODULE_PATH = ROLE / "library" / "dl_user_config_files.py"
plugin_loader.load_module_utils(AS_USER)
files = load_by_path("dl_user_config_files", MODULE_PATH)


def run_module(cwd: Path, args: dict[str, Any], check: bool = False, diff: bool = False) -> tuple[int, dict[str, Any]]:
    return plugin_loader.run_module(MODULE_PATH, cwd, {**args, "_ansible_check_mode": check, "_ansible_diff": diff},
                                    (AS_USER,))


def test_apply_creates_updates_backs_up_and_then_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    keras_dir, keras_json = home / ".keras", home / ".keras" / "keras.json"
    dirs = [{"path": str(keras_dir), "mode": "0755"}, {"path": str(tmp_path / "var" / "theano-x"), "mode": "0700"}]
    wanted = [{"path": str(keras_json), "content": '{"backend": "theano"}\n', "mode": "0644", "backup": True}]
    first = files.apply(dirs, wanted, check=False)
    assert [r["action"] for r in first["results"]] == ["created", "created", "created"]
    assert keras_json.read_text() == '{"backend": "theano"}\n'
    assert oct((tmp_path / "var" / "theano-x").stat().st_mode & 0o7777) == "0o700"
    assert oct(keras_json.stat().st_mode & 0o7777) == "0o644"
    assert first["diff"][0]["before"] == "" and first["diff"][0]["after"] == '{"backend": "theano"}\n'
    again = files.apply(dirs, wanted, check=False)
    assert not any(r["changed"] for r in again["results"]) and again["diff"] == []
    keras_json.chmod(0o600)
    assert files.apply([], wanted, check=False)["results"][0]["action"] == "mode 0600 -> 0644"
    changed = [dict(wanted[0], content='{"backend": "tensorflow"}\n')]
    updated = files.apply([], changed, check=False)["results"][0]
    assert updated["action"] == "updated" and Path(updated["backup_file"]).read_text() == '{"backend": "theano"}\n'
    assert keras_json.read_text() == '{"backend": "tensorflow"}\n'
    assert sorted(p.name for p in keras_dir.iterdir() if not p.name.endswith("~")) == ["keras.json"]  # no temp left


def test_apply_in_check_mode_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f"
    outcome = files.apply([{"path": str(tmp_path / "d"), "mode": "0755"}],
                          [{"path": str(target), "content": "x\n", "mode": "0644"}], check=True)
    assert all(r["changed"] for r in outcome["results"]) and not (tmp_path / "d").exists()


def test_apply_refuses_links_and_wrong_types(tmp_path: Path) -> None:
    (tmp_path / ".keras").symlink_to("/etc")
    outcome = files.apply([{"path": str(tmp_path / ".keras"), "mode": "0755"}], [], check=False)
    assert outcome["error"] == f"{tmp_path}/.keras is a symbolic link (to '/etc'); dlstack does not follow links here"
    (tmp_path / "rc").symlink_to("/etc/passwd")
    outcome = files.apply([], [{"path": str(tmp_path / "rc"), "content": "x", "mode": "0644"}], check=False)
    assert "is a symbolic link (to '/etc/passwd')" in outcome["error"]
    (tmp_path / "adir").mkdir()
    outcome = files.apply([], [{"path": str(tmp_path / "adir"), "content": "x", "mode": "0644"}], check=False)
    assert outcome["error"].endswith("exists and is not a regular file")
    (tmp_path / "afile").write_text("")
    assert files.apply([{"path": str(tmp_path / "afile"), "mode": "0700"}], [], check=False)["error"].endswith(
        "exists and is not a directory")


def test_backup_name_is_the_copy_modules() -> None:
    import datetime
    name = files.backup_name("/h/.theanorc", datetime.datetime(2026, 11, 22, 0, 10, 5))
    assert name == f"/h/.theanorc.{os.getpid()}.2026-11-22@00:10:05~"


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A directory nobody owns, under a path nobody can traverse."""
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        os.chmod(top, 0o755)
        home = Path(top) / "home"
        home.mkdir()
        user = pwd.getpwnam("nobody")
        os.chown(home, user.pw_uid, user.pw_gid)
        yield home


@pytest.mark.skipif(os.geteuid() != 0, reason="writing as another user needs root")
def test_module_writes_as_the_user_and_reports_a_diff(nobody_dir: Path, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    args = {"user": "nobody", "dirs": [{"path": str(nobody_dir / ".keras"), "mode": "0755"}],
            "files": [{"path": str(nobody_dir / ".keras" / "keras.json"), "content": "{}\n", "mode": "0644", "backup": True}]}
    rc, out = run_module(tmp_path, args, check=True, diff=True)
    assert rc == 0 and out["changed"] and not (nobody_dir / ".keras").exists()
    rc, out = run_module(tmp_path, args, diff=True)
    assert rc == 0 and out["changed"] and out["diff"][0]["after"] == "{}\n"
    made = nobody_dir / ".keras" / "keras.json"
    assert (made.stat().st_uid, (nobody_dir / ".keras").stat().st_uid) == (nobody.pw_uid, nobody.pw_uid)
    rc, out = run_module(tmp_path, args)
    assert rc == 0 and not out["changed"]
    # as nobody, a root-owned directory cannot be written: the module fails, naming the path
    rc, out = run_module(tmp_path, {"user": "nobody", "files": [{"path": str(tmp_path / "x"), "content": "", "mode": "0644"}]})
    assert rc != 0 and out["failed"] and out["msg"].startswith("as nobody: ") and "Permission denied" in out["msg"]


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another uid needs root to make")
def test_apply_refuses_a_directory_of_another_account(tmp_path: Path) -> None:
    """A compile directory left by a deleted account of the same name (or planted in
    /var/tmp) keeps its mode; it must be refused, not reported as right."""
    stale = tmp_path / "theano-dave"
    stale.mkdir(mode=0o700)
    os.chown(stale, 54321, 54321)
    outcome = files.apply([{"path": str(stale), "mode": "0700"}], [], check=True)
    assert outcome["error"] == (f"{stale} belongs to uid 54321, not to this user; remove it (or choose another "
                                "location) so that the user's own directory is created there")
    os.chown(stale, 0, 0)
    assert files.apply([{"path": str(stale), "mode": "0700"}], [], check=True)["results"][0]["action"] == "none"


def test_module_rejects_bad_input(tmp_path: Path) -> None:
    rc, out = run_module(tmp_path, {"user": "no-such-user-dlstack"})
    assert rc != 0 and out["msg"] == "no such user: no-such-user-dlstack"
    me = pwd.getpwuid(os.geteuid()).pw_name
    rc, out = run_module(tmp_path, {"user": me, "dirs": [{"path": "relative", "mode": "0755"}]})
    assert rc != 0 and out["msg"] == "relative: an absolute path is needed"
    rc, out = run_module(tmp_path, {"user": me, "dirs": [{"path": str(tmp_path / "d"), "mode": "rwx"}]})
    assert rc != 0 and "is not an octal mode" in out["msg"] and not (tmp_path / "d").exists()
