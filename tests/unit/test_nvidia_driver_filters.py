"""Unit tests for roles/nvidia_driver/filter_plugins/nvidia_driver.py: the plan and the probe parsers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "roles" / "nvidia_driver" / "filter_plugins" / "nvidia_driver.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nvidia_driver_filters", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


f = _load()

# What the role passes for Debian 12 (vars/main.yml, vars/Debian_12.yml).
OFFERS_DEBIAN12: dict[str, Any] = {
    "nvidia": {"branches": [], "default_branch": "580", "flavors": ["open", "proprietary"]},
    "distro": {"branches": ["535"], "default_branch": "535", "flavors": ["proprietary"],
               "flavor_note": "Debian 12's open modules (535.261.03) do not match its driver userspace (535.309.01)"},
    "first_turing_device_id": 0x1E00,
    "first_open_only_device_id": 0x2900,
}
OFFERS_DEBIAN13: dict[str, Any] = dict(
    OFFERS_DEBIAN12, distro={"branches": ["550"], "default_branch": "550", "flavors": ["proprietary", "open"]})
H100 = {"pci_address": "0000:17:00.0", "device_id": "0x2330"}
V100 = {"pci_address": "0000:3b:00.0", "device_id": "0x1db4"}
B200 = {"pci_address": "0000:1b:00.0", "device_id": "0x2901"}


def cfg(**overrides: Any) -> dict[str, Any]:
    base = {"method": "nvidia", "branch": "", "version": "", "kernel_module_flavor": "auto",
            "kernel_module_steps": "auto", "repo_base_url": "https://developer.download.nvidia.com/compute/cuda/repos",
            "repo_keyring_checksum": "", "module_signing_key": "", "module_signing_cert": ""}
    base.update(overrides)
    return base


def plan(offers: dict[str, Any] = OFFERS_DEBIAN12, gpus: list[dict[str, Any]] | None = None, **overrides: Any):
    return f.nvidia_driver_plan(cfg(**overrides), offers, gpus or [], "Debian 12")


# --- nvidia_driver_plan: good input -----------------------------------------------------------


def test_nvidia_defaults_to_branch_580_open() -> None:
    result = plan(gpus=[H100])
    assert result["errors"] == []
    assert result["branch"] == "580" and result["flavor"] == "open"
    assert result["branch_glob"] == "580.*" and result["version_glob"] == "580.*"
    assert result["branch_regex"] == r"^580\." and result["version_regex"] == r"^580\."


def test_distro_defaults_to_the_distributions_branch_and_proprietary() -> None:
    result = plan(method="distro")
    assert result["errors"] == [] and result["branch"] == "535" and result["flavor"] == "proprietary"
    result13 = f.nvidia_driver_plan(cfg(method="distro"), OFFERS_DEBIAN13, [H100], "Debian 13")
    assert result13["branch"] == "550" and result13["flavor"] == "proprietary"


def test_exact_version_gives_the_version_glob_and_its_branch() -> None:
    result = plan(version="580.95.05")
    assert result["errors"] == [] and result["branch"] == "580"
    assert result["version_glob"] == "580.95.05-*" and result["branch_glob"] == "580.*"
    assert result["version_regex"] == r"^580\.95\.05-"
    assert plan(branch="580", version="580.95.05")["version_glob"] == "580.95.05-*"


def test_int_branch_is_accepted() -> None:
    assert plan(branch=580)["branch"] == "580"


def test_auto_flavor_follows_the_gpus() -> None:
    assert plan(gpus=[V100])["flavor"] == "proprietary"       # Volta: no open modules
    assert plan(gpus=[B200])["flavor"] == "open"              # Blackwell: open only
    assert plan(method="distro", gpus=[H100])["flavor"] == "proprietary"
    assert plan(gpus=[])["flavor"] == "open"                  # no GPU (forced install): NVIDIA's default


def test_explicit_flavors() -> None:
    assert plan(kernel_module_flavor="proprietary", gpus=[H100])["flavor"] == "proprietary"
    assert plan(kernel_module_flavor="open", gpus=[H100])["flavor"] == "open"


# --- nvidia_driver_plan: bad input ------------------------------------------------------------


@pytest.mark.parametrize("branch", ["58", "5800", "abc", "058", "580.95"])
def test_branch_that_does_not_look_like_a_branch(branch: str) -> None:
    errors = plan(branch=branch)["errors"]
    assert errors == [f"nvidia_driver_branch = '{branch}' does not look like a driver branch; allowed: '' "
                      "(the method's default) or the three-digit major version of a branch, "
                      "such as 535, 550, 570 or 580"]


def test_unknown_method_and_flavor_and_steps() -> None:
    errors = plan(method="snap", kernel_module_flavor="closed", kernel_module_steps="maybe")["errors"]
    assert "nvidia_driver_method = 'snap' is invalid; allowed: nvidia, distro" in errors
    assert "nvidia_driver_kernel_module_flavor = 'closed' is invalid; allowed: auto, open, proprietary" in errors
    assert "nvidia_driver_kernel_module_steps = 'maybe' is invalid; allowed: auto, run, skip" in errors


@pytest.mark.parametrize("version", ["58O.95", "580", "580.95.05-1", "v580.95.05", "580..1"])
def test_malformed_version(version: str) -> None:
    errors = plan(version=version)["errors"]
    assert errors == [f"nvidia_driver_version = '{version}' is not a driver version; allowed: '' (the newest "
                      "of the branch) or a full version such as 580.95.05"]


def test_version_that_contradicts_the_branch() -> None:
    assert plan(branch="580", version="575.57.08")["errors"] == [
        "nvidia_driver_version = '575.57.08' is of branch 575, which contradicts nvidia_driver_branch = '580'; "
        "allowed: a 580.x version, or nvidia_driver_branch: '575'"]


def test_branch_the_distribution_does_not_offer() -> None:
    assert plan(method="distro", branch="580")["errors"] == [
        "nvidia_driver_branch = '580' is not offered by Debian 12 with nvidia_driver_method = distro; "
        "allowed: 535 (or nvidia_driver_method: nvidia for NVIDIA's repository)"]
    # an implied branch counts too
    assert "is not offered by" in plan(method="distro", version="550.163.01")["errors"][0]


def test_flavor_the_platform_does_not_offer() -> None:
    assert plan(method="distro", kernel_module_flavor="open")["errors"] == [
        "nvidia_driver_kernel_module_flavor = 'open' is not available with nvidia_driver_method = distro on "
        "Debian 12 (Debian 12's open modules (535.261.03) do not match its driver userspace (535.309.01)); "
        "allowed: auto, proprietary"]


def test_flavor_that_does_not_drive_the_gpus() -> None:
    assert plan(kernel_module_flavor="open", gpus=[H100, V100])["errors"] == [
        "nvidia_driver_kernel_module_flavor = 'open' selects the open kernel modules, which do not drive the GPUs "
        "older than Turing on this host: 0000:3b:00.0 (device 0x1db4); allowed: proprietary"]
    assert plan(kernel_module_flavor="proprietary", gpus=[B200])["errors"] == [
        "nvidia_driver_kernel_module_flavor = 'proprietary' selects the proprietary kernel modules, which do not "
        "drive the Blackwell or newer GPUs on this host: 0000:1b:00.0 (device 0x2901); allowed: open, auto"]
    # Debian 12 has no open modules for a Blackwell GPU
    assert "is not available with nvidia_driver_method = distro" in plan(method="distro", gpus=[B200])["errors"][0]


@pytest.mark.parametrize("url", ["127.0.0.1:8555/repos", "ftp://mirror/cuda", "", "http://"])
def test_repository_url(url: str) -> None:
    errors = plan(repo_base_url=url)["errors"]
    assert errors == [f"nvidia_driver_repo_base_url = '{url}' is invalid; allowed: an http://, https:// or "
                      "file:// URL of NVIDIA's repos/ directory or of a mirror of it"]
    assert plan(method="distro", repo_base_url=url)["errors"] == []   # not used by distro


def test_keyring_checksum() -> None:
    assert plan(repo_keyring_checksum="sha256:" + "a" * 64)["errors"] == []
    assert plan(repo_keyring_checksum="md5:0123")["errors"] == [
        "nvidia_driver_repo_keyring_checksum = 'md5:0123' is invalid; allowed: '' or sha256:<64 hex digits> "
        "or sha512:<128 hex digits>"]


def test_signing_pair() -> None:
    assert plan(module_signing_key="/root/mok.key", module_signing_cert="/root/mok.der")["errors"] == []
    errors = plan(module_signing_key="mok.key")["errors"]
    assert errors[0].startswith("nvidia_driver_module_signing_key and nvidia_driver_module_signing_cert "
                                "must be given together")
    assert errors[1] == "nvidia_driver_module_signing_key = 'mok.key' is invalid; allowed: an absolute path on the node"


def test_every_problem_reported_at_once() -> None:
    errors = plan(branch="5800", version="58O", module_signing_cert="/x", repo_keyring_checksum="x")["errors"]
    assert len(errors) == 4


def test_float_versions_are_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="quote it"):
        plan(version=580.95)


# --- kernel flavor ----------------------------------------------------------------------------


@pytest.mark.parametrize("kernel, flavor", [
    ("6.1.0-26-amd64", "amd64"),
    ("6.1.0-26-cloud-amd64", "cloud-amd64"),
    ("6.12.48+deb13-amd64", "amd64"),
    ("6.12.48+deb13-cloud-amd64", "cloud-amd64"),
    ("6.12.12+bpo-amd64", "amd64"),
    ("6.8.0-45-generic", "generic"),
    ("5.15.0-1063-aws", "aws"),
    ("6.18.44-fc-v669", ""),              # not a distribution kernel: no headers metapackage guessed
])
def test_kernel_flavor(kernel: str, flavor: str) -> None:
    assert f.nvidia_driver_kernel_flavor(kernel) == flavor


# --- apt-cache policy -------------------------------------------------------------------------

POLICY = """\
nvidia-driver-cuda:
  Installed: 580.65.06-1
  Candidate: 580.65.06-1
  Version table:
     590.44.01-1 500
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


