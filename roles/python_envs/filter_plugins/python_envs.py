"""Filters of the python_envs role: env definitions, exact-pin locks, wheelhouse checks.

Everything the role decides before it touches a node is computed here, in plain Python, so
that preflight can report every problem at once (each message names the env and, where
there is one, the package) and so that the rules are unit-tested (tests/unit/).

* ``python_envs_definition_problems``: names, interpreters, backends, owners of the envs.
* ``python_envs_normalize``: fills in every optional field of the envs.
* ``python_envs_requirement_sources``: which requirements files each env installs (the GPU
  lock on GPU nodes, the Jupyter kernel lock when a kernel is asked for).
* ``python_envs_plan``: parses the locks (exact ``name==version`` pins only), merges them,
  rejects conflicting pins, and resolves each env to what the build module needs.
* ``python_envs_installed``: the public ``python_envs_installed`` fact from the builds.
* ``python_envs_wheelhouse_jobs``: the distinct downloads the nodes' envs need.
* ``python_envs_wheelhouse_missing``: a download's pins that have no file yet.
* ``python_envs_wheel_target``: the wheel tags an interpreter accepts (for the wheelhouse).
* ``python_envs_wheelhouse_problems``: pins with no usable file in an offline wheelhouse.
* ``python_envs_requirement_candidates``, ``python_envs_use_gpu``, ``python_envs_to_build``,
  ``python_envs_download_argv``, ``python_envs_apt_packages``: the small decisions of the
  tasks (where a lock is looked for, GPU or CPU locks, what needs a build, the ``pip
  download`` command, the system packages), kept out of the tasks' Jinja.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.plugins.filter.core import to_bool

ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
BACKENDS = ("theano", "tensorflow", "cntk", "jax", "torch", "numpy", "openvino")
ENV_FIELDS = ("name", "python", "requirements", "requirements_gpu", "backends", "system_site_packages",
              "jupyter_kernel", "environment_module", "collections_compat", "owner", "group", "root", "state")
PIN = re.compile(r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*==\s*(?P<version>[^\s;#\[\]=<>!~,*]+)\s*$")
VERSION = re.compile(r"^v?\d+(\.\d+)*((a|b|c|rc|alpha|beta|pre|preview)\.?\d*)?([.-]?post\d*)?(\.?dev\d*)?"
                     r"(\+[a-z0-9]+([._-][a-z0-9]+)*)?$", re.IGNORECASE)
SDIST_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".zip")
# Legacy manylinux names and the glibc they stand for (PEP 513, 571, 599).
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name: lower case, runs of ``-_.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _good_root(path: Any, allow_home: bool) -> bool:
    """An absolute path (or ``~/...`` when allowed) with no ``..`` component."""
    if not isinstance(path, str) or not (path.startswith("/") or (allow_home and path.startswith("~/"))):
        return False
    return ".." not in path.split("/")


def _label(env: Any, index: int) -> str:
    name = env.get("name") if isinstance(env, Mapping) else None
    return f"env '{name}'" if isinstance(name, str) and name else f"env #{index}"


def definition_problems(envs: Any, root: str = "/opt/dlstack/envs") -> list[str]:
    """Return one message per problem in the env definitions (empty list: all good).

    Checks what ``meta/argument_specs.yml`` cannot: name syntax (no slash, no ``..``),
    duplicate names, non-empty interpreter and requirements, known Keras backends,
    account names and absolute roots. Types are validated by the argument spec.
    """
    if not isinstance(envs, list):
        return [f"python_envs_envs must be a list of envs, not {type(envs).__name__}"]
    problems: list[str] = []
    if not _good_root(root, allow_home=False):
        problems.append(f"python_envs_root must be an absolute path without '..', not {root!r}")
    seen: dict[tuple[str, str], int] = {}
    for index, env in enumerate(envs):
        label = _label(env, index)
        if not isinstance(env, Mapping):
            problems.append(f"{label}: each env must be a mapping, not {type(env).__name__}")
            continue
        unknown = sorted(set(env) - set(ENV_FIELDS))
        if unknown:
            problems.append(f"{label}: unknown field(s) {', '.join(unknown)}; known: {', '.join(ENV_FIELDS)}")
        name = env.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{label}: 'name' is required")
        elif "/" in name or ".." in name or not ENV_NAME.match(name):
            problems.append(f"{label}: invalid name {name!r}: use lower-case letters, digits, '.', '_' and '-', "
                            "starting with a letter or digit; no '/' and no '..'")
        env_root = env.get("root", root)
        per_user = env.get("owner", "root") != "root"
        if env_root != root and not _good_root(env_root, allow_home=per_user):
            problems.append(f"{label}: 'root' must be an absolute path without '..'"
                            f"{' (or ~/... for a per-user env)' if per_user else ''}, not {env_root!r}")
        if isinstance(name, str) and isinstance(env_root, str):
            key = (env_root.rstrip("/"), name)
            if key in seen:
                problems.append(f"{label}: duplicate env name (also env #{seen[key]}) under {key[0]}")
            seen.setdefault(key, index)
        python = env.get("python")
        if not isinstance(python, str) or not python.strip() or any(c.isspace() for c in python):
            problems.append(f"{label}: 'python' must name an interpreter (python3.11, /usr/bin/python3), "
                            f"not {python!r}")
        for field in ("requirements", "requirements_gpu"):
            value = env.get(field)
            if (field == "requirements" or field in env) and (not isinstance(value, str) or not value.strip()):
                problems.append(f"{label}: '{field}' must be the path of a requirements file, not {value!r}")
        backends = env.get("backends")
        if not isinstance(backends, list) or not backends:
            problems.append(f"{label}: 'backends' must be a non-empty list (first = default), e.g. [tensorflow]")
        else:
            bad = [b for b in backends if b not in BACKENDS]
            if bad:
                problems.append(f"{label}: unknown backend(s) {', '.join(map(str, bad))}; "
                                f"known: {', '.join(BACKENDS)}")
            if len(set(map(str, backends))) != len(backends):
                problems.append(f"{label}: 'backends' lists a backend twice")
        for field in ("system_site_packages", "jupyter_kernel", "environment_module", "collections_compat"):
            if field in env and not isinstance(env[field], bool):
                problems.append(f"{label}: '{field}' must be true or false, not {env[field]!r}")
        for field in ("owner", "group"):
            if field in env and (not isinstance(env[field], str) or not USER_NAME.match(env[field])):
                problems.append(f"{label}: '{field}' must be an account name, not {env[field]!r}")
        if env.get("state", "present") not in ("present", "absent"):
            problems.append(f"{label}: 'state' must be present or absent, not {env.get('state')!r}")
    return problems


def normalize(envs: list[Mapping[str, Any]], root: str, user_root: str = "~/.local/share/dlstack/envs",
              jupyter_kernels: bool = False, environment_modules: bool = False) -> list[dict[str, Any]]:
    """The env definitions with every optional field filled in (call after definition_problems).

    ``root`` is python_envs_root for shared envs and ``user_root`` for per-user envs (owner
    other than root); ``jupyter_kernel`` and ``environment_module`` default to the
    role-wide switches.
    """
    out = []
    for env in envs:
        owner = env.get("owner", "root")
        out.append({
            "name": env["name"],
            "python": env["python"],
            "requirements": env["requirements"],
            "requirements_gpu": env.get("requirements_gpu", ""),
            "backends": list(env["backends"]),
            "system_site_packages": bool(env.get("system_site_packages", False)),
            "jupyter_kernel": bool(env.get("jupyter_kernel", jupyter_kernels)),
            "environment_module": bool(env.get("environment_module", environment_modules)),
            "collections_compat": bool(env.get("collections_compat", False)),
            "owner": owner,
            "group": env.get("group", ""),
            "root": str(env.get("root", root if owner == "root" else user_root)).rstrip("/") or "/",
            "state": env.get("state", "present"),
        })
    return out


def requirement_sources(envs: list[Mapping[str, Any]], gpu: bool, jupyter_requirements: str) -> list[dict[str, Any]]:
    """The requirements files of each present (normalized) env, in install order.

    An env's ``requirements_gpu`` replaces ``requirements`` on GPU nodes; the Jupyter kernel
    lock is added when the env asks for a kernel. Returns ``[{env, file, role}]``.
    """
    out: list[dict[str, Any]] = []
    for env in envs:
        if env["state"] != "present":
            continue
        use_gpu = bool(gpu and env["requirements_gpu"])
        out.append({"env": env["name"], "file": env["requirements_gpu"] if use_gpu else env["requirements"],
                    "role": "gpu" if use_gpu else "main"})
        if env["jupyter_kernel"]:
            out.append({"env": env["name"], "file": jupyter_requirements, "role": "jupyter"})
    return out


def requirement_candidates(file: str, role_path: str, playbook_dir: str) -> list[str]:
    """Where a requirements file named in an env is looked for on the controller, in order.

    The role's files/ (the shipped locks), the playbook's files/, the project's
    files/python_envs/ (next to site.yml, or to playbooks/ seen from a playbook there), and
    last the path as given. The task passes the list to the ``first_found`` lookup.
    """
    return [f"{role_path}/files/{file}", f"{playbook_dir}/files/{file}", f"{playbook_dir}/files/python_envs/{file}",
            f"{playbook_dir}/../files/python_envs/{file}", file]


def use_gpu(setting: Any, nvidia_gpu: Mapping[str, Any] | None, pci_probe: Mapping[str, Any]) -> bool:
    """Whether the node installs the GPU locks (``requirements_gpu``) of its envs.

    ``setting``: ``python_envs_gpu``, a boolean (taken as is) or ``auto``; with ``auto``,
    the ``present`` flag of the ``nvidia_gpu`` fact where the play gathered it (None: not
    gathered), else the registered PCI probe, whose output is ``yes`` when an NVIDIA device is
    on the bus (the probe is skipped, and the answer is no, where no env has a GPU lock).
    """
    if isinstance(setting, bool):
        return setting
    if nvidia_gpu is not None:
        return to_bool(nvidia_gpu["present"])
    return pci_probe.get("stdout", "no") == "yes"


HASH = re.compile(r"^--hash=sha256:(?P<digest>[0-9a-f]{64})$")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """``(first line number, text)`` of each requirement, comments dropped, ``\\`` joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(str(text).splitlines(), start=1):
        line = raw.split(" #", 1)[0].split("\t#", 1)[0]
        if line.lstrip().startswith("#"):
            line = ""
        continued = line.rstrip().endswith("\\")
        if continued:
            line = line.rstrip()[:-1]
        if not pending:
            start = number
        pending.append(line.strip())
        if not continued:
            joined = " ".join(part for part in pending if part)
            if joined:
                out.append((start, joined))
            pending = []
    joined = " ".join(part for part in pending if part)
    if joined:
        out.append((start, joined))
    return out


