# -*- coding: utf-8 -*-
"""Assemble the pygpu wheel (pygpu + libgpuarray) from Debian binary packages, reproducibly.

pygpu (libgpuarray's Python bindings, what Theano needs for the GPU) is not on PyPI, and
libgpuarray's upstream source is not reachable from here; Debian 12 builds both for CPython
3.11 (``python3-pygpu``, ``libgpuarray3``). This turns those two ``.deb`` files into one
wheel that carries libgpuarray inside (``pygpu.libs/libgpuarray.so.3``), so an env gets
pygpu like any pinned package, on any glibc at least as new as the one the binaries need.

The wheel is byte-for-byte reproducible from the same ``.deb`` files (sorted members, fixed
timestamps and modes, stored without compression so no zlib version can change a byte):
its sha256 is pinned in the Theano lock like any other file, and a wheel assembled anywhere
else from the same packages installs under that pin. Shared by the module
``python_envs_pygpu_wheel`` and ``files/python_envs/relock``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile
from collections.abc import Iterable

# A fixed timestamp for every member: the wheel's bytes depend only on the packages.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
PYGPU_PREFIX = "usr/lib/python3/dist-packages/"
LIBGPUARRAY = "usr/lib/libgpuarray.so.3"
# Prepended to pygpu/__init__.py: the extension modules ask the dynamic loader for
# libgpuarray.so.3 (DT_NEEDED, no RPATH); once the bundled copy is loaded, the loader
# matches that soname to it. (delvewheel patches __init__.py the same way on Windows.)
PRELOAD = '''# dlstack: this wheel carries libgpuarray (pygpu.libs/, from Debian's libgpuarray3). Load it
# before the extension modules below ask the dynamic loader for libgpuarray.so.3.
def _dlstack_load_libgpuarray():
    import ctypes
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    ctypes.CDLL(os.path.join(here, os.pardir, "pygpu.libs", "libgpuarray.so.3"))


_dlstack_load_libgpuarray()
del _dlstack_load_libgpuarray

'''
GLIBC_RE = re.compile(rb"GLIBC_2\.(\d+)")
DEB_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


class WheelError(Exception):
    """The packages cannot be turned into the wheel; the message says why."""


def ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an ``ar`` archive (a ``.deb``), by name."""
    if not data.startswith(b"!<arch>\n"):
        raise WheelError("not an ar archive (a .deb starts with '!<arch>')")
    members: dict[str, bytes] = {}
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset:offset + 60]
        if header[58:60] != b"`\n":
            raise WheelError(f"corrupt ar member header at byte {offset}")
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = offset + 60
        members[name] = data[start:start + size]
        offset = start + size + (size % 2)
    return members


def deb_files(data: bytes) -> tuple[dict[str, str], dict[str, bytes], dict[str, str]]:
    """``(control fields, regular files by path, symlinks by path)`` of a ``.deb``."""
    members = ar_members(data)
    control_name = next((n for n in members if n.startswith("control.tar")), None)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if control_name is None or data_name is None:
        raise WheelError("a .deb needs control.tar.* and data.tar.* members")
    fields: dict[str, str] = {}
    for path, content in _tar_files(members[control_name])[0].items():
        if path == "control":
            for line in content.decode("utf-8").splitlines():
                if ":" in line and not line.startswith(" "):
                    key, value = line.split(":", 1)
                    fields[key.strip()] = value.strip()
    files, links = _tar_files(members[data_name])
    return fields, files, links


def _tar_files(data: bytes) -> tuple[dict[str, bytes], dict[str, str]]:
    """Regular files and symlinks of a (compressed) tar member, paths without ``./``."""
    try:
        # closed by the `with archive:` below; only opening errors are caught here
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
    except tarfile.TarError as exc:
        raise WheelError(f"cannot read a .deb member ({exc}); zstd members need Python 3.14") from exc
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    with archive:
        for info in archive.getmembers():
            path = info.name[2:] if info.name.startswith("./") else info.name
            if info.isfile():
                handle = archive.extractfile(info)
                files[path] = handle.read() if handle else b""
            elif info.issym():
                links[path] = info.linkname
    return files, links


def glibc_minor(binaries: Iterable[bytes]) -> int:
    """The highest ``GLIBC_2.N`` symbol version the ELF files refer to (their glibc floor)."""
    found = [int(m) for data in binaries for m in GLIBC_RE.findall(data)]
    return max(found) if found else 17


def _record_hash(content: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}"


