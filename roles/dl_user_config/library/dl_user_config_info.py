#!/usr/bin/python
"""Everything dl_user_config reads from a node before it writes, in one module call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_user_config_info
short_description: Read what dl_user_config needs from a node, in one call
description:
  - Looks up the named accounts, inspects each listed user's home and config locations
    B(as that user) (a forked child switches to the user's uid, gid and groups before it
    calls C(lstat)), reads the envs config, checks which envs exist and where their
    site-packages are, searches C(ldconfig -p) for libraries, and reads the default CUDA
    toolkit link and cuDNN's version header.
  - One module call replaces a dozen C(stat), C(slurp), C(getent) and C(command) tasks,
    which matters when one user is added across a whole fleet.
  - It only reads; it always reports C(changed=false).
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  users:
    description: Account names to look up (C(getpwnam) each; no enumeration of the whole database).
    type: list
    elements: str
    default: []
  inspect_users:
    description:
      - Users whose O(paths) are inspected as that user. Users without an account are left out.
    type: list
    elements: str
    default: []
  paths:
    description:
      - Paths relative to each inspected user's home. C('') is the home itself (followed,
        so a home that is a link to a directory is fine); the others are not followed.
    type: list
    elements: str
    default: ['', '.keras', '.keras/keras.json', '.theanorc']
  read_files:
    description: Which of O(paths) to read (as the user); their text comes back in C(stat.content).
    type: list
    elements: str
    default: []
  user_dirs:
    description:
      - More paths to inspect as a user, each C([user, absolute path]), such as Theano's
        compile directory; returned in RV(dirs), links not followed. Relative paths are ignored.
    type: list
    elements: list
    default: []
  env_files:
    description:
      - File names to read in each existing env's site-packages (needs O(env_site_packages));
        returned in each env's C(files).
    type: list
    elements: str
    default: []
  envs:
    description:
      - The envs, each with C(name) and C(python) or C(path) (then C(path)/bin/python).
        When empty, the envs come from O(envs_config).
    type: list
    elements: dict
    default: []
  envs_config:
    description: The envs config written by python_envs (JSON with an C(envs) list); missing means no envs.
    type: path
    default: /etc/dlstack/envs.json
  env_site_packages:
    description: Ask each existing env's interpreter for its site-packages (purelib) directory.
    type: bool
    default: false
  libraries:
    description: Library file names to look for in the C(ldconfig -p) cache, such as C(libopenblas.so).
    type: list
    elements: str
    default: []
  cuda_root:
    description: The default CUDA toolkit location; C('') skips the check.
    type: str
    default: /usr/local/cuda
  cudnn_header_dirs:
    description:
      - Directories searched, in order, for C(cudnn_version.h); empty skips the search. The
        node's multiarch include directory (C(/usr/include/x86_64-linux-gnu),
        C(/usr/include/aarch64-linux-gnu), ...) is searched after C(/usr/include) when that is listed.
    type: list
    elements: path
    default: []
  user_dir_files:
    description:
      - File names read, as the user, inside each O(user_dirs) directory (such as the Theano
        seed marker C(.dlstack-seed.json)); returned in RV(user_files), links not followed.
    type: list
    elements: str
    default: []
  env_builds:
    description:
      - Identify each existing env's build (RV(envs) C(real) and C(build)) -- the env's real
        directory, the names of the distributions installed in it, the kernel release and
        the machine. A rebuilt env (python_envs switches to a new build directory) or a changed
        package set gets a new C(build).
    type: bool
    default: false
  theano_seed_dir:
    description: Where the Theano seed templates are (ENV/ID/seed.json); C('') skips listing them.
    type: str
    default: ''
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Inspecting as another user needs root; otherwise only the module's own user is inspected
    and the others are reported as failed with a reason.
"""

EXAMPLES = r"""
- name: Read the node
  dl_user_config_info:
    users: [alice, bob]
    inspect_users: [bob]
    libraries: [libopenblas.so]
    cudnn_header_dirs: [/usr/local/cuda/include, /usr/include]
    env_site_packages: true
  register: node
"""

