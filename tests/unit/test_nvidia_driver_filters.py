"""Unit tests for roles/nvidia_driver/filter_plugins/nvidia_driver.py: the plan and the probe parsers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from plugin_loader import load_by_path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "roles" / "nvidia_driver" / "filter_plugins" / "nvidia_driver.py"


f = load_by_path("nvidia_driver_filters", PLUGIN)

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


def plan(offers: dict[str, Any] = OFFERS_DEBIAN12, gpus: list[dict[str, Any]] | None = None, **overrides: Any) -> dict[str, Any]:
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
        "drive the Grace Hopper (GH200), Blackwell or newer GPUs on this host: 0000:1b:00.0 (device 0x2901); "
        "allowed: open, auto"]
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


# --- the platform's repository, pre-Turing GPUs on 590+, Grace Hopper, NVSwitches ---------------

# What the role passes on Debian 13 (vars/Debian_13.yml, vars/main.yml): NVIDIA's debian13
# repository starts at 590, 580 is the last branch for pre-Turing GPUs.
OFFERS_TRIXIE: dict[str, Any] = dict(
    OFFERS_DEBIAN13,
    nvidia={"branches": [], "default_branch": "590", "first_branch": "590", "repo": "debian13",
            "first_branch_note": "NVIDIA/cuda-repo-management#38", "flavors": ["open", "proprietary"]},
    open_only_device_ids=[0x2342, 0x2343, 0x2345, 0x2348], last_pre_turing_branch="580",
    fabric={"nvidia": True, "distro": False})
GH200 = {"pci_address": "0009:01:00.0", "device_id": "0x2342"}
NVSWITCH = {"pci_address": "0000:05:00.0", "device_id": "0x22a3"}


def trixie(gpus: list | None = None, switches: list | None = None, **cfg: Any) -> dict[str, Any]:
    base = {"method": "nvidia", "branch": "", "version": "", "kernel_module_flavor": "auto",
            "kernel_module_steps": "auto", "repo_base_url": "http://x/repos", "repo_keyring_checksum": "",
            "module_signing_key": "", "module_signing_cert": ""}
    return f.nvidia_driver_plan(dict(base, **cfg), OFFERS_TRIXIE, gpus or [], "Debian 13", switches or [])


def test_debian13_defaults_to_590_and_refuses_what_its_repository_lacks() -> None:
    assert trixie()["branch"] == "590"
    assert trixie(branch="595")["branch"] == "595"
    assert trixie(branch="580")["errors"] == [
        "nvidia_driver_branch = '580' is not in NVIDIA's debian13 repository, which carries branch 590 and later "
        "only (NVIDIA/cuda-repo-management#38); allowed: 590 or a later branch, or nvidia_driver_method: distro"]
    assert trixie(version="575.57.08")["errors"][0].startswith("nvidia_driver_branch = '575' is not in NVIDIA's")
    # the distro method is Debian's own 550, which the repository's range does not limit
    assert trixie(method="distro")["branch"] == "550"


def test_pre_turing_gpus_with_590_or_later_are_refused_naming_the_gpu_and_the_last_branch() -> None:
    assert trixie(gpus=[V100])["errors"] == [
        "nvidia_driver_branch = '590' does not drive the GPUs older than Turing on this host (0000:3b:00.0 (device "
        "0x1db4)): branch 590 and later dropped Maxwell, Pascal and Volta; the last branch that supports them is 580; "
        "allowed: 580 or older (Debian 13's NVIDIA repository has none: use nvidia_driver_method: distro)"]
    # on Debian 12 the repository has 580: the message names it, and 580 itself passes
    debian12 = dict(OFFERS_DEBIAN12, last_pre_turing_branch="580")
    cfg = {"method": "nvidia", "branch": "590", "repo_base_url": "http://x/repos"}
    errors = f.nvidia_driver_plan(cfg, debian12, [V100], "Debian 12")["errors"]
    assert errors == ["nvidia_driver_branch = '590' does not drive the GPUs older than Turing on this host "
                      "(0000:3b:00.0 (device 0x1db4)): branch 590 and later dropped Maxwell, Pascal and Volta; the last "
                      "branch that supports them is 580; allowed: 580 or older"]
    assert f.nvidia_driver_plan(dict(cfg, branch="580"), debian12, [V100], "Debian 12")["flavor"] == "proprietary"
    # a Turing or newer GPU is fine on 590
    assert trixie(gpus=[H100])["errors"] == []


def test_grace_hopper_is_open_only() -> None:
    assert trixie(gpus=[GH200])["flavor"] == "open"
    assert "Grace Hopper (GH200)" in trixie(gpus=[GH200], kernel_module_flavor="proprietary")["errors"][0]
    assert trixie(gpus=[H100], kernel_module_flavor="proprietary")["errors"] == []


def test_fabric_manager_on_nvswitch_systems() -> None:
    assert trixie(gpus=[H100])["fabric"] is False
    assert trixie(gpus=[H100], switches=[NVSWITCH])["fabric"] is True
    # Debian's archive has no Fabric Manager: the distro method cannot serve an NVSwitch node
    assert trixie(gpus=[H100], switches=[NVSWITCH], method="distro")["errors"] == [
        "this host has 1 NVSwitch(es) (0000:05:00.0 (device 0x22a3)), which need Fabric Manager, and "
        "nvidia_driver_method = distro on Debian 13 has none; allowed: nvidia_driver_method: nvidia"]
    assert trixie(fabric_manager="sometimes")["errors"] == [
        "nvidia_driver_fabric_manager = 'sometimes' is invalid; allowed: auto, true, false"]


# --- package names of a plan --------------------------------------------------------------------

DEBIAN = yaml.safe_load((REPO / "roles" / "nvidia_driver" / "vars" / "Debian.yml").read_text())
UBUNTU = yaml.safe_load((REPO / "roles" / "nvidia_driver" / "vars" / "Ubuntu.yml").read_text())


def names(vars_: dict, method: str, branch: str, flavor: str = "open", fabric: bool = False,
          headless: bool = True, kernel: bool = True) -> dict[str, list[str]]:
    plan = {"branch": branch, "flavor": flavor, "fabric": fabric}
    return f.nvidia_driver_packages(plan, vars_["__nvidia_driver_packages"][method],
                                    vars_["__nvidia_driver_fabric"][method], headless, kernel, True)


def test_debian_package_names() -> None:
    assert names(DEBIAN, "nvidia", "580") == {
        "main": ["nvidia-driver-cuda", "nvidia-kernel-open-dkms"], "fabric": [], "aux": ["nvidia-persistenced"]}
    assert names(DEBIAN, "nvidia", "580", fabric=True)["fabric"] == ["nvidia-fabricmanager-580", "libnvidia-nscq"]
    assert names(DEBIAN, "nvidia", "590", fabric=True)["fabric"] == ["nvidia-fabricmanager", "libnvidia-nscq"]
    assert names(DEBIAN, "nvidia", "580", headless=False, kernel=False)["main"] == ["nvidia-driver-cuda", "nvidia-driver"]
    assert names(DEBIAN, "distro", "535", flavor="proprietary")["main"] == [
        "nvidia-smi", "libcuda1", "libnvidia-ml1", "nvidia-kernel-dkms"]


def test_dkms_prereqs_and_module_names_do_not_leak_into_containers() -> None:
    assert names(DEBIAN, "nvidia", "580", kernel=False)["main"] == ["nvidia-driver-cuda"]


# --- dkms ------------------------------------------------------------------------------------


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
    assert names == {"nvidia_driver_plan", "nvidia_driver_packages", "nvidia_driver_kernel_flavor",
                     "nvidia_driver_dkms_built", "nvidia_driver_after_reboot", "nvidia_driver_reboot_reasons",
                     "nvidia_driver_loaded_now", "nvidia_driver_secure_boot_message"}


# --- after a reboot -------------------------------------------------------------------------------

LOADED = {"present": True, "loaded_modules": ["nvidia", "nvidia_uvm"], "driver_version": "580.95.05"}


def test_after_reboot_passes_only_with_the_installed_driver_loaded() -> None:
    assert f.nvidia_driver_after_reboot([LOADED, "580.95.05-1", {}]) == []
    assert f.nvidia_driver_after_reboot([{"present": False}, "", {}]) == []
    assert f.nvidia_driver_after_reboot([LOADED, "580.95.05-1", {"state": "running"}]) == []


@pytest.mark.parametrize("gpu, installed, fabric, problem", [
    # a null driver version is a failure, not a pass (no driver answers)
    (dict(LOADED, driver_version=None), "580.95.05-1", {},
     "no driver version can be read (neither /proc/driver/nvidia/version nor nvidia-smi answers)"),
    (dict(LOADED, loaded_modules=["nouveau"]), "580.95.05-1", {}, "the nvidia module is not loaded (loaded: nouveau)"),
    (LOADED, "590.48.01-1", {}, "the loaded driver is 580.95.05, the installed one 590.48.01"),
    (LOADED, "", {}, "the driver 580.95.05 is loaded but no driver package is installed"),
    (LOADED, "580.95.05-1", {"stdout": "failed"}, "Fabric Manager is failed"),
    (LOADED, "580.95.05-1", {"state": "stopped"}, "Fabric Manager is stopped"),
    (LOADED, "580.95.05-1", {"state": "not installed"}, "Fabric Manager is not installed"),
])
def test_after_reboot_problems(gpu: dict, installed: str, fabric: dict, problem: str) -> None:
    assert problem in f.nvidia_driver_after_reboot([gpu, installed, fabric])


# --- after the install: reboot or load now ------------------------------------------------------

SKIPPED = {"skipped": True, "changed": False}
NOUVEAU_REASON = "nouveau is loaded; the blacklist takes effect at the next boot"


def reboot_reasons(gpu: dict[str, Any], installed: str = "1:580.95.05-1", flavor: str = "open",
                   blacklist: bool = True, modprobe: dict[str, Any] = SKIPPED) -> list[str]:
    return f.nvidia_driver_reboot_reasons(gpu, installed, flavor, blacklist, modprobe)


def test_no_reboot_when_the_installed_driver_is_the_loaded_one() -> None:
    # epoch and Debian revision are not part of the driver version
    assert reboot_reasons(dict(LOADED, kernel_module_flavor="open")) == []
    assert reboot_reasons({"loaded_modules": None}) == []
    assert reboot_reasons({"loaded_modules": []}, modprobe={"changed": True, "failed": False}) == []


def test_reboot_for_nouveau_only_while_it_is_blacklisted() -> None:
    assert reboot_reasons({"loaded_modules": ["nouveau"]}) == [NOUVEAU_REASON]
    assert reboot_reasons({"loaded_modules": ["nouveau"]}, blacklist=False) == []


def test_reboot_for_another_loaded_version_or_flavor() -> None:
    gpu = {"loaded_modules": ["nvidia"], "driver_version": "570.86.15", "kernel_module_flavor": "proprietary"}
    assert reboot_reasons(gpu) == [
        "the loaded NVIDIA module is 570.86.15, the installed driver is 580.95.05"
        " (CUDA reports a driver/library version mismatch until the reboot)",
        "the loaded NVIDIA module is the proprietary one, the installed one is open"]
    # unknown loaded version or flavor, or no installed version: nothing to compare
    assert reboot_reasons(dict(gpu, driver_version=None, kernel_module_flavor="")) == []
    assert reboot_reasons(dict(gpu, kernel_module_flavor="open"), installed="") == []
    # the module is not loaded: its version does not matter
    assert reboot_reasons(dict(gpu, loaded_modules=["nvidia_uvm"])) == []


def test_reboot_when_modprobe_failed() -> None:
    assert reboot_reasons({"loaded_modules": []}, modprobe={"failed": True, "msg": " FATAL: Key was rejected\n"}) == [
        "modprobe nvidia failed: FATAL: Key was rejected"]
    assert reboot_reasons({"loaded_modules": []}, modprobe={"failed": True}) == ["modprobe nvidia failed: "]
    assert reboot_reasons({"loaded_modules": []}, modprobe={"skipped": True, "failed": True}) == []


def test_loaded_now() -> None:
    assert f.nvidia_driver_loaded_now(LOADED, True, [], False) is True
    assert f.nvidia_driver_loaded_now({"loaded_modules": None}, True, [], True) is True
    assert f.nvidia_driver_loaded_now({"loaded_modules": None}, True, [], False) is False
    assert f.nvidia_driver_loaded_now(LOADED, True, [NOUVEAU_REASON], True) is False
    assert f.nvidia_driver_loaded_now(LOADED, False, [], True) is False


# --- Secure Boot ----------------------------------------------------------------------------------

SB_MISSING = {"enforced": True, "signing_cert": "/var/lib/dkms/mok.pub", "signing_cert_exists": False,
              "signing_cert_pending": False, "signing_cert_enrolled": None, "signing_key_exists": False}
SB_EXISTS = dict(SB_MISSING, signing_cert_exists=True, signing_key_exists=True)
KEY = "/var/lib/dkms/mok.key"


def test_secure_boot_message_without_a_certificate_says_how_to_make_one() -> None:
    assert f.nvidia_driver_secure_boot_message(SB_MISSING, "gpu01", KEY) == """\
