"""Verify nvidia_driver's nvidia method against the loopback fixture of NVIDIA's repository.

The fixture (tests/fixtures/nvidia_repo) has the driver of branches 575, 580 (580.65.06 and
580.95.05) and 590. The inventory pins Debian 12 to 580.65.06 and Debian 13 to branch 580;
side_effect.yml then moved Debian 12 to the newest 580 and Debian 13 down to branch 575, and
checked the converged state before that. This checks the moved state.
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
WANT = {  # host -> (pin glob, installed version, branch)
    "nvidia_driver_repo-debian12": ("580.*", "580.95.05-1", "580"),
    "nvidia_driver_repo-debian13": ("575.*", "575.57.08-1", "575"),
}
DRIVER_PACKAGES = ["nvidia-driver-cuda", "nvidia-smi", "libcuda1", "libnvidia-ml1", "libnvidia-ptxjitcompiler1",
                   "firmware-nvidia-gsp", "nvidia-modprobe", "nvidia-persistenced"]
NO_PIN = "-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/nonexistent"
# upgrade simulations over the fixture alone (Debian's own index makes each one seconds slower)
FIXTURE_ONLY = "-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=/etc/apt/sources.list.d"


def manifest() -> dict:
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "nvidia_repo" / "fixture.json"
    return json.loads(path.read_text())


def hostname(host) -> str:
    return host.backend.get_hostname()


def dist(host) -> str:
    return "debian" + host.system_info.release.split(".")[0]


def simulate(host, args: str) -> list[str]:
    """Inst lines of an apt-get simulation that touch NVIDIA driver packages."""
    out = host.check_output(f"apt-get -s -o Debug::NoLocking=1 {args} 2>/dev/null")
    return [line for line in out.splitlines() if line.startswith("Inst ") and re.search(r"nvidia|libcuda", line)]


def test_keyring_is_the_fixture_key(host) -> None:
    assert host.package("cuda-keyring").is_installed
    keyring = host.file(KEYRING)
    assert keyring.mode == 0o644
    assert hashlib.sha256(keyring.content).hexdigest() == manifest()["keyring_file_sha256"]


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


def test_pin_file(host) -> None:
    text = host.file(PIN_FILE).content_string
    assert f"Pin: version {WANT[hostname(host)][0]}\n" in text
    assert "Pin-Priority: 1001\n" in text


def test_driver_installed_at_the_pinned_version_and_held(host) -> None:
    out = host.check_output("dpkg-query -W -f '${Package}|${Version}|${db:Status-Want}\\n'")
    installed = {name: (version, want) for name, version, want in (line.split("|") for line in out.splitlines())}
    want = WANT[hostname(host)][1]
    assert {name: installed.get(name) for name in DRIVER_PACKAGES} == {name: (want, "hold") for name in DRIVER_PACKAGES}


@pytest.mark.parametrize("name", ["nvidia-kernel-open-dkms", "nvidia-kernel-dkms", "dkms"])
def test_no_kernel_module_in_a_container(host, name: str) -> None:
    assert not host.package(name).is_installed


def test_candidate_stays_in_the_branch_although_others_are_newer(host) -> None:
    policy = host.check_output("apt-cache policy nvidia-driver-cuda")
    assert "590.44.01-1 500" in policy  # the newest branch is there ...
    assert re.search(r"Candidate: " + re.escape(WANT[hostname(host)][1]), policy)  # ... and not chosen


def test_pin_keeps_the_branch_metapackage_in_the_branch(host) -> None:
    # cuda-drivers-<branch> depends on nvidia-driver (>= ...) with no upper bound, like NVIDIA's
    branch = WANT[hostname(host)][2]
    pinned = simulate(host, f"install cuda-drivers-{branch}")
    assert pinned and all(re.search(rf"\({branch}\.", line) for line in pinned), pinned
    unpinned = simulate(host, f"{NO_PIN} --ignore-hold install cuda-drivers-{branch}")
    assert any("(590.44.01-1" in line for line in unpinned), unpinned


def test_other_branches_never_chosen(host) -> None:
    # cuda-drivers has versions in every branch; the pinned one is chosen, with its dependencies
    branch = WANT[hostname(host)][2]
    lines = simulate(host, "install cuda-drivers")
    assert lines and all(re.search(rf"\({branch}\.", line) for line in lines), lines


def test_no_drift_on_upgrade(host) -> None:
    assert simulate(host, f"{FIXTURE_ONLY} dist-upgrade") == []                  # pin and holds
    assert simulate(host, f"{FIXTURE_ONLY} {NO_PIN} dist-upgrade") == []        # the holds alone
    assert simulate(host, f"{FIXTURE_ONLY} --ignore-hold dist-upgrade") == []    # the pin alone
    # neither: the node would drift to branch 590
    assert any("(590.44.01-1" in line for line in simulate(host, f"{FIXTURE_ONLY} {NO_PIN} --ignore-hold dist-upgrade"))


def test_nvidia_smi_from_the_fixture(host) -> None:
    result = host.run("nvidia-smi")
    assert result.rc == 9 and "couldn't communicate with the NVIDIA driver" in result.stdout


def test_persistenced_enabled_not_started_in_a_container(host) -> None:
    service = host.service("nvidia-persistenced")
    assert service.is_enabled


def test_nouveau_blacklisted(host) -> None:
    assert "blacklist nouveau\n" in host.file("/etc/modprobe.d/dlstack-blacklist-nouveau.conf").content_string
