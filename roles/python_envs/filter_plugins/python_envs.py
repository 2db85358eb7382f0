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
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable, Mapping

from ansible.errors import AnsibleFilterError

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


def parse_requirements(text: str, source: str = "requirements") -> dict[str, Any]:
    """Parse a lock: one exact ``name==version`` pin per line, ``#`` comments, blank lines.

    Anything else (ranges, extras, markers, URLs, pip options, includes) is a problem: the
    build installs the pins with ``--no-deps``, so the lock must list the whole closure,
    exactly. Returns ``{"pins": [{name, key, version, source, line}], "problems": [...]}``.
    """
    pins: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(str(text).splitlines(), start=1):
        line = raw.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        match = PIN.match(line)
        if match and VERSION.match(match["version"]):
            pins.append({"name": match["name"], "key": normalize_name(match["name"]),
                         "version": match["version"], "source": source, "line": number})
            continue
        if line.startswith("-"):
            why = "pip options and includes are not allowed (sources come from the role's variables)"
        elif "[" in line:
            why = "extras are not allowed: list the packages the extra brings, each pinned"
        elif ";" in line:
            why = "environment markers are not supported: use one lock per platform"
        elif "@" in line or "://" in line:
            why = "direct URLs are not allowed: put the wheel in the wheelhouse or index"
        elif "*" in line or "===" in line:
            why = "not an exact version"
        else:
            why = "not an exact pin 'name==version'"
        problems.append(f"{where}: {why}: {line!r}")
    return {"pins": pins, "problems": problems}


def merge_pins(pins: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge pins from several files: identical pins collapse, different versions conflict."""
    merged: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for pin in pins:
        seen = merged.get(pin["key"])
        if seen is None:
            merged[pin["key"]] = dict(pin)
        elif seen["version"] != pin["version"]:
            problems.append(f"conflicting pins for {pin['key']}: {seen['name']}=={seen['version']} "
                            f"({seen['source']}:{seen['line']}) and {pin['name']}=={pin['version']} "
                            f"({pin['source']}:{pin['line']})")
    return {"pins": [merged[k] for k in sorted(merged)], "problems": problems}


def requirements_text(pins: Iterable[Mapping[str, Any]]) -> str:
    """Canonical lock text: ``name==version`` lines sorted by normalized name."""
    return "".join(f"{p['key']}=={p['version']}\n" for p in sorted(pins, key=lambda p: p["key"]))


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
         gpu: bool, users: Iterable[str] | None = None, groups: Iterable[str] | None = None) -> dict[str, Any]:
    """Resolve every (normalized) env into what the build needs, or explain why it cannot be built.

    ``requirements``: ``[{env, file, role, path, text}]`` as read on the controller (an
    empty ``path`` means the file was not found); ``probes``: the registered interpreter
    probes (or interpreter -> ``{rc, executable, version, ...}``); ``users``/``groups``:
    account names on the node (None: not checked). Returns ``{"envs": [...],
    "problems": [...]}``; each env gets ``path``, ``python_version``, ``target`` (wheel
    tags), ``requirements_text``, ``pins``, ``sources``, ``variant`` and ``theano``.
    """
    probes = probes_by_python(probes)
    user_set = None if users is None else set(users)
    group_set = None if groups is None else set(groups)
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for env in envs:
        resolved = dict(env)
        name = resolved["name"]
        resolved["path"] = f"{resolved['root'].rstrip('/')}/{name}"
        resolved["theano"] = "theano" in resolved["backends"]
        resolved["variant"] = "gpu" if gpu and resolved.get("requirements_gpu") else "cpu"
        resolved.update(pins=[], sources=[], requirements_text="")
        if resolved["state"] != "present":
            out.append(resolved)
            continue
        if user_set is not None and resolved["owner"] not in user_set:
            problems.append(f"env '{name}': owner {resolved['owner']!r} does not exist on this host")
        if group_set is not None and resolved["group"] and resolved["group"] not in group_set:
            problems.append(f"env '{name}': group {resolved['group']!r} does not exist on this host")
        probe = probes.get(resolved["python"]) or {}
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
    return {"envs": out, "problems": problems}


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


def wheelhouse_jobs(env_lists: Iterable[Any]) -> list[dict[str, Any]]:
    """One ``pip download`` job per distinct (wheel target, lock) over the nodes' plans.

    ``env_lists``: each node's planned envs. Envs that share an interpreter target and a
    lock share a job, so N identical nodes make one download.
    """
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    for envs in env_lists:
        for env in envs or []:
            if env.get("state", "present") != "present" or "target" not in env:
                continue
            key = (env["target"]["tag"], env["requirements_text"])
            job = jobs.setdefault(key, {"tag": env["target"]["tag"], "target": env["target"],
                                        "requirements": env["requirements_text"],
                                        "pins": list(env.get("pins", [])), "envs": [],
                                        "id": hashlib.sha256(env["requirements_text"].encode()).hexdigest()[:12]})
            if env["name"] not in job["envs"]:
                job["envs"].append(env["name"])
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


def wheelhouse_problems(envs: list[Mapping[str, Any]], filenames: Iterable[str], wheelhouse: str,
                        needs_build: Iterable[str] | None = None) -> list[str]:
    """Pins of the envs (to build) that have no installable file in the wheelhouse.

    One message per env, naming the env, the interpreter's tags and each missing
    ``name==version``; envs not in ``needs_build`` (already built) are not checked.
    """
    files = _index_files(filenames)
    wanted = None if needs_build is None else set(needs_build)
    problems: list[str] = []
    for env in envs:
        if env.get("state", "present") != "present" or "target" not in env:
            continue
        if wanted is not None and env["name"] not in wanted:
            continue
        target = env["target"]
        missing = _missing_pins(env["pins"], target, files)
        if missing:
            problems.append(f"env '{env['name']}': the wheelhouse {wheelhouse} has no file for "
                            f"{', '.join(missing)} usable by {target['abi']} on {target['machine']} "
                            f"(glibc {target['glibc']}); rebuild it with playbooks/wheelhouse.yml")
    return problems


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
            "python_envs_plan": _checked(plan),
            "python_envs_wheel_target": _checked(wheel_target),
            "python_envs_wheelhouse_problems": _checked(wheelhouse_problems),
            "python_envs_wheelhouse_jobs": _checked(wheelhouse_jobs),
            "python_envs_wheelhouse_missing": _checked(wheelhouse_missing),
            "python_envs_installed": _checked(installed),
            "python_envs_config": _checked(envs_config),
        }
