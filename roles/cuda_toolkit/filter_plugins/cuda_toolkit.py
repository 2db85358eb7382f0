"""Filters of the cuda_toolkit role: input checks and the parsing of probe outputs.

The compatibility data (known CUDA releases, minimum drivers) is not here: it lives in
plugins/filter/dlstack_compat.py, and the role's preflight combines these checks with the
``dlstack_*`` filters there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

_CUDA_RE = re.compile(r"^(\d+)\.(\d+)$")
_URL_RE = re.compile(r"^(https?|file)://[^\s]+$")
# /usr/local/cuda/lib, /usr/local/cuda-12/lib/, /usr/local/cuda-12.8/lib: a lib directory NVIDIA's
# toolkits do not have (theirs is lib64, a link to targets/<arch>-linux/lib, which is fine).
_LIB_MISTAKE_RE = re.compile(r"^/usr/local/cuda(?:-\d+(?:\.\d+)?)?/lib/?$")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def cuda_toolkit_wellformed(versions: Any) -> list[str]:
    """The entries of cuda_toolkit_versions that are 'X.Y' strings, in order, without duplicates."""
    seen: list[str] = []
    for item in versions if isinstance(versions, list) else []:
        if isinstance(item, str) and _CUDA_RE.match(item.strip()) and item.strip() not in seen:
            seen.append(item.strip())
    return seen


def cuda_toolkit_newest(versions: Any) -> str:
    """The newest of a list of 'X.Y' versions (numerically: 12.10 > 12.9), or '' for none."""
    good = cuda_toolkit_wellformed(versions)
    return max(good, key=_key) if good else ""


def cuda_toolkit_errors(versions: Any, default: Any, method: str, known: list[str],
                        distro: dict[str, Any] | None = None, platform: str = "",
                        repo: dict[str, Any] | None = None) -> list[str]:
    """Problems with the role's input, one message each (empty when all is well).

    Args:
        versions: cuda_toolkit_versions as given (a list of 'X.Y' strings is expected).
        default: cuda_toolkit_default ('' or one of the versions).
        method: cuda_toolkit_method.
        known: the CUDA releases of the compatibility table (dlstack_cuda_known_versions).
        distro: for the distro method, ``{'version': 'X.Y', 'package': name}`` of this
            platform, or None when the distribution ships no CUDA toolkit.
        platform: 'Debian 12' etc., for messages.
        repo: for the nvidia method, ``{'name': 'debian13', 'cuda_majors': ['13'], 'default_versions': [...]}``
            of this platform's NVIDIA repository: a release of another major is refused.

    Unknown but well-formed versions are not reported here: the preflight passes them to
    dlstack_cuda_driver_errors, whose message lists the known releases.
    """
    errors: list[str] = []
    known_text = ", ".join(known)
    if not isinstance(versions, list) or not versions:
        return [f"cuda_toolkit_versions = {versions!r} is invalid; allowed: a non-empty list of CUDA "
                f"versions as quoted 'X.Y' strings, from: {known_text}"]
    seen: set[str] = set()
    for index, item in enumerate(versions):
        name = f"cuda_toolkit_versions[{index}]"
        if isinstance(item, float):
            errors.append(f"{name} = {item!r} is a number, not a string; quote it in YAML (\"{item}\"): "
                          "an unquoted 12.10 arrives as 12.1")
            continue
        if not isinstance(item, str):
            errors.append(f"{name} = {item!r} is invalid; allowed: a quoted 'X.Y' string from: {known_text}")
            continue
        text = item.strip()
        if not _CUDA_RE.match(text):
            errors.append(f"{name} = '{item}' is invalid; allowed: major.minor only (a package per minor "
                          f"release, such as '12.5'), from: {known_text}")
            continue
        if text in seen:
            errors.append(f"{name} = '{item}' is listed twice")
        seen.add(text)

    good = cuda_toolkit_wellformed(versions)
    if isinstance(default, float):
        errors.append(f"cuda_toolkit_default = {default!r} is a number, not a string; quote it in YAML (\"{default}\")")
    elif not isinstance(default, str):
        errors.append(f"cuda_toolkit_default = {default!r} is invalid; allowed: '' (the newest) or one of "
                      f"cuda_toolkit_versions: {', '.join(good)}")
    elif default.strip() and default.strip() not in good:
        errors.append(f"cuda_toolkit_default = '{default}' is not one of cuda_toolkit_versions "
                      f"({', '.join(good) or 'none valid'}); allowed: '' (the newest) or one of them")

    if method == "distro":
        if not distro:
            errors.append(f"cuda_toolkit_method = distro: {platform or 'this platform'} ships no CUDA toolkit; "
                          "use cuda_toolkit_method: nvidia")
        elif good and good != [distro["version"]]:
            errors.append(
                f"cuda_toolkit_versions = {good} cannot be installed with cuda_toolkit_method = distro: "
                f"{platform or 'this platform'} ships CUDA {distro['version']} only ({distro['package']}); "
                f"allowed: ['{distro['version']}'], or cuda_toolkit_method: nvidia for other or several versions")
    elif method == "nvidia":
        majors = [str(m) for m in (repo or {}).get("cuda_majors") or []]
        others = [v for v in good if majors and v.split(".")[0] not in majors]
        if others:
            offered = " and ".join(f"CUDA {m}" for m in majors)
            hint = (f", or cuda_toolkit_method: distro ({platform} ships CUDA {distro['version']})"
                    if distro and distro["version"].split(".")[0] not in majors else "")
            errors.append(f"cuda_toolkit_versions = {others} cannot come from NVIDIA's {repo['name']} repository, which "
                          f"carries {offered} releases only; allowed: releases such as "
                          f"{', '.join(repo.get('default_versions') or [])}{hint}")
    else:
        errors.append(f"cuda_toolkit_method = '{method}' is invalid; allowed: nvidia, distro")
    return errors


def cuda_toolkit_preflight(checks: dict[str, Any]) -> list[str]:
    """Every preflight problem of the role, one message each (the role's preflight task).

    ``checks`` holds what the task gathered: ``input`` (``cuda_toolkit_errors``' messages),
    ``unknown`` (``dlstack_cuda_driver_errors`` for releases the table does not know),
    ``driver`` (the same for the known releases against the driver; empty when no driver is
    known), ``driver_source`` (where that driver came from, for the message), ``method``,
    ``repo_base_url``, ``link`` (the stat of /usr/local/cuda) and ``release_bins`` (for the
    distro method: ``[path, stat]`` of each /usr/local/cuda-X.Y/bin).
    """
    errors = list(checks.get("input") or [])
    errors += [f"cuda_toolkit_versions: {m}" for m in checks.get("unknown") or []]
    source = str(checks.get("driver_source") or "")
    errors += [f"cuda_toolkit_versions: {m}" + (f" (driver from {source})" if source else "") for m in checks.get("driver") or []]
    url = str(checks.get("repo_base_url") or "")
    if checks.get("method") == "nvidia" and not _URL_RE.match(url):
        errors.append(f"cuda_toolkit_repo_base_url = '{url}' is invalid; allowed: an http(s):// or file:// URL")
    link = checks.get("link") or {}
    if link.get("exists") and not link.get("islnk"):
        path = link.get("path", "/usr/local/cuda")
        errors.append(f"{path} is a {'directory' if link.get('isdir') else 'file'}, not a link: another CUDA installation "
                      f"owns it; move it away (for example to {path}.orig) so that the role can manage the default release")
    if checks.get("method") == "distro":
        for path, stat in checks.get("release_bins") or []:
            if (stat or {}).get("exists") and stat.get("isdir") and not stat.get("islnk"):
                release = str(path).rsplit("/bin", 1)[0]
                errors.append(f"cuda_toolkit_method = distro cannot use {release}: another CUDA installation is there "
                              "(its bin is a directory); remove it, or install that release with cuda_toolkit_method: nvidia")
    return errors


def cuda_toolkit_lib_entries(grep_output: Any) -> list[str]:
    """Linker configuration lines that name a CUDA lib directory where lib64 is meant.

    ``grep_output`` is ``grep -Hn '' /etc/ld.so.conf /etc/ld.so.conf.d/*.conf`` (FILE:LINE:TEXT).
    NVIDIA's own entries (000_cuda.conf and 988_cuda-12.conf name
    /usr/local/cuda[-X]/targets/<arch>-linux/lib) are right and not reported.
    """
    found = []
    for line in str(grep_output or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and _LIB_MISTAKE_RE.match(parts[2].split("#", 1)[0].strip()):
            found.append(f"{parts[0]}:{parts[1]}:{parts[2].strip()}")
    return found


def cuda_toolkit_missing_candidates(policy: Any, packages: list[str]) -> list[str]:
    """The packages that `apt-cache policy PKG...` output shows without an installable candidate."""
    if not isinstance(policy, str):
        raise AnsibleFilterError("cuda_toolkit_missing_candidates expects the text of apt-cache policy")
    candidates: dict[str, str] = {}
    current = None
    for line in policy.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1]
        elif current and line.strip().startswith("Candidate:"):
            candidates[current] = line.split(":", 1)[1].strip()
    return [p for p in packages if candidates.get(p, "(none)") == "(none)"]


def cuda_toolkit_missing_error(missing: Any, host: str, where: str, versions: Any, method: str,
                               distro_hint: str = "") -> str:
    """The message of a run whose sources offer no candidate for ``missing`` (package names)."""
    hint = (distro_hint if method == "distro" else
            "Choose releases that the repository offers (apt-cache search --names-only ^cuda-toolkit-), "
            "or check cuda_toolkit_repo_base_url.")
    return (f"cuda_toolkit: on {host}, {', '.join(missing or [])} cannot be installed from {where}: apt has no "
            f"candidate (cuda_toolkit_versions = {list(versions or [])}). {' '.join(str(hint).split())}").strip()


def cuda_toolkit_package(version: str) -> str:
    """NVIDIA's package name of a CUDA release: '12.5' -> 'cuda-toolkit-12-5'."""
    return "cuda-toolkit-" + str(version).replace(".", "-")


class FilterModule:
    """cuda_toolkit role filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "cuda_toolkit_errors": cuda_toolkit_errors,
            "cuda_toolkit_wellformed": cuda_toolkit_wellformed,
            "cuda_toolkit_newest": cuda_toolkit_newest,
            "cuda_toolkit_preflight": cuda_toolkit_preflight,
            "cuda_toolkit_lib_entries": cuda_toolkit_lib_entries,
            "cuda_toolkit_missing_candidates": cuda_toolkit_missing_candidates,
            "cuda_toolkit_missing_error": cuda_toolkit_missing_error,
            "cuda_toolkit_package": cuda_toolkit_package,
        }