RETURN = r"""
passwd:
  description: The accounts found, as C(getent passwd) fields after the name.
  returned: always
  type: dict
  sample: {alice: [x, "1000", "1000", "", /home/alice, /bin/bash]}
paths:
  description: One entry per inspected user and path; C(failed) and C(msg) when it could not be inspected.
  returned: always
  type: list
  elements: dict
  sample: [{user: alice, path: .keras, stat: {path: /home/alice/.keras, exists: true, isdir: true, islnk: false,
                                              lnk_target: null, mode: "0755", uid: 1000, gid: 1000}}]
dirs:
  description: One entry per O(user_dirs) path, as RV(paths).
  returned: always
  type: list
  elements: dict
envs:
  description:
    - The envs (given, or from the envs config), each with C(python), C(exists), C(purelib)
      and C(files) (O(env_files) name -> state with C(content)).
  returned: always
  type: list
  elements: dict
envs_source:
  description: Where the envs came from, C(inventory), the envs config path, or C(none).
  returned: always
  type: str
libraries:
  description: Each asked library name and whether the linker cache has it.
  returned: always
  type: dict
  sample: {libopenblas.so: true}
cuda_root:
  description: O(cuda_root) when it exists (links followed), else C('').
  returned: always
  type: str
cudnn_header:
  description: The text of the first C(cudnn_version.h) found, else C('').
  returned: always
  type: str
cudnn_header_path:
  description: Where that header was found, else C('').
  returned: always
  type: str
user_files:
  description: One entry per O(user_dirs) directory and O(user_dir_files) name, with C(user), C(dir), C(name) and C(stat) (with C(content)).
  returned: always
  type: list
  elements: dict
theano_seeds:
  description:
    - The complete templates found in O(theano_seed_dir), each C(env), C(id) and C(ok) (false,
      with C(why), when it is not root's alone or its C(seed.json) is unreadable).
  returned: always
  type: list
  elements: dict
theano_seed_platform:
  description:
    - With O(theano_seed_dir), the nodes a template built here is good for, besides what its
      id already covers (the env's build -- real path, packages, kernel release, machine) -- the
      distribution and release, and a digest of the C++ compiler's version and of what
      C(-march=native) means to it on this CPU (the flags Theano compiles with). For example
      C(debian12-5f0c2a9e1b7d). Empty when there is no C(g++) (nothing to share then).
  returned: always
  type: str
"""

import glob
import hashlib
import json
import os
import pwd
import stat as stat_mod
import sysconfig
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dlstack_as_user import SwitchError, run_as_user

PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
MAX_READ = 1 << 20


def passwd_entries(names: list[str], lookup: Callable[[str], Any] = pwd.getpwnam) -> dict[str, list[str]]:
    """getent-style passwd fields of the names that exist."""
    found: dict[str, list[str]] = {}
    for name in names:
        try:
            pw = lookup(name)
        except KeyError:
            continue
        found[name] = [pw.pw_passwd, str(pw.pw_uid), str(pw.pw_gid), pw.pw_gecos, pw.pw_dir, pw.pw_shell]
    return found


def file_state(path: str, follow: bool = False, read: bool = False) -> dict[str, Any]:
    """exists, isdir, islnk, lnk_target, mode ('0644'), uid, gid and, with read, the text of a
    regular file of at most MAX_READ bytes (else None). Raises OSError but for a missing path."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return {"path": path, "exists": False}
    link = stat_mod.S_ISLNK(st.st_mode)
    state: dict[str, Any] = {"path": path, "exists": True, "isdir": stat_mod.S_ISDIR(st.st_mode), "islnk": link,
                             "lnk_target": os.readlink(path) if link else None,
                             "mode": f"{stat_mod.S_IMODE(st.st_mode):04o}", "uid": st.st_uid, "gid": st.st_gid}
    if read:
        state["content"] = None
        if stat_mod.S_ISREG(st.st_mode) and st.st_size <= MAX_READ:
            with open(path, encoding="utf-8", errors="replace") as handle:
                state["content"] = handle.read()
    return state


def inspect_paths(home: str, rels: list[str], read: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """stat the home (followed) and lstat each other path under it (relative paths; absolute
    ones are taken as they are); read the text of those in ``read``."""
    out: list[dict[str, Any]] = []
    for rel in rels:
        path = os.path.join(home, rel) if rel else home
        entry: dict[str, Any] = {"path": rel}
        try:
            entry["stat"] = file_state(path, follow=not rel, read=rel in read)
        except OSError as exc:
            entry.update(failed=True, msg=f"{path}: {exc.strerror or exc}")
        out.append(entry)
    return out


def inspect_as(name: str, uid: int, gid: int, home: str, rels: list[str],
               read: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """inspect_paths in a child switched to the user (root only), so that the user's own
    permissions apply (a home on NFS with root_squash, a mode-0700 directory)."""
    if os.geteuid() != 0:
        if os.geteuid() == uid:
            return inspect_paths(home, rels, read)
        return [{"path": rel, "failed": True, "msg": "cannot switch to the user (the module does not run as root)"}
                for rel in rels]
    try:
        return run_as_user(name, uid, gid, inspect_paths, home, rels, read)
    except SwitchError as exc:
        return [{"path": rel, "failed": True, "msg": f"switching to the user failed: {exc}"} for rel in rels]


def read_envs(envs: list[dict[str, Any]], config: str) -> tuple[list[dict[str, Any]], str]:
    """The given envs, else those of the envs config (none when it is missing)."""
    if envs:
        return [dict(e) for e in envs], "inventory"
    try:
        with open(config, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return [], "none"
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"the envs config {config} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict) or not isinstance(parsed.get("envs", []), list):
        raise ValueError(f"the envs config {config} has no 'envs' list")
    return [dict(e) for e in parsed.get("envs", []) if isinstance(e, dict)], config


def env_python(env: dict[str, Any]) -> str:
    """An env's interpreter: its python, else path/bin/python."""
    return str(env["python"]) if env.get("python") else str(env.get("path", "")).rstrip("/") + "/bin/python"


