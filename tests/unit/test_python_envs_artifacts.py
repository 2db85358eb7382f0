"""Unit tests for what python_envs makes besides envs: the pygpu wheel (module_utils and module),
the interpreter package (python_envs_python_build), and the locks (files/python_envs/relock).

The .deb files here are built in the test (ar + tar.xz, as dpkg-deb writes them) with
made-up contents: no network, no Debian package is needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from plugin_loader import load_by_path, load_module_utils, run_module

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "python_envs"
WHEEL_UTILS = ROLE / "module_utils" / "python_envs_wheel.py"
DIGEST = ROLE / "module_utils" / "python_envs_digest.py"
load_module_utils(WHEEL_UTILS, DIGEST)
w = load_by_path("python_envs_wheel", WHEEL_UTILS)
pb = load_by_path("python_envs_python_build", ROLE / "library" / "python_envs_python_build.py")


relock = load_by_path("relock", REPO / "files" / "python_envs" / "relock")


def _tar_xz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo("./" + path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for path, target in (links or {}).items():
            info = tarfile.TarInfo("./" + path)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def deb(control: dict[str, str], files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .deb: ar archive of debian-binary, control.tar.xz, data.tar.xz."""
    members = [("debian-binary", b"2.0\n"),
               ("control.tar.xz", _tar_xz({"control": "".join(f"{k}: {v}\n" for k, v in control.items()).encode()})),
               ("data.tar.xz", _tar_xz(files, links))]
    out = b"!<arch>\n"
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}".encode() + b"`\n" + data
        if len(data) % 2:
            out += b"\n"
    return out


ELF_311 = b"\x7fELF fake extension GLIBC_2.4 GLIBC_2.14"
LIB = b"\x7fELF fake libgpuarray GLIBC_2.17 GLIBC_2.34 GLIBC_2.2.5"
SITE = "usr/lib/python3/dist-packages/"
PYGPU_DEB = deb({"Package": "python3-pygpu", "Version": "0.7.6-13+b1", "Architecture": "amd64"}, {
    SITE + "pygpu/__init__.py": b"def get_include():\n    pass\n",
    SITE + "pygpu/gpuarray.cpython-311-x86_64-linux-gnu.so": ELF_311,
    SITE + "pygpu/gpuarray.c": b"/* generated */",
    SITE + "pygpu/gpuarray_api.h": b"/* api */",
    SITE + "pygpu-0.7.6.egg-info/PKG-INFO": b"Metadata-Version: 2.1\nName: pygpu\nVersion: 0.7.6\n",
    "usr/share/doc/python3-pygpu/copyright": b"License: ISC\n",
})
LIB_DEB = deb({"Package": "libgpuarray3", "Version": "0.7.6-13+b1", "Architecture": "amd64"},
              {"usr/lib/libgpuarray.so.3.0": LIB, "usr/share/doc/libgpuarray3/copyright": b"License: ISC\n"},
              {"usr/lib/libgpuarray.so.3": "libgpuarray.so.3.0"})
SOURCES = [{"url": "http://mirror/python3-pygpu.deb", "sha256": "1" * 64},
           {"url": "http://mirror/libgpuarray3.deb", "sha256": "2" * 64}]


# --- the pygpu wheel ------------------------------------------------------------------------


def test_deb_members_and_fields() -> None:
    fields, files, links = w.deb_files(LIB_DEB)
    assert fields["Package"] == "libgpuarray3" and fields["Architecture"] == "amd64"
    assert files["usr/lib/libgpuarray.so.3.0"] == LIB and links == {"usr/lib/libgpuarray.so.3": "libgpuarray.so.3.0"}
    with pytest.raises(w.WheelError, match="not an ar archive"):
        w.ar_members(b"PK\x03\x04")


def test_pygpu_wheel_is_reproducible_complete_and_tagged_by_its_binaries() -> None:
    name, data = w.pygpu_wheel({"a.deb": PYGPU_DEB, "b.deb": LIB_DEB}, SOURCES)
    # glibc floor from the highest GLIBC_2.N the binaries refer to; ABI from the extension's name
    assert name == "pygpu-0.7.6-cp311-cp311-manylinux_2_34_x86_64.whl"
    again = w.pygpu_wheel({"b.deb": LIB_DEB, "a.deb": PYGPU_DEB}, list(reversed(SOURCES)))
    assert again == (name, data)  # byte for byte, whatever the order
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert {i.date_time for i in archive.infolist()} == {w.ZIP_TIME}
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        assert archive.read("pygpu.libs/libgpuarray.so.3") == LIB
        assert "pygpu/gpuarray.c" not in names and "pygpu/gpuarray_api.h" in names
        init = archive.read("pygpu/__init__.py").decode()
        assert init.startswith(w.PRELOAD) and init.endswith("def get_include():\n    pass\n")
        meta = archive.read("pygpu-0.7.6.dist-info/METADATA").decode()
        assert "Requires-Dist: numpy>=1.22" in meta and "Requires-Python: >=3.11,<3.12" in meta
        assert "Tag: cp311-cp311-manylinux_2_34_x86_64" in archive.read("pygpu-0.7.6.dist-info/WHEEL").decode()
        sources = archive.read("pygpu-0.7.6.dist-info/DLSTACK_SOURCES").decode()
        assert sources == f"{'2' * 64}  http://mirror/libgpuarray3.deb\n{'1' * 64}  http://mirror/python3-pygpu.deb\n"
        record = archive.read("pygpu-0.7.6.dist-info/RECORD").decode().splitlines()
        assert len(record) == len(names) and record[-1] == "pygpu-0.7.6.dist-info/RECORD,,"
        assert (archive.getinfo("pygpu/gpuarray.cpython-311-x86_64-linux-gnu.so").external_attr >> 16) & 0o777 == 0o755


def test_pygpu_wheel_refuses_other_packages() -> None:
    with pytest.raises(w.WheelError, match="need exactly python3-pygpu and libgpuarray3"):
        w.pygpu_wheel({"a.deb": PYGPU_DEB}, SOURCES)
    arm = deb({"Package": "libgpuarray3", "Version": "0.7.6-13+b1", "Architecture": "arm64"},
              {"usr/lib/libgpuarray.so.3.0": LIB})
    with pytest.raises(w.WheelError, match="different architectures"):
        w.pygpu_wheel({"a.deb": PYGPU_DEB, "b.deb": arm}, SOURCES)


def test_the_preload_makes_the_bundled_library_load_first(tmp_path: Path) -> None:
    """The prepended code loads ../pygpu.libs/libgpuarray.so.3 by path before anything else."""
    calls: list[str] = []
    package = tmp_path / "pygpu"
    package.mkdir()
    code = w.PRELOAD.replace("import ctypes\n", "import types\n    ctypes = types.SimpleNamespace(CDLL=CALLS.append)\n")
    exec(compile(code, str(package / "__init__.py"), "exec"), {"__file__": str(package / "__init__.py"), "CALLS": calls})
    assert calls == [str(tmp_path / "pygpu" / ".." / "pygpu.libs" / "libgpuarray.so.3")]


def test_module_writes_the_wheel_once(tmp_path: Path) -> None:
    sources, dest = tmp_path / "sources", tmp_path / "local"
    sources.mkdir()
    (sources / "python3-pygpu.deb").write_bytes(PYGPU_DEB)
    (sources / "libgpuarray3.deb").write_bytes(LIB_DEB)
    debs = [{"url": "http://mirror/python3-pygpu.deb", "sha256": hashlib.sha256(PYGPU_DEB).hexdigest()},
            {"url": "http://mirror/libgpuarray3.deb", "sha256": hashlib.sha256(LIB_DEB).hexdigest()}]
    module = ROLE / "library" / "python_envs_pygpu_wheel.py"
    args = {"debs": debs, "sources": str(sources), "dest": str(dest)}
    rc, result = run_module(module, tmp_path, args, (WHEEL_UTILS,))
    assert rc == 0 and result["changed"] and result["name"] == "pygpu-0.7.6-cp311-cp311-manylinux_2_34_x86_64.whl"
    assert hashlib.sha256((dest / result["name"]).read_bytes()).hexdigest() == result["sha256"]
    rc, again = run_module(module, tmp_path, args, (WHEEL_UTILS,))
    assert rc == 0 and not again["changed"] and again["sha256"] == result["sha256"]
    debs[1]["sha256"] = "0" * 64
    rc, bad = run_module(module, tmp_path, args, (WHEEL_UTILS,))
    assert rc != 0 and bad["msg"].endswith(f"{sources}/libgpuarray3.deb does not have the sha256 {'0' * 64} "
                                           "of http://mirror/libgpuarray3.deb")


def test_module_in_check_mode_without_the_packages_says_it_cannot_predict_the_wheel(tmp_path: Path) -> None:
    """A fresh controller's store: check mode did not download the .deb files; changed, no name."""
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "python3-pygpu.deb").write_bytes(PYGPU_DEB)
    debs = [{"url": "http://mirror/python3-pygpu.deb", "sha256": hashlib.sha256(PYGPU_DEB).hexdigest()},
            {"url": "http://mirror/libgpuarray3.deb", "sha256": hashlib.sha256(LIB_DEB).hexdigest()}]
    module = ROLE / "library" / "python_envs_pygpu_wheel.py"
    args = {"debs": debs, "sources": str(sources), "dest": str(tmp_path / "local"), "_ansible_check_mode": True}
    rc, result = run_module(module, tmp_path, args, (WHEEL_UTILS,))
    assert rc == 0 and result["changed"] and result["blind"] and "name" not in result
    assert result["msg"] == ("python_envs on controller: check mode cannot predict the pygpu wheel: Debian's "
                             "libgpuarray3.deb not downloaded yet; the real run downloads them and assembles it")
    assert not (tmp_path / "local").exists()
    # outside check mode a missing package is an error, as before
    rc, result = run_module(module, tmp_path, {**args, "_ansible_check_mode": False}, (WHEEL_UTILS,))
    assert rc != 0 and "cannot read" in result["msg"]


# --- the interpreter package ----------------------------------------------------------------


def test_prefix_and_linked_libraries() -> None:
    assert pb.prefix_of(["--enable-shared", "--prefix=/opt/dlstack/python/3.11/"]) == "/opt/dlstack/python/3.11"
    with pytest.raises(pb.BuildError, match="--prefix"):
        pb.prefix_of(["--enable-shared"])
    ldd = ("\tlinux-vdso.so.1 (0x00007ffd)\n"
           "\tlibpython3.11.so.1.0 => /var/tmp/b/staging/opt/dlstack/python/3.11/lib/libpython3.11.so.1.0 (0x00007f1)\n"
           "\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f2)\n"
           "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f3)\n"
           "\t/lib64/ld-linux-x86-64.so.2 (0x00007f4)\n")
    assert pb.linked_libraries(ldd, "/var/tmp/b/staging") == {"/lib/x86_64-linux-gnu/libssl.so.3",
                                                              "/lib/x86_64-linux-gnu/libc.so.6"}
    readelf = (" 0x0000000000000001 (NEEDED)             Shared library: [libssl.so.3]\n"
               " 0x000000000000000e (SONAME)             Library soname: [libfoo.so.1]\n")
    assert pb.needed(readelf) == {"libssl.so.3"}
    # libc comes with libssl (ldd's closure), not from the file itself: not a Depends of ours
    assert pb.linked_libraries(ldd, "/var/tmp/b/staging", pb.needed(readelf)) == {"/lib/x86_64-linux-gnu/libssl.so.3"}
    assert pb.candidates("/lib/x/libz.so.1")[:2] == ["/lib/x/libz.so.1", "/usr/lib/x/libz.so.1"]


class FakeDpkg:
    """Plays ldd and dpkg-query for PythonBuilder.depends."""

    owners: ClassVar[dict[str, str]] = {"/usr/lib/x86_64-linux-gnu/libssl.so.3": "libssl3t64:amd64",
              "/usr/lib/x86_64-linux-gnu/libc.so.6": "libc6:amd64",
              "/usr/lib/x86_64-linux-gnu/libfoo.so.1": "libfoo1:amd64"}

    def __init__(self, libs: list[str]) -> None:
        self.libs = libs

    def __call__(self, cmd: list[str], **_: Any) -> tuple[int, str, str]:
        if cmd[0] == "ldd":
            return 0, "".join(f"\t{Path(lib).name} => {lib} (0x0000)\n" for lib in self.libs), ""
        if cmd[:2] == ["readelf", "-d"]:
            return 0, "".join(f" 0x1 (NEEDED) Shared library: [{Path(lib).name}]\n" for lib in self.libs), ""
        if cmd[:2] == ["dpkg-query", "-S"]:
            owner = self.owners.get(cmd[2])
            if cmd[2].startswith("/lib/") and "libssl" in cmd[2]:  # as Debian 13 answers for a diverted path
                return 0, f"diversion by libssl3t64 from: {cmd[2]}\n", ""
            return (0, f"{owner}: {cmd[2]}\n", "") if owner else (1, "", "no path found")
        if cmd[:2] == ["dpkg-query", "-W"]:
            return 0, {"libssl3t64": "3.5.1-1", "libc6": "2.41-12", "libfoo1": "1.0"}[cmd[-1]], ""
        raise AssertionError(cmd)


def test_depends_are_the_owners_of_the_linked_libraries(tmp_path: Path) -> None:
    root = tmp_path / "staging" / "opt" / "py"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3.11").write_bytes(b"\x7fELF" + bytes(12) + b"\x02\x00")  # ET_EXEC
    (root / "bin" / "idle3.11").write_text("#!/bin/sh\n")  # not ELF: not asked
    (root / "python.o").write_bytes(b"\x7fELF" + bytes(12) + b"\x01\x00")  # ET_REL: not asked either
    assert pb.elf_files(str(root)) == [str(root / "bin" / "python3.11")]
    params = {"configure": ["--prefix=/opt/py"], "runtime_packages": ["libc6", "libssl3t64"]}
    builder = pb.PythonBuilder(params, FakeDpkg(["/lib/x86_64-linux-gnu/libssl.so.3", "/lib/x86_64-linux-gnu/libc.so.6"]))
    assert builder.depends(str(root), str(tmp_path / "staging"), {}) == ["libc6 (>= 2.41-12)",
                                                                         "libssl3t64 (>= 3.5.1-1)"]
    builder = pb.PythonBuilder(params, FakeDpkg(["/lib/x86_64-linux-gnu/libfoo.so.1"]))
    with pytest.raises(pb.BuildError, match=re.escape("links /lib/x86_64-linux-gnu/libfoo.so.1 from libfoo1, not among")):
        builder.depends(str(root), str(tmp_path / "staging"), {})
    builder = pb.PythonBuilder(params, FakeDpkg(["/opt/elsewhere/libbar.so"]))
    with pytest.raises(pb.BuildError, match=re.escape("no installed package owns /opt/elsewhere/libbar.so")):
        builder.depends(str(root), str(tmp_path / "staging"), {})


def test_dpkg_owner_skips_diversions() -> None:
    assert pb.dpkg_owner("libssl3t64:amd64: /usr/lib/x86_64-linux-gnu/libssl.so.3\n") == "libssl3t64"
    assert pb.dpkg_owner("libc6:amd64, libc6-dev:amd64: /usr/lib/x\n") == "libc6"
    # Debian 13's t64 packages divert the /lib path: those lines name no owner (the /usr one does)
    assert pb.dpkg_owner("diversion by libreadline8t64 from: /lib/x86_64-linux-gnu/libreadline.so.8\n"
                         "diversion by libreadline8t64 to: /lib/x86_64-linux-gnu/libreadline.so.8.usr-is-merged\n") is None
    assert pb.dpkg_owner("") is None


def test_control_file() -> None:
    text = pb.control_text("dlstack-python3.11", "3.11.2+dlstack.0123", "amd64", ["libc6 (>= 2.41)"], 51234, "CPython")
    fields = dict(line.split(": ", 1) for line in text.splitlines() if not line.startswith(" "))
    assert fields == {"Package": "dlstack-python3.11", "Version": "3.11.2+dlstack.0123", "Architecture": "amd64",
                      "Maintainer": "dlstack <root@localhost>", "Section": "interpreters", "Priority": "optional",
                      "Installed-Size": "51234", "Depends": "libc6 (>= 2.41)", "Description": "CPython"}


def test_source_with_another_sha256_is_refused_before_anything_runs(tmp_path: Path) -> None:
    source = tmp_path / "Python-3.11.2.tgz"
    source.write_bytes(b"not the release")
    calls: list[list[str]] = []
    builder = pb.PythonBuilder({"source": str(source), "sha256": "0" * 64, "configure": ["--prefix=/opt/py"],
                                "jobs": 1, "version": "3.11.2+dlstack.x", "package": "p", "runtime_packages": []},
                               lambda cmd, **_: calls.append(cmd) or (0, "", ""))
    with pytest.raises(pb.BuildError, match="sha256 is not 0000"):
        builder.build(str(tmp_path / "work"), str(tmp_path / "p.deb"))
    assert calls == []


# --- relock ---------------------------------------------------------------------------------


def pylock(version: str, wheels: dict[str, str], sdist: tuple[str, str] | None = None) -> dict[str, Any]:
    return {"version": version, "wheels": wheels, "sdist": sdist}


def test_relock_header_and_arguments() -> None:
    header, args = relock.header_and_args("# About.\n# relock: --python 3.11 --sdist theano -- keras==2.3.1 "
                                          "'numpy<1.24'\nkeras==2.3.1 \\\n")
    assert header == ["# About.", "# relock: --python 3.11 --sdist theano -- keras==2.3.1 'numpy<1.24'"]
    with pytest.raises(relock.RelockError, match="--platform"):
        relock.parse_args(args)
    options = relock.parse_args(["--python", "3.11", "--platform", "x86_64-manylinux_2_40", "--", "keras==2.3.1",
                                 "numpy<1.24"])
    assert options.requirements == ["keras==2.3.1", "numpy<1.24"] and options.sdist == []
    with pytest.raises(relock.RelockError, match="exactly one"):
        relock.header_and_args("# nothing here\nsix==1.17.0\n")


def test_relock_merges_targets_and_keeps_only_allowed_sdists() -> None:
    results = {
        "cp311/x86_64": {"numpy": pylock("1.23.5", {"numpy-cp311-x86_64.whl": "a" * 64}, ("numpy.tar.gz", "s" * 64)),
                         "theano": pylock("1.0.5", {}, ("Theano-1.0.5.tar.gz", "t" * 64))},
        "cp311/aarch64": {"numpy": pylock("1.23.5", {"numpy-cp311-aarch64.whl": "b" * 64}, ("numpy.tar.gz", "s" * 64)),
                          "theano": pylock("1.0.5", {}, ("Theano-1.0.5.tar.gz", "t" * 64))},
    }
    merged = relock.merge(results, ["Theano"])
    assert merged == {"numpy": {"version": "1.23.5", "hashes": {"a" * 64: "numpy-cp311-x86_64.whl",
                                                                "b" * 64: "numpy-cp311-aarch64.whl"}},
                      "theano": {"version": "1.0.5", "hashes": {"t" * 64: "Theano-1.0.5.tar.gz"}}}
    assert relock.render(["# head"], merged) == (
        "# head\nnumpy==1.23.5 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:" + "b" * 64 + "\n"
        "theano==1.0.5 \\\n    --hash=sha256:" + "t" * 64 + "\n")
    with pytest.raises(relock.RelockError, match=r"theano==1.0.5 has no wheel for cp311/aarch64.*--sdist"):
        relock.merge(results, [])
    results["cp311/aarch64"]["numpy"] = pylock("1.24.0", {"n.whl": "c" * 64})
    with pytest.raises(relock.RelockError, match=r"targets resolve differently \(numpy: 1.24.0 \(cp311/aarch64\) / 1.23.5"):
        relock.merge(results, ["theano"])


def test_relocked_files_parse_as_the_role_reads_them() -> None:
    """relock's output is what the role's filter accepts (each pin with its hashes)."""
    filters = load_by_path("python_envs_filters_artifacts", ROLE / "filter_plugins" / "python_envs.py")
    text = relock.render(["# relock: --python 3.11 --platform p -- six"],
                         {"six": {"version": "1.17.0", "hashes": {"a" * 64: "six.whl", "b" * 64: "six.tar.gz"}}})
    parsed = filters.parse_requirements(text, "six.txt")
    assert parsed["problems"] == [] and parsed["pins"][0]["hashes"] == ["a" * 64, "b" * 64]
    assert json.loads(json.dumps(relock.current_pins(text))) == ["six==1.17.0"]