def parse_requirements(text: str, source: str = "requirements") -> dict[str, Any]:
    """Parse a lock: exact ``name==version`` pins, each with its ``--hash=sha256:`` values.

    The format ``uv pip compile --generate-hashes`` (and files/python_envs/relock) writes:
    one pin per requirement, continued over lines with ``\\``, ``#`` comments, blank lines.
    Anything else (ranges, extras, markers, URLs, other options, includes) is a problem: the
    build installs the pins with ``--no-deps --require-hashes``, so the lock must list the
    whole closure, exactly, with the sha256 of every file it may install. Returns
    ``{"pins": [{name, key, version, hashes, source, line}], "problems": [...]}``.
    """
    pins: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in _logical_lines(text):
        where = f"{source}:{number}"
        requirement, *options = line.split()
        if requirement.startswith("-"):
            problems.append(f"{where}: pip options and includes are not allowed (sources come from the role's "
                            f"variables): {line!r}")
            continue
        # "name == version" written with spaces: rejoin the requirement before its options
        while options and not options[0].startswith("--"):
            requirement += options.pop(0)
        match = PIN.match(requirement)
        if not match or not VERSION.match(match["version"]):
            problems.append(f"{where}: {_why_not_a_pin(line)}: {line!r}")
            continue
        hashes = []
        bad = []
        for option in options:
            found = HASH.match(option)
            if found:
                hashes.append(found["digest"])
            else:
                bad.append(option)
        pin = f"{match['name']}=={match['version']}"
        if bad:
            problems.append(f"{where}: {pin}: only --hash=sha256:<64 hex digits> may follow a pin, not "
                            f"{' '.join(bad)!r}")
            continue
        if not hashes:
            problems.append(f"{where}: {pin} has no --hash=sha256: (installs require the hash of every file): "
                            "regenerate the lock with files/python_envs/relock")
            continue
        pins.append({"name": match["name"], "key": normalize_name(match["name"]), "version": match["version"],
                     "hashes": sorted(set(hashes)), "source": source, "line": number})
    return {"pins": pins, "problems": problems}


