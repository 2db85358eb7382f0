"""Unit tests for roles/nvidia_driver/library/nvidia_driver_apt_state.py: the driver's APT state.

The module reads dpkg-query and apt-cache policy once and works out the exact version the
driver's packages (and Fabric Manager with NSCQ) go to, what moves along, what apt gets and
what is held. The parsers run on recorded outputs; ``plan`` on parsed states; the module as a
whole with stand-in dpkg-query and apt-cache commands on PATH.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from plugin_loader import load_by_path, run_module

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "roles" / "nvidia_driver" / "library" / "nvidia_driver_apt_state.py"
m = load_by_path("nvidia_driver_apt_state", MODULE)
PREFIXES = ["nvidia-", "libnvidia-", "libcuda1", "firmware-nvidia-gsp", "cuda-drivers"]

POLICY = """\
nvidia-driver-cuda:
  Installed: 580.65.06-1
  Candidate: 580.65.06-1
  Version table:
     590.48.01-1 500
        500 http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
     580.105.08-1 500
        500 http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
     580.95.05-1 500
        500 http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
 *** 580.65.06-1 1001
        500 http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
        100 /var/lib/dpkg/status
     575.57.08-1 500
        500 http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
nvidia-persistenced:
  Installed: 535.171.04-1~deb12u1
  Candidate: 535.171.04-1~deb12u1
  Version table:
 *** 535.171.04-1~deb12u1 1001
        500 http://deb.debian.org/debian bookworm/contrib amd64 Packages
        100 /var/lib/dpkg/status
libcuda1:
  Installed: (none)
  Candidate: 535.309.01-0+deb12u1
  Version table:
     535.309.01-0+deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/non-free amd64 Packages
     535.261.03-1 500
        500 http://deb.debian.org/debian bookworm/non-free amd64 Packages
nvidia-driver:
  Installed: (none)
  Candidate: (none)
  Version table:
