"""Verify cuda_toolkit and cudnn (nvidia method) on the nodes, after side_effect.yml switched
the default release from 12.5 to 12.8.

The toolkits come from the fixture repository (tests/fixtures/nvidia_repo/specs/cuda.yml):
their nvcc is a stand-in script that prints the release's `nvcc --version` text and their
libraries are text files, so what is tested here is the packaging, the side-by-side layout,
the default switch, PATH, the linker configuration and the modulefiles, not CUDA itself
(the cudnn_archive scenario loads NVIDIA's real cuDNN libraries).
"""

from __future__ import annotations

import json

import pytest

RELEASES = {"12.5": "V12.5.82", "12.8": "V12.8.93"}
DEFAULT = "12.8"   # after side_effect.yml's switch


def login(host, command: str):
    """Run a command in a login shell, as a user would get it."""
    return host.run(f"bash -lc {command!r}")


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_releases_side_by_side(host, release: str) -> None:
    assert host.package(f"cuda-toolkit-{release.replace('.', '-')}").is_installed
    root = f"/usr/local/cuda-{release}"
    assert json.loads(host.file(f"{root}/version.json").content_string)["cuda"]["version"].startswith(release)
    nvcc = host.run(f"{root}/bin/nvcc --version")
    assert nvcc.rc == 0 and f"release {release}, {RELEASES[release]}" in nvcc.stdout
    assert host.file(f"{root}/lib64/libcudart.so.12").exists


def test_default_is_the_switched_release(host) -> None:
    link = host.file("/usr/local/cuda")
    assert link.is_symlink and link.linked_to == f"/usr/local/cuda-{DEFAULT}"
    query = host.run("update-alternatives --query cuda").stdout
    assert "Status: manual" in query and f"Value: /usr/local/cuda-{DEFAULT}" in query
    # both releases stay registered, the other one is only not selected
    assert all(f"Alternative: /usr/local/cuda-{r}" in query for r in RELEASES)


def test_login_shell_gets_the_default(host) -> None:
    cmd = login(host, "command -v nvcc; echo $CUDA_HOME; nvcc --version")
    assert cmd.rc == 0, cmd.stderr
    lines = cmd.stdout.splitlines()
    assert lines[0] == "/usr/local/cuda/bin/nvcc"
    assert lines[1] == "/usr/local/cuda"
    assert f"release {DEFAULT}, {RELEASES[DEFAULT]}" in cmd.stdout
    snippet = host.file("/etc/profile.d/dlstack-cuda.sh")
    assert snippet.user == "root" and snippet.mode == 0o644


def test_linker_configuration_names_lib64(host) -> None:
    conf = host.file("/etc/ld.so.conf.d/dlstack-cuda.conf")
    assert conf.mode == 0o644
    entries = [line for line in conf.content_string.splitlines() if line and not line.startswith("#")]
    assert entries == ["/usr/local/cuda/lib64"]
    # ldconfig reads the directory (the fixture's libraries are text files, so `ldconfig -p`
    # lists none of them here; the cudnn_archive scenario checks it with real libraries)
    scanned = host.run("ldconfig -v 2>/dev/null | grep -E '^/usr/local/cuda/lib64:'")
    assert scanned.rc == 0, scanned.stdout


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_modulefile_per_release(host, release: str) -> None:
    cmd = login(host, f"module load cuda/{release} && echo $CUDA_HOME && nvcc --version && echo $LD_LIBRARY_PATH")
    assert cmd.rc == 0, cmd.stderr
    assert f"/usr/local/cuda-{release}\n" in cmd.stdout
    assert f"release {release}, {RELEASES[release]}" in cmd.stdout
    assert f"/usr/local/cuda-{release}/lib64" in cmd.stdout


def test_default_module_follows_the_default(host) -> None:
    cmd = login(host, "module load cuda && echo $CUDA_HOME")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip().endswith(f"/usr/local/cuda-{DEFAULT}")


def test_one_sources_entry_signed_by_the_keyring(host) -> None:
    sources = host.file("/etc/apt/sources.list.d/dlstack-cuda-toolkit.sources")
    assert "URIs: http://127.0.0.1:8555/compute/cuda/repos/debian" in sources.content_string
    assert "Signed-By: /usr/share/keyrings/cuda-archive-keyring.gpg" in sources.content_string
    assert host.file("/usr/share/keyrings/cuda-archive-keyring.gpg").exists
    # cuda-keyring's own entry is removed: one entry per repository
    assert not host.run("ls /etc/apt/sources.list.d/cuda-*.list").stdout.strip()


def test_cudnn_pinned_release_held(host) -> None:
    for name in ("libcudnn9-cuda-12", "libcudnn9-dev-cuda-12"):
        pkg = host.package(name)
        assert pkg.is_installed and pkg.version == "9.3.0.75-1", (name, pkg.version)   # not the newer 9.8.0
    held = host.run("apt-mark showhold").stdout.split()
    assert {"libcudnn9-cuda-12", "libcudnn9-dev-cuda-12"} <= set(held)


def test_cudnn_version_readable_where_cuda_finds_it(host) -> None:
    header = host.file("/usr/include/cudnn_version.h")
    assert header.is_symlink   # the update-alternatives group libcudnn
    text = header.content_string
    assert "#define CUDNN_MAJOR 9" in text and "#define CUDNN_MINOR 3" in text
    assert host.file("/usr/lib/x86_64-linux-gnu/libcudnn.so.9").exists
