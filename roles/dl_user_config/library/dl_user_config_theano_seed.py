#!/usr/bin/python
"""Build root-owned Theano seed templates and seed users' compile directories from them."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_user_config_theano_seed
short_description: Theano compile-cache seeds, built once per env build and settings profile
description:
  - B(Builds) each missing template -- runs the warm-up program with the env's Python B(as the
    seed account) in a staging directory that holds the profile's C(keras.json) and
    C(.theanorc) (taken from a user of that profile, read as that user, C(base_compiledir)
    replaced), so that Theano compiles the C modules of the env's usual operations; then, as
    root, copies the module directories Theano loaded or compiled for that work (each with
    its C(key.pkl)) and the helper modules it builds at import into
    O(seed_dir)/ENV/ID, root-owned, read-only to everyone else, with C(seed.json),
    C(keras.json) and C(theanorc) beside them. The staging directory is seeded from an older
    template of the same profile, so a rebuild of the env recompiles only what Theano's own
    cache keys say changed; modules that no longer match are not copied.
  - B(Seeds) users' compile directories B(as each user) (a forked child with the user's uid,
    gid and groups) -- the template's modules are copied into the user's own
    C(base_compiledir), those of an older template listed in the user's
    C(.dlstack-seed.json) and not in the new one are removed, and the marker is rewritten.
    Module directories keep their Theano names (C(tmp...)), which Theano requires to take a
    copied module as its own.
  - B(Imports) templates packed on another node of the same platform (O(imports) -- archives
    from the controller's store, see O(export_dir)) before building -- each archive is read in
    full and checked (only regular files and directories, no absolute or C(..) names, a
    C(seed.json) naming the same env and id), unpacked into a hidden directory, made root's
    (directories C(0755), files C(0644)) and renamed into place; the archive is removed. An
    archive that fails a check is reported in RV(problems) and the template is built instead,
    when O(builds) lists it.
  - B(Exports) (O(export_dir) set) each template built by this call as
    O(export_dir)/ENV-ID.tar.gz (root's, C(0600)), returned in RV(built) as C(archive), for
    the controller's store.
  - B(Prunes) templates of an env that are not listed in O(prune) (older builds or profiles
    no user has any more).
  - Every file a user's Theano process loads is then the user's own, in a directory only the
    user can write; templates are written by root only. The work is serialized per node
    with a lock file in O(seed_dir).
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  seed_dir:
    description: Root-owned directory of the templates (ENV/ID/...).
    type: path
    required: true
  seed_user:
    description: The dedicated account the warm-up runs as (it owns nothing outside a build).
    type: str
    required: true
  warmup:
    description: The warm-up program's source (Python 3.6+), run with each env's interpreter.
    type: str
    required: true
  timeout:
    description: Seconds one template build may take.
    type: int
    default: 1800
  builds:
    description:
      - Templates to build, each C(env), C(id), C(python), C(build), C(real), C(profile)
        (the settings it stands for), C(keras) (floatx, epsilon, image_data_format) and
        C(user) (an account of that profile whose C(.theanorc) is used).
    type: list
    elements: dict
    default: []
  seeds:
    description: Compile directories to seed, each C(user), C(compiledir) (absolute), C(env) and C(id).
    type: list
    elements: dict
    default: []
  prune:
    description: Per env, C(env) and C(keep) (template ids); other templates of that env are removed.
    type: list
    elements: dict
    default: []
  imports:
    description:
      - Templates to install from archives on the node, each C(env), C(id) and C(archive) (an
        absolute path, made by O(export_dir) on a node of the same platform). Done first.
    type: list
    elements: dict
    default: []
  export_dir:
    description: Where to pack each template this call builds (root's directory; empty, the default, packs none).
    type: str
    default: ''
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Build the missing templates and seed the users
  dl_user_config_theano_seed:
    seed_dir: /var/lib/dlstack/theano-seeds
    seed_user: dlstack-theano
    warmup: "{{ lookup('ansible.builtin.file', 'dlstack_theano_warmup.py') }}"
    builds: [{env: keras2-theano, id: 0123abcd4567ef89, python: /opt/dlstack/envs/keras2-theano/bin/python,
              build: 89ab..., real: /opt/dlstack/envs/.keras2-theano-1a2b, profile: {}, user: alice,
              keras: {floatx: float32, epsilon: 1.0e-07, image_data_format: channels_last}}]
    seeds: [{user: alice, compiledir: /var/tmp/theano-alice, env: keras2-theano, id: 0123abcd4567ef89}]
"""