"""

DPKG = """\
ii |install|cuda-keyring|1.1-1
hi |hold|nvidia-smi|535.309.01-0+deb12u1
hi |hold|libcuda1:amd64|535.309.01-0+deb12u1
rc |deinstall|nvidia-kernel-dkms|535.309.01-0+deb12u1
ii |install|nvidia-support|20220217+3~deb12u1
un |unknown|nvidia-open|
ii |install|libc6|2.36-9+deb12u14
"""


def policy_of(packages: dict[str, list[str]], installed: dict[str, str] | None = None) -> dict:
    installed = installed or {}
    return {name: {"installed": installed.get(name), "candidate": versions[0] if versions else None,
                   "versions": versions} for name, versions in packages.items()}


def pkg(name: str, version: str, want: str = "install") -> dict[str, str]:
    return {"name": name, "version": version, "want": want}


# --- the parsers ------------------------------------------------------------------------------


def test_apt_policy() -> None:
    policy = m.parse_apt_policy(POLICY)
    assert policy["nvidia-driver-cuda"] == {
        "installed": "580.65.06-1", "candidate": "580.65.06-1",
        "versions": ["590.48.01-1", "580.105.08-1", "580.95.05-1", "580.65.06-1", "575.57.08-1"]}
    assert policy["libcuda1"]["installed"] is None
    assert policy["libcuda1"]["versions"] == ["535.309.01-0+deb12u1", "535.261.03-1"]
    assert policy["nvidia-driver"] == {"installed": None, "candidate": None, "versions": []}
    assert m.parse_apt_policy("") == {}


def test_dpkg() -> None:
    assert m.parse_dpkg(DPKG, ["nvidia-", "libnvidia-", "libcuda1"]) == [
        pkg("libcuda1", "535.309.01-0+deb12u1", "hold"),
        pkg("nvidia-smi", "535.309.01-0+deb12u1", "hold"),
        pkg("nvidia-support", "20220217+3~deb12u1"),
    ]


# --- the plan ---------------------------------------------------------------------------------

REPO = {
    "nvidia-driver-cuda": ["590.48.01-1", "580.105.08-1", "580.95.05-1", "580.65.06-1"],
    "nvidia-kernel-open-dkms": ["590.48.01-1", "580.105.08-1", "580.95.05-1", "580.65.06-1"],
    "nvidia-fabricmanager-580": ["580.105.08-1", "580.95.05-1", "580.65.06-1"],
    "nvidia-fabricmanager": ["590.48.01-1"],
    "libnvidia-nscq": ["590.48.01-1", "580.105.08-1", "580.95.05-1", "580.65.06-1"],
    "nvidia-persistenced": ["590.48.01-1", "580.95.05-1", "580.65.06-1"],
    "libcuda1": ["590.48.01-1", "580.105.08-1", "580.95.05-1", "580.65.06-1"],
    "nvidia-support": ["20220217+3~deb12u1"],
}
MAIN = ["nvidia-driver-cuda", "nvidia-kernel-open-dkms"]


def plan(installed: list[dict[str, str]], *, fabric: tuple[str, ...] = (), branch: str = "580", version: str = "",
         upgrade: bool = False, hold: bool = True, packages: dict | None = None) -> dict:
    return m.plan(policy_of(packages or REPO), installed, MAIN, list(fabric), ["nvidia-persistenced"], [],
                  branch, version, upgrade, hold)


def test_new_node_gets_the_newest_of_the_branch_at_one_version() -> None:
    result = plan([])
    assert result["target"] == "580.105.08-1" and result["change"] and result["problems"] == []
    # persistenced lags: it takes the newest of the branch it has
    assert result["install"] == ["nvidia-driver-cuda=580.105.08-1", "nvidia-kernel-open-dkms=580.105.08-1",
                                 "nvidia-persistenced=580.95.05-1"]


def test_a_converged_node_changes_nothing_and_holds_its_packages() -> None:
    installed = [pkg("nvidia-driver-cuda", "580.65.06-1", "hold"), pkg("nvidia-kernel-open-dkms", "580.65.06-1", "hold"),
                 pkg("nvidia-persistenced", "580.65.06-1", "hold"), pkg("libcuda1", "580.65.06-1", "hold"),
                 pkg("nvidia-support", "20220217+3~deb12u1")]
    result = plan(installed)
    # the installed release stays while it is of the branch (an upgrade is explicit)
    assert result["target"] == "580.65.06-1" and not result["change"] and result["sync"] == []
    assert result["to_hold"] == [] and result["to_release"] == [] and result["installed_version"] == "580.65.06-1"
    assert result["held"] == ["libcuda1", "nvidia-driver-cuda", "nvidia-kernel-open-dkms", "nvidia-persistenced"]
    # nvidia-support (Debian's) is no driver release: never moved, never held
    unheld = plan([dict(p, want="install") for p in installed])
    assert unheld["to_hold"] == ["libcuda1", "nvidia-driver-cuda", "nvidia-kernel-open-dkms", "nvidia-persistenced"]
    assert plan(installed, hold=False)["to_release"] == unheld["to_hold"]


def test_upgrade_moves_everything_to_the_newest_of_the_branch() -> None:
    installed = [pkg("nvidia-driver-cuda", "580.65.06-1"), pkg("nvidia-kernel-open-dkms", "580.65.06-1"),
                 pkg("nvidia-persistenced", "580.65.06-1"), pkg("libcuda1", "580.65.06-1")]
    result = plan(installed, upgrade=True)
    assert result["target"] == "580.105.08-1"
    assert result["sync"] == [["libcuda1", "580.105.08-1"]]   # the dependency moves along
    assert "nvidia-persistenced=580.95.05-1" in result["install"]


def test_exact_version_and_downgrade() -> None:
    installed = [pkg("nvidia-driver-cuda", "580.105.08-1"), pkg("libcuda1", "580.105.08-1")]
    result = plan(installed, version="580.95.05")
    assert result["target"] == "580.95.05-1" and result["change"]
    assert result["sync"] == [["libcuda1", "580.95.05-1"]]


def test_fabric_manager_follows_the_driver_exactly() -> None:
    result = plan([], fabric=("nvidia-fabricmanager-580", "libnvidia-nscq"))
    assert result["install"][:4] == ["nvidia-driver-cuda=580.105.08-1", "nvidia-kernel-open-dkms=580.105.08-1",
                                     "nvidia-fabricmanager-580=580.105.08-1", "libnvidia-nscq=580.105.08-1"]
    # Fabric Manager lags the driver: the newest release both offer
    lagging = dict(REPO, **{"nvidia-fabricmanager-580": ["580.95.05-1", "580.65.06-1"]})
    assert plan([], fabric=("nvidia-fabricmanager-580",), packages=lagging)["target"] == "580.95.05-1"
    # a node that has the driver gets Fabric Manager at the installed version, not the newest
    installed = [pkg("nvidia-driver-cuda", "580.65.06-1"), pkg("nvidia-kernel-open-dkms", "580.65.06-1")]
    assert plan(installed, fabric=("nvidia-fabricmanager-580", "libnvidia-nscq"))["target"] == "580.65.06-1"


def test_a_fabric_manager_that_cannot_match_names_both_versions() -> None:
    lagging = dict(REPO, **{"nvidia-fabricmanager-580": ["580.95.05-1"]})
    result = plan([], fabric=("nvidia-fabricmanager-580",), version="580.105.08", packages=lagging)
    assert result["target"] == "" and not result["change"]
    assert result["problems"] == [
        "nvidia-fabricmanager-580 has no version 580.105.08-* (available: 580.95.05-1)"]
    mismatch = dict(REPO, **{"nvidia-fabricmanager-580": ["580.99.99-1"]})
    assert plan([], fabric=("nvidia-fabricmanager-580",), packages=mismatch)["problems"] == [
        "nvidia-fabricmanager-580 has no version 580.105.08-1 of the driver (it has 580.99.99-1): Fabric Manager and "
        "NSCQ must be at exactly the driver's version, or Fabric Manager refuses to start; set nvidia_driver_version "
        "to a release both offer (the driver offers 580.105.08-1, 580.95.05-1, 580.65.06-1)"]


def test_a_branch_move_renames_fabric_manager_and_leaves_the_old_one_to_apt() -> None:
    installed = [pkg("nvidia-driver-cuda", "580.65.06-1", "hold"), pkg("nvidia-kernel-open-dkms", "580.65.06-1", "hold"),
                 pkg("nvidia-fabricmanager-580", "580.65.06-1", "hold"), pkg("libnvidia-nscq", "580.65.06-1", "hold"),
                 pkg("libcuda1", "580.65.06-1", "hold")]
    result = plan(installed, branch="590", fabric=("nvidia-fabricmanager", "libnvidia-nscq"))
    assert result["target"] == "590.48.01-1" and result["change"]
    assert "nvidia-fabricmanager=590.48.01-1" in result["install"] and "libnvidia-nscq=590.48.01-1" in result["install"]
    # the 580 package has no 590 release: it is not moved (its Conflicts make apt remove it)
    assert result["sync"] == [["libcuda1", "590.48.01-1"]]
    assert result["to_release"] == ["libcuda1", "libnvidia-nscq", "nvidia-driver-cuda", "nvidia-fabricmanager-580",
                                    "nvidia-kernel-open-dkms"]


def test_a_branch_the_sources_lack() -> None:
    result = plan([], branch="570")
    assert result["target"] == "" and not result["change"]
    assert result["problems"][0] == ("nvidia-driver-cuda has no version 570.* (available: 590.48.01-1, 580.105.08-1, "
                                     "580.95.05-1, 580.65.06-1)")
    assert m.plan({}, [], ["nvidia-driver-cuda"], [], [], [], "580", "", False, True)["problems"] == [
        "nvidia-driver-cuda is unknown to apt"]


def test_distro_versions_with_other_revisions() -> None:
    policy = {"nvidia-smi": ["535.309.01-0+deb12u1", "535.261.03-1"], "libcuda1": ["535.309.01-0+deb12u1", "535.261.03-1"]}
    result = m.plan(policy_of(policy), [], ["nvidia-smi", "libcuda1"], [], [], ["nvidia-xconfig"], "535", "535.261.03",
                    False, True)
    assert result["install"] == ["nvidia-smi=535.261.03-1", "libcuda1=535.261.03-1", "nvidia-xconfig"]


# --- the module as Ansible runs it ------------------------------------------------------------


def test_module_reads_dpkg_and_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dpkg-query").write_text(f"#!/bin/sh\ncat <<'EOF'\n{DPKG}EOF\n")
    (bindir / "apt-cache").write_text(f"#!/bin/sh\n[ \"$1\" = policy ] || exit 2\ncat <<'EOF'\n{POLICY}EOF\n")
    for tool in bindir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    rc, result = run_module(MODULE, tmp_path, {"main": ["libcuda1"], "branch": "535",
                                                "prefixes": PREFIXES, "_ansible_check_mode": True})
    assert rc == 0 and result["changed"] is False, result
    assert result["target"] == "535.309.01-0+deb12u1"
    assert result["held"] == ["libcuda1", "nvidia-smi"]
    rc, result = run_module(MODULE, tmp_path, {"main": [], "branch": "535", "prefixes": PREFIXES})
    assert rc == 1 and result["msg"] == "main must name at least one package"
