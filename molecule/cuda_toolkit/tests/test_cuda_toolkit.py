"""Verify cuda_toolkit and cudnn (nvidia method) on the nodes, after side_effect.yml switched
the default release (Debian 12: 12.5 -> 12.8, Debian 13: 13.1 -> 13.2) and cuDNN (Debian 12:
9.3.0 -> 9.13.0, whose headers are a package of their own).

The toolkits come from the fixture repositories generated from tests/fixtures/nvidia_repo/
facts.yml: their nvcc is a stand-in script that prints the release's `nvcc --version` text and
their libraries are text files, so what is tested here is the packaging, the side-by-side
layout, the default switch, PATH, the linker configuration and the modulefiles, not CUDA
itself (the cudnn_archive scenario loads NVIDIA's real cuDNN libraries).
"""

from __future__ import annotations

import json

import pytest
from testinfra.backend.base import CommandResult

# host -> release -> nvcc's version; the default after side_effect.yml's switch
RELEASES = {
    "cuda_toolkit-debian12": {"12.5": "V12.5.82", "12.8": "V12.8.93"},
    "cuda_toolkit-debian13": {"13.1": "V13.1.80", "13.2": "V13.2.27"},
}
DEFAULT = {"cuda_toolkit-debian12": "12.8", "cuda_toolkit-debian13": "13.2"}
CUDNN = ["libcudnn9-cuda-12", "libcudnn9-dev-cuda-12", "libcudnn9-headers-cuda-12"]


def releases(host) -> dict[str, str]:
    return RELEASES[host.backend.get_hostname()]


def default(host) -> str:
    return DEFAULT[host.backend.get_hostname()]


def is_debian12(host) -> bool:
    return host.backend.get_hostname().endswith("debian12")


def login(host, command: str) -> CommandResult:
    """Run a command in a login shell, as a user would get it."""
    return host.run(f"bash -lc {command!r}")


@pytest.mark.parametrize("index", [0, 1])
def test_releases_side_by_side(host, index: int) -> None:
    release = sorted(releases(host))[index]
    assert host.package(f"cuda-toolkit-{release.replace('.', '-')}").is_installed
    root = f"/usr/local/cuda-{release}"
    assert json.loads(host.file(f"{root}/version.json").content_string)["cuda"]["version"].startswith(release)
    nvcc = host.run(f"{root}/bin/nvcc --version")
    assert nvcc.rc == 0 and f"release {release}, {releases(host)[release]}" in nvcc.stdout
    assert host.file(f"{root}/lib64/libcudart.so.{release.split('.')[0]}").exists


def test_default_is_the_switched_release(host) -> None:
    link = host.file("/usr/local/cuda")
    assert link.is_symlink and link.linked_to == f"/usr/local/cuda-{default(host)}"
    query = host.run("update-alternatives --query cuda").stdout
    assert "Status: manual" in query and f"Value: /usr/local/cuda-{default(host)}" in query
    # both releases stay registered, the other one is only not selected
    assert all(f"Alternative: /usr/local/cuda-{r}" in query for r in releases(host))


def test_login_shell_gets_the_default(host) -> None:
    cmd = login(host, "command -v nvcc; echo $CUDA_HOME; nvcc --version")
    assert cmd.rc == 0, cmd.stderr
    lines = cmd.stdout.splitlines()
    assert lines[0] == "/usr/local/cuda/bin/nvcc"
    assert lines[1] == "/usr/local/cuda"
    assert f"release {default(host)}, {releases(host)[default(host)]}" in cmd.stdout
    snippet = host.file("/etc/profile.d/dlstack-cuda.sh")
    assert snippet.user == "root" and snippet.mode == 0o644


