"""Unit tests for roles/python_envs/library/python_env_build.py: atomic builds, fast path, repair.

Most tests drive ``EnvBuilder`` with a fake runner that plays ``uv venv``, ``uv pip`` (and
``python -m venv`` and pip, the installer of uv itself) - fast and deterministic; two build
real envs (one with ``python -m venv``, one with the toolchain's uv from a local wheel, its
hash checked, then planted with another file); two run the module as Ansible would.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from plugin_loader import load_by_path, load_module_utils, run_module

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "roles" / "python_envs" / "library" / "python_env_build.py"
ME = getpass.getuser()
H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64


DIGEST = REPO / "roles" / "python_envs" / "module_utils" / "python_envs_digest.py"
load_module_utils(DIGEST)
m = load_by_path("python_env_build", MODULE)
LOCK = (f"# a lock\nsix==1.17.0 \\\n    --hash=sha256:{H1}\nnumpy==1.23.5 \\\n    --hash=sha256:{H2} \\\n"
        f"    --hash=sha256:{H3}  # pinned\n")
UV = "/opt/dlstack/tools/uv/bin/uv"


class FakeRunner:
    """Plays the interpreter probe, ``uv venv``/``python -m venv``, ``uv pip``/pip; records every command."""

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
        if cmd[1:3] == ["-m", "venv"] or cmd[:2] == [UV, "venv"]:
            build = Path(cmd[-1])
            (build / "bin").mkdir(parents=True)
            (build / "bin" / "python").symlink_to(sys.executable)
            (build / "lib" / f"python{self.version}" / "site-packages").mkdir(parents=True)
            (build / "pyvenv.cfg").write_text("home = /usr/bin\n")
            return 0, "", ""
        if cmd[1:4] == ["-m", "pip", "install"] or cmd[:3] == [UV, "pip", "install"]:
            python = cmd[0] if cmd[0] != UV else cmd[cmd.index("--python") + 1]
            site = Path(python).parent.parent / "lib" / f"python{self.version}" / "site-packages"
            (site / "six.py").write_text("# half of an install\n")
            if self.crash_in_pip:
                raise KeyboardInterrupt("killed")
            return self.pip_rc, "", self.pip_err
        if cmd[1:4] == ["-m", "pip", "check"] or cmd[:3] == [UV, "pip", "check"]:
            return self.check_rc, self.check_out, ""
        raise AssertionError(f"unexpected command {cmd}")

    def pip_calls(self) -> int:
        return sum(1 for c in self.calls if c[1:3] == ["-m", "pip"] or c[:2] == [UV, "pip"])


def params(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    base = {"name": "keras2-theano", "root": str(tmp_path / "envs"), "python": "python3.11", "requirements": LOCK,
            "system_site_packages": True, "sources": ["--no-index", "--find-links", "/w"], "files": {},
            "owner": ME, "group": "", "keep": 1, "log_file": str(tmp_path / "log" / "envs.log"),
            "state": "present", "installer": "uv", "uv": UV, "build_constraints": ""}
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
    assert m.lock_lines(LOCK) == [f"numpy==1.23.5 --hash=sha256:{H2} --hash=sha256:{H3}",
                                  f"six==1.17.0 --hash=sha256:{H1}"]
    assert m.canonical_requirements(LOCK) == "numpy==1.23.5\nsix==1.17.0\n"
    assert m.pin_names("Keras_Applications==1.0.8 --hash=sha256:" + H1 + "\n") == {"keras-applications"}
    h = m.build_hash("/usr/bin/python3.11", "3.11", LOCK, True)
    # comments, order, spacing and hashes do not make another build (the same pins are the same env)
    assert h == m.build_hash("/usr/bin/python3.11", "3.11", "numpy == 1.23.5\nsix==1.17.0", True)
    assert h != m.build_hash("/usr/bin/python3.11", "3.11", LOCK, False)
    assert h != m.build_hash("/usr/bin/python3.11", "3.11", "six==1.16.0\nnumpy==1.23.5\n", True)
    assert h != m.build_hash("/usr/bin/python3.12", "3.12", LOCK, True)
    assert m.build_pattern("tf").match(".tf-0123456789abcdef")
    assert not m.build_pattern("tf").match(".tf-gpu-0123456789abcdef")


def test_install_failures_name_env_and_package() -> None:
    pip_err = ("ERROR: Could not find a version that satisfies the requirement pyyaml==6.0.2 (from versions: none)\n"
               "ERROR: No matching distribution found for pyyaml==6.0.2\n")
    assert m.install_failure("k2", "", pip_err) == ("env 'k2': could not install pyyaml==6.0.2: "
                                                    "ERROR: No matching distribution found for pyyaml==6.0.2")
    uv_err = ("error: No solution found when resolving dependencies\n  cause: Because there is no version of "
              "pyyaml==6.0.2 and you require pyyaml==6.0.2, we can conclude that your requirements are unsatisfiable.\n")
    assert m.install_failure("k2", "", uv_err).startswith("env 'k2': could not install pyyaml==6.0.2: Because there")
    build_err = ("error: Failed to download and build `theano==1.0.5`\n  cause: Failed to resolve requirements from "
                 "`setup.py` build\n  cause: No solution found when resolving: `setuptools>=40.8.0`\n")
    assert m.install_failure("k2", "", build_err) == ("env 'k2': could not install theano==1.0.5: No solution found "
                                                      "when resolving: `setuptools>=40.8.0`")
    assert m.install_failure("k2", "", "boom\n") == "env 'k2': the install failed: boom"


def test_a_hash_mismatch_names_the_wheelhouse_file(tmp_path: Path) -> None:
    (tmp_path / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"planted")
    (tmp_path / "six-1.16.0-py2.py3-none-any.whl").write_bytes(b"planted")  # another version: not it
    (tmp_path / "Six-1.17.0.tar.gz").write_bytes(b"genuine")
    digest = hashlib.sha256(b"planted").hexdigest()
    err = (f"error: Failed to download `six==1.17.0`\n  cause: Hash mismatch for `six==1.17.0`\n\n"
           f"         Expected:\n           sha256:{H1}\n\n         Computed:\n           sha256:{digest}\n")
    msg = m.install_failure("k2", "", err, ["--no-index", "--find-links", str(tmp_path)])
    assert msg.startswith(f"env 'k2': the wheelhouse file {tmp_path}/six-1.17.0-py2.py3-none-any.whl for six==1.17.0 "
                          f"does not match the lock: its sha256 is {digest}")
    assert "\n" not in msg
    # from an index (no local file has that hash): the downloaded file
    online = m.install_failure("k2", "", err, ["--index-url", "https://pypi.example/simple"])
    assert online.startswith("env 'k2': the downloaded file for six==1.17.0 does not match the lock")


def test_check_failures_keep_only_the_locks_packages() -> None:
    uv_out = ("Found 2 incompatibilities\nThe package `keras` requires `h5py`, but it's not installed\n"
              "The package `pygpu` requires `mako>=0.7`, but it's not installed\n")
    assert m.check_failures({"keras"}, uv_out) == ["The package `keras` requires `h5py`, but it's not installed"]
    pip_out = ("keras 2.3.1 requires h5py, which is not installed.\n"
               "pygpu 0.7.6 requires mako, which is not installed.\n")
    assert m.check_failures({"keras"}, pip_out) == ["keras 2.3.1 requires h5py, which is not installed."]


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
    assert (build / "dlstack-requirements.txt").read_text() == "".join(f"{line}\n" for line in m.lock_lines(LOCK))
    assert not (build / "dlstack-build-constraints.txt").exists()
    assert (build / "lib/python3.11/site-packages/hook.pth").read_text() == "import hook\n"
    venv = next(c for c in runner.calls if c[:2] == [UV, "venv"])
    assert "--system-site-packages" in venv and venv[venv.index("--prompt") + 1] == "keras2-theano"
    assert venv[venv.index("--python") + 1] == "python3.11" and "--no-python-downloads" in venv
    install = next(c for c in runner.calls if c[:3] == [UV, "pip", "install"])
    assert install[install.index("--python") + 1] == str(build / "bin" / "python")
    assert {"--no-deps", "--require-hashes", "--no-index", "--compile-bytecode", "--reinstall", "--no-cache"} <= set(install)
    assert install[install.index("--link-mode") + 1] == "copy" and install[-2:] == ["-r", str(build / m.LOCK_FILE)]
    assert install[install.index("--find-links") + 1] == "/w" and "--build-constraints" not in install
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


def test_full_disk_says_so_and_keeps_the_env(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    first = run(tmp_path)
    err = ("error: failed to copy file from /root/.cache/uv/x/numpy/a.py to /opt/dlstack/envs/.b/a.py: "
           "No space left on device (os error 28)\n")
    with pytest.raises(m.BuildError, match=r"^env 'keras2-theano': no space left on the disk of .*envs \(\d+ MB free once the "
                       rf"partial build was removed; the new build needs more\): the env still points at its previous build "
                       rf"{Path(first['build']).name}; free space there or set python_envs_root to a larger disk$"):
        run(tmp_path, FakeRunner(pip_rc=1, pip_err=err), requirements="pyyaml==6.0.2\n")
    assert os.readlink(root / "keras2-theano") == Path(first["build"]).name
    assert sorted(e for e in os.listdir(root) if e.startswith(".keras2-theano-")) == [Path(first["build"]).name]
    # the OS's own error (writing the stamp, making the venv) is read the same way
    assert m.out_of_space(OSError(28, "No space left on device")) and not m.out_of_space(OSError(13, "Permission denied"))
    assert m.no_space_message("tf", "/opt/envs", None, 5 * 2**20).startswith(
        "env 'tf': no space left on the disk of /opt/envs (5 MB free once the partial build was removed; "
        "the new build needs more): the env does not exist yet;")


def test_inconsistent_pins_fail_the_build(tmp_path: Path) -> None:
    out = "The package `keras` requires `h5py`, but it's not installed\n"
    with pytest.raises(m.BuildError, match=r"env 'keras2-theano': the pins are inconsistent \(uv check\): The package `keras`"):
        run(tmp_path, FakeRunner(check_rc=1, check_out=out), requirements="keras==2.3.1\n")
    assert not os.path.lexists(tmp_path / "envs" / "keras2-theano")
    # problems of system packages only (seen through system site packages) are not ours
    other = "The package `pygpu` requires `mako`, but it's not installed\n"
    assert run(tmp_path, FakeRunner(check_rc=1, check_out=other), requirements="keras==2.3.1\n")["changed"]


def test_build_constraints_are_kept_and_passed(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = run(tmp_path, runner, build_constraints=f"# build\nsetuptools==80.10.2 --hash=sha256:{H1}\n")
    build = Path(result["build"])
    assert (build / m.BUILD_CONSTRAINTS_FILE).read_text() == f"setuptools==80.10.2 --hash=sha256:{H1}\n"
    install = next(c for c in runner.calls if c[:3] == [UV, "pip", "install"])
    assert install[install.index("--build-constraints") + 1] == str(build / m.BUILD_CONSTRAINTS_FILE)


def test_pip_installer_builds_uv_itself(tmp_path: Path) -> None:
    runner = FakeRunner()
    result = run(tmp_path, runner, name="uv", installer="pip", system_site_packages=False)
    build = Path(result["build"])
    assert result["changed"] and result["pip_runs"] == 2
    assert next(c for c in runner.calls if c[1:3] == ["-m", "venv"])[0] == "python3.11"
    install = next(c for c in runner.calls if c[1:4] == ["-m", "pip", "install"])
    assert install[0] == str(build / "bin" / "python") and {"--no-deps", "--require-hashes"} <= set(install)
    assert not [c for c in runner.calls if c[0] == UV]
    assert json.loads((build / ".dlstack-env.json").read_text())["installer"] == "pip"


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

    p = params(tmp_path, python=sys.executable, requirements="", system_site_packages=False, installer="pip",
               files={"{purelib}/dlstack_probe.py": "VALUE = 42\n", "{purelib}/dlstack_probe.pth": "import dlstack_probe\n"})
    os.makedirs(p["root"])
    result = m.EnvBuilder(p, runner).present()
    out = subprocess.run([result["python"], "-c", "import sys, dlstack_probe; print(sys.prefix, dlstack_probe.VALUE)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(tmp_path / "envs" / "keras2-theano"), "42"]
    again = m.EnvBuilder(p, runner).present()
    assert not again["changed"] and again["pip_runs"] == 0


def _wheel(directory: Path, body: str) -> Path:
    """A one-module wheel ``dlstack_probe 1.0`` in ``directory``."""
    files = {"dlstack_probe.py": body.encode(),
             "dlstack_probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: dlstack-probe\nVersion: 1.0\n",
             "dlstack_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                   b"Tag: py3-none-any\n"}
    record = "".join(f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
                     f"{len(data)}\n" for name, data in files.items()) + "dlstack_probe-1.0.dist-info/RECORD,,\n"
    files["dlstack_probe-1.0.dist-info/RECORD"] = record.encode()
    path = directory / "dlstack_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_real_uv_build_checks_every_file_against_the_lock(tmp_path: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not os.access(uv, os.X_OK):
        pytest.skip("uv is not in the toolchain (scripts/setup installs it)")

    def runner(cmd: list[str]) -> tuple[int, str, str]:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env=dict(os.environ, UV_CACHE_DIR=str(tmp_path / "cache")))
        return proc.returncode, proc.stdout, proc.stderr

    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    digest = hashlib.sha256(_wheel(wheelhouse, "VALUE = 42\n").read_bytes()).hexdigest()
    lock = f"dlstack-probe==1.0 \\\n    --hash=sha256:{digest}\n"
    p = params(tmp_path, python=sys.executable, requirements=lock, system_site_packages=False, uv=uv,
               sources=["--no-index", "--find-links", str(wheelhouse)])
    os.makedirs(p["root"])
    result = m.EnvBuilder(p, runner).present()
    out = subprocess.run([result["python"], "-c", "import dlstack_probe; print(dlstack_probe.VALUE)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "42" and result["pip_runs"] == 2
    writable = [os.path.join(t, n) for t, ds, ns in os.walk(result["build"]) for n in ds + ns
                if not os.path.islink(os.path.join(t, n)) and os.lstat(os.path.join(t, n)).st_mode & 0o022]
    assert writable == []  # uv's own .lock included
    assert list((Path(result["build"]) / "lib").glob("python3.*/site-packages/__pycache__/dlstack_probe.*.pyc"))
    # the same name with other content: refused, the file named, the env left as it was
    planted = _wheel(wheelhouse, "VALUE = 666\n")
    with pytest.raises(m.BuildError) as failure:
        m.EnvBuilder(params(tmp_path, **{**p, "system_site_packages": True}), runner).present()
    planted_digest = hashlib.sha256(planted.read_bytes()).hexdigest()
    assert str(failure.value) == (
        f"env 'keras2-theano': the wheelhouse file {planted} for dlstack-probe==1.0 does not match the lock: "
        f"its sha256 is {planted_digest}, which the lock does not list (a tampered or substituted file); nothing "
        "was installed, the env in use is unchanged; replace the file (playbooks/wheelhouse.yml)")
    assert os.readlink(tmp_path / "envs" / "keras2-theano") == Path(result["build"]).name
    assert sorted(e for e in os.listdir(tmp_path / "envs") if e.startswith(".keras2-theano-")) == [
        Path(result["build"]).name]


def _module(args: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    return run_module(MODULE, tmp_path, args, (DIGEST,))[1]


def test_module_rejects_a_bad_name(tmp_path: Path) -> None:
    result = _module({"name": "../etc", "root": str(tmp_path)}, tmp_path)
    assert result["failed"] and "env name '../etc' is invalid" in result["msg"]


def test_module_and_a_missing_interpreter(tmp_path: Path) -> None:
    args = {"name": "x", "root": str(tmp_path / "r"), "python": "/nonexistent/python3"}
    result = _module(args, tmp_path)
    assert result["failed"] and result["msg"].startswith("python_envs: env 'x': python '/nonexistent/python3' "
                                                         "does not run: [Errno 2] No such file or directory")
    # check mode, before the role has installed the interpreter it provides: a build to come
    result = _module(dict(args, _ansible_check_mode=True, root=str(tmp_path / "c")), tmp_path)
    assert not result.get("failed") and result["changed"] and result["needs_build"]
    assert not (tmp_path / "c").exists()
