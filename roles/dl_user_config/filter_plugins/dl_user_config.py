"""Filters of the dl_user_config role: layered per-user settings and their validation.

Ansible replaces lists and dicts wholesale when the same variable is set at several
inventory levels, so the role takes one variable per level and combines them here:

* settings: ``dl_user_config_defaults`` < ``_all_settings`` < ``_group_settings`` <
  ``_host_settings`` (deep merge, dicts only);
* users: ``dl_user_config_users`` (all) < ``_group_users`` < ``_host_users``, combined by
  user ``name``; a later level's entry deep-merges over an earlier one of the same name.
  Within one level a name may appear once: a level that lists a user twice is an error
  (nothing says which entry should win), raised while the levels are combined.

Each user's effective configuration is the merged settings with the merged user entry on
top. ``dl_user_config_errors`` checks it and returns one message per problem, each naming
the user, the field, the bad value and the allowed values, so preflight can report every
problem at once before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

# cuDNN's header is parsed by the project's one parser, plugins/module_utils/dlstack_cudnn.py
# (the cudnn role and dl-verify read it too): Ansible lets modules only import custom
# module_utils, so the filter finds the folder by its path in the repository
_SHARED = str(Path(__file__).resolve().parents[3] / "plugins" / "module_utils")
if _SHARED not in sys.path:
    sys.path.append(_SHARED)
import dlstack_cudnn  # noqa: E402

KERAS_FIELDS: dict[str, tuple[str, ...] | None] = {
    "backend": ("tensorflow", "theano", "cntk", "jax", "torch", "numpy", "openvino"),
    "floatx": ("float16", "float32", "float64"),
    "epsilon": None,
    "image_data_format": ("channels_last", "channels_first"),
}
THEANO_FIELDS: dict[str, tuple[str, ...] | None] = {
    "device": None,
    "floatX": ("float16", "float32", "float64"),
    "optimizer": ("fast_run", "fast_compile", "merge", "None", "unsafe", "stabilize", "o1", "o2", "o3", "o4"),
    "base_compiledir": None,
    "blas_ldflags": None,
    "cuda_root": None,
    "dnn_enabled": ("auto", "true", "false"),
    "dnn_include_path": None,
    "dnn_library_path": None,
    "extra_sections": None,
}
USER_FIELDS = ("name", "keras", "theano", "create", "state")
# the user lists of the inventory levels, in the order dl_user_config_merge_users takes them
USER_LEVELS = ("dl_user_config_users", "dl_user_config_group_users", "dl_user_config_host_users")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
DEVICE = re.compile(r"^(cpu|cuda|cuda(?P<n>[0-9]+)|opencl[0-9]+:[0-9]+)$")
DEVICE_ALLOWED = "cpu, cuda, cudaN (N below the host's GPU count), openclP:D"
SECTION = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
RESERVED_SECTIONS = ("global", "blas", "cuda", "dnn")


def _plain(value: Any) -> Any:
    """A deep copy made of plain dicts and lists.

    Ansible 2.19 hands filters lazy containers that hold the whole variable context:
    ``copy.deepcopy`` of one copies every host's variables too (seconds per host late in
    site.yml). Rebuilding the data instead copies only the data.
    """
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``top`` merged in; nested dicts merge, anything else replaces."""
    out = _plain(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = _plain(value)
    return out


def _level_name(index: int) -> str:
    return USER_LEVELS[index] if index < len(USER_LEVELS) else f"user list #{index}"


def merge_users(*levels: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Combine per-user lists from successive inventory levels by ``name``.

    Args:
        *levels: lists of user entries, lowest precedence first (all, group, host:
            ``USER_LEVELS``). ``None`` or empty levels are skipped.

    Returns:
        One entry per user name, in order of first appearance; entries of the same name
        deep-merge, the later level winning.

    Raises:
        AnsibleFilterError: a level is not a list, an entry is not a dict with a name, or a
            level lists a user twice (within one level nothing says which entry should win:
            the message names every such user and level).
    """
    merged: dict[str, dict[str, Any]] = {}
    twice: list[str] = []
    for index, level in enumerate(levels):
        if level is None:
            continue
        if isinstance(level, (str, bytes, Mapping)) or not isinstance(level, Iterable):
            raise AnsibleFilterError(f"dl_user_config: {_level_name(index)} must be a list of dicts, "
                                     f"got {type(level).__name__}")
        seen: dict[str, list[int]] = {}
        for position, entry in enumerate(level):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
                raise AnsibleFilterError(f"dl_user_config: every user entry needs a 'name', got {entry!r}")
            name = entry["name"]
            seen.setdefault(name, []).append(position)
            merged[name] = _deep_merge(merged.get(name, {}), entry)
        for name, positions in seen.items():
            if len(positions) > 1:
                times = "twice" if len(positions) == 2 else f"{len(positions)} times"
                twice.append(f"{_level_name(index)} lists user {name!r} {times} (entries "
                             f"{', '.join(f'#{p}' for p in positions)}); allowed: each user once per level "
                             "(entries of the same name merge across levels only)")
    if twice:
        raise AnsibleFilterError("dl_user_config: " + "; ".join(twice))
    return list(merged.values())


def merge_settings(defaults: Mapping[str, Any], *layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge the settings layers (all, group, host) over the role defaults."""
    out = dict(defaults)
    for layer in layers:
        if layer:
            if not isinstance(layer, Mapping):
                raise AnsibleFilterError(f"dl_user_config: settings layers must be dicts, got {type(layer).__name__}")
            out = _deep_merge(out, layer)
    return out


def effective_users(
    users: Iterable[Mapping[str, Any]], settings: Mapping[str, Any], create_default: bool = False
) -> list[dict[str, Any]]:
    """Each user's effective configuration: the merged settings, then the user's own.

    Args:
        users: the output of ``merge_users``.
        settings: the output of ``merge_settings`` (keys ``keras`` and ``theano``).
        create_default: ``create`` for users whose entry does not say.

    Returns:
        Dicts with ``name``, ``create`` (bool), ``state`` ('present'), ``keras`` and
        ``theano``. A ``{user}`` placeholder in theano.base_compiledir becomes the name.
    """
    out = []
    for user in users:
        keras = _deep_merge(settings.get("keras", {}), user.get("keras") or {})
        theano = _deep_merge(settings.get("theano", {}), user.get("theano") or {})
        if isinstance(theano.get("base_compiledir"), str):
            theano["base_compiledir"] = theano["base_compiledir"].replace("{user}", user["name"])
        entry = {k: _plain(v) for k, v in user.items() if k not in ("keras", "theano")}
        entry.update(keras=keras, theano=theano)
        entry.setdefault("create", bool(create_default))
        entry.setdefault("state", "present")
        out.append(entry)
    return out


def _bad(user: str, field: str, value: Any, allowed: str) -> str:
    return f"user {user}: {field} = {value!r} is invalid; allowed: {allowed}"


def user_errors(
    users: Iterable[Mapping[str, Any]],
    served_backends: Iterable[str] | None = None,
    gpu_count: int | str | None = 0,
) -> list[str]:
    """Validate effective user configurations; return one message per problem.

    Args:
        users: the output of ``effective_users``.
        served_backends: Keras backends that at least one env on the host serves; when
            None or empty the check that a backend is served is skipped (no env declared).
        gpu_count: NVIDIA GPUs on the host (cudaN needs N < gpu_count).

    Returns:
        Messages naming user, field, bad value and allowed values; empty when all is well.
    """
    errors: list[str] = []
    try:
        gpus = int(gpu_count or 0)
    except (TypeError, ValueError):
        return [f"dl_user_config_gpu_count = {gpu_count!r} is invalid; allowed: a whole number >= 0"]
    served = sorted(set(served_backends or []))
    for user in users:
        name = str(user.get("name"))
        if not USER_NAME.match(name):
            errors.append(_bad(name, "name", name, "a POSIX user name (lower case letters, digits, _ . -; 32 characters at most)"))
        for key in user:
            if key not in USER_FIELDS:
                errors.append(_bad(name, key, user[key], "fields " + ", ".join(USER_FIELDS)))
        if user.get("state", "present") not in ("present",):
            errors.append(_bad(name, "state", user.get("state"), "present"))
        if not isinstance(user.get("create", False), bool):
            errors.append(_bad(name, "create", user.get("create"), "true, false"))
        errors.extend(_keras_errors(name, user.get("keras") or {}, served))
        errors.extend(_theano_errors(name, user.get("theano") or {}, gpus))
        errors.extend(_float16_errors(name, user.get("keras") or {}, user.get("theano") or {}, served))
    return errors


def _float16_errors(name: str, keras: Mapping[str, Any], theano: Mapping[str, Any], served: list[str]) -> list[str]:
    """Keras float16 where a Theano env runs on the CPU: Theano's CPU convolution has no
    float16, and every user gets the Theano env's backend there (the backend hook), so Conv2D
    fails in that env whatever the user's own backend (found on the demo fleet)."""
    if "theano" in served and keras.get("floatx") == "float16" and str(theano.get("device")) == "cpu":
        return [_bad(name, "keras.floatx", "float16",
                     "float32 or float64 with theano.device cpu on a host with a Theano env "
                     "(Theano's CPU convolution has no float16), or a cuda device")]
    return []


def _field_errors(
    name: str,
    section: str,
    values: Mapping[str, Any],
    fields: Mapping[str, tuple[str, ...] | None],
    skip: tuple[str, ...] = (),
    lower: bool = False,
) -> list[str]:
    """Unknown fields of one section, and values outside a field's choices.

    ``skip`` names fields checked elsewhere; ``lower`` compares ``str(value).lower()``
    (Theano's options, where YAML booleans such as ``false`` are valid choices).
    """
    errors: list[str] = []
    for key, value in values.items():
        if key not in fields:
            errors.append(_bad(name, f"{section}.{key}", value, f"{section} fields " + ", ".join(fields)))
            continue
        choices = fields[key]
        shown = str(value).lower() if lower else value
        if key not in skip and choices is not None and shown not in choices:
            errors.append(_bad(name, f"{section}.{key}", value, ", ".join(choices)))
    return errors


def _keras_errors(name: str, keras: Mapping[str, Any], served: list[str]) -> list[str]:
    errors = _field_errors(name, "keras", keras, KERAS_FIELDS, skip=("backend",))
    epsilon = keras.get("epsilon")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
        errors.append(_bad(name, "keras.epsilon", epsilon, "a number between 0 and 1, e.g. 1.0e-07"))
    backend = keras.get("backend")
    known = KERAS_FIELDS["backend"] or ()
    if served and backend not in served:
        errors.append(_bad(name, "keras.backend", backend, "the backends the envs on this host serve: " + ", ".join(served)))
    elif backend not in known:
        errors.append(_bad(name, "keras.backend", backend, ", ".join(known)))
    return errors


def _theano_errors(name: str, theano: Mapping[str, Any], gpus: int) -> list[str]:
    errors = _field_errors(name, "theano", theano, THEANO_FIELDS, lower=True)
    device = str(theano.get("device"))
    match = DEVICE.match(device)
    if not match:
        hint = " ('gpu' values were removed in Theano 1.0)" if device.startswith("gpu") else ""
        errors.append(_bad(name, "theano.device", theano.get("device"), DEVICE_ALLOWED + hint))
    elif device.startswith("cuda"):
        index = int(match.group("n") or 0)
        if index >= gpus:
            errors.append(
                _bad(name, "theano.device", device,
                     f"cpu{', cuda, cuda0' if gpus else ''}{f'..cuda{gpus - 1}' if gpus > 1 else ''}"
                     f" (this host has {gpus} NVIDIA GPU{'s' if gpus != 1 else ''})")
            )
    compiledir = theano.get("base_compiledir")
    if not isinstance(compiledir, str) or not compiledir.startswith("/") or "/../" in compiledir + "/":
        errors.append(_bad(name, "theano.base_compiledir", compiledir,
                           "an absolute path without '..' (node-local disk; {user} becomes the user name)"))
    for key in ("cuda_root", "dnn_include_path", "dnn_library_path"):
        value = theano.get(key)
        if value not in (None, "") and (not isinstance(value, str) or not value.startswith("/")):
            errors.append(_bad(name, f"theano.{key}", value, "an absolute path, or empty to detect"))
    ldflags = theano.get("blas_ldflags")
    if ldflags is not None and (not isinstance(ldflags, str) or "\n" in ldflags):
        errors.append(_bad(name, "theano.blas_ldflags", ldflags, "linker flags on one line, '' for none, or null to detect OpenBLAS"))
    sections = theano.get("extra_sections") or {}
    if not isinstance(sections, Mapping):
        errors.append(_bad(name, "theano.extra_sections", sections, "a dict of section name -> dict of options"))
    else:
        for section, options in sections.items():
            if not SECTION.match(str(section)) or section in RESERVED_SECTIONS or not isinstance(options, Mapping):
                errors.append(_bad(name, f"theano.extra_sections.{section}", options,
                                   "a section name other than " + ", ".join(RESERVED_SECTIONS) + " mapping to a dict of options"))
    return errors


def account_errors(users: Iterable[Mapping[str, Any]], passwd: Mapping[str, Any]) -> list[str]:
    """Users whose account is missing and who are not marked ``create``.

    Args:
        users: the output of ``effective_users``.
        passwd: the accounts (user name -> passwd fields, as ``getent passwd``).
    """
    return [
        f"user {user['name']}: account = missing; allowed: an existing account, or create: true"
        for user in users
        if user["name"] not in passwd and not user.get("create")
    ]


def only_errors(only: Iterable[str], users: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names in ``dl_user_config_only`` that no inventory level declares."""
    declared = [str(user["name"]) for user in users]
    return [
        f"dl_user_config_only = {name!r} is invalid; allowed: the declared users {', '.join(declared) or '(none)'}"
        for name in only
        if name not in declared
    ]


def json_dict(text: str | None) -> dict[str, Any] | None:
    """Parse the text of a keras.json: a dict, {} for an empty file, None when unusable.

    None means the file is not a JSON object; the role then backs it up and writes the
    managed keys alone, with a warning.
    """
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def unusable_keras_json(paths: Iterable[Mapping[str, Any]]) -> list[str]:
    """One warning per user whose keras.json is there but not a JSON object.

    Args:
        paths: the ``paths`` of the ``dl_user_config_info`` module (keras.json read with
            ``content``).

    Returns:
        ``"<path> of <user> is not a JSON object; ..."`` per such file: the role backs it up
        and writes the managed keys alone.
    """
    return [f"{result['stat'].get('path', '~/.keras/keras.json')} of {result.get('user')} is not a JSON object; "
            "it is backed up and replaced by the managed settings"
            for result in paths
            if result.get("path") == ".keras/keras.json" and (result.get("stat") or {}).get("exists")
            and json_dict(result["stat"].get("content")) is None]


def path_errors(results: Iterable[Mapping[str, Any]], dirs: Iterable[Mapping[str, Any]] | None = None,
                passwd: Mapping[str, Any] | None = None) -> list[str]:
    """Problems found by inspecting each user's config locations as that user.

    Args:
        results: the ``paths`` of the ``dl_user_config_info`` module: one entry per user and
            path relative to the home (``''`` is the home), each with ``user``, ``path`` and
            either ``stat`` (``exists``, ``isdir``, ``islnk``, ``lnk_target``, ``path``, ``uid``)
            or ``failed`` and ``msg``.
        dirs: the module's ``dirs``: the same per user for absolute directories (Theano's
            compile directory).
        passwd: the module's ``passwd`` (name -> getent fields), for each user's uid.

    Returns:
        One message per home that is missing, per config location that is a symbolic link
        (the user controls it: dlstack refuses to follow it rather than write elsewhere),
        ``~/.keras`` or a directory that is not a directory or belongs to another uid (a
        stale directory of a deleted account of that name, or one planted in /var/tmp), and
        locations that could not be inspected.
    """
    errors: list[str] = []
    uids = {name: str(fields[2]) for name, fields in (passwd or {}).items()}
    for result in [*results, *(dirs or [])]:
        user, rel = str(result.get("user")), str(result.get("path", ""))
        where = rel if rel.startswith("/") else (f"~/{rel}" if rel else "home")
        if result.get("failed") or "stat" not in result:
            errors.append(f"user {user}: cannot inspect {where} as the user: {result.get('msg', 'unknown error')}")
            continue
        st = result["stat"]
        if not rel:
            if not st.get("exists") or not st.get("isdir"):
                errors.append(f"user {user}: home {st.get('path', '?')} = missing or not a directory; "
                              "allowed: an existing home directory")
        elif st.get("islnk"):
            errors.append(f"user {user}: {where} = a symbolic link to {st.get('lnk_target')!r}; "
                          f"allowed: a real {'directory' if rel.startswith('/') else 'file or directory inside the home'} "
                          "(dlstack does not follow links the user controls)")
        elif (rel == ".keras" or rel.startswith("/")) and st.get("exists"):
            if not st.get("isdir"):
                errors.append(f"user {user}: {where} = not a directory; allowed: a directory")
            elif user in uids and str(st.get("uid")) != uids[user]:
                errors.append(f"user {user}: {where} = a directory of uid {st.get('uid')}, not of {user} "
                              f"(uid {uids[user]}); allowed: the user's own directory (remove that one"
                              f"{', or set another theano.base_compiledir' if rel.startswith('/') else ''})")
    return errors


def file_is(state: Mapping[str, Any] | None, content: str, mode: str, uid: int | None = None,
            gid: int | None = None) -> bool:
    """True when a file state read by ``dl_user_config_info`` already is what a write would make.

    Args:
        state: ``stat`` of a path read with its content (``exists``, ``islnk``, ``isdir``,
            ``mode``, ``uid``, ``gid``, ``content``); empty or None when nothing was read.
        content: the wanted text; mode: the wanted mode (``'0644'``); uid, gid: the wanted
            owner when given.

    A link, a directory, another content, mode or owner, or a file not read: False (write it).
    """
    if not state or not state.get("exists") or state.get("islnk") or state.get("isdir"):
        return False
    return (state.get("content") == content and state.get("mode") == mode
            and (uid is None or state.get("uid") == uid) and (gid is None or state.get("gid") == gid))


def dir_is(state: Mapping[str, Any] | None, mode: str) -> bool:
    """True when a directory state read by ``dl_user_config_info`` already is a real directory of that mode."""
    return bool(state and state.get("exists") and state.get("isdir") and not state.get("islnk")
                and state.get("mode") == mode)


def passwd_entry(result: Mapping[str, Any]) -> list[str]:
    """``getent passwd`` fields of an account from an ``ansible.builtin.user`` result that created it."""
    for key in ("uid", "group", "home"):
        if result.get(key) is None:
            raise AnsibleFilterError(f"dl_user_config_passwd_entry: the user result has no {key!r}")
    return ["x", str(result["uid"]), str(result["group"]), str(result.get("comment") or ""), str(result["home"]),
            str(result.get("shell") or "")]


def public_envs(envs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The envs that exist on the node as ``dl_user_config_node_envs``: name, python, backends."""
    return [{"name": e["name"], "python": e["python"], "backends": list(e.get("backends") or [])}
            for e in envs if e.get("exists")]


SEED_KERAS = ("floatx", "epsilon", "image_data_format")


def _uses_theano(user: Mapping[str, Any], env: Mapping[str, Any]) -> bool:
    """Whether the user's Keras runs on Theano in this env (their backend, or the env's
    fallback when their backend is not served there: the backend hook)."""
    backends = list(env.get("backends") or [])
    backend = (user.get("keras") or {}).get("backend")
    return "theano" in backends and (backend == "theano" or (backend not in backends and backends[0] == "theano"))


def theano_profile(user: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    """What decides which C modules Theano compiles for a user, as their keras.json and
    .theanorc will say: Keras' floatx, epsilon and image_data_format, every Theano setting but
    the compile directory, and the node's values written into .theanorc (OpenBLAS, CUDA
    root, cuDNN). Users with equal profiles can share one seed template."""
    keras = user.get("keras") or {}
    theano = {k: _plain(v) for k, v in (user.get("theano") or {}).items() if k != "base_compiledir"}
    return {"keras": {k: keras.get(k) for k in SEED_KERAS}, "theano": theano, "node": _plain(dict(node))}


def _template_id(env: Mapping[str, Any], profile: Mapping[str, Any]) -> str:
    text = json.dumps({"build": env.get("build"), "profile": profile}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _marker(files: Iterable[Mapping[str, Any]], user: str) -> dict[str, Any]:
    for entry in files:
        if entry.get("user") == user and entry.get("name") == ".dlstack-seed.json":
            parsed = json_dict((entry.get("stat") or {}).get("content"))
            return parsed or {}
    return {}


def theano_seed_plan(read: Mapping[str, Any], targets: Iterable[Mapping[str, Any]], users: Iterable[Mapping[str, Any]],
                     node: Mapping[str, Any], prune: bool = True) -> dict[str, Any]:
    """What the Theano seed step must do on one node.

    Args:
        read: what ``dl_user_config_info`` read: ``envs`` (``exists``, ``backends``, ``build``,
            ``real``), ``theano_seeds`` (templates present: ``env``, ``id``, ``ok``) and
            ``user_files`` (each target's ``.dlstack-seed.json``, read as the user).
        targets: the users this run writes (effective settings); users: every declared user.
        node: the node's values written into every .theanorc (OpenBLAS, CUDA root, cuDNN).
        prune: also drop templates no declared user needs (false on one-user runs).

    Returns:
        ``builds`` (templates to build: env, id, python, build, real, profile, keras, user),
        ``seeds`` (compile directories to seed: user, compiledir, env, id: those whose marker
        names another template), ``prune`` (env, keep) and ``wanted`` (user -> env -> id).
    """
    envs, seeds, files = read.get("envs") or [], read.get("theano_seeds") or [], read.get("user_files") or []
    theano_envs = [e for e in envs if e.get("exists") and e.get("build") and "theano" in (e.get("backends") or [])]
    present = {(s.get("env"), s.get("id")) for s in seeds if s.get("ok")}
    builds: dict[tuple[str, str], dict[str, Any]] = {}
    to_seed: list[dict[str, Any]] = []
    wanted: dict[str, dict[str, str]] = {}
    for user in targets:
        marker = _marker(files, str(user["name"]))
        for env in theano_envs:
            if not _uses_theano(user, env):
                continue
            profile = theano_profile(user, node)
            tid = _template_id(env, profile)
            wanted.setdefault(str(user["name"]), {})[str(env["name"])] = tid
            if (env["name"], tid) not in present and (env["name"], tid) not in builds:
                builds[(env["name"], tid)] = {
                    "env": env["name"], "id": tid, "python": env["python"], "build": env["build"], "real": env.get("real"),
                    "profile": profile, "keras": profile["keras"], "user": user["name"]}
            if (marker.get(env["name"]) or {}).get("id") != tid:
                to_seed.append({"user": user["name"], "compiledir": (user.get("theano") or {}).get("base_compiledir"),
                                "env": env["name"], "id": tid})
    pruning = []
    if prune:
        for env in theano_envs:
            keep = sorted({_template_id(env, theano_profile(u, node)) for u in users if _uses_theano(u, env)})
            if {s.get("id") for s in seeds if s.get("env") == env["name"]} - set(keep):
                pruning.append({"env": env["name"], "keep": keep})
    return {"builds": list(builds.values()), "seeds": to_seed, "prune": pruning, "wanted": wanted}


def theano_seed_jobs(builds: Iterable[Mapping[str, Any]], platform: str, store: str) -> list[dict[str, Any]]:
    """The templates a node must build (its seed plan's ``builds``), each with ``key``: its
    name in the controller's store, ``PLATFORM/ENV-ID`` (the platform from
    ``dl_user_config_info``), or '' when there is no store or the node's platform is unknown
    (it then builds its own), and ``stored`` false until the store is looked at."""
    keyed = bool(store) and bool(platform)
    return [{**b, "key": f"{platform}/{b['env']}-{b['id']}" if keyed else "", "stored": False} for b in builds]


def _found_keys(looked: Mapping[str, Any]) -> set[str]:
    """The job keys a registered ``stat`` loop over keyed jobs found in the store."""
    return {r["item"]["key"] for r in looked.get("results") or [] if (r.get("stat") or {}).get("exists")}


def theano_seed_stored(jobs: Iterable[Mapping[str, Any]], looked: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The jobs with ``stored`` set from a registered ``stat`` loop over the keyed jobs."""
    found = _found_keys(looked)
    return [{**j, "stored": bool(j.get("key")) and j["key"] in found} for j in jobs]


def theano_seed_builders(jobs_by_host: Mapping[str, Any]) -> dict[str, str]:
    """Which node builds each template the store lacks: the first of the play (in play order)
    whose jobs need it; the others of its platform take it from the store afterwards."""
    builders: dict[str, str] = {}
    for host, jobs in jobs_by_host.items():
        for job in jobs or []:
            if job.get("key") and not job.get("stored"):
                builders.setdefault(str(job["key"]), str(host))
    return builders


def theano_seed_mine(jobs: Iterable[Mapping[str, Any]], builders: Mapping[str, str], host: str) -> list[dict[str, Any]]:
    """The jobs this node builds for the store (it is their builder)."""
    return [dict(j) for j in jobs if j.get("key") and not j.get("stored") and builders.get(str(j["key"])) == host]


def theano_seed_imports(jobs: Iterable[Mapping[str, Any]], looked: Mapping[str, Any], directory: str) -> list[dict[str, str]]:
    """The templates to install from the store (the keyed jobs a ``stat`` loop found there),
    each ``env``, ``id``, ``key`` and ``archive`` (its copy on the node, in ``directory``)."""
    found = _found_keys(looked)
    return [{"env": str(j["env"]), "id": str(j["id"]), "key": str(j["key"]),
             "archive": f"{directory.rstrip('/')}/{j['env']}-{j['id']}.tar.gz"}
            for j in jobs if j.get("key") in found]


def theano_seed_errors(enabled: Any, seed_dir: Any, seed_user: Any, timeout: Any) -> list[str]:
    """Problems with the Theano seed settings (empty when seeding is off)."""
    if not enabled:
        return []
    errors = []
    shared = ("", "/tmp", "/var/tmp")
    if not isinstance(seed_dir, str) or not seed_dir.startswith("/") or "/../" in seed_dir + "/" or seed_dir.rstrip("/") in shared:
        errors.append(f"dl_user_config_theano_seed_dir = {seed_dir!r} is invalid; allowed: an absolute path of its own "
                      "(root's; not /tmp or /var/tmp, where users can create names)")
    if not isinstance(seed_user, str) or not USER_NAME.match(seed_user) or seed_user == "root":
        errors.append(f"dl_user_config_theano_seed_user = {seed_user!r} is invalid; allowed: a POSIX user name "
                      "other than root (a system account of its own; the role creates it)")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        errors.append(f"dl_user_config_theano_seed_timeout = {timeout!r} is invalid; allowed: seconds, a whole number > 0")
    return errors


def theano_seed_store_errors(store: Any, enabled: Any = True) -> list[str]:
    """Problems with the controller's template store (empty when seeding is off)."""
    if not enabled or store == "":
        return []
    if not isinstance(store, str) or not store.startswith("/") or "/../" in store + "/":
        return [f"dl_user_config_theano_seed_store = {store!r} is invalid; allowed: an absolute path on the "
                "controller, or '' (each node builds its own templates)"]
    return []


def theano_seed_said(seeded: Mapping[str, Any] | None) -> list[str]:
    """What the seed step says of a node: the templates installed from the store, and the
    problems (an archive refused, a workload a build could not compile: the module's
    ``problems``; Ansible takes a module's ``warnings`` for its own)."""
    seeded = seeded or {}
    return ([f"template from the store: {i['env']}/{i['id']}" for i in seeded.get("imported") or [] if "files" in i]
            + [f"WARNING: {w}" for w in seeded.get("problems") or []])


def check_mode_unpredictable(targets: list[dict[str, Any]], passwd: Any, envs: list[dict[str, Any]], host: str) -> str:
    """In check mode: '' when every account the users' files need exists and every env is
    built; else the one line saying what check mode cannot predict on the node and why (the
    real run creates those accounts and envs first, then writes what depends on them)."""

    def missing(kind: str, names: list[str], state: str) -> list[str]:
        many = len(names) > 1
        return [f"the {kind}{'s' if many else ''} {', '.join(names)} {'are' if many else 'is'} {state}"] if names else []

    accounts = [str(u["name"]) for u in targets if u.get("create") and u["name"] not in (passwd or {})]
    why = (missing("account", accounts, "not created yet")
           + missing("env", [str(e["name"]) for e in envs if not e.get("exists")], "not built yet"))
    if not why:
        return ""
    users = ", ".join(str(u["name"]) for u in targets) or "no user"
    return (f"dl_user_config on {host}: check mode cannot predict the users' files, the envs' backend hooks or the "
            f"Theano seed templates: {' and '.join(why)}; the real run creates them first, then writes keras.json "
            f"and .theanorc for {users}, a backend hook into each env and the templates")


class FilterModule:
    """dl_user_config filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "dl_user_config_merge_users": merge_users,
            "dl_user_config_theano_seed_jobs": theano_seed_jobs,
            "dl_user_config_theano_seed_stored": theano_seed_stored,
            "dl_user_config_theano_seed_builders": theano_seed_builders,
            "dl_user_config_theano_seed_mine": theano_seed_mine,
            "dl_user_config_theano_seed_imports": theano_seed_imports,
            "dl_user_config_theano_seed_store_errors": theano_seed_store_errors,
            "dl_user_config_theano_seed_said": theano_seed_said,
            "dl_user_config_merge_settings": merge_settings,
            "dl_user_config_effective": effective_users,
            "dl_user_config_errors": user_errors,
            "dl_user_config_account_errors": account_errors,
            "dl_user_config_only_errors": only_errors,
            "dl_user_config_json_dict": json_dict,
            "dl_user_config_path_errors": path_errors,
            "dl_user_config_unusable_keras_json": unusable_keras_json,
            "dl_user_config_file_is": file_is,
            "dl_user_config_dir_is": dir_is,
            "dl_user_config_passwd_entry": passwd_entry,
            "dl_user_config_public_envs": public_envs,
            "dl_user_config_cudnn_from_header": dlstack_cudnn.cudnn_header_version,
            "dl_user_config_theano_profile": theano_profile,
            "dl_user_config_theano_seed_plan": theano_seed_plan,
            "dl_user_config_theano_seed_errors": theano_seed_errors,
            "dl_user_config_check_mode_unpredictable": check_mode_unpredictable,
        }