def test_linker_configuration_names_lib64(host) -> None:
    conf = host.file("/etc/ld.so.conf.d/dlstack-cuda.conf")
    assert conf.mode == 0o644
    entries = [line for line in conf.content_string.splitlines() if line and not line.startswith("#")]
    assert entries == ["/usr/local/cuda/lib64"]
    # ldconfig reads the directory (the fixture's libraries are text files, so `ldconfig -p`
    # lists none of them here; the cudnn_archive scenario checks it with real libraries)
    # (NVIDIA's 000_cuda.conf names the same directory, lib64 being a link to
    # targets/x86_64-linux/lib: ldconfig scans it once, under the name it meets first)
    scanned = host.run("ldconfig -v 2>/dev/null | grep -E '^/usr/local/cuda/(lib64|targets/x86_64-linux/lib):'")
    assert scanned.rc == 0, scanned.stdout
    # NVIDIA's packages add their own entries (targets/x86_64-linux/lib), which the role accepts
    major = default(host).split(".")[0]
    assert host.file("/etc/ld.so.conf.d/000_cuda.conf").content_string == "/usr/local/cuda/targets/x86_64-linux/lib\n"
    assert host.file(f"/etc/ld.so.conf.d/988_cuda-{major}.conf").content_string == \
        f"/usr/local/cuda-{major}/targets/x86_64-linux/lib\n"


@pytest.mark.parametrize("index", [0, 1])
def test_modulefile_per_release(host, index: int) -> None:
    release = sorted(releases(host))[index]
    cmd = login(host, f"module load cuda/{release} && echo $CUDA_HOME && nvcc --version && echo $LD_LIBRARY_PATH")
    assert cmd.rc == 0, cmd.stderr
    assert f"/usr/local/cuda-{release}\n" in cmd.stdout
    assert f"release {release}, {releases(host)[release]}" in cmd.stdout
    assert f"/usr/local/cuda-{release}/lib64" in cmd.stdout


def test_default_module_follows_the_default(host) -> None:
    cmd = login(host, "module load cuda && echo $CUDA_HOME")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip().endswith(f"/usr/local/cuda-{default(host)}")


def test_one_sources_entry_signed_by_the_keyring(host) -> None:
    # the nvidia_repo role's entry, shared with nvidia_driver: one entry per repository
    dist = "debian" + host.system_info.release.split(".")[0]
    sources = host.file("/etc/apt/sources.list.d/nvidia-cuda.sources")
    assert f"URIs: http://127.0.0.1:8555/compute/cuda/repos/{dist}/x86_64/\n" in sources.content_string
    assert "Signed-By: /usr/share/keyrings/cuda-archive-keyring.gpg" in sources.content_string
    assert host.file("/usr/share/keyrings/cuda-archive-keyring.gpg").exists
    # cuda-keyring's own entry is removed, and so is the one earlier dlstack versions wrote
    assert not host.run("ls /etc/apt/sources.list.d/cuda-*.list").stdout.strip()
    assert not host.file("/etc/apt/sources.list.d/dlstack-cuda-toolkit.sources").exists


def test_cudnn_switched_release_held_with_its_headers_package(host) -> None:
    if not is_debian12(host):
        pytest.skip("NVIDIA's debian13 repository has no cuDNN")
    for name in CUDNN:
        pkg = host.package(name)
        assert pkg.is_installed and pkg.version == "9.13.0.50-1", (name, pkg.version)
    held = host.run("apt-mark showhold").stdout.split()
    assert set(CUDNN) <= set(held)


def test_no_cudnn_on_debian13(host) -> None:
    if is_debian12(host):
        pytest.skip("Debian 12's node has cuDNN")
    assert not host.run("dpkg-query -W 'libcudnn*' 2>/dev/null").stdout.strip()


def test_cudnn_version_readable_where_cuda_finds_it(host) -> None:
    if not is_debian12(host):
        pytest.skip("NVIDIA's debian13 repository has no cuDNN")
    # the headers package's unversioned names, and the dev package's alternatives
    multiarch = host.file("/usr/include/x86_64-linux-gnu/cudnn_version.h")
    assert multiarch.is_symlink and multiarch.linked_to.endswith("cudnn_version_v9.h")
    header = host.file("/usr/include/cudnn_version.h")
    assert header.is_symlink   # the update-alternatives group libcudnn
    text = header.content_string
    assert "#define CUDNN_MAJOR 9" in text and "#define CUDNN_MINOR 13" in text
    assert host.file("/usr/lib/x86_64-linux-gnu/libcudnn.so.9").exists