nvidia_driver: Secure Boot is on on gpu01 and there is no module signing certificate at /var/lib/dkms/mok.pub.
The kernel would refuse the NVIDIA module that DKMS builds, so nothing was installed. Either:
  1. enroll a signing key (once per node), as root:
       openssl req -new -x509 -newkey rsa:2048 -nodes -days 36500
         -subj "/CN=gpu01 DKMS module signing/"
         -keyout /var/lib/dkms/mok.key -outform DER -out /var/lib/dkms/mok.pub
       mokutil --import /var/lib/dkms/mok.pub     # choose a one-time password
     then reboot, choose "Enroll MOK" in the blue MOK Manager screen, enter the password,
     and re-run. DKMS signs with /var/lib/dkms/mok.key (nvidia_driver_module_signing_key/_cert
     select another pair, such as a site-wide key already enrolled);
  2. or turn Secure Boot off in the firmware setup;
  3. or, if the module is signed another way, set nvidia_driver_secure_boot_check: false."""


@pytest.mark.parametrize("state, problem", [
    ({"signing_cert_pending": True}, "the signing certificate /var/lib/dkms/mok.pub still waits for enrollment: "
     "reboot and confirm it in the MOK Manager (step 1 below, from the reboot on)."),
    ({}, "whether /var/lib/dkms/mok.pub is an enrolled key cannot be read (install mokutil so that the role can tell)."),
    ({"signing_cert_enrolled": False}, "the signing certificate /var/lib/dkms/mok.pub is not enrolled as a Machine Owner Key."),
    ({"signing_cert_enrolled": True, "signing_key_exists": False},
     "the private key /var/lib/dkms/mok.key of the enrolled certificate is missing."),
])
def test_secure_boot_message_names_the_problem_of_an_existing_certificate(state: dict[str, Any], problem: str) -> None:
    message = f.nvidia_driver_secure_boot_message(dict(SB_EXISTS, **state), "gpu01", KEY)
    first, *rest = message.splitlines()
    assert first == f"nvidia_driver: Secure Boot is on on gpu01 and {problem}"
    # the certificate exists: only its enrollment is left to do
    assert "openssl" not in message
    assert rest[2] == "       mokutil --import /var/lib/dkms/mok.pub     # choose a one-time password"
