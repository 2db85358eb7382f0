"""Filters of the dlstack_platform role: the layered OS variable files, and the one-line
refusal of an unsupported platform (the same words for every role)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def dlstack_platform_vars_files(facts: Mapping[str, Any]) -> list[str]:
    """The vars files a role may hold for the node, general to specific, each named once:
    <os_family>.yml, <distribution>.yml, <distribution>_<major>.yml."""
    names = [f"{facts.get('os_family', '')}.yml", f"{facts.get('distribution', '')}.yml",
             f"{facts.get('distribution', '')}_{facts.get('distribution_major_version', '')}.yml"]
    return [name for i, name in enumerate(names) if name not in names[:i] and not name.startswith(("_", "."))]


def _supported_text(supported: Mapping[str, Sequence[str]]) -> str:
    return ", ".join(f"{dist} {'/'.join(str(v) for v in versions)}" for dist, versions in supported.items())


def dlstack_platform_problem(facts: Mapping[str, Any], role: str, host: str, supported: Mapping[str, Sequence[str]],
                             architectures: Sequence[str] = ()) -> str:
    """'' when the node's distribution, major release and (if ``architectures`` names any)
    machine are supported; else one line: who refuses what, and what is supported."""
    dist = str(facts.get("distribution", ""))
    major = str(facts.get("distribution_major_version", ""))
    arch = str(facts.get("architecture", ""))
    versions = [str(v) for v in supported.get(dist, [])]
    arch_ok = not architectures or arch in architectures
    if major in versions and arch_ok:
        return ""
    on = f" on {', '.join(architectures)}" if architectures else ""
    release = str(facts.get("distribution_version") or major or "(release unknown)")
    machine = f" on {arch or 'an unknown machine'}" if architectures else ""
    return (f"{role}: {host} runs {dist or 'an unknown distribution'} {release}{machine}; "
            f"supported are {_supported_text(supported)}{on}.")


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"dlstack_platform_vars_files": dlstack_platform_vars_files,
                "dlstack_platform_problem": dlstack_platform_problem}