RETURN = r"""
built:
  description:
    - One entry per template built, with C(env), C(id), C(seconds), C(modules) and
      C(workloads), C(archive) when packed (O(export_dir)), and C(key) when the request had one.
  returned: always
  type: list
  elements: dict
seeded:
  description: One entry per compile directory seeded, with C(user), C(env), C(id), C(copied), C(removed), C(kept).
  returned: always
  type: list
  elements: dict
imported:
  description: One entry per template installed from an archive, with C(env), C(id) and C(files).
  returned: always
  type: list
  elements: dict
pruned:
  description: The template directories removed.
  returned: always
  type: list
  elements: str
problems:
  description:
    - Workloads that failed during a build (the template keeps what the others compiled), and
      archives from the store that were refused (the template is then built here). Not
      C(warnings), which Ansible takes for its own.
  returned: always
  type: list
  elements: str
"""

import fcntl
import hashlib
import json
import os
import pwd
import re
import shutil
import stat as stat_mod
import subprocess
import tarfile
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dlstack_as_user import SwitchError, run_as_user, run_command

MARKER = ".dlstack-seed.json"
MODULE_NAME = re.compile(r"^tmp[A-Za-z0-9_]+$")
HELPERS = ("cutils_ext", "lazylinker_ext", "gpuarray_kernels")
ID = re.compile(r"^[0-9a-f]{16}$")
ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
BASE_COMPILEDIR = re.compile(r"^[ \t]*base_compiledir[ \t]*=.*\n?", re.MULTILINE)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SeedError(Exception):
    """A template could not be built, or a directory could not be seeded."""


# --- files -----------------------------------------------------------------------------------


def copy_tree(src: str, dst: str, dir_mode: int = 0o755, file_mode: int = 0o644) -> int:
    """Copy a directory of regular files and directories (links and other types refused),
    with fresh times (Theano ages modules by their access time) and the given modes, as
    whoever runs this. Returns the number of files copied."""
    count = 0
    st = os.lstat(src)
    if not stat_mod.S_ISDIR(st.st_mode):
        raise SeedError(f"{src} is not a directory")
    os.mkdir(dst, dir_mode)
    os.chmod(dst, dir_mode)
    with os.scandir(src) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            path, target = entry.path, os.path.join(dst, entry.name)
            est = os.lstat(path)
            if stat_mod.S_ISDIR(est.st_mode):
                count += copy_tree(path, target, dir_mode, file_mode)
            elif stat_mod.S_ISREG(est.st_mode):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as source, open(target, "xb") as out:
                    shutil.copyfileobj(source, out)
                os.chmod(target, file_mode)
                count += 1
            else:
                raise SeedError(f"{path} is not a regular file or directory; not copied")
    return count


def remove_tree(path: str) -> None:
    """Remove a directory tree (never following a link), or a link or file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat_mod.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def tree_is_root_only(path: str) -> str | None:
    """Why a template is not safe to copy from (None when every entry is root's, not
    writable by group or others, and a directory or regular file)."""
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            st = os.lstat(name)
            if st.st_uid != 0 or st.st_mode & 0o022:
                return f"{name} is not root's alone (uid {st.st_uid}, mode {stat_mod.S_IMODE(st.st_mode):04o})"
            if not (stat_mod.S_ISDIR(st.st_mode) or stat_mod.S_ISREG(st.st_mode)):
                return f"{name} is not a regular file or directory"
    return None


def write_json(path: str, data: Any, mode: int) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=1, sort_keys=True)
        out.write("\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    """A small JSON file that is not a link, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        with os.fdopen(fd) as handle:
            return json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return None


