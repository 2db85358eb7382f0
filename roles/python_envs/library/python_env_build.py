#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Build a Python virtualenv from an exact lock, atomically, and only when it changed."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: python_env_build
short_description: Build a virtualenv from an exact lock, atomically, once
description:
  - Manages one virtualenv as C({root}/{name}), a symbolic link to a build directory
    C({root}/.{name}-{hash}). The hash covers the interpreter (real path and X.Y version),
    the lock text and O(system_site_packages); anything else (where the wheels come from,
    owner, extra files) does not cause a rebuild.
  - Fast path - when the build of the current hash exists, carries its completion stamp and
    its interpreter still resolves, nothing is run (no installer, no venv); only the link, the
    O(files) and the ownership are checked.
  - Otherwise the build directory is (re)created from scratch - C(uv venv), then C(uv pip
    install --no-deps --require-hashes --compile-bytecode --no-cache -r lock) (the lock must be
    the whole closure, each pin with the sha256 of every file it may install; no uv cache is
    kept on the node (a cache under /root/.cache/uv held a second copy of every env, 1.7 GB
    for the two default envs)), then C(uv pip check) on
    the locked packages, the O(files), the ownership - and the stamp is written last. Only
    then is the link switched, with an atomic rename. A run killed at any point leaves the
    link on the previous complete build (or absent); the next run finds the build without
    its stamp, removes it and builds again.
  - A failed build is removed and the module fails with one line naming the env and, when
    the installer says which, the package (and, for a file whose hash is not in the lock,
    the wheelhouse file; for a full disk, the space left under O(root)); the previous build
    stays in place and in use.
  - O(installer=pip) builds with C(python -m venv) and pip (same flags, C(--require-hashes));
    the role uses it only to install uv itself.
  - Previous complete builds are kept (O(keep)) for processes that still run from them and
    for rollback; incomplete ones are removed. Runs on the same env are serialized with a
    lock file.
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  name:
    description: Env name; the link C({root}/{name}). Lower case, digits, C(.), C(_), C(-); no C(/), no C(..).
    type: str
    required: true
  root:
    description: Directory that holds the env link and its builds; created (root, 0755) when missing.
    type: path
    required: true
  python:
    description: Interpreter to build the env with, a name on the C(PATH) or an absolute path.
    type: str
    default: python3
  requirements:
    description:
      - Lock text, one C(name==version --hash=sha256:...) requirement per line (or continued
        with C(\\)); the whole closure, as the build uses C(--no-deps --require-hashes).
    type: str
    default: ""
  build_constraints:
    description:
      - Lock of the build tools (setuptools), with hashes, for the pins that are source
        distributions (C(--build-constraints)); empty for none.
    type: str
    default: ""
  installer:
    description: C(uv) (the envs) or C(pip) (only to install uv itself, with the interpreter's venv and pip).
    type: str
    choices: [uv, pip]
    default: uv
  uv:
    description: The uv executable (O(installer=uv)).
    type: path
    default: /opt/dlstack/tools/uv/bin/uv
  system_site_packages:
    description: Let the env see the interpreter's system site packages (C(--system-site-packages)).
    type: bool
    default: false
  sources:
    description:
      - Where the installer takes the files from (C(--index-url URL), C(--find-links DIR),
        C(--no-index)); a file of a C(--find-links) directory whose hash is not in the lock is
        named in the error.
    type: list
    elements: str
    default: []
  files:
    description:
      - Extra files kept in the current build, path relative to the env (C({purelib}) stands for
        its site-packages directory) -> content. Updated in place, never a rebuild. Files
        listed by an earlier run and no longer listed are removed.
    type: dict
    default: {}
  owner:
    description: Owner of the build (an unprivileged user for a per-user env). The link and root stay root's.
    type: str
    default: root
  group:
    description: Group of the build; empty means the owner's primary group.
    type: str
    default: ""
  keep:
    description: Previous complete builds to keep besides the current one.
    type: int
    default: 1
  log_file:
    description: File that gets one JSON line per build attempt (env, hash, seconds, result); empty for none.
    type: path
    default: ""
  state:
    description: C(present) builds the env; C(absent) removes the link and every build of the env.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
notes:
  - Build and installer run as the user Ansible runs the module as (root, or the owner of a
    per-user env); a shared env is handed to its owner and group with C(lchown), never
    following links.
  - Scripts of the env carry the build path in their C(#!) line; users should use the link
    path (C({root}/{name}/bin/python)), which survives rebuilds.
"""

EXAMPLES = r"""
- name: Build the Keras 3 + TensorFlow env
  python_env_build:
    name: keras3-tensorflow
    root: /opt/dlstack/envs
    python: python3.11
    requirements: "{{ lookup('ansible.builtin.file', 'locks/keras3-tensorflow-cpu.txt') }}"
    uv: /opt/dlstack/tools/uv/bin/uv
    sources: [--no-index, --find-links, /var/lib/dlstack/wheelhouse]
"""

RETURN = r"""
path:
  description: The env's path (the link).
  returned: always
  type: str
  sample: /opt/dlstack/envs/keras3-tensorflow
python:
  description: The env's interpreter, through the link.
  returned: always
  type: str
  sample: /opt/dlstack/envs/keras3-tensorflow/bin/python
build:
  description: The build directory the link points to (or would point to in check mode).
  returned: when state is present
  type: str
hash:
  description: Hash of the interpreter, lock and settings that identify the build.
  returned: when state is present
  type: str
needs_build:
  description: Whether the build had to be (or, in check mode, would be) created by the installer.
  returned: when state is present
  type: bool
pip_runs:
  description: Number of installer commands run (install and check; 0 on the fast path).
  returned: always
  type: int
seconds:
  description: Time spent creating the venv and running the installer.
  returned: always
  type: float
removed:
  description: Build directories removed (incomplete, stale, or all for state=absent).
  returned: always
  type: list
"""

import errno
import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import time
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.python_envs_digest import sha256_of

FORMAT = 1
STAMP = ".dlstack-env.json"
LOCK_FILE = "dlstack-requirements.txt"
BUILD_CONSTRAINTS_FILE = "dlstack-build-constraints.txt"
BUILD_LOG = "dlstack-build.log"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
HASH_LEN = 16
PROBE = ("import json, os, platform, sys; print(json.dumps({'executable': os.path.realpath(sys.executable), "
         "'version': '%d.%d' % sys.version_info[:2], 'full_version': platform.python_version()}))")
# What names the package in a failed install: uv puts it in backticks, pip after these words.
INSTALL_FAILURES = (
    re.compile(r"`([A-Za-z0-9][A-Za-z0-9._-]*==[^`\s]+)`"),
    re.compile(r"there is no version of (\S+==\S+)"),
    re.compile(r"No matching distribution found for (\S+)"),
    re.compile(r"Could not find a version that satisfies the requirement (\S+)"),
    re.compile(r"Failed (?:to build|building wheel for) (\S+)"),
    re.compile(r"Hashes? (?:do not match|are required).*?(\S+==\S+)", re.S),
    re.compile(r"(\S+==\S+) from \S+ has (?:inconsistent|invalid)"),
)
HASH_MISMATCH = re.compile(r"Hash mismatch for `(?P<pin>[^`]+)`.*?Computed:\s*sha256:(?P<digest>[0-9a-f]{64})", re.S)
UV_CHECK = re.compile(r"^The package `(?P<name>[^`]+)` ")

Runner = Callable[[list[str]], "tuple[int, str, str]"]


class BuildError(Exception):
    """A build step failed; the message names the env and, if known, the package."""


def valid_name(name: str) -> bool:
    """Env names: lower-case letters, digits, '.', '_', '-'; no slash, no '..'."""
    return bool(NAME_RE.match(name)) and ".." not in name and "/" not in name


def lock_lines(text: str) -> list[str]:
    """The requirements of a lock, one per line: comments dropped, ``\\`` continuations joined,
    whitespace normalized (``name==version --hash=sha256:...``), sorted, unique."""
    logical = []
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        continued = line.endswith("\\")
        pending.append(line[:-1] if continued else line)
        if not continued:
            logical.append(" ".join(pending))
            pending = []
    logical.append(" ".join(pending))
    lines = []
    for line in logical:
        tokens = line.split()
        options = [t for t in tokens if t.startswith("--")]
        requirement = "".join(t for t in tokens if not t.startswith("--"))
        if requirement:
            lines.append(" ".join([requirement, *sorted(options)]))
    return sorted(set(lines))


def canonical_requirements(text: str) -> str:
    """The lock's pins (``name==version``, no hashes), sorted: what the build hash covers."""
    return "".join(f"{line.split(' ', 1)[0]}\n" for line in lock_lines(text))


def pin_names(text: str) -> set[str]:
    """Normalized project names of a lock's pins."""
    names = set()
    for line in canonical_requirements(text).splitlines():
        names.add(normalize(line.split("==", 1)[0]))
    return names


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def build_hash(executable: str, version: str, requirements: str, system_site_packages: bool) -> str:
    """sha256 over what makes a build: interpreter, X.Y version, pins, site packages."""
    ident = {"format": FORMAT, "python": executable, "version": version,
             "requirements": canonical_requirements(requirements),
             "system_site_packages": bool(system_site_packages)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def build_dir(root: str, name: str, digest: str) -> str:
    """Directory of the build of ``digest``: ``{root}/.{name}-{hash16}``."""
    return os.path.join(root, f".{name}-{digest[:HASH_LEN]}")


def build_pattern(name: str) -> re.Pattern[str]:
    """Matches the directory names of every build of env ``name`` (and nothing else)."""
    return re.compile(rf"^\.{re.escape(name)}-[0-9a-f]{{{HASH_LEN}}}$")


def read_stamp(path: str) -> dict[str, Any] | None:
    """The completion stamp of a build, or None when missing or unreadable."""
    try:
        with open(os.path.join(path, STAMP), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(path: str, digest: str | None = None) -> bool:
    """A build is complete when its stamp names its own hash and its interpreter resolves."""
    if os.path.islink(path) or not os.path.isdir(path):
        return False
    stamp = read_stamp(path)
    if not stamp or stamp.get("format") != FORMAT:
        return False
    expected = digest or stamp.get("hash", "")
    if stamp.get("hash") != expected or not os.path.basename(path).endswith("-" + expected[:HASH_LEN]):
        return False
    return os.path.exists(os.path.join(path, "bin", "python"))


def write_atomic(path: str, content: str, mode: int = 0o644, ids: tuple[int, int] | None = None) -> None:
    """Write a file through a temporary file (owned by ``ids`` when given), fsync and rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    if ids is not None:
        os.lchown(tmp, *ids)
    os.replace(tmp, path)


def remove_tree(path: str) -> None:
    """Remove a build directory (or a stray file or link) without following links."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def swap_link(link: str, target: str) -> None:
    """Point ``link`` at ``target`` (relative) atomically: new link, then rename over."""
    tmp = f"{link}.tmp-link-{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.basename(target), tmp)
    os.replace(tmp, link)


def link_target(link: str) -> str | None:
    """The build a link points to, as an absolute path; None when it is not a link."""
    if not os.path.islink(link):
        return None
    return os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))


def purelib(build: str, version: str) -> str:
    """site-packages of a venv build for Python X.Y."""
    return os.path.join(build, "lib", f"python{version}", "site-packages")


def resolve_files(files: dict[str, str], build: str, version: str) -> dict[str, str]:
    """Absolute paths of the extra files, with ``{purelib}`` expanded; rejects escapes."""
    site = purelib(build, version)
    out = {}
    for rel, content in sorted(files.items()):
        path = os.path.normpath(os.path.join(build, rel.replace("{purelib}", os.path.relpath(site, build))))
        if not path.startswith(build + os.sep):
            raise BuildError(f"extra file {rel!r} would land outside the env")
        out[path] = content
    return out


def file_differs(path: str, content: str) -> bool:
    """True when ``path`` is missing or holds other content."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read() != content
    except (OSError, UnicodeDecodeError):
        return True


def owner_ids(owner: str, group: str) -> tuple[int, int]:
    """uid and gid of the owner and group (empty group: the owner's primary group)."""
    try:
        entry = pwd.getpwnam(owner)
    except KeyError as exc:
        raise BuildError(f"owner {owner!r} does not exist") from exc
    if not group:
        return entry.pw_uid, entry.pw_gid
    try:
        return entry.pw_uid, grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise BuildError(f"group {group!r} does not exist") from exc


def drop_write_bits(path: str) -> None:
    """Take group and other write permission off everything in a build (uv leaves its
    ``.lock`` world-writable): only the owner may change an env."""
    for top, dirs, names in os.walk(path):
        for entry in [top] + [os.path.join(top, n) for n in dirs + names]:
            info = os.lstat(entry)
            if not os.path.islink(entry) and info.st_mode & 0o022:
                os.chmod(entry, info.st_mode & ~0o022 & 0o7777)


def chown_tree(path: str, uid: int, gid: int) -> None:
    """lchown a whole tree, never following links."""
    os.lchown(path, uid, gid)
    for top, dirs, names in os.walk(path):
        for entry in dirs + names:
            os.lchown(os.path.join(top, entry), uid, gid)


def find_links(sources: list[str]) -> list[str]:
    """The local directories among the installer's ``--find-links`` sources."""
    dirs = []
    for index, arg in enumerate(sources):
        value = None
        if arg == "--find-links" and index + 1 < len(sources):
            value = sources[index + 1]
        elif arg.startswith("--find-links="):
            value = arg.split("=", 1)[1]
        if value and os.path.isdir(value):
            dirs.append(value)
    return dirs


def distribution_of(filename: str) -> tuple[str, str] | None:
    """``(normalized name, version)`` of a wheel or sdist file name; None for other files."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return (normalize(parts[0]), parts[1]) if len(parts) >= 5 else None
    for suffix in (".tar.gz", ".tar.bz2", ".tar.xz", ".zip"):
        if filename.endswith(suffix) and "-" in filename:
            name, version = filename[: -len(suffix)].rsplit("-", 1)
            return normalize(name), version
    return None


def file_with_digest(dirs: list[str], pin: str, digest: str) -> str | None:
    """The file of ``pin`` (``name==version``) in ``dirs`` whose sha256 is ``digest``."""
    name, _, version = pin.partition("==")
    for directory in dirs:
        for entry in sorted(os.listdir(directory)):
            if distribution_of(entry) != (normalize(name), version):
                continue
            path = os.path.join(directory, entry)
            if os.path.isfile(path) and sha256_of(path) == digest:
                return path
    return None


def install_failure(name: str, stdout: str, stderr: str, sources: list[str] | None = None) -> str:
    """A one-line explanation of a failed install, naming the env, the package and, for a
    file whose hash is not in the lock, the file."""
    text = f"{stdout}\n{stderr}"
    mismatch = HASH_MISMATCH.search(text)
    if mismatch:
        pin, digest = mismatch["pin"], mismatch["digest"]
        path = file_with_digest(find_links(sources or []), pin, digest)
        where = f"the wheelhouse file {path}" if path else "the downloaded file"
        return (f"env '{name}': {where} for {pin} does not match the lock: its sha256 is {digest}, "
                "which the lock does not list (a tampered or substituted file); nothing was installed, "
                "the env in use is unchanged" + ("; replace the file (playbooks/wheelhouse.yml)" if path else ""))
    package = None
    for pattern in INSTALL_FAILURES:
        match = pattern.search(text)
        if match:
            package = match.group(1).strip("'\"")
            break
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line.split(":", 1)[1].strip() for line in lines if line.startswith(("caused by:", "cause:", "Caused by:"))]
    errors = [line for line in lines if line.startswith(("ERROR:", "error:"))]
    detail = causes[-1] if causes else (errors[-1] if errors else (lines or ["the installer failed"])[-1])
    what = f"could not install {package}" if package else "the install failed"
    return f"env '{name}': {what}: {detail}"


def out_of_space(exc: BaseException) -> bool:
    """Whether a failed build ran out of disk space (the OS said so, or the installer did)."""
    return (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in str(exc)


def no_space_message(name: str, root: str, current: str | None, free_bytes: int) -> str:
    """The one line for a build that filled the disk (after the partial build was removed)."""
    now = f"still points at its previous build {os.path.basename(current)}" if current else "does not exist yet"
    return (f"env '{name}': no space left on the disk of {root} ({free_bytes // 2**20} MB free once the partial "
            f"build was removed; the new build needs more): the env {now}; free space there or set "
            "python_envs_root to a larger disk")


def check_failures(names: set[str], output: str) -> list[str]:
    """Lines of ``uv pip check`` / ``pip check`` about the lock's own packages (system
    packages are not ours)."""
    bad = []
    for line in output.splitlines():
        match = UV_CHECK.match(line.strip())
        word = match["name"] if match else (line.split() or [""])[0]
        if word and normalize(word) in names:
            bad.append(line.strip())
    return bad


class EnvBuilder:
    """Builds, switches and cleans one env; every step goes through ``runner``."""

    def __init__(self, params: dict[str, Any], runner: Runner, check_mode: bool = False) -> None:
        self.p = params
        self.run = runner
        self.check = check_mode
        self.name: str = params["name"]
        self.root: str = os.path.normpath(params["root"])
        self.link = os.path.join(self.root, self.name)
        self.result: dict[str, Any] = {"changed": False, "path": self.link,
                                       "python": os.path.join(self.link, "bin", "python"),
                                       "pip_runs": 0, "seconds": 0.0, "removed": [], "actions": []}

    # -- helpers -------------------------------------------------------------------------

    def act(self, what: str) -> None:
        """Record a change (done, or to be done in check mode)."""
        self.result["changed"] = True
        self.result["actions"].append(what)

    def probe(self) -> dict[str, str]:
        """Real path and version of the interpreter."""
        rc, out, err = self.run([self.p["python"], "-c", PROBE])
        if rc != 0:
            raise BuildError(f"env '{self.name}': python {self.p['python']!r} does not run: "
                             f"{(err or out).strip() or f'rc={rc}'}")
        return json.loads(out.strip().splitlines()[-1])

    def builds(self) -> list[str]:
        """Every build directory of this env under root."""
        if not os.path.isdir(self.root):
            return []
        pattern = build_pattern(self.name)
        return sorted(os.path.join(self.root, e) for e in os.listdir(self.root) if pattern.match(e))

    def log(self, entry: dict[str, Any]) -> None:
        """Append one JSON line to the build log, if one is configured."""
        path = self.p.get("log_file")
        if not path or self.check:
            return
        try:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, sort_keys=True) + "\n")
        except OSError as exc:  # the log is a record, not part of the build
            self.result.setdefault("warnings", []).append(f"could not write the build log {path}: {exc}")

    # -- build ---------------------------------------------------------------------------

    def build(self, build: str, digest: str, python: dict[str, str]) -> None:
        """Create the build from scratch; the stamp is the last thing written."""
        started = time.time()
        remove_tree(build)
        self.create_venv(build)
        requirements = "".join(f"{line}\n" for line in lock_lines(self.p["requirements"]))
        lock = os.path.join(build, LOCK_FILE)
        write_atomic(lock, requirements)
        constraints = "".join(f"{line}\n" for line in lock_lines(self.p["build_constraints"]))
        if constraints:
            write_atomic(os.path.join(build, BUILD_CONSTRAINTS_FILE), constraints)
        venv_python = os.path.join(build, "bin", "python")
        with open(os.path.join(build, BUILD_LOG), "w", encoding="utf-8") as log:
            if requirements:
                cmd = self.install_command(venv_python, lock, os.path.join(build, BUILD_CONSTRAINTS_FILE)
                                           if constraints else "")
                rc, out, err = self.run(cmd)
                self.result["pip_runs"] += 1
                log.write(f"$ {' '.join(cmd)}\n{out}\n{err}\n")
                if rc != 0:
                    raise BuildError(install_failure(self.name, out, err, self.p["sources"]))
                cmd = self.check_command(venv_python)
                rc, out, err = self.run(cmd)
                self.result["pip_runs"] += 1
                log.write(f"$ {' '.join(cmd)}\n{out}\n{err}\n")
                bad = check_failures(pin_names(requirements), f"{out}\n{err}") if rc != 0 else []
                if bad:
                    raise BuildError(f"env '{self.name}': the pins are inconsistent ({self.p['installer']} check): "
                                     f"{'; '.join(bad)}")
        self.result["seconds"] = round(time.time() - started, 1)
        drop_write_bits(build)
        self.sync_files(build, python["version"], apply=True)
        self.sync_owner(build, apply=True)
        stamp = {"format": FORMAT, "hash": digest, "name": self.name, "python": python["executable"],
                 "python_version": python["version"], "system_site_packages": self.p["system_site_packages"],
                 "pins": canonical_requirements(requirements).splitlines(), "files": sorted(self.p["files"]),
                 "installer": self.p["installer"],
                 "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "build_seconds": self.result["seconds"]}
        write_atomic(os.path.join(build, STAMP), json.dumps(stamp, indent=1, sort_keys=True) + "\n",
                     ids=self.file_ids())

    def create_venv(self, build: str) -> None:
        """``uv venv`` (or ``python -m venv``) at ``build``."""
        if self.p["installer"] == "uv":
            cmd = [self.p["uv"], "venv", "--no-config", "--no-python-downloads", "--quiet",
                   "--python", self.p["python"], "--prompt", self.name]
            hint = f"is {self.p['uv']} installed?"
        else:
            cmd = [self.p["python"], "-m", "venv", "--prompt", self.name]
            hint = "is its venv/ensurepip package installed?"
        if self.p["system_site_packages"]:
            cmd.append("--system-site-packages")
        rc, out, err = self.run([*cmd, build])
        if rc != 0:
            raise BuildError(f"env '{self.name}': creating the venv with {self.p['python']} failed ({hint}): "
                             f"{(err or out).strip()[-400:]}")

    def install_command(self, venv_python: str, lock: str, constraints: str) -> list[str]:
        """Install exactly the lock's files, each checked against its hashes, nothing else."""
        if self.p["installer"] == "uv":
            cmd = [self.p["uv"], "pip", "install", "--no-config", "--python", venv_python, "--no-deps",
                   "--require-hashes", "--link-mode", "copy", "--compile-bytecode", "--no-cache", "--system-certs",
                   *self.p["sources"]]
            if constraints:
                cmd += ["--build-constraints", constraints]
            if self.p["system_site_packages"]:  # install the pins even where the system has them
                cmd.append("--reinstall")
            return [*cmd, "-r", lock]
        return [venv_python, "-m", "pip", "install", "--no-deps", "--require-hashes", "--ignore-installed",
                "--no-input", "--disable-pip-version-check", "--no-warn-script-location",
                *self.p["sources"], "-r", lock]

    def check_command(self, venv_python: str) -> list[str]:
        """Check that the installed packages' requirements hold."""
        if self.p["installer"] == "uv":
            return [self.p["uv"], "pip", "check", "--no-config", "--python", venv_python]
        return [venv_python, "-m", "pip", "check", "--disable-pip-version-check"]

    def sync_files(self, build: str, version: str, apply: bool) -> None:
        """Make the extra files match; remove the ones an earlier run listed and this one does not."""
        wanted = resolve_files(self.p["files"], build, version)
        for path, content in wanted.items():
            if file_differs(path, content):
                self.act(f"write {os.path.relpath(path, self.root)}")
                if apply:
                    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                    write_atomic(path, content, ids=self.file_ids())
        stamp = read_stamp(build) or {}
        old = resolve_files({rel: "" for rel in stamp.get("files", []) if rel not in self.p["files"]}, build, version)
        for path in old:
            if os.path.lexists(path):
                self.act(f"remove {os.path.relpath(path, self.root)}")
                if apply:
                    os.unlink(path)
        if apply and stamp and sorted(stamp.get("files", [])) != sorted(self.p["files"]):
            stamp["files"] = sorted(self.p["files"])
            write_atomic(os.path.join(build, STAMP), json.dumps(stamp, indent=1, sort_keys=True) + "\n",
                         ids=self.file_ids())

    def file_ids(self) -> tuple[int, int] | None:
        """uid/gid new files in a build must get (None: as written, when not root)."""
        return owner_ids(self.p["owner"], self.p["group"]) if os.geteuid() == 0 else None

    def sync_owner(self, build: str, apply: bool) -> None:
        """Hand the whole build to its owner when the top directory says otherwise.

        Run as root for shared envs. A per-user env is built by its owner (the role uses
        become_user), whose files are already theirs: nothing to hand over.
        """
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid()).pw_name
            if me != self.p["owner"]:
                raise BuildError(f"env '{self.name}': owned by {self.p['owner']!r} but built as {me!r}; "
                                 "run the module as root or as the owner")
            return
        uid, gid = owner_ids(self.p["owner"], self.p["group"])
        info = os.lstat(build) if os.path.lexists(build) else None
        if info is None or (info.st_uid, info.st_gid) != (uid, gid):
            if info is not None:
                self.act(f"chown {os.path.relpath(build, self.root)} to {uid}:{gid}")
            if apply:
                chown_tree(build, uid, gid)

    def cleanup(self, current: str | None) -> None:
        """Remove incomplete builds and complete ones beyond ``keep``, never ``current``."""
        complete = []
        for path in self.builds():
            if path == current:
                continue
            if is_complete(path):
                complete.append(((read_stamp(path) or {}).get("built_at", ""), os.stat(path).st_mtime, path))
            else:
                self.remove(path)
        complete.sort(reverse=True)
        for _, _, path in complete[max(0, int(self.p["keep"])):]:
            self.remove(path)

    def remove(self, path: str) -> None:
        """Remove one build (or record that it would be removed)."""
        self.act(f"remove {os.path.basename(path)}")
        self.result["removed"].append(path)
        if not self.check:
            remove_tree(path)

    # -- states --------------------------------------------------------------------------

    def present(self) -> dict[str, Any]:
        """Make the env exist and match the lock."""
        if os.path.lexists(self.link) and not os.path.islink(self.link):
            raise BuildError(f"env '{self.name}': {self.link} exists and is not a link to a build of this role; "
                             "move it away (the role never deletes what it did not build)")
        try:
            python = self.probe()
        except BuildError:
            if not self.check:
                raise
            # check mode before the role has installed the interpreter it provides
            self.result["needs_build"] = True
            self.act(f"build {self.name} (its interpreter {self.p['python']} is not installed yet)")
            return self.result
        digest = build_hash(python["executable"], python["version"], self.p["requirements"],
                            self.p["system_site_packages"])
        build = build_dir(self.root, self.name, digest)
        before = link_target(self.link)
        self.result.update(hash=digest, build=build, python_version=python["version"],
                           needs_build=not is_complete(build, digest))
        self.result["diff"] = {"before": f"{self.link} -> {before or '(none)'}\n",
                               "after": f"{self.link} -> {build}\n"}
        if not os.path.isdir(self.root):
            self.act(f"create {self.root}")
            if not self.check:
                os.makedirs(self.root, mode=0o755, exist_ok=True)
        if self.result["needs_build"]:
            self.act(f"build {os.path.basename(build)}")
            if not self.check:
                started = time.time()
                try:
                    self.build(build, digest, python)
                except BaseException as exc:
                    remove_tree(build)
                    self.log({"env": self.name, "hash": digest, "result": "failed", "error": str(exc),
                              "seconds": round(time.time() - started, 1), "time": time.time()})
                    if out_of_space(exc):
                        raise BuildError(no_space_message(self.name, self.root, before,
                                                          shutil.disk_usage(self.root).free)) from exc
                    raise
                self.log({"env": self.name, "hash": digest, "result": "built", "pins": self.p["requirements"].count("=="),
                          "seconds": self.result["seconds"], "time": time.time(), "build": build})
        else:
            self.sync_files(build, python["version"], apply=not self.check)
            self.sync_owner(build, apply=not self.check)
        if before != build:
            self.act(f"switch {self.name} to {os.path.basename(build)}")
            if not self.check:
                swap_link(self.link, build)
        self.cleanup(build)
        return self.result

    def absent(self) -> dict[str, Any]:
        """Remove the link and every build of the env."""
        if os.path.lexists(self.link):
            if not os.path.islink(self.link):
                raise BuildError(f"env '{self.name}': {self.link} is not a link to a build of this role; "
                                 "not removing it")
            self.act(f"remove {self.name}")
            if not self.check:
                os.unlink(self.link)
        for path in self.builds():
            self.remove(path)
        return self.result


def locked(root: str, name: str, check: bool) -> Any:
    """An exclusive lock on ``{root}/.{name}.lock`` (none in check mode or without root)."""
    if check or not os.path.isdir(root):
        return None
    handle = open(os.path.join(root, f".{name}.lock"), "a", encoding="utf-8")  # noqa: SIM115 - held until exit
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "root": {"type": "path", "required": True},
            "python": {"type": "str", "default": "python3"},
            "requirements": {"type": "str", "default": ""},
            "system_site_packages": {"type": "bool", "default": False},
            "sources": {"type": "list", "elements": "str", "default": []},
            "build_constraints": {"type": "str", "default": ""},
            "installer": {"type": "str", "default": "uv", "choices": ["uv", "pip"]},
            "uv": {"type": "path", "default": "/opt/dlstack/tools/uv/bin/uv"},
            "files": {"type": "dict", "default": {}},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": ""},
            "keep": {"type": "int", "default": 1},
            "log_file": {"type": "path", "default": ""},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
        },
        supports_check_mode=True,
    )
    params = dict(module.params)
    params["files"] = {str(k): str(v) for k, v in params["files"].items()}
    if not valid_name(params["name"]):
        module.fail_json(msg=f"env name {params['name']!r} is invalid: lower-case letters, digits, '.', '_', '-'; "
                             "no '/' and no '..'")
    if not os.path.isabs(params["root"]):
        module.fail_json(msg=f"env '{params['name']}': root {params['root']!r} must be an absolute path")
    os.umask(0o022)

    def runner(cmd: list[str]) -> tuple[int, str, str]:
        try:
            rc, out, err = module.run_command(cmd, environ_update={"PIP_DISABLE_PIP_VERSION_CHECK": "1",
                                                                   "UV_NO_PROGRESS": "1"},
                                              handle_exceptions=False)
        except OSError as exc:  # a missing interpreter: say so instead of "Error executing command."
            return 127, "", str(exc)
        return rc, out, err

    builder = EnvBuilder(params, runner, module.check_mode)
    lock = None
    try:
        if params["state"] == "present" and not module.check_mode and not os.path.isdir(builder.root):
            os.makedirs(builder.root, mode=0o755, exist_ok=True)
        lock = locked(builder.root, params["name"], module.check_mode)
        result = builder.present() if params["state"] == "present" else builder.absent()
    except BuildError as exc:
        module.fail_json(msg=f"python_envs: {exc}", **{k: v for k, v in builder.result.items() if k != "changed"})
    except OSError as exc:
        module.fail_json(msg=f"python_envs: env '{params['name']}': {exc}", **builder.result)
    finally:
        if lock is not None:
            lock.close()
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