def test_apt_policy() -> None:
    policy = f.nvidia_driver_apt_policy(POLICY)
    assert policy["nvidia-driver-cuda"] == {
        "installed": "580.65.06-1", "candidate": "580.65.06-1",
        "versions": ["590.44.01-1", "580.95.05-1", "580.65.06-1", "575.57.08-1"]}
    assert policy["libcuda1"]["installed"] is None
    assert policy["libcuda1"]["versions"] == ["535.309.01-0+deb12u1", "535.261.03-1"]
    assert policy["nvidia-driver"] == {"installed": None, "candidate": None, "versions": []}
    assert "nosuchpkg" not in policy
    assert f.nvidia_driver_apt_policy("") == {}


def test_version_status() -> None:
    status = f.nvidia_driver_version_status(POLICY, [
        ["nvidia-driver-cuda", "580.*"],
        ["libcuda1", "535.309.01-*"],
        ["nvidia-persistenced", "535.309.01-*", "535.*"],   # falls back to the branch
        ["nvidia-driver", "535.*"],
        ["nosuchpkg", "580.*"],
    ])
    by = {s["name"]: s for s in status}
    cuda = by["nvidia-driver-cuda"]
    assert cuda["available"] and cuda["installed_ok"] and not cuda["up_to_date"] and cuda["newest"] == "580.95.05-1"
    assert by["libcuda1"]["available"] and not by["libcuda1"]["installed_ok"]
    assert by["nvidia-persistenced"]["pattern"] == "535.*" and by["nvidia-persistenced"]["up_to_date"]
    assert not by["nvidia-driver"]["available"]
    assert by["nvidia-driver"]["describe"] == "nvidia-driver has no version 535.* (available: none)"
    assert not by["nosuchpkg"]["known"] and by["nosuchpkg"]["describe"] == "nosuchpkg is unknown to apt"
    missing = f.nvidia_driver_version_status(POLICY, [["nvidia-driver-cuda", "570.*"]])[0]
    assert missing["describe"] == ("nvidia-driver-cuda has no version 570.* "
                                   "(available: 590.44.01-1, 580.95.05-1, 580.65.06-1, 575.57.08-1)")


