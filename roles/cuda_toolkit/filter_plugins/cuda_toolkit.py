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
_DRIVER_RE = re.compile(r"^\d+(?:\.\d+){0,2}$")
# 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.247.01  Thu Apr 10 ...' and
# 'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build ...'
_PROC_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+\.\d+(?:\.\d+)?)\b")


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
                        distro: dict[str, Any] | None = None, platform: str = "") -> list[str]:
    """Problems with the role's input, one message each (empty when all is well).

    Args:
        versions: cuda_toolkit_versions as given (a list of 'X.Y' strings is expected).
        default: cuda_toolkit_default ('' or one of the versions).
        method: cuda_toolkit_method.
        known: the CUDA releases of the compatibility table (dlstack_cuda_known_versions).
        distro: for the distro method, ``{'version': 'X.Y', 'package': name}`` of this
            platform, or None when the distribution ships no CUDA toolkit.
        platform: 'Debian 12' etc., for messages.

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
    elif method != "nvidia":
        errors.append(f"cuda_toolkit_method = '{method}' is invalid; allowed: nvidia, distro")
    return errors


def cuda_toolkit_driver_from_probe(text: Any) -> str:
    """The NVIDIA driver version from the role's probe output, or ''.

    The probe prints /proc/driver/nvidia/version (the loaded kernel module), then the
    installed driver package versions ('580.95.05-1', '1:535.247.01-1~deb12u1'). The loaded
    module wins; otherwise the first package version, without epoch and revision.
    """
    if not isinstance(text, str):
        return ""
    match = _PROC_RE.search(text)
    if match:
        return match.group(1)
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("NVRM"):
            continue
        version = line.split(":", 1)[-1]
        version = version.split("-", 1)[0].split("~", 1)[0].split("+", 1)[0]
        if _DRIVER_RE.match(version):
            return version
    return ""


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
            "cuda_toolkit_driver_from_probe": cuda_toolkit_driver_from_probe,
            "cuda_toolkit_missing_candidates": cuda_toolkit_missing_candidates,
            "cuda_toolkit_package": cuda_toolkit_package,
        }