def linker_names(ldconfig_output: str) -> set[str]:
    """Library names listed by ``ldconfig -p`` (the part before the flags)."""
    names = set()
    for line in ldconfig_output.splitlines():
        line = line.strip()
        if " (" in line and "=>" in line:
            names.add(line.split(" (", 1)[0])
    return names


def first_header(dirs: list[str], name: str = "cudnn_version.h") -> tuple[str, str]:
    """(path, text) of the first readable header found in dirs, ('', '') when none."""
    for directory in dirs:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    return path, handle.read()
            except OSError:
                continue
    return "", ""


def multiarch() -> str:
    """The node's multiarch triplet (x86_64-linux-gnu, aarch64-linux-gnu, ...)."""
    return str(sysconfig.get_config_var("MULTIARCH") or f"{os.uname().machine}-linux-gnu")


def header_dirs(dirs: list[str]) -> list[str]:
    """The search list with the multiarch include directory after /usr/include."""
    out: list[str] = []
    for directory in dirs:
        out.append(directory)
        if directory.rstrip("/") == "/usr/include":
            out.append(f"/usr/include/{multiarch()}")
    return list(dict.fromkeys(out))


def env_build(python: str) -> tuple[str, str]:
    """(real directory, build id) of the env whose interpreter is ``python``: what a Theano
    seed template is valid for (see the env_builds option)."""
    real = os.path.realpath(os.path.dirname(os.path.dirname(python)))
    dists = sorted(os.path.relpath(p, real) for pattern in ("*.dist-info", "*.egg-info")
                   for p in glob.glob(os.path.join(real, "lib", "python*", "site-packages", pattern)))
    uname = os.uname()
    text = json.dumps({"real": real, "dists": dists, "kernel": uname.release, "machine": uname.machine}, sort_keys=True)
    return real, hashlib.sha256(text.encode()).hexdigest()[:16]


