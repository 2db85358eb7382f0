"""Verify the cudnn role's archive method: NVIDIA's real cuDNN 9.3.0 (assembled from the
nvidia-cudnn-cu12 wheel into the redistributable tarball's layout), unpacked once and linked
into both CUDA releases, found by the dynamic linker through /usr/local/cuda/lib64.
"""

from __future__ import annotations

import pytest

TOP = "/opt/nvidia/cudnn/cudnn-linux-x86_64-9.3.0.75_cuda12-archive"
RELEASES = ["12.5", "12.8"]
LOAD = ("import ctypes; lib = ctypes.CDLL('{name}'); "
        "lib.cudnnGetVersion.restype = ctypes.c_size_t; print(lib.cudnnGetVersion())")


def test_archive_unpacked_once_with_its_marker(host) -> None:
    tree = host.file(TOP)
    assert tree.is_directory and tree.user == "root" and tree.mode == 0o755
    marker = host.file(f"{TOP}/.dlstack-archive.sha256").content_string
    assert marker.endswith("  cudnn-linux-x86_64-9.3.0.75_cuda12-archive.tar.xz\n")
    assert host.file(f"{TOP}/lib/libcudnn.so.9.3.0").size > 50000   # NVIDIA's library, not a stand-in
    # nothing left of the download and the unpacking
    assert host.run("ls -d /tmp/dlstack-cudnn.* /opt/nvidia/cudnn/.partial-* 2>/dev/null").stdout == ""


@pytest.mark.parametrize("release", RELEASES)
def test_headers_and_libraries_where_the_release_finds_them(host, release: str) -> None:
    include = f"/usr/local/cuda-{release}/include"
    header = host.file(f"{include}/cudnn_version.h")
    assert header.is_symlink and header.linked_to == f"{TOP}/include/cudnn_version.h"
    text = header.content_string
    assert "#define CUDNN_MAJOR 9" in text and "#define CUDNN_MINOR 3" in text and "#define CUDNN_PATCHLEVEL 0" in text
    assert host.file(f"{include}/cudnn.h").exists
    lib64 = f"/usr/local/cuda-{release}/lib64"
    real = host.file(f"{lib64}/libcudnn.so.9.3.0")
    assert real.is_symlink and real.linked_to == f"{TOP}/lib/libcudnn.so.9.3.0"
    # soname links as ldconfig expects them (relative, in the directory), so it never rewrites them
    assert host.run(f"readlink {lib64}/libcudnn.so.9").stdout.strip() == "libcudnn.so.9.3.0"
    assert host.run(f"readlink {lib64}/libcudnn.so").stdout.strip() == "libcudnn.so.9"
    # the toolkit's own files are untouched
    assert host.file(f"{lib64}/libcudart.so.12").exists


def test_dynamic_linker_finds_cudnn_through_the_default_release(host) -> None:
    cache = host.run("ldconfig -p").stdout
    assert "libcudnn.so.9 (libc6,x86-64) => /usr/local/cuda/lib64/libcudnn.so.9" in cache
    assert "libcudnn_ops.so.9 (libc6,x86-64) => /usr/local/cuda/lib64/libcudnn_ops.so.9" in cache


def test_real_cudnn_loads_and_reports_its_version(host) -> None:
    # NVIDIA's library, loaded by soname through the linker cache; cudnnGetVersion needs no GPU
    cmd = host.run(f"python3 -c {LOAD.format(name='libcudnn.so.9')!r}")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "90300"


def test_other_release_loads_its_own_links(host) -> None:
    cmd = host.run(f"LD_LIBRARY_PATH=/usr/local/cuda-12.8/lib64 python3 -c {LOAD.format(name='libcudnn.so.9')!r}")
    assert cmd.rc == 0 and cmd.stdout.strip() == "90300", cmd.stderr