def _why_not_a_pin(line: str) -> str:
    if "[" in line:
        return "extras are not allowed: list the packages the extra brings, each pinned"
    if ";" in line:
        return "environment markers are not supported: use one lock per platform"
    if "@" in line or "://" in line:
        return "direct URLs are not allowed: put the wheel in the wheelhouse or index"
    if "*" in line or "===" in line:
        return "not an exact version"
    return "not an exact pin 'name==version'"


def merge_pins(pins: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge pins from several files: identical pins collapse (their hashes joined), different
    versions conflict."""
    merged: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for pin in pins:
        seen = merged.get(pin["key"])
        if seen is None:
            merged[pin["key"]] = dict(pin, hashes=sorted(set(pin.get("hashes", []))))
        elif seen["version"] != pin["version"]:
            problems.append(f"conflicting pins for {pin['key']}: {seen['name']}=={seen['version']} "
                            f"({seen['source']}:{seen['line']}) and {pin['name']}=={pin['version']} "
                            f"({pin['source']}:{pin['line']})")
        else:
            seen["hashes"] = sorted(set(seen["hashes"]) | set(pin.get("hashes", [])))
    return {"pins": [merged[k] for k in sorted(merged)], "problems": problems}


def requirements_text(pins: Iterable[Mapping[str, Any]]) -> str:
    """Canonical lock text: ``name==version --hash=sha256:...`` lines sorted by normalized name."""
    return "".join(f"{p['key']}=={p['version']}" + "".join(f" --hash=sha256:{h}" for h in p.get("hashes", [])) + "\n"
                   for p in sorted(pins, key=lambda p: p["key"]))


def lock(text: str, source: str = "lock") -> dict[str, Any]:
    """One lock on its own (the uv tool's, the build tools'): ``{pins, requirements_text, problems}``."""
    parsed = parse_requirements(text, source)
    merged = merge_pins(parsed["pins"])
    problems = parsed["problems"] + merged["problems"]
    if not merged["pins"] and not problems:
        problems.append(f"{source} pins nothing")
    return {"pins": [f"{p['key']}=={p['version']}" for p in merged["pins"]],
            "requirements_text": requirements_text(merged["pins"]), "problems": problems}


def probes_by_python(results: Any) -> dict[str, dict[str, Any]]:
    """Interpreter -> probe, from a registered command loop (or an already built dict)."""
    if isinstance(results, Mapping):
        return {str(k): dict(v) for k, v in results.items()}
    out: dict[str, dict[str, Any]] = {}
    for result in results or []:
        probe: dict[str, Any] = {"rc": result.get("rc", 1)}
        if probe["rc"] == 0:
            try:
                probe.update(json.loads(str(result.get("stdout", "")).strip().splitlines()[-1]))
            except (ValueError, IndexError):
                probe.update(rc=1, error="unreadable probe output")
        else:
            # a missing executable: rc 2 and only "Error executing command." from the module
            text = str(result.get("stderr") or "").strip()
            if text:
                probe["error"] = text.splitlines()[-1]
            elif probe["rc"] in (2, 127):
                probe["error"] = "not found"
            else:
                probe["error"] = str(result.get("msg") or f"rc={probe['rc']}")
        out[str(result["item"])] = probe
    return out


def plan(envs: list[Mapping[str, Any]], requirements: list[Mapping[str, Any]], probes: Any,
         gpu: bool, users: Iterable[str] | None = None, groups: Iterable[str] | None = None,
         provided: Mapping[str, Any] | None = None, tools: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Resolve every (normalized) env into what the build needs, or explain why it cannot be built.

    ``requirements``: ``[{env, file, role, path, text}]`` as read on the controller (an
    empty ``path`` means the file was not found); ``probes``: the registered interpreter
    probes (or interpreter -> ``{rc, executable, version, ...}``); ``users``/``groups``:
    account names on the node (None: not checked). ``provided``: the interpreter the role
    builds and installs itself (``{python, version, system}``: its path, X.Y, and the
    system interpreter whose probe gives the node's platform while it is not installed
    yet). ``tools``: ``{python, uv: <lock()>, build: <lock()>}``, the uv tool env (built
    with the system interpreter) and the build tools of source distributions.

    Returns ``{"envs": [...], "downloads": [...], "provided_python": bool, "problems":
    [...]}``; each env gets ``path``, ``python_version``, ``target`` (wheel tags),
    ``requirements_text``, ``pins``, ``sources``, ``variant``, ``theano`` and
    ``provided_python``; ``downloads`` lists every lock a wheelhouse must serve for the node
    (``{name, label, kind, target, requirements_text, pins}``: each env's, the build tools'
    for each env target, the uv tool's).
    """
    probes = probes_by_python(probes)
    user_set = None if users is None else set(users)
    group_set = None if groups is None else set(groups)
    provided = dict(provided or {})
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for env in envs:
        resolved = dict(env)
        name = resolved["name"]
        resolved["path"] = f"{resolved['root'].rstrip('/')}/{name}"
        resolved["theano"] = "theano" in resolved["backends"]
        resolved["variant"] = "gpu" if gpu and resolved.get("requirements_gpu") else "cpu"
        resolved["provided_python"] = bool(provided) and resolved["python"] == provided.get("python")
        resolved.update(pins=[], sources=[], requirements_text="")
        if resolved["state"] != "present":
            out.append(resolved)
            continue
        if user_set is not None and resolved["owner"] not in user_set:
            problems.append(f"env '{name}': owner {resolved['owner']!r} does not exist on this host")
        if group_set is not None and resolved["group"] and resolved["group"] not in group_set:
            problems.append(f"env '{name}': group {resolved['group']!r} does not exist on this host")
        probe = probes.get(resolved["python"]) or {}
        if resolved["provided_python"] and (probe.get("rc", 1) != 0 or not probe.get("version")):
            # not installed yet (the role installs it before building): the node's platform
            # from the system interpreter, the version from the recipe
            probe = dict(probes.get(provided.get("system", "")) or {}, version=str(provided.get("version")),
                         executable=resolved["python"], implementation="cpython")
        if probe.get("rc", 1) != 0 or not probe.get("version"):
            problems.append(f"env '{name}': python {resolved['python']!r} is not usable on this host "
                            f"({probe.get('error') or 'not found'}); install it or declare another interpreter")
        else:
            resolved["python_version"] = probe["version"]
            resolved["python_executable"] = probe.get("executable", "")
            resolved["target"] = wheel_target(probe)
        pins: list[dict[str, Any]] = []
        for req in (r for r in requirements if r["env"] == name):
            resolved["sources"].append(req["file"])
            if not req.get("path"):
                problems.append(f"env '{name}': requirements file {req['file']!r} not found "
                                "(looked in the role's files/, the playbook's files/, and as a path)")
                continue
            parsed = parse_requirements(req.get("text", ""), req["file"])
            problems.extend(f"env '{name}': {p}" for p in parsed["problems"])
            if not parsed["pins"] and not parsed["problems"]:
                problems.append(f"env '{name}': requirements file {req['file']!r} pins nothing")
            pins.extend(parsed["pins"])
        merged = merge_pins(pins)
        problems.extend(f"env '{name}': {p}" for p in merged["problems"])
        if resolved["jupyter_kernel"] and "ipykernel" not in {p["key"] for p in merged["pins"]}:
            problems.append(f"env '{name}': jupyter_kernel needs ipykernel pinned in its requirements")
        resolved["pins"] = [f"{p['key']}=={p['version']}" for p in merged["pins"]]
        resolved["requirements_text"] = requirements_text(merged["pins"])
        out.append(resolved)
    downloads = _downloads(out, probes, tools or {}, problems)
    return {"envs": out, "downloads": downloads, "problems": problems,
            "provided_python": any(e["provided_python"] and e["state"] == "present" for e in out)}


def _downloads(envs: list[dict[str, Any]], probes: Mapping[str, Mapping[str, Any]], tools: Mapping[str, Any],
               problems: list[str]) -> list[dict[str, Any]]:
    """The locks a wheelhouse must serve for one node (see ``plan``)."""
    out: list[dict[str, Any]] = []
    present = [e for e in envs if e["state"] == "present" and "target" in e]
    for env in present:
        out.append({"name": env["name"], "label": f"env '{env['name']}'", "kind": "env", "target": env["target"],
                    "requirements_text": env["requirements_text"], "pins": env["pins"]})
    build = tools.get("build") or {}
    for env in present if build.get("pins") else []:
        out.append({"name": env["name"], "label": f"env '{env['name']}' (build tools)", "kind": "build",
                    "target": env["target"], "requirements_text": build["requirements_text"],
                    "pins": build["pins"]})
    uv = tools.get("uv") or {}
    if uv.get("pins") and present:
        probe = probes.get(str(tools.get("python", ""))) or {}
        if probe.get("rc", 1) != 0 or not probe.get("version"):
            problems.append(f"the uv tool: python {tools.get('python')!r} is not usable on this host "
                            f"({probe.get('error') or 'not found'}); uv is installed with the system interpreter")
        else:
            out.append({"name": "uv", "label": "the uv tool", "kind": "tool", "target": wheel_target(probe),
                        "requirements_text": uv["requirements_text"], "pins": uv["pins"]})
    return out


def installed(results: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``python_envs_installed`` from the build module's registered loop: present envs only."""
    out = []
    for result in results:
        env = result["item"]
        if env.get("state", "present") != "present" or result.get("skipped"):
            continue
        out.append({"name": env["name"], "path": result["path"], "python": result["python"],
                    "backends": list(env["backends"])})
    return out


def envs_config(envs: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The content of /etc/dlstack/envs.json, as dl-verify --envs-config reads it."""
    return {"envs": [{"name": e["name"], "python": e["python"], "backends": list(e["backends"])} for e in envs]}


def _job_key(entry: Mapping[str, Any]) -> tuple[str, str]:
    """What makes a node's download (a ``downloads`` entry) one ``pip download`` job: the
    interpreter target and the lock."""
    return (entry["target"]["tag"], entry["requirements_text"])


def _pending_keys(jobs: Iterable[Mapping[str, Any]] | None) -> set[tuple[str, str]]:
    """The ``_job_key`` of each job (``wheelhouse_jobs``)."""
    return {(job["tag"], job["requirements"]) for job in jobs or []}


def _entry_label(entry: Mapping[str, Any]) -> str:
    """How messages name a download entry: its label (a tool), else the env."""
    return str(entry.get("label") or f"env '{entry['name']}'")


def wheelhouse_jobs(download_lists: Iterable[Any]) -> list[dict[str, Any]]:
    """One ``pip download`` job per distinct (wheel target, lock) over the nodes' downloads.

    ``download_lists``: each node's ``plan(...)["downloads"]`` (or its planned envs).
    Entries that share an interpreter target and a lock share a job, so N identical nodes
    make one download.
    """
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    for entries in download_lists:
        for entry in entries or []:
            if entry.get("state", "present") != "present" or "target" not in entry:
                continue
            key = _job_key(entry)
            job = jobs.setdefault(key, {"tag": entry["target"]["tag"], "target": entry["target"],
                                        "requirements": entry["requirements_text"],
                                        "pins": list(entry.get("pins", [])), "envs": [],
                                        "id": hashlib.sha256(entry["requirements_text"].encode()).hexdigest()[:12]})
            if entry["name"] not in job["envs"]:
                job["envs"].append(entry["name"])
    return [jobs[k] for k in sorted(jobs)]


def wheel_target(probe: Mapping[str, Any]) -> dict[str, Any]:
    """Wheel tags an interpreter accepts, from its probe (version, machine, libc).

    Returns ``{tag, python_version, implementation, abi, machine, glibc, platforms}``:
    ``tag`` names a wheelhouse subdirectory (``cp311-x86_64-glibc2.36``), ``platforms``
    are the ``--platform`` values for ``pip download`` (manylinux down to 2_5, and linux).
    """
    version = str(probe["version"])
    major, minor = (int(x) for x in version.split(".")[:2])
    impl = "cp" if probe.get("implementation", "cpython") == "cpython" else "pp"
    machine = str(probe.get("machine") or "x86_64")
    libc = probe.get("libc") or ["glibc", "2.17"]
    glibc = str(libc[1]) if len(libc) > 1 and libc[0] == "glibc" and libc[1] else "2.17"
    gmajor, gminor = (int(x) for x in glibc.split(".")[:2])
    platforms = [f"manylinux_{gmajor}_{m}_{machine}" for m in range(gminor, 4, -1)]
    platforms += [f"{legacy}_{machine}" for legacy, (lmaj, lmin) in LEGACY_MANYLINUX.items()
                  if (lmaj, lmin) <= (gmajor, gminor)]
    platforms.append(f"linux_{machine}")
    return {
        "tag": f"{impl}{major}{minor}-{machine}-glibc{gmajor}.{gminor}",
        "python_version": f"{major}.{minor}",
        "implementation": impl,
        "abi": f"{impl}{major}{minor}",
        "machine": machine,
        "glibc": f"{gmajor}.{gminor}",
        "platforms": platforms,
    }


def parse_distribution_file(filename: str) -> dict[str, Any] | None:
    """Name, version and tags of a wheel or sdist file name; None for other files."""
    base = filename.rsplit("/", 1)[-1]
    if base.endswith(".whl"):
        parts = base[:-4].split("-")
        if len(parts) not in (5, 6):
            return None
        return {"key": normalize_name(parts[0]), "version": parts[1], "python": parts[-3].split("."),
                "abi": parts[-2].split("."), "platform": parts[-1].split("."), "sdist": False}
    for suffix in SDIST_SUFFIXES:
        if base.endswith(suffix):
            stem = base[: -len(suffix)]
            if "-" not in stem:
                return None
            name, version = stem.rsplit("-", 1)
            return {"key": normalize_name(name), "version": version, "python": [], "abi": [], "platform": [],
                    "sdist": True}
    return None


def _platform_ok(tag: str, target: Mapping[str, Any]) -> bool:
    machine = target["machine"]
    if tag == "any":
        return True
    if not tag.endswith("_" + machine):
        return False
    stem = tag[: -len(machine) - 1]
    if stem == "linux":
        return True
    if stem in LEGACY_MANYLINUX:
        return LEGACY_MANYLINUX[stem] <= tuple(int(x) for x in target["glibc"].split("."))
    match = re.match(r"^manylinux_(\d+)_(\d+)$", stem)
    if match:
        return (int(match[1]), int(match[2])) <= tuple(int(x) for x in target["glibc"].split("."))
    return False


def _python_abi_ok(pythons: list[str], abis: list[str], target: Mapping[str, Any]) -> bool:
    major, minor = (int(x) for x in target["python_version"].split("."))
    impl = target["implementation"]
    generic = {f"py{major}", f"py{major}{minor}", f"{impl}{major}{minor}"}
    for py in pythons:
        for abi in abis:
            if abi == "none" and py in generic:
                return True
            if abi in (f"{impl}{major}{minor}", f"{impl}{major}{minor}m") and py == f"{impl}{major}{minor}":
                return True
            if abi == "abi3" and re.match(rf"^{impl}{major}\d+$", py) and int(py[len(impl) + 1:]) <= minor:
                return True
    return False


def file_matches(info: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    """True when a parsed wheel (or any sdist) can be installed by the target interpreter."""
    if info["sdist"]:
        return True
    return (_python_abi_ok(list(info["python"]), list(info["abi"]), target)
            and any(_platform_ok(p, target) for p in info["platform"]))


def _index_files(filenames: Iterable[str]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Parsed distribution files by (normalized name, version)."""
    files: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for filename in filenames:
        info = parse_distribution_file(filename)
        if info:
            files.setdefault((info["key"], normalize_version(info["version"])), []).append(info)
    return files


def _missing_pins(pins: Iterable[str], target: Mapping[str, Any],
                  files: Mapping[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    """The ``name==version`` pins with no file the target interpreter can install."""
    missing = []
    for pin in pins:
        key, version = pin.split("==", 1)
        if not any(file_matches(c, target) for c in files.get((key, normalize_version(version)), [])):
            missing.append(pin)
    return missing


def wheelhouse_missing(job: Mapping[str, Any], filenames: Iterable[str]) -> list[str]:
    """The pins of one wheelhouse job (``python_envs_wheelhouse_jobs``) not downloaded yet.

    Empty when every pinned distribution already has a file for the job's target in the
    listed files: playbooks/wheelhouse.yml then skips ``pip download`` (which would ask the
    index about every pin again) for that job.
    """
    return _missing_pins(job["pins"], job["target"], _index_files(filenames))


def wheelhouse_pending(jobs: Iterable[Mapping[str, Any]], paths: Iterable[str], store: str) -> list[Mapping[str, Any]]:
    """The wheelhouse jobs whose directory (``store``/<tag>) lacks a file for one of their pins:
    the ``pip download`` runs playbooks/wheelhouse.yml makes (none for a complete job, so a
    re-run does not reach the index at all), and, in check mode, the downloads it leaves out."""
    by_dir: dict[str, list[str]] = {}
    for path in paths:
        by_dir.setdefault(posixpath.dirname(path), []).append(path)
    return [job for job in jobs
            if wheelhouse_missing(job, by_dir.get(posixpath.join(store, job["tag"]), []))]


def wheelhouse_unchecked(entries: Iterable[Mapping[str, Any]], pending: Iterable[Mapping[str, Any]]) -> list[str]:
    """The node's envs (and tools) whose download is ``pending`` (check mode did not make it):
    "env 'NAME' (TAG)" each, in the entries' order."""
    keys = _pending_keys(pending)
    if not keys:
        return []
    return [f"{_entry_label(entry)} ({entry['target']['tag']})" for entry in entries
            if entry.get("state", "present") == "present" and "target" in entry and _job_key(entry) in keys]


def wheelhouse_problems(entries: list[Mapping[str, Any]], filenames: Iterable[str], wheelhouse: str,
                        needs_build: Iterable[str] | None = None,
                        pending: Iterable[Mapping[str, Any]] | None = None) -> list[str]:
    """Pins of the envs (and tools) to build that have no installable file in the wheelhouse.

    ``entries``: the node's ``downloads`` (or planned envs). One message per entry, naming
    the env (or tool), the interpreter's tags and each missing ``name==version``; entries
    whose name is not in ``needs_build`` (already built) are not checked, nor, in check mode,
    those whose download is ``pending`` (``wheelhouse_pending``: the real run makes it before
    it ships the files; ``wheelhouse_unchecked`` names them).
    """
    files = _index_files(filenames)
    wanted = None if needs_build is None else set(needs_build)
    skipped = _pending_keys(pending)
    problems: list[str] = []
    for entry in entries:
        if entry.get("state", "present") != "present" or "target" not in entry:
            continue
        if wanted is not None and entry["name"] not in wanted:
            continue
        if skipped and _job_key(entry) in skipped:
            continue
        target = entry["target"]
        missing = _missing_pins(entry["pins"], target, files)
        if missing:
            problems.append(f"{_entry_label(entry)}: the wheelhouse {wheelhouse} has no file for "
                            f"{', '.join(missing)} usable by {target['abi']} on {target['machine']} "
                            f"(glibc {target['glibc']}); rebuild it with playbooks/wheelhouse.yml")
    return problems


def to_build(results: Iterable[Mapping[str, Any]], uv_status: Mapping[str, Any]) -> list[str]:
    """The envs (by name) and tools that need a build, from the build module's check-mode runs.

    ``results``: the registered loop over the present envs (skipped items carry no
    ``needs_build``); ``uv_status``: the check of the uv tool env, named ``uv`` when it needs
    a build.
    """
    names = [r["item"]["name"] for r in results if r.get("needs_build")]
    return names + (["uv"] if uv_status.get("needs_build", False) else [])


def download_argv(job: Mapping[str, Any], python: str, directory: str, index_url: str = "") -> list[str]:
    """The ``pip download`` command of one wheelhouse job (``python_envs_wheelhouse_jobs``).

    Only the pinned files (``--no-deps``), each checked against the lock's hashes
    (``--require-hashes``), for the job's interpreter (version, implementation, ABI, also
    ``abi3`` and ``none``) and platforms, into ``directory``, which holds the job's lock as
    ``requirements-<id>.txt`` and the files already downloaded (``--find-links``); from
    ``index_url`` when given, else pip's default index.
    """
    target = job["target"]
    argv = [python, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
            "--dest", directory, "--find-links", directory,
            "--python-version", target["python_version"], "--implementation", target["implementation"],
            "--abi", target["abi"], "--abi", "abi3", "--abi", "none"]
    argv += [f"--platform={platform}" for platform in target["platforms"]]
    argv += ["--index-url", index_url] if index_url else []
    return [*argv, "--requirement", f"{directory}/requirements-{job['id']}.txt"]


def apt_packages(plan: Mapping[str, Any], base: list[str], theano: list[str], runtime: list[str],
                 extra: list[str]) -> list[str]:
    """The system packages a node installs for its envs, from its ``plan``.

    Always ``base`` (venv support) and ``extra`` (``python_envs_extra_packages``); ``theano``
    (the C compiler and BLAS Theano builds with) when a present env has the Theano backend;
    ``runtime`` (the libraries of the interpreter the role builds) when an env uses that
    interpreter (``provided_python``).
    """
    wants_theano = any(e["state"] == "present" and e["theano"] for e in plan["envs"])
    return [*base, *(theano if wants_theano else []), *(runtime if plan["provided_python"] else []), *extra]


DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def interpreter_job(recipe: Mapping[str, Any], facts: Mapping[str, Any], installed: str = "") -> dict[str, Any]:
    """The interpreter package a node needs, from the recipe and the node's facts.

    ``recipe``: ``{package, version, sha256, configure}`` (python_envs_python_* and the
    configure options); ``facts``: ``distribution``, ``distribution_major_version``,
    ``architecture``; ``installed``: the package version on the node (``dpkg-query``), empty
    when none. The package is built once per platform (distribution, release,
    architecture) and recipe: its version carries the recipe's hash, so a node whose
    package has that version needs nothing (``install`` false). Returns ``{platform,
    recipe, version, deb, install}``.
    """
    machine = str(facts["architecture"])
    platform = f"{str(facts['distribution']).lower()}{facts['distribution_major_version']}-{machine}"
    ident = {"format": 1, "version": str(recipe["version"]), "sha256": str(recipe["sha256"]),
             "configure": [str(c) for c in recipe["configure"]], "platform": platform}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    version = f"{recipe['version']}+dlstack.{digest[:12]}"
    arch = DEB_ARCH.get(machine, machine)
    return {"platform": platform, "recipe": digest, "version": version,
            "deb": f"{recipe['package']}_{version}_{arch}.deb", "install": installed != version}


def interpreter_builders(jobs: Mapping[str, Any]) -> dict[str, str]:
    """The node that builds each platform's package: the first (in play order) that needs it.

    ``jobs``: host -> ``{platform, install, stored}`` (``stored``: the controller's store
    already has the package); hosts with an empty job are ignored. Returns platform -> host
    for the platforms that need a build.
    """
    builders: dict[str, str] = {}
    for host, job in jobs.items():
        if job and job.get("install") and not job.get("stored"):
            builders.setdefault(str(job["platform"]), str(host))
    return builders


def pins_any(download_lists: Iterable[Any], name: str) -> bool:
    """Whether any node's downloads (or envs) pin the project ``name``."""
    key = normalize_name(name)
    for entries in download_lists:
        for entry in entries or []:
            if any(normalize_name(str(pin).split("==", 1)[0]) == key for pin in entry.get("pins", [])):
                return True
    return False


def normalize_version(version: str) -> str:
    """Loose version normalization for file matching: lower case, no leading 'v'."""
    version = version.lower()
    return version[1:] if version.startswith("v") else version


def _checked(func: Any) -> Any:
    """Turn unexpected input errors into AnsibleFilterError naming the filter."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise AnsibleFilterError(f"python_envs filter {func.__name__}: {type(exc).__name__}: {exc}") from exc
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


class FilterModule:
    """Ansible entry point: the role's filters."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {
            "python_envs_definition_problems": _checked(definition_problems),
            "python_envs_normalize": _checked(normalize),
            "python_envs_requirement_sources": _checked(requirement_sources),
            "python_envs_parse_requirements": _checked(parse_requirements),
            "python_envs_lock": _checked(lock),
            "python_envs_plan": _checked(plan),
            "python_envs_wheel_target": _checked(wheel_target),
            "python_envs_wheelhouse_problems": _checked(wheelhouse_problems),
            "python_envs_wheelhouse_jobs": _checked(wheelhouse_jobs),
            "python_envs_wheelhouse_pending": _checked(wheelhouse_pending),
            "python_envs_wheelhouse_unchecked": _checked(wheelhouse_unchecked),
            "python_envs_installed": _checked(installed),
            "python_envs_config": _checked(envs_config),
            "python_envs_interpreter_job": _checked(interpreter_job),
            "python_envs_interpreter_builders": _checked(interpreter_builders),
            "python_envs_pins_any": _checked(pins_any),
            "python_envs_requirement_candidates": _checked(requirement_candidates),
            "python_envs_use_gpu": _checked(use_gpu),
            "python_envs_to_build": _checked(to_build),
            "python_envs_download_argv": _checked(download_argv),
            "python_envs_apt_packages": _checked(apt_packages),
        }
