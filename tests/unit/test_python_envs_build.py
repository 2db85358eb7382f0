"""Unit tests for roles/python_envs/library/python_env_build.py: atomic builds, fast path, repair.

Most tests drive ``EnvBuilder`` with a fake runner that plays ``python -m venv`` and pip
(fast and deterministic); one builds a real venv; two run the module as Ansible would.
"""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "roles" / "python_envs" / "library" / "python_env_build.py"
ME = getpass.getuser()


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("python_env_build", MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


m = _load()
LOCK = "# a lock\nsix==1.17.0\nnumpy==1.23.5  # pinned\n"


class FakeRunner:
    """Plays the interpreter probe, ``python -m venv`` and pip; records every command."""

    def __init__(self, pip_rc: int = 0, pip_err: str = "", check_out: str = "", check_rc: int = 0,
                 version: str = "3.11", crash_in_pip: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.pip_rc, self.pip_err, self.check_out, self.check_rc = pip_rc, pip_err, check_out, check_rc
        self.version = version
        self.crash_in_pip = crash_in_pip

    def __call__(self, cmd: list[str]) -> tuple[int, str, str]:
        self.calls.append(cmd)
        if cmd[1:3] == ["-c", m.PROBE]:
            return 0, json.dumps({"executable": "/usr/bin/python" + self.version, "version": self.version,
                                  "full_version": self.version + ".2"}), ""
        if cmd[1:3] == ["-m", "venv"]:
            build = Path(cmd[-1])
            (build / "bin").mkdir(parents=True)
            (build / "bin" / "python").symlink_to(sys.executable)
            (build / "lib" / f"python{self.version}" / "site-packages").mkdir(parents=True)
            (build / "pyvenv.cfg").write_text("home = /usr/bin\n")
            return 0, "", ""
        if cmd[1:4] == ["-m", "pip", "install"]:
            site = Path(cmd[0]).parent.parent / "lib" / f"python{self.version}" / "site-packages"
            (site / "six.py").write_text("# half of an install\n")
            if self.crash_in_pip:
                raise KeyboardInterrupt("killed")
            return self.pip_rc, "", self.pip_err
        if cmd[1:4] == ["-m", "pip", "check"]:
            return self.check_rc, self.check_out, ""
        raise AssertionError(f"unexpected command {cmd}")

    def pip_calls(self) -> int:
        return sum(1 for c in self.calls if c[1:3] == ["-m", "pip"])


def params(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    base = {"name": "keras2-theano", "root": str(tmp_path / "envs"), "python": "python3.11", "requirements": LOCK,
            "system_site_packages": True, "pip_args": ["--no-index", "--find-links", "/w"], "files": {},
            "owner": ME, "group": "", "keep": 1, "log_file": str(tmp_path / "log" / "envs.log"),
            "state": "present"}
    base.update(kw)
    return base


def run(tmp_path: Path, runner: FakeRunner | None = None, check: bool = False, **kw: Any) -> dict[str, Any]:
    p = params(tmp_path, **kw)
    os.makedirs(p["root"], exist_ok=True)
    return m.EnvBuilder(p, runner or FakeRunner(), check).present()


# --- pure helpers ---------------------------------------------------------------------------


def test_names_and_hash_inputs() -> None:
    assert m.valid_name("keras2-theano") and m.valid_name("tf.2_1")
    for bad in ("a/b", "..", "a..b", "Keras", "-x", ""):
        assert not m.valid_name(bad)
    assert m.canonical_requirements(LOCK) == "numpy==1.23.5\nsix==1.17.0\n"
    assert m.pin_names("Keras_Applications==1.0.8\n") == {"keras-applications"}
    h = m.build_hash("/usr/bin/python3.11", "3.11", LOCK, True)
    assert h == m.build_hash("/usr/bin/python3.11", "3.11", "numpy==1.23.5\nsix==1.17.0", True)  # comments, order
    assert h != m.build_hash("/usr/bin/python3.11", "3.11", LOCK, False)
    assert h != m.build_hash("/usr/bin/python3.11", "3.11", "six==1.16.0\nnumpy==1.23.5\n", True)
    assert h != m.build_hash("/usr/bin/python3.12", "3.12", LOCK, True)
    assert m.build_pattern("tf").match(".tf-0123456789abcdef")
    assert not m.build_pattern("tf").match(".tf-gpu-0123456789abcdef")


def test_pip_failure_names_env_and_package() -> None:
    err = ("ERROR: Could not find a version that satisfies the requirement pyyaml==6.0.2 (from versions: none)\n"
           "ERROR: No matching distribution found for pyyaml==6.0.2\n")
    assert m.pip_failure("k2", "", err) == ("env 'k2': could not install pyyaml==6.0.2: "
                                            "ERROR: No matching distribution found for pyyaml==6.0.2")
    assert m.pip_failure("k2", "", "boom\n") == "env 'k2': pip install failed: boom"
    assert m.check_failures({"keras"}, "keras 2.3.1 requires h5py, which is not installed.\n"
                                       "pygpu 0.7.6 requires mako, which is not installed.\n") == [
        "keras 2.3.1 requires h5py, which is not installed."]


def test_resolve_files_stays_inside_the_env(tmp_path: Path) -> None:
    files = m.resolve_files({"{purelib}/hook.pth": "x", "etc/theanorc": "y"}, str(tmp_path), "3.11")
    assert sorted(files) == [str(tmp_path / "etc" / "theanorc"),
                             str(tmp_path / "lib" / "python3.11" / "site-packages" / "hook.pth")]
    with pytest.raises(m.BuildError, match="outside the env"):
        m.resolve_files({"../escape": "x"}, str(tmp_path), "3.11")


# --- build, fast path, rebuild -----------------------------------------------------------------


def test_first_run_builds_stamps_and_links(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = run(tmp_path, runner, files={"{purelib}/hook.pth": "import hook\n", "etc/theanorc": "[blas]\n"})
    root = tmp_path / "envs"
    build = Path(result["build"])
    assert result["changed"] and result["needs_build"] and result["pip_runs"] == 2
    assert os.readlink(root / "keras2-theano") == build.name  # relative link
    assert build.name == ".keras2-theano-" + result["hash"][:16]
    stamp = json.loads((build / ".dlstack-env.json").read_text())
    assert stamp["hash"] == result["hash"] and stamp["pins"] == ["numpy==1.23.5", "six==1.17.0"]
    assert stamp["files"] == ["etc/theanorc", "{purelib}/hook.pth"]
    assert (build / "dlstack-requirements.txt").read_text() == "numpy==1.23.5\nsix==1.17.0\n"
    assert (build / "lib/python3.11/site-packages/hook.pth").read_text() == "import hook\n"
    venv = next(c for c in runner.calls if c[1:3] == ["-m", "venv"])
    assert "--system-site-packages" in venv and venv[venv.index("--prompt") + 1] == "keras2-theano"
    pip = next(c for c in runner.calls if c[1:4] == ["-m", "pip", "install"])
    assert pip[0] == str(build / "bin" / "python")
    assert {"--no-deps", "--ignore-installed", "--no-index"} <= set(pip)
    log = [json.loads(line) for line in (tmp_path / "log" / "envs.log").read_text().splitlines()]
    assert [(e["env"], e["result"]) for e in log] == [("keras2-theano", "built")]
    assert result["python"] == str(root / "keras2-theano" / "bin" / "python")


def test_unchanged_env_is_a_fast_check_without_pip(tmp_path: Path) -> None:
    run(tmp_path, files={"{purelib}/hook.pth": "import hook\n"})
    runner = FakeRunner()
    again = run(tmp_path, runner, files={"{purelib}/hook.pth": "import hook\n"})
    assert not again["changed"] and not again["needs_build"] and again["pip_runs"] == 0
    assert runner.calls == [[ "python3.11", "-c", m.PROBE]]  # the interpreter probe only
    assert len((tmp_path / "log" / "envs.log").read_text().splitlines()) == 1


def test_changed_file_is_updated_in_place_and_dropped_file_removed(tmp_path: Path) -> None:
    first = run(tmp_path, files={"{purelib}/a.pth": "one\n", "{purelib}/b.pth": "b\n"})
    runner = FakeRunner()
    second = run(tmp_path, runner, files={"{purelib}/a.pth": "two\n"})
    site = Path(first["build"]) / "lib/python3.11/site-packages"
    assert second["changed"] and second["build"] == first["build"] and runner.pip_calls() == 0
    assert (site / "a.pth").read_text() == "two\n" and not (site / "b.pth").exists()
    assert json.loads((Path(first["build"]) / ".dlstack-env.json").read_text())["files"] == ["{purelib}/a.pth"]
    assert not run(tmp_path, files={"{purelib}/a.pth": "two\n"})["changed"]


def test_changed_pin_builds_beside_switches_and_keeps_one_previous(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    first = run(tmp_path)
    second = run(tmp_path, requirements="six==1.16.0\nnumpy==1.23.5\n")
    assert second["changed"] and second["needs_build"] and second["build"] != first["build"]
    assert os.readlink(root / "keras2-theano") == Path(second["build"]).name
    assert Path(first["build"]).is_dir()  # kept (keep=1)
    third = run(tmp_path, requirements="six==1.15.0\nnumpy==1.23.5\n")
    assert not Path(first["build"]).exists() and Path(second["build"]).is_dir()
    assert third["removed"] == [first["build"]]
    # back to the second lock: its kept build is switched to, no pip
    runner = FakeRunner()
    back = run(tmp_path, runner, requirements="six==1.16.0\nnumpy==1.23.5\n")
    assert back["changed"] and not back["needs_build"] and runner.pip_calls() == 0
    assert os.readlink(root / "keras2-theano") == Path(second["build"]).name


def test_keep_zero_removes_the_previous_build(tmp_path: Path) -> None:
    first = run(tmp_path, keep=0)
    run(tmp_path, keep=0, requirements="six==1.16.0\n")
    assert not Path(first["build"]).exists()


def test_killed_build_is_never_used_and_repaired_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "envs"
    first = run(tmp_path)
    # a run killed in pip (SIGKILL: no clean-up runs): the new build stays without a stamp
    with monkeypatch.context() as patch:
        patch.setattr(m, "remove_tree", lambda path: None)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, FakeRunner(crash_in_pip=True), requirements="six==1.16.0\n")
    half = [e for e in os.listdir(root) if e.startswith(".keras2-theano-") and e != Path(first["build"]).name]
    assert len(half) == 1 and not (root / half[0] / ".dlstack-env.json").exists()
    assert (root / half[0] / "lib/python3.11/site-packages/six.py").exists()  # really half-installed
    assert os.readlink(root / "keras2-theano") == Path(first["build"]).name
    assert not m.is_complete(str(root / half[0]))
    # the next run with the same lock removes it and builds it again
    runner = FakeRunner()
    repaired = run(tmp_path, runner, requirements="six==1.16.0\n")
    assert repaired["needs_build"] and runner.pip_calls() == 2 and Path(repaired["build"]).name == half[0]
    assert m.is_complete(repaired["build"], repaired["hash"])
    assert os.readlink(root / "keras2-theano") == half[0]


def test_killed_build_of_an_abandoned_lock_is_cleaned_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(m, "remove_tree", lambda path: None)
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path, FakeRunner(crash_in_pip=True), requirements="six==1.16.0\n")
    again = run(tmp_path)  # the admin went back to the first lock
    assert again["changed"] and not again["needs_build"] and len(again["removed"]) == 1
    assert sorted(e for e in os.listdir(tmp_path / "envs") if e.startswith(".keras2-theano-")) == [
        Path(first["build"]).name]


def test_stray_build_of_the_current_hash_without_stamp_is_rebuilt(tmp_path: Path) -> None:
    first = run(tmp_path)
    os.unlink(Path(first["build"]) / ".dlstack-env.json")
    runner = FakeRunner()
    again = run(tmp_path, runner)
    assert again["needs_build"] and runner.pip_calls() == 2 and again["build"] == first["build"]


def test_broken_interpreter_triggers_a_rebuild(tmp_path: Path) -> None:
    first = run(tmp_path)
    python = Path(first["build"]) / "bin" / "python"
    python.unlink()
    python.symlink_to("/nonexistent/python3.11")
    assert run(tmp_path)["needs_build"]


def test_failed_pip_removes_the_build_and_keeps_the_env(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    first = run(tmp_path)
    err = "ERROR: No matching distribution found for pyyaml==6.0.2\n"
    with pytest.raises(m.BuildError, match=r"env 'keras2-theano': could not install pyyaml==6.0.2"):
        run(tmp_path, FakeRunner(pip_rc=1, pip_err=err), requirements="pyyaml==6.0.2\n")
    assert sorted(e for e in os.listdir(root) if e.startswith(".keras2-theano-")) == [Path(first["build"]).name]
    assert os.readlink(root / "keras2-theano") == Path(first["build"]).name
    log = [json.loads(line) for line in (tmp_path / "log" / "envs.log").read_text().splitlines()]
    assert [e["result"] for e in log] == ["built", "failed"] and "pyyaml==6.0.2" in log[1]["error"]


def test_inconsistent_pins_fail_the_build(tmp_path: Path) -> None:
    out = "keras 2.3.1 requires h5py, which is not installed.\n"
    with pytest.raises(m.BuildError, match=r"env 'keras2-theano': the pins are inconsistent \(pip check\): keras 2.3.1"):
        run(tmp_path, FakeRunner(check_rc=1, check_out=out), requirements="keras==2.3.1\n")
    assert not os.path.lexists(tmp_path / "envs" / "keras2-theano")
    # problems of system packages only (seen through system site packages) are not ours
    assert run(tmp_path, FakeRunner(check_rc=1, check_out="pygpu 0.7.6 requires mako, which is not installed.\n"),
               requirements="keras==2.3.1\n")["changed"]


def test_check_mode_reports_and_changes_nothing(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = run(tmp_path, runner, check=True)
    assert result["changed"] and result["needs_build"] and runner.pip_calls() == 0
    assert os.listdir(tmp_path / "envs") == [] and not (tmp_path / "log").exists()
    assert result["diff"]["before"].endswith("-> (none)\n") and result["diff"]["after"].endswith(
        Path(result["build"]).name + "\n")
    run(tmp_path)
    assert not run(tmp_path, check=True)["changed"]


def test_a_foreign_directory_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "envs" / "keras2-theano").mkdir(parents=True)
    with pytest.raises(m.BuildError, match="exists and is not a link to a build of this role"):
        run(tmp_path)
    assert (tmp_path / "envs" / "keras2-theano").is_dir()


def test_owner_must_be_the_builder_when_not_root(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("as root the module hands builds over with lchown instead")
    with pytest.raises(m.BuildError, match="owned by 'someone-else'"):
        run(tmp_path, owner="someone-else")


def test_root_hands_the_build_to_its_owner_and_back(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    first = run(tmp_path, owner="nobody")
    build = Path(first["build"])
    owners = {os.lstat(os.path.join(top, e)).st_uid for top, dirs, files in os.walk(build) for e in dirs + files}
    assert owners == {os.lstat(build).st_uid} == {pwd_uid("nobody")}
    runner = FakeRunner()
    back = run(tmp_path, runner, owner="root")
    assert back["changed"] and runner.pip_calls() == 0 and os.lstat(build / "bin" / "python").st_uid == 0


def pwd_uid(name: str) -> int:
    import pwd
    return pwd.getpwnam(name).pw_uid


def test_absent_removes_link_and_every_build(tmp_path: Path) -> None:
    run(tmp_path)
    run(tmp_path, requirements="six==1.16.0\n")
    (tmp_path / "envs" / ".keras2-theano-gpu-0123456789abcdef").mkdir()  # another env's build: not ours
    p = params(tmp_path, state="absent")
    result = m.EnvBuilder(p, FakeRunner()).absent()
    assert result["changed"] and len(result["removed"]) == 2
    assert os.listdir(tmp_path / "envs") == [".keras2-theano-gpu-0123456789abcdef"]
    assert not m.EnvBuilder(p, FakeRunner()).absent()["changed"]


# --- for real ---------------------------------------------------------------------------------


def test_real_venv_through_the_link(tmp_path: Path) -> None:
    def runner(cmd: list[str]) -> tuple[int, str, str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    p = params(tmp_path, python=sys.executable, requirements="", system_site_packages=False,
               files={"{purelib}/dlstack_probe.py": "VALUE = 42\n", "{purelib}/dlstack_probe.pth": "import dlstack_probe\n"})
    os.makedirs(p["root"])
    result = m.EnvBuilder(p, runner).present()
    out = subprocess.run([result["python"], "-c", "import sys, dlstack_probe; print(sys.prefix, dlstack_probe.VALUE)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(tmp_path / "envs" / "keras2-theano"), "42"]
    again = m.EnvBuilder(p, runner).present()
    assert not again["changed"] and again["pip_runs"] == 0


def _module(args: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, str(MODULE), str(path)], capture_output=True, text=True, check=False)
    return json.loads(proc.stdout)


def test_module_rejects_a_bad_name(tmp_path: Path) -> None:
    result = _module({"name": "../etc", "root": str(tmp_path)}, tmp_path)
    assert result["failed"] and "env name '../etc' is invalid" in result["msg"]


def test_module_check_mode_for_a_missing_interpreter(tmp_path: Path) -> None:
    result = _module({"name": "x", "root": str(tmp_path / "r"), "python": "/nonexistent/python3",
                      "_ansible_check_mode": True}, tmp_path)
    assert result["failed"] and result["msg"].startswith("python_envs: env 'x': python '/nonexistent/python3' "
                                                         "does not run: [Errno 2] No such file or directory")
    assert not (tmp_path / "r").exists()
