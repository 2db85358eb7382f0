"""Filters of the nvidia_driver role: the install plan and its validation, and probe parsers.

``nvidia_driver_plan`` turns the role's variables, what the platform offers and the GPUs the
detection module found into the effective branch, version patterns and kernel module flavor,
plus one message per problem in the input (each naming the variable, the bad value and the
allowed values), so that preflight can report every problem at once before anything changes.

The parsers read the output of read-only probes: ``apt-cache policy`` (installed and
candidate versions), ``dpkg-query`` (installed packages and their holds) and ``dkms status``.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Iterable, Mapping, Optional

from ansible.errors import AnsibleFilterError

METHODS = ("nvidia", "distro")
FLAVORS = ("auto", "open", "proprietary")
KERNEL_STEPS = ("auto", "run", "skip")
BRANCH_RE = re.compile(r"^[1-9][0-9]{2}$")
VERSION_RE = re.compile(r"^(?P<branch>[1-9][0-9]{2})\.[0-9]+(?:\.[0-9]+)?$")
URL_RE = re.compile(r"^(https?|file)://[^\s]+$")
CHECKSUM_RE = re.compile(r"^(sha256:[0-9a-fA-F]{64}|sha512:[0-9a-fA-F]{128})$")
# Debian 12 '6.1.0-26-amd64' -> 'amd64', '6.1.0-26-cloud-amd64' -> 'cloud-amd64'; Debian 13
# '6.12.48+deb13-amd64' -> 'amd64', backports '6.12.12+bpo-amd64'; Ubuntu '6.8.0-45-generic' -> 'generic'
KERNEL_FLAVOR_RE = re.compile(
    r"^[0-9]+\.[0-9]+(?:\.[0-9]+)?(?:-[0-9]+(?:\.[0-9]+)*|\+[a-z0-9.~]+)-(?P<flavor>[a-z][a-z0-9-]*)$")


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        raise AnsibleFilterError(f"version-like value {value!r} is a float: quote it in YAML")
    return str(value).strip()


def _device_id(gpu: Mapping[str, Any]) -> Optional[int]:
    try:
        return int(str(gpu.get("device_id")), 16)
    except (TypeError, ValueError):
        return None


def _gpu_label(gpu: Mapping[str, Any]) -> str:
    return f"{gpu.get('pci_address')} (device {gpu.get('device_id')})"


def nvidia_driver_plan(cfg: Mapping[str, Any], offers: Mapping[str, Any], gpus: Iterable[Mapping[str, Any]] = (),
                       platform: str = "this platform") -> dict[str, Any]:
    """Validate the role's input and compute the effective install plan.

    Args:
        cfg: the role's variables without their ``nvidia_driver_`` prefix: ``method``,
            ``branch``, ``version``, ``kernel_module_flavor``, ``kernel_module_steps``,
            ``repo_base_url``, ``repo_keyring_checksum``, ``module_signing_key``,
            ``module_signing_cert``.
        offers: what each method offers on this platform: ``{"nvidia": {...}, "distro": {...}}``,
            each with ``branches`` (empty: any), ``default_branch``, ``flavors`` and an
            optional ``flavor_note`` explaining a missing flavor.
        gpus: ``ansible_facts.nvidia_gpu.gpus`` (used for the flavor).
        platform: a name for messages, such as ``Debian 12``.

    Returns:
        ``errors`` (list of messages, empty when the input is good) and, when there are no
        errors, ``branch``, ``version``, ``flavor``, ``branch_glob`` (``580.*``), ``version_glob``
        (``580.95.05-*`` or the branch glob), ``branch_regex`` and ``version_regex``.
    """
    errors: list[str] = []
    method = _str(cfg.get("method"))
    branch = _str(cfg.get("branch"))
    version = _str(cfg.get("version"))
    flavor = _str(cfg.get("kernel_module_flavor")) or "auto"
    steps = _str(cfg.get("kernel_module_steps")) or "auto"
    gpus = list(gpus or [])

    if method not in METHODS:
        errors.append(f"nvidia_driver_method = '{method}' is invalid; allowed: {', '.join(METHODS)}")
    if flavor not in FLAVORS:
        errors.append(f"nvidia_driver_kernel_module_flavor = '{flavor}' is invalid; allowed: {', '.join(FLAVORS)}")
    if steps not in KERNEL_STEPS:
        errors.append(f"nvidia_driver_kernel_module_steps = '{steps}' is invalid; allowed: {', '.join(KERNEL_STEPS)}")
    if branch and not BRANCH_RE.match(branch):
        errors.append(f"nvidia_driver_branch = '{branch}' does not look like a driver branch; "
                      "allowed: '' (the method's default) or the three-digit major version of a branch, "
                      "such as 535, 550, 570 or 580")
        branch_ok = False
    else:
        branch_ok = True
    version_match = VERSION_RE.match(version) if version else None
    if version and not version_match:
        errors.append(f"nvidia_driver_version = '{version}' is not a driver version; "
                      "allowed: '' (the newest of the branch) or a full version such as 580.95.05")

    offer = (offers.get(method) or {}) if method in METHODS else {}
    if branch_ok and method in METHODS:
        effective = branch or (version_match.group("branch") if version_match else "") or _str(offer.get("default_branch"))
        if version_match and effective != version_match.group("branch"):
            errors.append(f"nvidia_driver_version = '{version}' is of branch {version_match.group('branch')}, "
                          f"which contradicts nvidia_driver_branch = '{branch}'; allowed: a {branch}.x version, "
                          f"or nvidia_driver_branch: '{version_match.group('branch')}'")
        offered = [str(b) for b in offer.get("branches") or []]
        if offered and effective not in offered:
            errors.append(f"nvidia_driver_branch = '{effective}' is not offered by {platform} with "
                          f"nvidia_driver_method = {method}; allowed: {', '.join(offered)} "
                          "(or nvidia_driver_method: nvidia for NVIDIA's repository)")
        branch = effective

    chosen = flavor
    if method in METHODS and flavor in FLAVORS:
        available = list(offer.get("flavors") or ["open", "proprietary"])
        first_turing = int(offers.get("first_turing_device_id", 0x1E00))
        first_open_only = int(offers.get("first_open_only_device_id", 0x2900))
        ids = [(g, _device_id(g)) for g in gpus]
        pre_turing = [g for g, i in ids if i is not None and i < first_turing]
        open_only = [g for g, i in ids if i is not None and i >= first_open_only]
        if flavor == "auto":
            if open_only:
                chosen = "open"
            elif pre_turing:
                chosen = "proprietary"
            elif method == "distro":
                # the distributions' own default is the proprietary module
                chosen = "proprietary" if "proprietary" in available else "open"
            else:
                # NVIDIA's recommendation since branch 560
                chosen = "open" if "open" in available else "proprietary"
        if chosen not in available:
            note = _str(offer.get("flavor_note"))
            errors.append(f"nvidia_driver_kernel_module_flavor = '{flavor}' is not available with "
                          f"nvidia_driver_method = {method} on {platform}"
                          + (f" ({note})" if note else "")
                          + f"; allowed: auto, {', '.join(available)}")
        elif chosen == "open" and pre_turing:
            errors.append(f"nvidia_driver_kernel_module_flavor = '{flavor}' selects the open kernel modules, which do "
                          "not drive the GPUs older than Turing on this host: "
                          f"{', '.join(_gpu_label(g) for g in pre_turing)}; allowed: proprietary")
        elif chosen == "proprietary" and open_only:
            errors.append(f"nvidia_driver_kernel_module_flavor = '{flavor}' selects the proprietary kernel modules, "
                          "which do not drive the Blackwell or newer GPUs on this host: "
                          f"{', '.join(_gpu_label(g) for g in open_only)}; allowed: open, auto")

    if method == "nvidia":
        url = _str(cfg.get("repo_base_url"))
        if not URL_RE.match(url):
            errors.append(f"nvidia_driver_repo_base_url = '{url}' is invalid; allowed: an http://, https:// "
                          "or file:// URL of NVIDIA's repos/ directory or of a mirror of it")
        checksum = _str(cfg.get("repo_keyring_checksum"))
        if checksum and not CHECKSUM_RE.match(checksum):
            errors.append(f"nvidia_driver_repo_keyring_checksum = '{checksum}' is invalid; allowed: '' or "
                          "sha256:<64 hex digits> or sha512:<128 hex digits>")
    key = _str(cfg.get("module_signing_key"))
    cert = _str(cfg.get("module_signing_cert"))
    if bool(key) != bool(cert):
        errors.append("nvidia_driver_module_signing_key and nvidia_driver_module_signing_cert must be given "
                      f"together (got key '{key}', cert '{cert}'); allowed: both paths, or both ''")
    for name, value in (("module_signing_key", key), ("module_signing_cert", cert)):
        if value and not value.startswith("/"):
            errors.append(f"nvidia_driver_{name} = '{value}' is invalid; allowed: an absolute path on the node")

    if errors:
        return {"errors": errors}
    version_glob = f"{version}-*" if version else f"{branch}.*"
    return {
        "errors": [],
        "branch": branch,
        "version": version,
        "flavor": chosen,
        "branch_glob": f"{branch}.*",
        "version_glob": version_glob,
        "branch_regex": "^" + re.escape(branch) + r"\.",
        "version_regex": "^" + re.escape(version) + "-" if version else "^" + re.escape(branch) + r"\.",
    }


def nvidia_driver_kernel_flavor(kernel: str) -> str:
    """The flavor of a Debian/Ubuntu kernel release: '6.1.0-26-cloud-amd64' -> 'cloud-amd64'.

    Returns '' for a kernel that is not built the distribution's way (no headers metapackage).
    """
    match = KERNEL_FLAVOR_RE.match(_str(kernel))
    return match.group("flavor") if match else ""


def nvidia_driver_apt_policy(stdout: str) -> dict[str, dict[str, Any]]:
    """Parse ``apt-cache policy PKG...``: {name: {installed, candidate, versions}}.

    ``installed`` and ``candidate`` are None for ``(none)``; ``versions`` lists the versions of
    the version table, newest first as apt prints them. Packages apt does not know are absent.
    """
    result: dict[str, dict[str, Any]] = {}
    current: Optional[dict[str, Any]] = None
    in_table = False
    for line in (stdout or "").splitlines():
        if not line.strip():
            continue
        if not line[0].isspace() and line.rstrip().endswith(":"):
            name = line.rstrip()[:-1].split(":", 1)[0] if line.count(":") > 1 else line.rstrip()[:-1]
            current = {"installed": None, "candidate": None, "versions": []}
            result[name] = current
            in_table = False
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("Installed:"):
            value = stripped.split(":", 1)[1].strip()
            current["installed"] = None if value == "(none)" else value
        elif stripped.startswith("Candidate:"):
            value = stripped.split(":", 1)[1].strip()
            current["candidate"] = None if value == "(none)" else value
        elif stripped.startswith("Version table:"):
            in_table = True
        elif in_table:
            # '     580.95.05-1 1001' or ' *** 580.95.05-1 1001' (a version line); the indented
            # lines below a version name its origins ('        500 http://... Packages').
            fields = stripped.split()
            if fields[0] == "***":
                fields = fields[1:]
            indent = len(line) - len(line.lstrip())
            if len(fields) == 2 and fields[1].lstrip("-").isdigit() and (indent <= 5 or line.lstrip().startswith("***")):
                current["versions"].append(fields[0])
    return result


def nvidia_driver_version_status(stdout: str, wanted: Iterable[Iterable[str]]) -> list[dict[str, Any]]:
    """Compare ``apt-cache policy`` output with the wanted packages.

    ``wanted`` holds ``[package, glob, ...]`` entries: the first glob that some available
    version matches is the package's ``pattern`` (so ``[pkg, '580.95.05-*', '580.*']`` takes
    the exact version where the package has it and the branch otherwise); the first glob when
    none matches.

    Returns one dict per entry: ``name``, ``pattern``, ``known`` (apt knows the package),
    ``installed``, ``candidate``, ``versions``, ``available`` (some version matches the
    pattern), ``newest`` (the newest version that matches it), ``installed_ok`` (the installed
    version matches it), ``up_to_date`` (the installed version is the newest match) and
    ``describe`` (for messages). Nothing here depends on the pins: the role checks the
    sources before it writes its pin.
    """
    policy = nvidia_driver_apt_policy(stdout)
    result = []
    for entry in wanted:
        name, *globs = list(entry)
        info = policy.get(name)
        if info is None:
            result.append({"name": name, "pattern": globs[0], "known": False, "installed": None, "candidate": None,
                           "versions": [], "available": False, "newest": None, "installed_ok": False,
                           "up_to_date": False, "describe": f"{name} is unknown to apt"})
            continue
        versions = info["versions"]
        installed = info["installed"]
        pattern, matching = globs[0], []
        for glob in globs:
            matching = [v for v in versions if fnmatch.fnmatch(v, glob)]  # apt lists the newest first
            if matching:
                pattern = glob
                break
        available = bool(matching)
        describe = (f"{name} has no version {' or '.join(globs)} (available: {', '.join(versions) or 'none'})"
                    if not available else f"{name} {pattern}: available")
        result.append({
            "name": name,
            "pattern": pattern,
            "known": True,
            "installed": installed,
            "candidate": info["candidate"],
            "versions": versions,
            "available": available,
            "newest": matching[0] if matching else None,
            "installed_ok": installed is not None and fnmatch.fnmatch(installed, pattern),
            "up_to_date": installed is not None and bool(matching) and installed == matching[0],
            "describe": describe,
        })
    return result


def nvidia_driver_sync(stdout: str, installed: Iterable[Mapping[str, Any]], version_glob: str, branch_glob: str,
                       exclude: Iterable[str] = ()) -> list[list[str]]:
    """Installed driver packages that must move with the driver, as (package, version glob) pairs.

    Besides the packages the role names, a node has the driver's dependencies and leftovers
    of an earlier branch (a ``>=`` dependency keeps a newer version when the driver moves down,
    for instance). For each installed package (from ``nvidia_driver_dpkg_packages``) not in
    ``exclude`` and known to ``apt-cache policy`` (``stdout``): the first of ``version_glob``,
    ``branch_glob`` that some available version matches is its target, and the package is
    returned when its installed version does not match that target.
    """
    policy = nvidia_driver_apt_policy(stdout)
    skip = set(exclude)
    result = []
    for package in installed:
        name = package["name"]
        info = policy.get(name)
        if name in skip or info is None:
            continue
        for glob in (version_glob, branch_glob):
            if any(fnmatch.fnmatch(v, glob) for v in info["versions"]):
                if not fnmatch.fnmatch(package["version"], glob):
                    result.append([name, glob])
                break
    return result


def nvidia_driver_dpkg_packages(stdout: str, regex: str) -> list[dict[str, str]]:
    """Parse ``dpkg-query -W -f '${db:Status-Abbrev}|${db:Status-Want}|${Package}|${Version}\\n'``.

    Returns the installed packages (status ``ii``/``hi``/``iU``...: the second letter not
    ``n``) whose name matches ``regex``, as {name, version, want}.
    """
    pattern = re.compile(regex.strip())
    packages = []
    for line in (stdout or "").splitlines():
        parts = line.split("|")
        if len(parts) != 4:
            continue
        status, want, name, version = (p.strip() for p in parts)
        if len(status) < 2 or status[1] in ("n", "c") or not version:
            continue
        if pattern.search(name):
            packages.append({"name": name.split(":", 1)[0], "version": version, "want": want})
    return sorted(packages, key=lambda p: p["name"])


def nvidia_driver_dkms_built(stdout: str, kernel: str) -> list[str]:
    """Lines of ``dkms status`` that show an NVIDIA module installed for ``kernel``.

    dkms 3 prints 'nvidia-current/535.309.01, 6.1.0-26-amd64, x86_64: installed'; older
    versions 'nvidia, 535.309.01, 6.1.0-26-amd64, x86_64: installed'.
    """
    built = []
    for line in (stdout or "").splitlines():
        head, _, state = line.rpartition(":")
        fields = [f.strip() for f in head.replace("/", ",").split(",")]
        if fields and fields[0].startswith("nvidia") and kernel in fields and state.strip().startswith("installed"):
            built.append(line.strip())
    return built


class FilterModule:
    """nvidia_driver filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "nvidia_driver_plan": nvidia_driver_plan,
            "nvidia_driver_kernel_flavor": nvidia_driver_kernel_flavor,
            "nvidia_driver_apt_policy": nvidia_driver_apt_policy,
            "nvidia_driver_version_status": nvidia_driver_version_status,
            "nvidia_driver_sync": nvidia_driver_sync,
            "nvidia_driver_dpkg_packages": nvidia_driver_dpkg_packages,
            "nvidia_driver_dkms_built": nvidia_driver_dkms_built,
        }