def os_release(text: str) -> str:
    """``ID`` and ``VERSION_ID`` of an os-release file, as one name (``debian12``, ``ubuntu2404``)."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip('"').strip("'")
    name = (fields.get("ID", "") + fields.get("VERSION_ID", "").replace(".", "")).lower()
    return "".join(c for c in name if c.isalnum()) or "unknown"


def seed_platform(run: Callable[[list[str]], tuple[int, str, str]], release: str, cpuinfo: str) -> str:
    """See RV(theano_seed_platform): the release name and a digest of ``g++``'s version and
    of its ``-march=native`` target options (the CPU's first block of /proc/cpuinfo where the
    compiler cannot say); '' without ``g++``."""
    rc, version, _err = run(["g++", "-dumpfullversion", "-dumpversion"])
    if rc != 0:
        return ""
    rc, target, _err = run(["g++", "-march=native", "-Q", "--help=target"])
    if rc != 0:
        target = cpuinfo.split("\n\n")[0]
    digest = hashlib.sha256(f"{version.strip()}\n{target}".encode()).hexdigest()[:12]
    return f"{release}-{digest}"


def run_quietly(module: AnsibleModule, argv: list[str]) -> tuple[int, str, str]:
    """run_command, but a program that is not installed (g++ before python_envs installs it,
    as check mode on a fresh node sees it) gives rc 127 instead of failing the module."""
    try:
        return module.run_command(argv, environ_update={"LC_ALL": "C"}, handle_exceptions=False)
    except OSError as exc:
        return 127, "", str(exc)


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(1 << 20)
    except OSError:
        return ""


def list_seeds(seed_dir: str) -> list[dict[str, Any]]:
    """The templates in seed_dir (ENV/ID with a seed.json), and whether each is root's alone."""
    found: list[dict[str, Any]] = []
    for seed_json in sorted(glob.glob(os.path.join(seed_dir, "*", "*", "seed.json"))):
        template = os.path.dirname(seed_json)
        env, tid = os.path.basename(os.path.dirname(template)), os.path.basename(template)
        if env.startswith(".") or tid.startswith("."):
            continue
        entry: dict[str, Any] = {"env": env, "id": tid, "ok": True}
        for path in (seed_dir, os.path.dirname(template), template, seed_json):
            st = os.lstat(path)
            if st.st_uid != 0 or st.st_mode & 0o022 or stat_mod.S_ISLNK(st.st_mode):
                entry.update(ok=False, why=f"{path} is not root's alone")
                break
        found.append(entry)
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "users": {"type": "list", "elements": "str", "default": []},
            "inspect_users": {"type": "list", "elements": "str", "default": []},
            "paths": {"type": "list", "elements": "str", "default": ["", ".keras", ".keras/keras.json", ".theanorc"]},
            "read_files": {"type": "list", "elements": "str", "default": []},
            "user_dirs": {"type": "list", "elements": "list", "default": []},
            "env_files": {"type": "list", "elements": "str", "default": []},
            "envs": {"type": "list", "elements": "dict", "default": []},
            "envs_config": {"type": "path", "default": "/etc/dlstack/envs.json"},
            "env_site_packages": {"type": "bool", "default": False},
            "libraries": {"type": "list", "elements": "str", "default": []},
            "cuda_root": {"type": "str", "default": "/usr/local/cuda"},
            "cudnn_header_dirs": {"type": "list", "elements": "path", "default": []},
            "user_dir_files": {"type": "list", "elements": "str", "default": []},
            "env_builds": {"type": "bool", "default": False},
            "theano_seed_dir": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    passwd = passwd_entries(list(dict.fromkeys(p["users"] + p["inspect_users"])))
    paths: list[dict[str, Any]] = []
    for name in p["inspect_users"]:
        if name in passwd:
            _pw, uid, gid, _gecos, home, _shell = passwd[name]
            for entry in inspect_as(name, int(uid), int(gid), home, p["paths"], tuple(p["read_files"])):
                paths.append({"user": name, **entry})
    dirs: list[dict[str, Any]] = []
    user_files: list[dict[str, Any]] = []
    for pair in p["user_dirs"]:
        if len(pair) != 2:
            module.fail_json(msg=f"user_dirs: each entry is [user, absolute path], not {pair!r}")
        name, path = str(pair[0]), str(pair[1])
        if name in passwd and path.startswith("/"):
            _pw, uid, gid, _gecos, home, _shell = passwd[name]
            inside = [os.path.join(path, f) for f in p["user_dir_files"]]
            found = inspect_as(name, int(uid), int(gid), home, [path, *inside], tuple(inside))
            dirs.append({"user": name, **found[0]})
            user_files.extend({"user": name, "dir": path, "name": os.path.basename(e["path"]), **e} for e in found[1:])

    try:
        envs, source = read_envs(p["envs"], p["envs_config"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    for env in envs:
        env["python"] = env_python(env)
        env["exists"] = os.path.isfile(env["python"]) and os.access(env["python"], os.X_OK)
        if env["exists"] and p["env_builds"]:
            env["real"], env["build"] = env_build(env["python"])
        env["purelib"] = None
        if env["exists"] and p["env_site_packages"]:
            rc, out, err = module.run_command([env["python"], "-c", PURELIB])
            if rc != 0:
                module.fail_json(msg=f"env {env.get('name')}: {env['python']} could not say where its "
                                     f"site-packages are (exit {rc}): {err.strip()[-300:]}")
            env["purelib"] = out.strip()
        env["files"] = {}
        for name in p["env_files"] if env["purelib"] else []:
            try:
                env["files"][name] = file_state(os.path.join(env["purelib"], name), read=True)
            except OSError as exc:
                module.fail_json(msg=f"env {env.get('name')}: cannot read {name}: {exc}")

    libraries: dict[str, bool] = {}
    if p["libraries"]:
        ldconfig = module.get_bin_path("ldconfig", opt_dirs=["/sbin", "/usr/sbin"], required=True)
        rc, out, err = module.run_command([ldconfig, "-p"])
        if rc != 0:
            module.fail_json(msg=f"ldconfig -p failed (exit {rc}): {err.strip()}")
        known = linker_names(out)
        libraries = {lib: lib in known for lib in p["libraries"]}

    cuda_root = p["cuda_root"] if p["cuda_root"] and os.path.isdir(p["cuda_root"]) else ""
    header_path, header = first_header(header_dirs(p["cudnn_header_dirs"]))
    seeds = list_seeds(p["theano_seed_dir"]) if p["theano_seed_dir"] else []
    platform = ""
    if p["theano_seed_dir"]:
        platform = seed_platform(lambda argv: run_quietly(module, argv), os_release(read_text("/etc/os-release")),
                                 read_text("/proc/cpuinfo"))
    module.exit_json(changed=False, passwd=passwd, paths=paths, dirs=dirs, envs=envs, envs_source=source,
                     libraries=libraries, cuda_root=cuda_root, cudnn_header=header, cudnn_header_path=header_path,
                     user_files=user_files, theano_seeds=seeds, theano_seed_platform=platform)


if __name__ == "__main__":
    main()
