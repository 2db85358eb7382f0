"""Verify the cudnn role's archive method: NVIDIA's real cuDNN 9.13.0 for CUDA 13 (assembled
from the nvidia-cudnn-cu13 wheel into the redistributable tarball's layout; its headers and its
small libraries), unpacked once and linked into every CUDA 13 release of the node (13.0 on
Debian 12, 13.1 and 13.2 on Debian 13), found by the dynamic linker through /usr/local/cuda/lib64.
"""

from __future__ import annotations

import re

import pytest

TOP = "/opt/nvidia/cudnn/cudnn-linux-x86_64-9.13.0.50_cuda13-archive"
RELEASES = {"cudnn_archive-debian12": ["13.0"], "cudnn_archive-debian13": ["13.1", "13.2"]}


def releases(host) -> list[str]:
    return RELEASES[host.backend.get_hostname()]
LOAD = ("import ctypes; lib = ctypes.CDLL('{name}'); "
        "lib.cudnnGetVersion.restype = ctypes.c_size_t; print(lib.cudnnGetVersion())")


def test_archive_unpacked_once_with_its_marker(host) -> None:
    tree = host.file(TOP)
    assert tree.is_directory and tree.user == "root" and tree.mode == 0o755
    marker = host.file(f"{TOP}/.dlstack-archive.sha256").content_string
    assert marker.endswith("  cudnn-linux-x86_64-9.13.0.50_cuda13-archive.tar.xz\n")
    assert host.file(f"{TOP}/lib/libcudnn.so.9.13.0").size > 50000   # NVIDIA's library, not a stand-in
    # nothing left of the download and the unpacking
    assert host.run("ls -d /tmp/dlstack-cudnn.* /opt/nvidia/cudnn/.partial-* 2>/dev/null").stdout == ""


@pytest.mark.parametrize("index", [0, 1])
def test_headers_and_libraries_where_the_release_finds_them(host, index: int) -> None:
    if index >= len(releases(host)):
        pytest.skip("this node has one CUDA 13 release")
    release = releases(host)[index]
    include = f"/usr/local/cuda-{release}/include"
    header = host.file(f"{include}/cudnn_version.h")
    assert header.is_symlink and header.linked_to == f"{TOP}/include/cudnn_version.h"
    text = header.content_string
    assert "#define CUDNN_MAJOR 9" in text and "#define CUDNN_MINOR 13" in text and "#define CUDNN_PATCHLEVEL 0" in text
    assert host.file(f"{include}/cudnn.h").exists
    lib64 = f"/usr/local/cuda-{release}/lib64"
    real = host.file(f"{lib64}/libcudnn.so.9.13.0")
    assert real.is_symlink and real.linked_to == f"{TOP}/lib/libcudnn.so.9.13.0"
    # soname links as ldconfig expects them (relative, in the directory), so it never rewrites them
    assert host.run(f"readlink {lib64}/libcudnn.so.9").stdout.strip() == "libcudnn.so.9.13.0"
    assert host.run(f"readlink {lib64}/libcudnn.so").stdout.strip() == "libcudnn.so.9"
    # the toolkit's own files are untouched
    assert host.file(f"{lib64}/libcudart.so.13").exists


def test_dynamic_linker_finds_cudnn_through_the_default_release(host) -> None:
    # through /usr/local/cuda: the role's lib64 entry, or NVIDIA's own 000_cuda.conf entry for
    # the same directory (lib64 is a link to targets/x86_64-linux/lib; ldconfig scans it once)
    cache = host.run("ldconfig -p").stdout
    for name in ("libcudnn.so.9", "libcudnn_graph.so.9"):
        assert re.search(rf"{re.escape(name)} \(libc6,x86-64\) => /usr/local/cuda/(lib64|targets/x86_64-linux/lib)/"
                         rf"{re.escape(name)}\n", cache), cache


def test_real_cudnn_loads_and_reports_its_version(host) -> None:
    # NVIDIA's library, loaded by soname through the linker cache; cudnnGetVersion needs no GPU
    cmd = host.run(f"python3 -c {LOAD.format(name='libcudnn.so.9')!r}")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "91300"


def test_every_release_loads_its_own_links(host) -> None:
    for release in releases(host):
        cmd = host.run(f"LD_LIBRARY_PATH=/usr/local/cuda-{release}/lib64 python3 -c {LOAD.format(name='libcudnn.so.9')!r}")
        assert cmd.rc == 0 and cmd.stdout.strip() == "91300", (release, cmd.stderr)
