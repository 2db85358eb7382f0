"""Verify nvidia_driver's nvidia method against the loopback fixture of NVIDIA's repositories.

The fixture (tests/fixtures/nvidia_repo, generated from facts.yml) has branches 575, 580
(580.65.06, 580.95.05, 580.105.08) and 590 in debian12, signed with a stand-in for key
3BF863CC, and 590 and 595 only in debian13, signed with one for 8793F200. The inventory pins
Debian 12 (an HGX H100 node by its recorded sysfs tree) to 580.65.06 and lets Debian 13 take
its default, 590; side_effect.yml checked that state, moved Debian 12 to 590 (Fabric Manager
renamed) and back to the newest 580, and Debian 13 to 595 beside NVIDIA's pinning package for
590. This checks the final state.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

BASE_URL = "http://127.0.0.1:8555/compute/cuda/repos"
KEYRING = "/usr/share/keyrings/cuda-archive-keyring.gpg"
PIN_FILE = "/etc/apt/preferences.d/dlstack-nvidia-driver"
NVIDIA_PIN_FILE = "/etc/apt/preferences.d/nvidia-driver-pin"
CONTRIB_FILE = "/etc/apt/sources.list.d/dlstack-debian-contrib.sources"
WANT = {  # host -> pin glob, installed version, branch, newer branch in the repository, key, Fabric Manager
    "nvidia_driver_repo-debian12": {"pin": "580.*", "version": "580.105.08-1", "branch": "580", "newer": "590.48.01-1",
                                    "key": "3BF863CC", "fabric": ["libnvidia-nscq", "nvidia-fabricmanager-580"]},
    "nvidia_driver_repo-debian13": {"pin": "595.*", "version": "595.45.04-1", "branch": "595", "newer": None,
                                    "key": "8793F200", "fabric": []},
}
DRIVER_PACKAGES = ["nvidia-driver-cuda", "nvidia-smi", "libcuda1", "libnvidia-ml1", "libnvidia-ptxjitcompiler1",
                   "firmware-nvidia-gsp", "nvidia-modprobe", "nvidia-persistenced"]
NO_PIN = "-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/nonexistent"
# upgrade simulations over the fixture alone (Debian's own index makes each one seconds slower)
FIXTURE_ONLY = "-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/etc/apt/sources.list.d"


def manifest() -> dict:
    return json.loads((Path(os.environ.get("DLSTACK_CACHE_DIR", "/var/cache/dlstack"))
                       / "fixtures" / "nvidia_repo" / "repo" / "fixture.json").read_text())


def want(host) -> dict:
    return WANT[host.backend.get_hostname()]


def dist(host) -> str:
    return "debian" + host.system_info.release.split(".")[0]


def simulate(host, args: str) -> list[str]:
    """Inst lines of an apt-get simulation that touch NVIDIA driver packages."""
    out = host.check_output(f"apt-get -s -o Debug::NoLocking=1 {args} 2>/dev/null")
    return [line for line in out.splitlines() if line.startswith("Inst ") and re.search(r"nvidia|libcuda", line)]


def installed(host) -> dict[str, tuple[str, str]]:
    out = host.check_output("dpkg-query -W -f '${Package}|${Version}|${db:Status-Want}|${db:Status-Status}\\n'")
    return {name: (version, selection) for name, version, selection, status in (line.split("|") for line in out.splitlines())
            if status == "installed"}


def test_keyring_is_the_repositorys_own_key(host) -> None:
    # debian13 ships another key than debian12 (NVIDIA/cuda-repo-management#39)
    assert host.package("cuda-keyring").is_installed
    keyring = host.file(KEYRING)
    assert keyring.mode == 0o644
    repo = manifest()["repos"][f"{dist(host)}/x86_64"]
    assert repo["key"] == want(host)["key"]
    assert hashlib.sha256(keyring.content).hexdigest() == repo["keyring_file_sha256"]


def test_keyring_packages_own_sources_entry_removed(host) -> None:
    assert not host.file(f"/etc/apt/sources.list.d/cuda-{dist(host)}-x86_64.list").exists


def test_sources_entry_signed_by_the_keyring(host) -> None:
    sources = host.file("/etc/apt/sources.list.d/nvidia-cuda.sources")
    assert sources.user == "root" and sources.mode == 0o644
    text = sources.content_string
    assert f"URIs: {BASE_URL}/{dist(host)}/x86_64/\n" in text
    assert "Suites: /\n" in text and "Components" not in text
    assert f"Signed-By: {KEYRING}\n" in text


def test_repository_index_verified(host) -> None:
    # the fixture's index was fetched, so its InRelease verified against Signed-By
    lists = host.check_output("ls /var/lib/apt/lists/").split()
    # apt escapes the "_" of x86_64 in list file names
    assert f"127.0.0.1:8555_compute_cuda_repos_{dist(host)}_x86%5f64_InRelease" in lists, lists


def test_contrib_enabled_for_nvidia_support(host) -> None:
    # NVIDIA's libcuda1 depends on nvidia-support, which Debian ships in contrib; the images' own
    # sources have main only, so the role added contrib
    assert "Components: contrib\n" in host.file(CONTRIB_FILE).content_string
    assert host.package("nvidia-support").is_installed


def test_pin_file(host) -> None:
    text = host.file(PIN_FILE).content_string
    assert f"Pin: version {want(host)['pin']}\n" in text
    assert "Pin-Priority: 1001\n" in text


def test_driver_installed_at_the_pinned_version_and_held(host) -> None:
    have = installed(host)
    names = DRIVER_PACKAGES + want(host)["fabric"]
    assert {name: have.get(name) for name in names} == {name: (want(host)["version"], "hold") for name in names}


def test_fabric_manager_only_on_the_nvswitch_node(host) -> None:
    have = installed(host)
    assert sorted(n for n in have if n.startswith(("nvidia-fabricmanager", "libnvidia-nscq"))) == want(host)["fabric"]
    if want(host)["fabric"]:
        # enabled; not started, as no driver is loaded in a container
        assert host.service("nvidia-fabricmanager").is_enabled


@pytest.mark.parametrize("name", ["nvidia-kernel-open-dkms", "nvidia-kernel-dkms", "dkms"])
def test_no_kernel_module_in_a_container(host, name: str) -> None:
    assert not host.package(name).is_installed


def test_candidate_stays_in_the_branch(host) -> None:
    policy = host.check_output("apt-cache policy nvidia-driver-cuda")
    if want(host)["newer"]:
        assert f"{want(host)['newer']} 500" in policy  # a newer branch is there ...
    assert re.search(r"Candidate: " + re.escape(want(host)["version"]), policy)  # ... and not chosen


def test_role_pin_wins_over_nvidias_pinning_package(host) -> None:
    if dist(host) != "debian13":
        pytest.skip("NVIDIA's pinning package is installed on the Debian 13 node only")
    assert "Pin: version 590.*" in host.file(NVIDIA_PIN_FILE).content_string
    policy = host.check_output("apt-cache policy nvidia-driver-cuda")
    assert re.search(r"590\.48\.01-1 1000\b", policy) and re.search(r"\*\*\* 595\.45\.04-1 1001\b", policy), policy


def test_pin_keeps_the_branch_metapackage_in_the_branch(host) -> None:
    # cuda-drivers-<branch> depends on nvidia-driver (>= ...) with no upper bound, like NVIDIA's
    branch = want(host)["branch"]
    pinned = simulate(host, f"install cuda-drivers-{branch}")
    assert pinned and all(re.search(rf"\({branch}\.", line) for line in pinned), pinned
    if want(host)["newer"]:
        unpinned = simulate(host, f"{NO_PIN} --ignore-hold install cuda-drivers-{branch}")
        assert any(f"({want(host)['newer']}" in line for line in unpinned), unpinned


def test_other_branches_never_chosen(host) -> None:
    # cuda-drivers has versions in every branch; the pinned one is chosen, with its dependencies
    branch = want(host)["branch"]
    lines = simulate(host, "install cuda-drivers")
    assert lines and all(re.search(rf"\({branch}\.", line) for line in lines), lines


def test_no_drift_on_upgrade(host) -> None:
    assert simulate(host, f"{FIXTURE_ONLY} dist-upgrade") == []                  # pin and holds
    assert simulate(host, f"{FIXTURE_ONLY} {NO_PIN} dist-upgrade") == []        # the holds alone
    assert simulate(host, f"{FIXTURE_ONLY} --ignore-hold dist-upgrade") == []    # the pin alone
    if want(host)["newer"]:
        # neither: the node would drift to the newer branch
        lines = simulate(host, f"{FIXTURE_ONLY} {NO_PIN} --ignore-hold dist-upgrade")
        assert any(f"({want(host)['newer']}" in line for line in lines), lines


def test_nvidia_smi_from_the_fixture(host) -> None:
    result = host.run("nvidia-smi")
    assert result.rc == 9 and "couldn't communicate with the NVIDIA driver" in result.stdout


def test_persistenced_enabled_not_started_in_a_container(host) -> None:
    assert host.service("nvidia-persistenced").is_enabled


def test_nouveau_blacklisted(host) -> None:
    assert "blacklist nouveau\n" in host.file("/etc/modprobe.d/dlstack-blacklist-nouveau.conf").content_string