# --- building a template ---------------------------------------------------------------------


def read_theanorc(home: str) -> str:
    """The user's ~/.theanorc (run as the user)."""
    path = os.path.join(home, ".theanorc")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as handle:
        return handle.read(1 << 20)


def profile_theanorc(text: str) -> str:
    """A user's .theanorc without its base_compiledir line (what the template stands for)."""
    return BASE_COMPILEDIR.sub("", text)


def prepare_staging(staging: str, keras: dict[str, Any], theanorc: str, warmup: str,
                    previous: str | None) -> None:
    """The seed account's side of a build: home, keras.json, .theanorc, the program, and the
    modules of an older template of this profile (run as the seed account)."""
    home, compile_dir = os.path.join(staging, "home"), os.path.join(staging, "compile")
    os.makedirs(os.path.join(home, ".keras"), 0o700)
    os.mkdir(compile_dir, 0o700)
    config = {"backend": "theano", "floatx": keras["floatx"], "epsilon": keras["epsilon"],
              "image_data_format": keras["image_data_format"]}
    with open(os.path.join(home, ".keras", "keras.json"), "w", encoding="utf-8") as out:
        json.dump(config, out, indent=4)
    with open(os.path.join(home, ".theanorc"), "w", encoding="utf-8") as out:
        out.write(profile_theanorc(theanorc))  # base_compiledir: THEANO_FLAGS, see build_template
    with open(os.path.join(staging, "warmup.py"), "w", encoding="utf-8") as out:
        out.write(warmup)
    if previous:
        seed = read_json(os.path.join(previous, "seed.json")) or {}
        name = str(seed.get("compiledir_name") or "")
        if name and "/" not in name and os.path.isdir(os.path.join(previous, "compiledir")):
            copy_tree(os.path.join(previous, "compiledir"), os.path.join(compile_dir, name), 0o755, 0o644)


