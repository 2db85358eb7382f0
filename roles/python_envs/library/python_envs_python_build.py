#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Build CPython from its source tarball into a Debian package, once per platform."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: python_envs_python_build
short_description: Build a CPython release from source into a .deb under a dlstack prefix
description:
  - Builds the CPython source tarball O(source) (its sha256 checked against O(sha256)) with
    C(./configure) O(configure), C(make) and C(make install) into a staging directory, strips
    the binaries, checks that the standard library's compiled modules import (ssl, sqlite3,
    ctypes, lzma, bz2, zlib, readline, curses, uuid, dbm.gnu, decimal), and packages the
    result as O(package) version O(version) with C(dpkg-deb), in O(dest). Nothing outside the
    staging directory and O(dest) is written; the system Python is never touched.
  - The package's Depends are the packages (C(dpkg-query -S)) of the shared libraries the
    interpreter and its modules link themselves (C(readelf -d) NEEDED, resolved by C(ldd)),
    each C(>=) the version built against; every
    one must be in O(runtime_packages) (the role installs that list on the nodes, also when
    they are offline), else the build fails naming the library and its package.
  - Idempotent - when O(dest)/O(package)_O(version)_ARCH.deb exists, nothing is built.
    Check mode reports whether a build would run.
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  source:
    description: The CPython source tarball (C(.tgz), C(.tar.xz)) on the node.
    type: path
    required: true
  sha256:
    description: Its sha256.
    type: str
    required: true
  configure:
    description: Arguments of C(./configure), the prefix (C(--prefix=...)) among them.
    type: list
    elements: str
    required: true
  package:
    description: Name of the Debian package (C(dlstack-python3.11)).
    type: str
    required: true
  version:
    description: Version of the package (C(3.11.2+dlstack.RECIPE)).
    type: str
    required: true
  dest:
    description: Directory the package is written to.
    type: path
    required: true
  runtime_packages:
    description: The packages the interpreter may depend on (its Depends must be among them).
    type: list
    elements: str
    default: []
  jobs:
    description: Parallel C(make) jobs; 0 means one per CPU.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Needs a compiler, make, pkg-config and the -dev packages of the libraries above (the role
    installs them on the building node only), and C(dpkg-deb), C(dpkg-query), C(ldd), C(strip), C(readelf).
"""

EXAMPLES = r"""
- name: Build CPython 3.11.2 for this platform
  python_envs_python_build:
    source: /var/tmp/dlstack-python/Python-3.11.2.tgz
    sha256: 2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849
    configure: [--prefix=/opt/dlstack/python/3.11, --enable-shared, "LDFLAGS=-Wl,-rpath=/opt/dlstack/python/3.11/lib"]
    package: dlstack-python3.11
    version: 3.11.2+dlstack.0123456789ab
    dest: /var/lib/dlstack/packages
"""

RETURN = r"""
deb:
  description: Path of the package.
  returned: always
  type: str
sha256:
  description: sha256 of the package (when it exists).
  returned: when the package exists
  type: str
size:
  description: Size of the package in bytes.
  returned: when the package exists
  type: int
depends:
  description: The package's Depends.
  returned: when built
  type: list
seconds:
  description: Time the build took (configure to package).
  returned: always
  type: float