def pygpu_wheel(debs: dict[str, bytes], sources: list[dict[str, str]]) -> tuple[str, bytes]:
    """Assemble the pygpu wheel from the ``python3-pygpu`` and ``libgpuarray3`` packages.

    ``debs``: package file name -> bytes; ``sources``: what to record about them (``url``,
    ``sha256``), written to the wheel's ``dist-info/DLSTACK_SOURCES``. Returns ``(wheel
    file name, wheel bytes)``. Takes the pygpu package (without its generated ``.c``
    sources), the egg-info's metadata, Debian's copyright files, and libgpuarray's shared
    library under its soname; the tags come from the packages: ``cpXY`` from the extension
    modules' names, the architecture from the package, the manylinux glibc floor from the
    symbol versions the binaries need.
    """
    parsed = {name: deb_files(data) for name, data in sorted(debs.items())}
    by_package = {fields.get("Package", ""): (fields, files, links) for fields, files, links in parsed.values()}
    if set(by_package) != {"python3-pygpu", "libgpuarray3"}:
        raise WheelError(f"need exactly python3-pygpu and libgpuarray3, got {', '.join(sorted(by_package))}")
    py_fields, py_files, _ = by_package["python3-pygpu"]
    lib_fields, lib_files, lib_links = by_package["libgpuarray3"]
    if py_fields.get("Architecture") != lib_fields.get("Architecture"):
        raise WheelError("python3-pygpu and libgpuarray3 are built for different architectures")
    machine = DEB_ARCH.get(py_fields.get("Architecture", ""))
    if machine is None:
        raise WheelError(f"unsupported architecture {py_fields.get('Architecture')!r}")
    library = lib_files.get(LIBGPUARRAY) or lib_files.get(os.path.normpath(os.path.join(
        os.path.dirname(LIBGPUARRAY), lib_links.get(LIBGPUARRAY, ""))))
    if not library:
        raise WheelError(f"libgpuarray3 has no {LIBGPUARRAY}")
    egg = {path.rsplit("/", 1)[1]: data for path, data in py_files.items()
           if path.startswith(PYGPU_PREFIX) and ".egg-info/" in path}
    version = _field(egg.get("PKG-INFO", b""), "Version")
    package = {path[len(PYGPU_PREFIX):]: data for path, data in py_files.items()
               if path.startswith(PYGPU_PREFIX + "pygpu/") and not path.endswith(".c")}
    abis = {m.group(1) for p in package for m in [re.search(r"\.cpython-(\d+)-", p)] if m}
    if len(abis) != 1 or not version:
        raise WheelError(f"python3-pygpu: expected one CPython ABI and a version, found {sorted(abis)} / {version!r}")
    abi = f"cp{abis.pop()}"
    package["pygpu/__init__.py"] = PRELOAD.encode() + package["pygpu/__init__.py"]
    binaries = [data for path, data in package.items() if path.endswith(".so")] + [library]
    tag = f"{abi}-{abi}-manylinux_2_{glibc_minor(binaries)}_{machine}"
    name = f"pygpu-{version}-{tag}.whl"
    info = f"pygpu-{version}.dist-info"
    members = dict(package)
    members["pygpu.libs/libgpuarray.so.3"] = library
    for path, data in sorted({**py_files, **lib_files}.items()):
        if path.startswith("usr/share/doc/") and path.endswith("/copyright"):
            members[f"{info}/licenses/{path.split('/')[3]}.copyright"] = data
    members[f"{info}/METADATA"] = _metadata(version, abi, py_fields, lib_fields).encode()
    members[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: dlstack python_envs_wheel\n"
                                f"Root-Is-Purelib: false\nTag: {tag}\n").encode()
    members[f"{info}/top_level.txt"] = b"pygpu\n"
    members[f"{info}/DLSTACK_SOURCES"] = "".join(
        f"{s['sha256']}  {s['url']}\n" for s in sorted(sources, key=lambda s: s["url"])).encode()
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in sorted(members.items()))
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    return name, _zip(members)


def _field(pkg_info: bytes, key: str) -> str:
    for line in pkg_info.decode("utf-8", "replace").splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _metadata(version: str, abi: str, py_fields: dict[str, str], lib_fields: dict[str, str]) -> str:
    minor = abi[3:]
    return (
        "Metadata-Version: 2.1\n"
        "Name: pygpu\n"
        f"Version: {version}\n"
        "Summary: numpy-like wrapper on libgpuarray for GPU computations, with libgpuarray inside "
        f"(dlstack, from Debian's python3-pygpu {py_fields.get('Version')} and libgpuarray3 "
        f"{lib_fields.get('Version')})\n"
        "Home-page: https://github.com/Theano/libgpuarray\n"
        "License: ISC\n"
        f"Requires-Python: >=3.{minor},<3.{int(minor) + 1}\n"
        # Debian's python3-pygpu Depends: python3-numpy (>= 1:1.22.0), python3-mako (>= 0.7), python3-six
        "Requires-Dist: numpy>=1.22\n"
        "Requires-Dist: mako>=0.7\n"
        "Requires-Dist: six\n"
    )


def _zip(members: dict[str, bytes]) -> bytes:
    """A zip of ``members`` whose bytes depend only on their names and contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(members):
            info = zipfile.ZipInfo(path, date_time=ZIP_TIME)
            mode = 0o755 if path.endswith(".so") or ".so." in path else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.create_system = 3
            archive.writestr(info, members[path])
    return buffer.getvalue()
