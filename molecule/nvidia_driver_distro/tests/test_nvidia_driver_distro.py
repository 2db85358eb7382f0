"""Verify nvidia_driver's distro method: Debian's own driver userspace, pinned and held."""

from __future__ import annotations

import re

import pytest

# Debian's driver branch per release (roles/nvidia_driver/vars/Debian_<major>.yml).
BRANCH = {"12": "535", "13": "550"}
USERSPACE = ["nvidia-smi", "libcuda1", "libnvidia-ml1", "nvidia-persistenced"]
PIN_FILE = "/etc/apt/preferences.d/dlstack-nvidia-driver"


def branch(host) -> str:
    return BRANCH[host.system_info.release.split(".")[0]]


@pytest.mark.parametrize("name", USERSPACE)
def test_userspace_of_the_branch_installed(host, name: str) -> None:
    package = host.package(name)
    assert package.is_installed
    assert package.version.startswith(branch(host) + "."), package.version


@pytest.mark.parametrize("name", ["nvidia-kernel-dkms", "nvidia-open-kernel-dkms", "dkms", "nvidia-driver"])
def test_no_kernel_module_package_in_a_container(host, name: str) -> None:
    # the container detection skipped the kernel module steps: nothing to build, nothing built
    assert not host.package(name).is_installed


def test_nvidia_smi_is_debians_and_finds_no_driver(host) -> None:
    result = host.run("nvidia-smi")
    assert result.rc == 9
    assert "couldn't communicate with the NVIDIA driver" in result.stdout


def test_pin_file(host) -> None:
    pin = host.file(PIN_FILE)
    assert pin.user == "root" and pin.mode == 0o644
    text = pin.content_string
    assert text.startswith("#")
    assert f"Pin: version {branch(host)}.*\n" in text
    assert "Pin-Priority: 1001\n" in text
    assert re.search(r"^Package: nvidia-\* libnvidia-\* libcuda1\* .* cuda-drivers\*$", text, re.M)


def test_pin_applies_to_the_branch_versions(host) -> None:
    policy = host.check_output("apt-cache policy nvidia-smi")
    versions = re.findall(r"^\s+(?:\*\*\* )?(\S+) (-?\d+)$", policy, re.M)
    assert versions, policy
    for version, priority in versions:
        if version.startswith(branch(host) + "."):
            assert priority == "1001", (version, priority)


@pytest.mark.parametrize("name", USERSPACE)
def test_driver_packages_held(host, name: str) -> None:
    assert name in host.check_output("apt-mark showhold").split()


def test_no_driver_package_moves_on_upgrade(host) -> None:
    simulated = host.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    moving = [line for line in simulated.splitlines()
              if line.startswith(("Inst ", "Remv ")) and re.search(r"nvidia|libcuda", line)]
    assert moving == []


def test_nouveau_blacklisted(host) -> None:
    conf = host.file("/etc/modprobe.d/dlstack-blacklist-nouveau.conf")
    assert conf.user == "root" and conf.mode == 0o644
    assert "blacklist nouveau\n" in conf.content_string
    assert "options nouveau modeset=0\n" in conf.content_string


def test_persistenced_enabled(host) -> None:
    assert host.service("nvidia-persistenced").is_enabled


def test_no_nvidia_repository_with_the_distro_method(host) -> None:
    assert not host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").exists
    assert not host.package("cuda-keyring").is_installed