"""

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.python_envs_digest import sha256_of

# Compiled modules of the standard library that must import (each needs a -dev package).
MODULES = ("ssl", "sqlite3", "ctypes", "lzma", "bz2", "zlib", "readline", "curses", "uuid", "dbm.gnu",
           "decimal", "hashlib", "json")
LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x[0-9a-f]+\)\s*$")
NEEDED_LINE = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")
Runner = Callable[..., "tuple[int, str, str]"]


class BuildError(Exception):
    """A step failed; the message says which and why."""


def prefix_of(configure: list[str]) -> str:
    """The ``--prefix=`` of the configure arguments."""
    for arg in configure:
        if arg.startswith("--prefix="):
            return arg.split("=", 1)[1].rstrip("/")
    raise BuildError("configure needs --prefix=PATH")


def elf_files(root: str) -> list[str]:
    """Every ELF executable and shared object under ``root`` (the interpreter, libpython, the
    extension modules; not relocatable objects such as config-3.11/python.o)."""
    found = []
    for top, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(top, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as handle:
                header = handle.read(18)
            # e_type (offset 16, either byte order): 2 executable, 3 shared object
            if header[:4] == b"\x7fELF" and len(header) == 18 and (header[16] in (2, 3) or header[17] in (2, 3)):
                found.append(path)
    return sorted(found)


def needed(readelf_output: str) -> set[str]:
    """The sonames an ELF file asks for itself (``readelf -d``'s NEEDED entries)."""
    return set(NEEDED_LINE.findall(readelf_output))


def linked_libraries(ldd_output: str, staging: str, direct: set[str] | None = None) -> set[str]:
    """Paths of the shared libraries an ``ldd`` output resolves outside the staging tree; only
    those of the sonames in ``direct`` when given (ldd lists the whole closure: libssl's own
    libraries are libssl's package's business)."""
    libs = set()
    for line in ldd_output.splitlines():
        match = LDD_LINE.match(line)
        if match and not match.group(2).startswith(staging) and (direct is None or match.group(1) in direct):
            libs.add(match.group(2))
    return libs


def candidates(path: str) -> list[str]:
    """The names dpkg may know a library by (merged /usr: /lib/x and /usr/lib/x)."""
    real = os.path.realpath(path)
    names = []
    for item in (path, real):
        names.append(item)
        if item.startswith("/usr/"):
            names.append(item[4:])
        else:
            names.append("/usr" + item)
    return list(dict.fromkeys(names))


def dpkg_owner(output: str) -> str | None:
    """The package of a path from ``dpkg-query -S`` output (``pkg:arch: path``, maybe after
    ``diversion by ...`` lines, which name no owner); None when no line does."""
    for line in output.splitlines():
        if not line.strip() or line.startswith("diversion by ") or ": " not in line:
            continue
        return line.split(": ", 1)[0].split(",")[0].strip().split(":")[0]
    return None


def control_text(package: str, version: str, arch: str, depends: list[str], size_kb: int, summary: str) -> str:
    """The DEBIAN/control of the package."""
    return (f"Package: {package}\nVersion: {version}\nArchitecture: {arch}\n"
            "Maintainer: dlstack <root@localhost>\nSection: interpreters\nPriority: optional\n"
            f"Installed-Size: {size_kb}\nDepends: {', '.join(depends)}\n"
            f"Description: {summary}\n"
            " CPython built from its source tarball by the python_envs role of dlstack, installed\n"
            " under its own prefix beside the system Python, for the envs that need it.\n")


class PythonBuilder:
    """The build, step by step; every command goes through ``run``."""

    def __init__(self, params: dict[str, Any], run: Runner) -> None:
        self.p = params
        self.run = run
        self.prefix = prefix_of(params["configure"])

    def step(self, cmd: list[str], what: str, **kwargs: Any) -> str:
        """Run one command; fail with its last output lines."""
        rc, out, err = self.run(cmd, **kwargs)
        if rc != 0:
            tail = " | ".join((err or out).strip().splitlines()[-5:])
            raise BuildError(f"{what} failed (rc={rc}): {tail}")
        return out

    def build(self, work: str, deb: str) -> dict[str, Any]:
        """Unpack, configure, make, install into staging, check, package into ``deb``."""
        if sha256_of(self.p["source"]) != self.p["sha256"]:
            raise BuildError(f"{self.p['source']}: sha256 is not {self.p['sha256']}")
        self.step(["tar", "-xf", self.p["source"], "-C", work], "unpacking the source")
        tops = [d for d in os.listdir(work) if os.path.isfile(os.path.join(work, d, "configure"))]
        if len(tops) != 1:
            raise BuildError(f"the tarball holds no single source tree with a configure script ({tops})")
        src = os.path.join(work, tops[0])
        jobs = str(self.p["jobs"] or os.cpu_count() or 1)
        self.step(["./configure", *self.p["configure"]], "configure", cwd=src)
        self.step(["make", "-j", jobs], "make", cwd=src)
        staging = os.path.join(work, "staging")
        self.step(["make", "install", f"DESTDIR={staging}"], "make install", cwd=src)
        root = staging + self.prefix
        for path in elf_files(root):
            self.step(["strip", "--strip-unneeded", path], f"strip {os.path.relpath(path, staging)}")
        minor = ".".join(self.p["version"].split("+", 1)[0].split(".")[:2])
        python = os.path.join(root, "bin", f"python{minor}")
        env = {"LD_LIBRARY_PATH": os.path.join(root, "lib"), "PYTHONHOME": root}
        missing = self.step([python, "-c", "import importlib, sys\nbad = []\n"
                             f"for name in {MODULES!r}:\n"
                             "    try:\n        importlib.import_module(name)\n"
                             "    except ImportError as exc:\n        bad.append(f'{name} ({exc})')\n"
                             "print('; '.join(bad))"], "checking the modules", environ_update=env).strip()
        if missing:
            raise BuildError(f"the built interpreter lacks modules (a -dev package missing on the builder?): {missing}")
        depends = self.depends(root, staging, env)
        arch = self.step(["dpkg", "--print-architecture"], "dpkg --print-architecture").strip()
        size_kb = sum(os.lstat(os.path.join(t, n)).st_size for t, _d, ns in os.walk(staging) for n in ns) // 1024
        os.makedirs(os.path.join(staging, "DEBIAN"))
        summary = f"CPython {self.p['version'].split('+', 1)[0]} for dlstack envs ({self.prefix})"
        with open(os.path.join(staging, "DEBIAN", "control"), "w", encoding="utf-8") as handle:
            handle.write(control_text(self.p["package"], self.p["version"], arch, depends, size_kb, summary))
        tmp = f"{deb}.tmp-{os.getpid()}"
        self.step(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", staging, tmp], "dpkg-deb --build")
        os.replace(tmp, deb)
        return {"depends": depends}

    def depends(self, root: str, staging: str, env: dict[str, str]) -> list[str]:
        """``package (>= version)`` for each package whose libraries the build links."""
        libs: set[str] = set()
        for path in elf_files(root):
            direct = needed(self.step(["readelf", "-d", path], f"readelf -d {path}"))
            libs |= linked_libraries(self.step(["ldd", path], f"ldd {path}", environ_update=env), staging, direct)
        allowed = set(self.p["runtime_packages"])
        packages: dict[str, str] = {}
        unlisted = []
        for lib in sorted(libs):
            owner = None
            for name in candidates(lib):
                rc, out, _err = self.run(["dpkg-query", "-S", name])
                owner = dpkg_owner(out) if rc == 0 else None
                if owner:
                    break
            if owner is None:
                raise BuildError(f"no installed package owns {lib}, which the interpreter links")
            if allowed and owner not in allowed:
                unlisted.append(f"{lib} from {owner}")
            version = self.step(["dpkg-query", "-W", "-f", "${Version}", owner], f"dpkg-query {owner}").strip()
            packages[owner] = version
        if unlisted:
            raise BuildError(f"the interpreter links {', '.join(unlisted)}, not among the runtime packages the role "
                             f"installs on nodes ({', '.join(sorted(allowed))}): add them to "
                             "__python_envs_python_runtime_packages for this platform")
        return [f"{name} (>= {version})" for name, version in sorted(packages.items())]


def deb_path(params: dict[str, Any], arch: str) -> str:
    """Where the package lands: DEST/PACKAGE_VERSION_ARCH.deb."""
    return os.path.join(params["dest"], f"{params['package']}_{params['version']}_{arch}.deb")


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "path", "required": True},
            "sha256": {"type": "str", "required": True},
            "configure": {"type": "list", "elements": "str", "required": True},
            "package": {"type": "str", "required": True},
            "version": {"type": "str", "required": True},
            "dest": {"type": "path", "required": True},
            "runtime_packages": {"type": "list", "elements": "str", "default": []},
            "jobs": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    params = dict(module.params)

    def run(cmd: list[str], cwd: str | None = None, environ_update: dict[str, str] | None = None
            ) -> tuple[int, str, str]:
        return module.run_command(cmd, cwd=cwd, environ_update=environ_update or {})

    rc, arch, err = run(["dpkg", "--print-architecture"])
    if rc != 0:
        module.fail_json(msg=f"python_envs: dpkg --print-architecture failed: {err.strip()}")
    deb = deb_path(params, arch.strip())
    result: dict[str, Any] = {"changed": False, "deb": deb, "seconds": 0.0}
    if os.path.isfile(deb):
        result.update(sha256=sha256_of(deb), size=os.path.getsize(deb))
        module.exit_json(**result)
    result["changed"] = True
    if module.check_mode:
        module.exit_json(**result)
    started = time.time()
    os.makedirs(params["dest"], mode=0o755, exist_ok=True)
    work = tempfile.mkdtemp(prefix="dlstack-python-build-", dir="/var/tmp")
    try:
        result.update(PythonBuilder(params, run).build(work, deb))
    except BuildError as exc:
        module.fail_json(msg=f"python_envs: building CPython {params['version']} on this node: {exc}",
                         **{k: v for k, v in result.items() if k != "changed"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.update(seconds=round(time.time() - started, 1), sha256=sha256_of(deb), size=os.path.getsize(deb))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
