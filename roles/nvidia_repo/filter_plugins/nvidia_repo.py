"""Filters of the nvidia_repo role: input checks, the repository of a platform, Debian's contrib.

``nvidia_repo_plan`` turns the role's variables and the node's platform into the repository
directory (``debian13/x86_64``), its URL and one message per problem (a platform or an
architecture NVIDIA publishes no repository for, a malformed URL or checksum), so that the
role fails before it changes anything. ``nvidia_repo_contrib`` reads the node's APT sources
(the ``apt_sources_info`` module) and says whether Debian's contrib component must be added,
and from which mirror entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

URL_RE = re.compile(r"^(https?|file)://[^\s]+$")
CHECKSUM_RE = re.compile(r"^(sha256:[0-9a-fA-F]{64}|sha512:[0-9a-fA-F]{128})$")
KEYRING_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~-]*_[A-Za-z0-9.+~:-]+_all\.deb$")


def nvidia_repo_plan(cfg: Mapping[str, Any], platforms: Mapping[str, Any], dist_by_platform: Mapping[str, str],
                     arch_map: Mapping[str, str], platform: str, machine: str) -> dict[str, Any]:
    """The repository of this node and the problems with the input.

    Args:
        cfg: ``base_url``, ``keyring_deb``, ``keyring_checksum`` (the role's variables without prefix).
        platforms: ``{dist: {key, architectures}}`` (vars/main.yml).
        dist_by_platform: ``{"Debian 13": "debian13", ...}``.
        arch_map: machine architecture -> NVIDIA's directory (``aarch64`` -> ``sbsa``).
        platform: ``"<distribution> <major>"`` of the node.
        machine: ``ansible_facts.architecture``.

    Returns:
        ``errors`` (messages) and, without errors, ``dist``, ``arch``, ``url`` (with a trailing
        slash), ``keyring_version`` (the version the file name carries) and ``key``.
    """
    errors: list[str] = []
    dist = dist_by_platform.get(platform, "")
    arch = arch_map.get(machine, "")
    if not dist:
        errors.append(f"NVIDIA's CUDA repository has no directory for {platform}; supported: "
                      f"{', '.join(sorted(dist_by_platform))}")
    elif not arch or arch not in platforms[dist]["architectures"]:
        offered = ", ".join(platforms[dist]["architectures"])
        errors.append(f"NVIDIA publishes no {arch or machine} repository for {platform} ({dist}); it has: {offered}"
                      + (" (no aarch64 for Debian 13: NVIDIA/cuda-repo-management#39)" if dist == "debian13" else ""))
    url = str(cfg.get("base_url") or "").strip()
    if not URL_RE.match(url):
        errors.append(f"nvidia_repo_base_url = '{url}' is invalid; allowed: an http://, https:// or file:// URL "
                      "of NVIDIA's repos/ directory or of a mirror of it")
    keyring = str(cfg.get("keyring_deb") or "").strip()
    if not KEYRING_RE.match(keyring):
        errors.append(f"nvidia_repo_keyring_deb = '{keyring}' is invalid; allowed: the keyring package's file name, "
                      "such as cuda-keyring_1.1-1_all.deb")
    checksum = str(cfg.get("keyring_checksum") or "").strip()
    if checksum and not CHECKSUM_RE.match(checksum):
        errors.append(f"nvidia_repo_keyring_checksum = '{checksum}' is invalid; allowed: '' or sha256:<64 hex digits> "
                      "or sha512:<128 hex digits>")
    if errors:
        return {"errors": errors}
    return {
        "errors": [],
        "dist": dist,
        "arch": arch,
        "url": f"{url.rstrip('/')}/{dist}/{arch}/",
        "keyring_package": keyring.split("_")[0],
        "keyring_version": keyring.split("_")[1],
        "key": platforms[dist]["key"],
    }


def _debian_suite(suite: str, codename: str) -> bool:
    return suite == codename or suite.startswith(codename + "-") or suite.startswith(codename + "/")


def nvidia_repo_contrib(entries: Iterable[Mapping[str, Any]], own_file: str, codename: str) -> dict[str, Any]:
    """Whether Debian's contrib component must be added for NVIDIA's driver, and from where.

    Args:
        entries: ``apt_sources_info``'s entries.
        own_file: the role's contrib entry, which does not count as having contrib.
        codename: the release (``bookworm``).

    Returns:
        ``needed`` (bool), ``stanzas`` (``{uris, suites, signed_by}`` copied from the entries
        that carry the release's ``main``, to write with ``contrib``) and ``reason``.
    """
    debian = [e for e in entries or [] if e.get("file") != own_file and e.get("enabled", True)
              and "deb" in e.get("types", []) and any(_debian_suite(s, codename) for s in e.get("suites", []))]
    # another entry has contrib for the release itself: nothing to add
    if any("contrib" in e.get("components", []) for e in debian if codename in e.get("suites", [])):
        return {"needed": False, "stanzas": [], "reason": "contrib is enabled"}
    stanzas = []
    for entry in debian:
        if "main" not in entry.get("components", []):
            continue
        stanza = {"uris": list(entry["uris"]), "suites": [s for s in entry["suites"] if _debian_suite(s, codename)],
                  "signed_by": entry.get("signed_by", "")}
        if stanza not in stanzas:
            stanzas.append(stanza)
    if not stanzas:
        return {"needed": False, "stanzas": [], "reason": f"no sources entry carries {codename}'s main component"}
    return {"needed": True, "stanzas": stanzas, "reason": "no sources entry enables contrib"}


class FilterModule:
    """nvidia_repo filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"nvidia_repo_plan": nvidia_repo_plan, "nvidia_repo_contrib": nvidia_repo_contrib}