def previous_template(env_dir: str, profile_digest: str, skip: str) -> str | None:
    """The newest complete template of this env and profile (another build), if any."""
    found = []
    try:
        names = os.listdir(env_dir)
    except FileNotFoundError:
        return None
    for name in names:
        path = os.path.join(env_dir, name)
        seed = read_json(os.path.join(path, "seed.json")) if ID.match(name) and name != skip else None
        if seed and seed.get("profile_digest") == profile_digest and tree_is_root_only(path) is None:
            found.append((float(seed.get("created_epoch") or 0), path))
    return max(found)[1] if found else None


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def build_template(item: dict[str, Any], seed_dir: str, seed_user: str, warmup: str, timeout: float,
                   export_dir: str = "") -> dict[str, Any]:
    """Build one template (see DOCUMENTATION), packed into export_dir when given; returns
    what was built."""
    env, tid = str(item["env"]), str(item["id"])
    if not ENV_NAME.match(env) or ".." in env or not ID.match(tid):
        raise SeedError(f"bad template name {env}/{tid}")
    env_dir = os.path.join(seed_dir, env)
    final = os.path.join(env_dir, tid)
    if os.path.isfile(os.path.join(final, "seed.json")) and tree_is_root_only(final) is None:
        existed: dict[str, Any] = {"env": env, "id": tid, "existed": True}
        if export_dir:
            existed.update(archive=pack_template(final, export_dir, env, tid), key=str(item.get("key") or ""))
        return existed
    account = pwd.getpwnam(seed_user)
    owner = pwd.getpwnam(str(item["user"]))
    theanorc = run_as_user(owner.pw_name, owner.pw_uid, owner.pw_gid, read_theanorc, owner.pw_dir)
    os.makedirs(env_dir, 0o755, exist_ok=True)
    staging = os.path.join(seed_dir, f".build-{env}-{tid}")
    remove_tree(staging)
    os.mkdir(staging, 0o700)
    os.chown(staging, account.pw_uid, account.pw_gid)
    start = time.monotonic()
    try:
        profile_digest = digest(item.get("profile") or {})
        previous = previous_template(env_dir, profile_digest, tid)
        run_as_user(seed_user, account.pw_uid, account.pw_gid, prepare_staging, staging, dict(item["keras"]),
                    theanorc, warmup, previous)
        home = os.path.join(staging, "home")
        # the compile directory as a flag: Theano leaves it out of its cache keys (a module
        # compiled here is found again in any other compile directory it is copied to)
        environ = {"HOME": home, "KERAS_HOME": os.path.join(home, ".keras"), "USER": seed_user,
                   "LOGNAME": seed_user, "PATH": PATH, "LANG": "C.UTF-8",
                   "THEANO_FLAGS": f"base_compiledir={os.path.join(staging, 'compile')}"}
        try:
            done = run_command([str(item["python"]), os.path.join(staging, "warmup.py")], timeout, env=environ,
                               cwd=staging, as_user=(seed_user, account.pw_uid, account.pw_gid))
        except (OSError, subprocess.SubprocessError) as exc:
            raise SeedError(f"cannot run {item['python']} as {seed_user}: {exc}") from None
        if done.timed_out:
            raise SeedError(f"the warm-up in {env} timed out after {timeout:g} s")
        try:
            result = json.loads(done.out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            tail = " ".join(done.err.strip().splitlines()[-3:])[-400:]
            raise SeedError(f"the warm-up in {env} printed no result (exit {done.rc}): {tail}") from None
        if result.get("error"):
            raise SeedError(f"the warm-up in {env} failed: {result['error']}")
        modules = [m for m in result.get("modules") or [] if MODULE_NAME.match(str(m))]
        helpers = [h for h in result.get("helpers") or [] if h in HELPERS]
        name = str(result.get("compiledir_name") or "")
        compiled = os.path.join(staging, "compile", name)
        if not modules or "/" in name or not name or os.path.realpath(compiled) != os.path.realpath(str(result.get("compiledir"))):
            failed = {k: v.get("error") for k, v in (result.get("workloads") or {}).items() if not v.get("ok")}
            raise SeedError(f"the warm-up in {env} compiled no module into its staging directory ({failed or 'no error'})")
        partial = os.path.join(env_dir, f".tmp-{tid}")
        remove_tree(partial)
        os.mkdir(partial, 0o755)
        os.mkdir(os.path.join(partial, "compiledir"), 0o755)
        for sub in [*helpers, *modules]:
            copy_tree(os.path.join(compiled, sub), os.path.join(partial, "compiledir", sub))
        keras_json = {"backend": "theano", **{k: item["keras"][k] for k in ("floatx", "epsilon", "image_data_format")}}
        write_json(os.path.join(partial, "keras.json"), keras_json, 0o644)
        with open(os.path.join(partial, "theanorc"), "w", encoding="utf-8") as out_file:
            out_file.write(profile_theanorc(theanorc))
        os.chmod(os.path.join(partial, "theanorc"), 0o644)
        seconds = round(time.monotonic() - start, 1)
        seed = {"env": env, "id": tid, "python": item["python"], "build": item.get("build"), "real": item.get("real"),
                "profile": item.get("profile") or {}, "profile_digest": profile_digest,
                "compiledir_name": name, "modules": modules, "helpers": helpers,
                "theano": result.get("theano"), "keras": result.get("keras"), "device": result.get("device"),
                "workloads": result.get("workloads") or {}, "stats": result.get("stats"), "seconds": seconds,
                "from_previous": os.path.basename(previous) if previous else None,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "created_epoch": time.time()}
        write_json(os.path.join(partial, "seed.json"), seed, 0o644)
        remove_tree(final)
        os.rename(partial, final)
    finally:
        remove_tree(staging)
    failed = [f"{env}: workload {k} failed during the seed build: {v.get('error')}"
              for k, v in seed["workloads"].items() if not v.get("ok")]
    done = {"env": env, "id": tid, "seconds": seconds, "modules": len(modules), "workloads": seed["workloads"],
            "from_previous": seed["from_previous"], "warnings": failed}
    if item.get("key"):
        done["key"] = str(item["key"])
    if export_dir:
        done["archive"] = pack_template(final, export_dir, env, tid)
    return done


# --- the controller's store: packing and unpacking templates ----------------------------------

ARCHIVE_MAX_FILES = 20000
ARCHIVE_MAX_BYTES = 2 << 30


def pack_template(template: str, export_dir: str, env: str, tid: str) -> str:
    """Pack a built template as export_dir/ENV-ID.tar.gz (root's, 0600), written beside and
    renamed, with names relative to the template and no owners; returns its path."""
    problem = tree_is_root_only(template)
    if problem:
        raise SeedError(f"template {env}/{tid} not packed: {problem}")
    os.makedirs(export_dir, 0o700, exist_ok=True)
    archive = os.path.join(export_dir, f"{env}-{tid}.tar.gz")
    partial = f"{archive}.{os.getpid()}.tmp"

    def plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name in sorted(os.listdir(template)):
            tar.add(os.path.join(template, name), arcname=name, filter=plain)
    os.replace(partial, archive)
    return archive


def archive_problem(tar: tarfile.TarFile, env: str, tid: str) -> str | None:
    """Why an archive is not a template of env/tid that is safe to unpack (None when it is):
    only regular files and directories, relative names without '..', within the limits, and
    a seed.json naming the same env and id."""
    members = tar.getmembers()  # reads the whole archive: a truncated one fails here
    if len(members) > ARCHIVE_MAX_FILES or sum(m.size for m in members) > ARCHIVE_MAX_BYTES:
        return "it is larger than a template can be"
    for member in members:
        name = member.name
        if name.startswith("/") or ".." in name.split("/") or not (member.isfile() or member.isdir()):
            return f"{name!r} is not a plain relative file or directory"
    try:
        handle = tar.extractfile("seed.json")
        seed = json.loads(handle.read(1 << 20)) if handle else None
    except (KeyError, ValueError):
        seed = None
    if not isinstance(seed, dict) or seed.get("env") != env or seed.get("id") != tid or not seed.get("compiledir_name"):
        return f"its seed.json does not describe template {env}/{tid}"
    return None


def import_template(item: dict[str, Any], seed_dir: str) -> dict[str, Any]:
    """Install one packed template (see DOCUMENTATION); returns what was done, with a
    C(warning) instead when the archive was refused. The archive is removed either way."""
    env, tid, archive = str(item["env"]), str(item["id"]), str(item["archive"])
    if not ENV_NAME.match(env) or ".." in env or not ID.match(tid) or not os.path.isabs(archive):
        raise SeedError(f"bad import request {item!r}")
    final = os.path.join(seed_dir, env, tid)
    try:
        if os.path.isfile(os.path.join(final, "seed.json")) and tree_is_root_only(final) is None:
            return {"env": env, "id": tid, "existed": True}
        partial = os.path.join(seed_dir, env, f".import-{tid}")
        remove_tree(partial)
        os.makedirs(os.path.join(seed_dir, env), 0o755, exist_ok=True)
        try:
            with tarfile.open(archive, mode="r:gz") as tar:
                problem = archive_problem(tar, env, tid)
                if problem:
                    return {"env": env, "id": tid, "warning": f"{env}/{tid}: the store's archive was not used: {problem}"}
                os.mkdir(partial, 0o700)
                files = 0
                for member in tar.getmembers():
                    target = os.path.join(partial, member.name)
                    if member.isdir():
                        os.makedirs(target, 0o755, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
                    source = tar.extractfile(member)
                    if source is None:
                        raise SeedError(f"{member.name} could not be read from {archive}")
                    with source, open(target, "xb") as out:
                        shutil.copyfileobj(source, out)
                    files += 1
        except (OSError, tarfile.TarError, EOFError) as exc:
            remove_tree(partial)
            return {"env": env, "id": tid, "warning": f"{env}/{tid}: the store's archive was not used: {exc}"}
        for root, dirs, names in os.walk(partial):
            os.chown(root, 0, 0)
            os.chmod(root, 0o755)
            for name in dirs + names:
                path = os.path.join(root, name)
                os.chown(path, 0, 0, follow_symlinks=False)
                if name in names:
                    os.chmod(path, 0o644)
        remove_tree(final)
        os.rename(partial, final)
        return {"env": env, "id": tid, "files": files}
    finally:
        remove_tree(archive)


# --- seeding a user's compile directory (runs as the user) -----------------------------------


def seed_as_user(compiledir: str, env: str, tid: str, template: str, seed: dict[str, Any]) -> dict[str, Any]:
    """Copy a template's modules into this user's compile directory and drop those of the
    previous template of this env that the new one does not have. Runs as the user."""
    st = os.lstat(compiledir)
    if stat_mod.S_ISLNK(st.st_mode) or not stat_mod.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise SeedError(f"{compiledir} is not a directory of this user")
    marker_path = os.path.join(compiledir, MARKER)
    marker = read_json(marker_path)
    marker = marker if isinstance(marker, dict) else {}
    name = str(seed["compiledir_name"])
    target = os.path.join(compiledir, name)
    if not os.path.lexists(target):
        os.mkdir(target, 0o755)
    tst = os.lstat(target)
    if stat_mod.S_ISLNK(tst.st_mode) or not stat_mod.S_ISDIR(tst.st_mode) or tst.st_uid != os.geteuid():
        raise SeedError(f"{target} is not a directory of this user")
    modules, helpers = list(seed["modules"]), list(seed["helpers"])
    removed = 0
    old = marker.get(env) if isinstance(marker.get(env), dict) else {}
    old_dir = os.path.join(compiledir, str(old.get("compiledir_name") or name))
    for module in old.get("modules") or []:
        if MODULE_NAME.match(str(module)) and (module not in modules or old_dir != target):
            path = os.path.join(old_dir, str(module))
            if os.path.lexists(path):
                remove_tree(path)
                removed += 1
    work = os.path.join(compiledir, f".dlstack-seeding-{os.getpid()}")
    remove_tree(work)
    os.mkdir(work, 0o700)
    copied = kept = 0
    try:
        source = os.path.join(template, "compiledir")
        for sub in [*helpers, *modules]:
            path = os.path.join(target, sub)
            if os.path.lexists(path):
                if sub in helpers:  # Theano checks these itself and rebuilds them when they differ
                    kept += 1
                    continue
                with open(os.path.join(source, sub, "key.pkl"), "rb") as new_key:
                    wanted = new_key.read()
                try:
                    fd = os.open(os.path.join(path, "key.pkl"), os.O_RDONLY | os.O_NOFOLLOW)
                    with os.fdopen(fd, "rb") as have:
                        same = have.read() == wanted and not os.path.islink(path)
                except OSError:
                    same = False
                if same:
                    kept += 1
                    continue
                remove_tree(path)
            copy_tree(os.path.join(source, sub), os.path.join(work, sub))
            os.rename(os.path.join(work, sub), path)
            copied += 1
    finally:
        remove_tree(work)
    marker[env] = {"id": tid, "compiledir_name": name, "modules": modules, "template": template,
                   "build": seed.get("build"), "real": seed.get("real"), "seeded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(marker_path, marker, 0o600)
    return {"copied": copied, "removed": removed, "kept": kept}


def seed_user(item: dict[str, Any], seed_dir: str) -> dict[str, Any]:
    env, tid, user = str(item["env"]), str(item["id"]), str(item["user"])
    compiledir = str(item["compiledir"])
    if not ENV_NAME.match(env) or not ID.match(tid) or not os.path.isabs(compiledir):
        raise SeedError(f"bad seed request {item!r}")
    template = os.path.join(seed_dir, env, tid)
    problem = tree_is_root_only(template) if os.path.isdir(template) else f"{template} does not exist"
    if problem:
        raise SeedError(f"template {env}/{tid} not used: {problem}")
    seed = read_json(os.path.join(template, "seed.json"))
    if not isinstance(seed, dict) or not seed.get("compiledir_name"):
        raise SeedError(f"template {env}/{tid} has no usable seed.json")
    entry = pwd.getpwnam(user)
    outcome = run_as_user(user, entry.pw_uid, entry.pw_gid, seed_as_user, compiledir, env, tid, template, seed)
    return {"user": user, "env": env, "id": tid, **outcome}


def prune(seed_dir: str, env: str, keep: list[str]) -> list[str]:
    """Remove the templates of one env that are not kept, and any half-built leftovers."""
    removed = []
    env_dir = os.path.join(seed_dir, env)
    try:
        names = sorted(os.listdir(env_dir))
    except FileNotFoundError:
        return removed
    for name in names:
        if name not in keep:
            remove_tree(os.path.join(env_dir, name))
            removed.append(os.path.join(env_dir, name))
    return removed


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "seed_dir": {"type": "path", "required": True},
            "seed_user": {"type": "str", "required": True},
            "warmup": {"type": "str", "required": True},
            "timeout": {"type": "int", "default": 1800},
            "builds": {"type": "list", "elements": "dict", "default": []},
            "seeds": {"type": "list", "elements": "dict", "default": []},
            "prune": {"type": "list", "elements": "dict", "default": []},
            "imports": {"type": "list", "elements": "dict", "default": []},
            "export_dir": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    seed_dir = p["seed_dir"]
    if not os.path.isabs(seed_dir):
        module.fail_json(msg=f"seed_dir {seed_dir!r}: an absolute path is needed")
    if os.geteuid() != 0:
        module.fail_json(msg="dl_user_config_theano_seed needs root (it acts as the seed account and each user)")
    to_prune = [(str(i["env"]), [str(k) for k in i.get("keep") or []]) for i in p["prune"]]
    if p["export_dir"] and not os.path.isabs(p["export_dir"]):
        module.fail_json(msg=f"export_dir {p['export_dir']!r}: an absolute path is needed")
    if module.check_mode:
        would = bool(p["imports"] or p["builds"] or p["seeds"]) or any(
            set(os.listdir(os.path.join(seed_dir, env))) - set(keep)
            for env, keep in to_prune if os.path.isdir(os.path.join(seed_dir, env)))
        module.exit_json(changed=would, imported=[], built=[], seeded=[], pruned=[], problems=[])
    os.makedirs(seed_dir, 0o755, exist_ok=True)
    st = os.lstat(seed_dir)
    if not stat_mod.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        module.fail_json(msg=f"{seed_dir} must be a directory of root's, writable by root alone")
    # users read the templates when their directories are seeded (as them): 0755, whoever made it
    opened = stat_mod.S_IMODE(st.st_mode) != 0o755
    if opened:
        os.chmod(seed_dir, 0o755)
    imported: list[dict[str, Any]] = []
    built: list[dict[str, Any]] = []
    seeded: list[dict[str, Any]] = []
    pruned: list[str] = []
    with open(os.path.join(seed_dir, ".lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for item in p["imports"]:
                imported.append(import_template(item, seed_dir))
            for item in p["builds"]:
                built.append(build_template(item, seed_dir, p["seed_user"], p["warmup"], float(p["timeout"]),
                                            p["export_dir"]))
            for item in p["seeds"]:
                seeded.append(seed_user(item, seed_dir))
            for env, keep in to_prune:
                pruned += prune(seed_dir, env, keep)
        except (SeedError, SwitchError, OSError, KeyError) as exc:
            module.fail_json(msg=f"dl_user_config_theano_seed: {exc}", imported=imported, built=built, seeded=seeded,
                             pruned=pruned, changed=bool(imported or built or seeded or pruned))
    warnings = [i["warning"] for i in imported if i.get("warning")] + [w for b in built for w in b.get("warnings", [])]
    changed = opened or bool([i for i in imported if "files" in i] or [b for b in built if not b.get("existed") or b.get("archive")]
                   or seeded or pruned)
    module.exit_json(changed=changed, imported=imported, built=built, seeded=seeded, pruned=pruned, problems=warnings)


if __name__ == "__main__":
    main()