def test_sync_moves_installed_leftovers() -> None:
    installed = [
        {"name": "nvidia-driver-cuda", "version": "580.65.06-1", "want": "hold"},
        {"name": "nvidia-persistenced", "version": "535.171.04-1~deb12u1", "want": "hold"},  # no exact version: branch ok
        {"name": "libcuda1", "version": "535.261.03-1", "want": "install"},                  # must move
        {"name": "nvidia-modprobe", "version": "570.133.07-1", "want": "install"},          # unknown to apt: left
    ]
    assert f.nvidia_driver_sync(POLICY, installed, "535.309.01-*", "535.*", ["nvidia-driver-cuda"]) == [
        ["libcuda1", "535.309.01-*"]]


# --- dpkg-query and dkms ----------------------------------------------------------------------

DPKG = """\
ii |install|cuda-keyring|1.1-1
hi |hold|nvidia-smi|535.309.01-0+deb12u1
hi |hold|libcuda1:amd64|535.309.01-0+deb12u1
rc |deinstall|nvidia-kernel-dkms|535.309.01-0+deb12u1
ii |install|nvidia-support|20220217+3~deb12u1
un |unknown|nvidia-open|
ii |install|libc6|2.36-9+deb12u14
"""


def test_dpkg_packages() -> None:
    regex = "^(nvidia-|libnvidia-|libcuda1)"
    assert f.nvidia_driver_dpkg_packages(DPKG, regex) == [
        {"name": "libcuda1", "version": "535.309.01-0+deb12u1", "want": "hold"},
        {"name": "nvidia-smi", "version": "535.309.01-0+deb12u1", "want": "hold"},
        {"name": "nvidia-support", "version": "20220217+3~deb12u1", "want": "install"},
    ]
    assert f.nvidia_driver_dpkg_packages(DPKG, "^cuda-keyring$") == [
        {"name": "cuda-keyring", "version": "1.1-1", "want": "install"}]


