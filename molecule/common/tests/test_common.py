"""Verify the common role on every platform of the scenario."""

from __future__ import annotations

import pytest

BASE_PACKAGES = ["ca-certificates", "curl", "gnupg", "pciutils", "python3-packaging",
                 "python3-pip", "python3-venv"]


def codename(host) -> str:
    return host.system_info.codename


@pytest.mark.parametrize("name", [*BASE_PACKAGES, "less"])
def test_base_and_extra_packages_installed(host, name: str) -> None:
    assert host.package(name).is_installed


def test_sources_deb822_with_nonfree(host) -> None:
    sources = host.file("/etc/apt/sources.list.d/debian.sources")
    assert sources.exists and sources.user == "root" and sources.mode == 0o644
    text = sources.content_string
    assert text.startswith("#"), "ansible_managed header expected"
    rel = codename(host)
    assert f"Suites: {rel} {rel}-updates\n" in text
    assert f"Suites: {rel}-security\n" in text
    assert text.count("Components: main contrib non-free non-free-firmware\n") == 2
    assert text.count("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n") == 2


def test_legacy_sources_retired_and_original_kept(host) -> None:
    legacy = host.file("/etc/apt/sources.list")
    assert not [line for line in legacy.content_string.splitlines()
                if line.strip().startswith("deb")]
    original = host.file("/etc/apt/sources.list.dlstack-orig")
    assert original.exists
    assert f"deb http://deb.debian.org/debian {codename(host)} main" in original.content_string


def test_apt_indexes_include_nonfree(host) -> None:
    # The index of the non-free component was really downloaded from the new sources.
    lists = host.run("ls /var/lib/apt/lists/")
    assert lists.rc == 0
    assert "_non-free_binary-amd64_Packages" in lists.stdout
    # and NVIDIA's userspace from Debian non-free is now installable
    policy = host.run("apt-cache policy nvidia-smi")
    assert "Candidate: (none)" not in policy.stdout and "Candidate:" in policy.stdout


def test_extra_ca_installed_and_trusted(host) -> None:
    cert = host.file("/usr/local/share/ca-certificates/dlstack/molecule-host-bundle.crt")
    assert cert.exists and cert.mode == 0o644
    # HTTPS through the TLS-inspecting proxy works with the system trust store ...
    assert host.run("curl -sS -o /dev/null -w '%{http_code}' https://pypi.org/simple/pip/").stdout == "200"


def test_pip_uses_system_bundle(host) -> None:
    conf = host.file("/etc/pip.conf")
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in conf.content_string
    # ... and so does pip, inside a fresh virtualenv (python3-venv works).
    cmd = host.run("python3 -m venv /tmp/v && /tmp/v/bin/pip download --no-deps -q -d /tmp/dl six==1.16.0")
    assert cmd.rc == 0, cmd.stderr


def test_no_apt_proxy_when_none_configured(host) -> None:
    assert not host.file("/etc/apt/apt.conf.d/01dlstack-proxy").exists