def test_dkms_built() -> None:
    out = ("nvidia-current/535.309.01, 6.1.0-26-amd64, x86_64: installed\n"
           "nvidia-current/535.309.01, 6.1.0-25-amd64, x86_64: built\n"
           "nvidia, 580.95.05, 6.8.0-45-generic, x86_64: installed (WARNING! Diff between built and installed module!)\n"
           "virtualbox/7.0.20, 6.1.0-26-amd64, x86_64: installed\n")
    assert f.nvidia_driver_dkms_built(out, "6.1.0-26-amd64") == [
        "nvidia-current/535.309.01, 6.1.0-26-amd64, x86_64: installed"]
    assert len(f.nvidia_driver_dkms_built(out, "6.8.0-45-generic")) == 1
    assert f.nvidia_driver_dkms_built(out, "6.1.0-25-amd64") == []
    assert f.nvidia_driver_dkms_built("", "6.1.0-26-amd64") == []


def test_filters_registered() -> None:
    names = set(f.FilterModule().filters())
    assert names == {"nvidia_driver_plan", "nvidia_driver_kernel_flavor", "nvidia_driver_apt_policy",
                     "nvidia_driver_version_status", "nvidia_driver_sync", "nvidia_driver_dpkg_packages",
                     "nvidia_driver_dkms_built"}
