"""Filters of the cudnn role: input checks, archive names, header and apt output parsing.

Compatibility data (TensorFlow builds, Theano's cuDNN range) is not here: the role's tasks
use the ``dlstack_*`` filters of plugins/filter/dlstack_compat.py for that.
"""

from __future__ import annotations

import base64
import fnmatch
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

# cuDNN's header is parsed by the project's one parser, plugins/module_utils/dlstack_cudnn.py
# (dl-verify runs it on the node too): Ansible lets modules only import custom module_utils,
# so the filter finds the folder by its path in the repository
_SHARED = str(Path(__file__).resolve().parents[3] / "plugins" / "module_utils")
if _SHARED not in sys.path:
    sys.path.append(_SHARED)
import dlstack_cudnn  # noqa: E402

_CUDNN_RE = re.compile(r"^\d+\.\d+\.\d+(?:\.\d+)?$")
_CUDA_RE = re.compile(r"^(\d+)\.(\d+)$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_TF_RE = re.compile(r"^\d+\.\d+(?:\.\d+)?$")
# NVIDIA's redistributable tarballs: cudnn-linux-x86_64-9.3.0.75_cuda12-archive.tar.xz
_ARCHIVE_RE = re.compile(
    r"^(?P<top>cudnn-linux-(?P<arch>[a-z0-9_]+)-(?P<version>\d+\.\d+\.\d+(?:\.\d+)?)_cuda(?P<cuda>\d+)-archive)"
    r"\.(?P<ext>tar\.xz|tar\.gz|tgz)$")
_ARCHIVE_KEYS = {"src", "url", "sha256", "cuda_major"}
_TF_KEYS = {"name", "tensorflow", "pip_cuda_wheels"}


def cudnn_archive_name(archive: Any) -> str:
    """The file name of an archive entry: the basename of its src or url (query string dropped)."""
    if not isinstance(archive, dict):
        return ""
    where = str(archive.get("src") or archive.get("url") or "")
    return where.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def cudnn_archive_info(archive: Any) -> dict[str, Any]:
    """The archive entry with its name, top directory, cuDNN version and CUDA major added.

    They come from NVIDIA's file name; a ``cuda_major`` key in the entry wins over the name.
    Unknown parts are ''.
    """
    name = cudnn_archive_name(archive)
    match = _ARCHIVE_RE.match(name)
    info = dict(archive) if isinstance(archive, dict) else {}
    info.update({"name": name, "top": "", "version": "", "cuda_major": "", "ext": ""})
    if match:
        info.update(top=match.group("top"), version=match.group("version"), cuda_major=match.group("cuda"),
                    ext=match.group("ext"))
    if isinstance(archive, dict) and archive.get("cuda_major") not in (None, ""):
        info["cuda_major"] = str(archive["cuda_major"])
    return info


def cudnn_package_version_glob(version: str) -> str:
    """apt version pattern of a cuDNN version: '9.3.0' -> '9.3.0.*', '9.3.0.75' -> '9.3.0.75-*'."""
    parts = str(version).split(".")
    return f"{version}.*" if len(parts) == 3 else f"{version}-*"


def cudnn_packages(version: str, cuda_major: str) -> list[str]:
    """NVIDIA's repository packages of cuDNN for a CUDA major: runtime, dev and (from the builds
    that split it out) headers. ``cudnn_repo_selection`` keeps the headers package only where the
    sources offer it at the chosen build."""
    major = str(version).split(".")[0]
    return [f"libcudnn{major}-cuda-{cuda_major}", f"libcudnn{major}-dev-cuda-{cuda_major}",
            f"libcudnn{major}-headers-cuda-{cuda_major}"]


def cudnn_repo_selection(madison: Any, version: str, cuda_major: str) -> dict[str, Any]:
    """The build of cudnn_version to install from the repository, and its packages.

    ``madison`` is ``apt-cache madison RUNTIME DEV HEADERS`` (``cudnn_packages``). The newest
    build of ``version`` the runtime package offers is chosen when the dev package offers it
    too; the headers package (libcudnnN-headers-cuda-M, split out of the dev package in later
    cuDNN 9 builds, which then depend on it at the same version) is added when it offers that
    build. Returns ``version`` ('' when none fits), ``packages``, ``offered`` (the runtime's
    versions, for messages) and ``names`` (the three names).
    """
    names = cudnn_packages(version, cuda_major)
    runtime, dev, headers = names
    offered = cudnn_madison_versions(madison, runtime)
    pattern = cudnn_package_version_glob(version)
    chosen = next((v for v in offered if fnmatch.fnmatchcase(v, pattern)
                   and v in cudnn_madison_versions(madison, dev)), "")
    packages = [runtime, dev] + ([headers] if chosen and chosen in cudnn_madison_versions(madison, headers) else [])
    return {"version": chosen, "packages": packages if chosen else [], "offered": offered, "names": names}


def cudnn_cuda_releases(wanted: Any, toolkit: Any, node: list[str]) -> Any:
    """The CUDA releases to install cuDNN for: cudnn_cuda_versions when given (a malformed value
    passes through, for cudnn_errors to name), else the releases the cuda_toolkit role installed
    in this play (``cudnn_cuda_toolkit``), else those on the node."""
    if isinstance(wanted, str) or (isinstance(wanted, list) and wanted):
        return wanted
    versions = (toolkit or {}).get("versions") if isinstance(toolkit, dict) else None
    return list(versions) if versions else list(node or [])


def cudnn_preflight(checks: dict[str, Any]) -> list[str]:
    """Every preflight problem of the role, one message each (the role's preflight task).

    ``checks``: ``input`` (``cudnn_errors``), ``sources`` (``cudnn_src_errors``), ``layout``
    (``cudnn_layout_errors``), ``cuda`` (the releases to serve), ``node_cuda`` (those on the
    node), ``planned`` (those a check run of cuda_toolkit would install), ``prefix`` (/usr/local/cuda).
    """
    errors = list(checks.get("input") or []) + list(checks.get("sources") or []) + list(checks.get("layout") or [])
    node = list(checks.get("node_cuda") or [])
    planned = set(checks.get("planned") or [])
    prefix = str(checks.get("prefix") or "/usr/local/cuda")
    cuda = checks.get("cuda") if isinstance(checks.get("cuda"), list) else []
    for release in cuda:
        if isinstance(release, str) and _CUDA_RE.match(release) and release not in node and release not in planned:
            errors.append(f"cudnn_cuda_versions: CUDA {release} is not installed on this node ({prefix}-{release} is "
                          f"missing; it has {', '.join(node) or 'none'}); install it first (the cuda_toolkit role, "
                          "cuda_toolkit_versions) or leave it out")
    return errors


def cudnn_errors(method: str, version: Any, cuda_versions: Any, archives: Any, tf_envs: Any,
                 installed_cuda: list[str] | None = None, repo: dict[str, Any] | None = None) -> list[str]:
    """Problems with the role's input, one message each naming the variable and the allowed values.

    ``repo`` (``{has_cudnn, platform}``) says whether the platform's NVIDIA repository has cuDNN:
    the nvidia method is refused where it has none (Debian 13 so far).
    """
    errors: list[str] = []
    if isinstance(version, float):
        errors.append(f"cudnn_version = {version!r} is a number; quote it in YAML (\"{version}\")")
        version = ""
    elif not isinstance(version, str) or not _CUDNN_RE.match(version.strip()):
        errors.append(f"cudnn_version = {version!r} is invalid; allowed: major.minor.patch such as '9.3.0' "
                      "(or with NVIDIA's build number, '9.3.0.75')")
        version = ""
    version = version.strip() if isinstance(version, str) else ""

    majors: list[str] = []
    if not isinstance(cuda_versions, list) or not cuda_versions:
        errors.append(f"cudnn_cuda_versions = {cuda_versions!r} is invalid; allowed: a non-empty list of the "
                      f"node's CUDA releases ('X.Y'){_installed_text(installed_cuda)}")
        cuda_versions = []
    for index, cuda in enumerate(cuda_versions):
        if not isinstance(cuda, str) or not _CUDA_RE.match(cuda.strip()):
            errors.append(f"cudnn_cuda_versions[{index}] = {cuda!r} is invalid; allowed: a quoted 'X.Y' CUDA "
                          f"release{_installed_text(installed_cuda)}")
            continue
        major = cuda.strip().split(".")[0]
        if major not in majors:
            majors.append(major)

    if method == "nvidia":
        if repo is not None and not repo.get("has_cudnn", True):
            errors.append(f"cudnn_method = nvidia: NVIDIA's repository for {repo.get('platform') or 'this platform'} has no "
                          "cuDNN packages (NVIDIA/cuda-repo-management#32: expected until a cuDNN release supports it); "
                          "allowed: cudnn_method: archive with NVIDIA's redistributable tarball in cudnn_archives")
        if len(majors) > 1:
            errors.append(
                f"cudnn_cuda_versions = {cuda_versions} spans CUDA majors {', '.join(majors)}, but "
                "cudnn_method = nvidia installs one CUDA major's packages into the system library directory, "
                "shared by every release; allowed: releases of one major, or cudnn_method: archive, which "
                "installs cuDNN into each release's own directory")
    elif method == "archive":
        errors += _archive_errors(archives, version, majors)
    else:
        errors.append(f"cudnn_method = {method!r} is invalid; allowed: nvidia, archive")

    errors += _tf_env_errors(tf_envs)
    return errors


def _installed_text(installed: list[str] | None) -> str:
    return f"; this node has {', '.join(installed)}" if installed else ""


def _archive_errors(archives: Any, version: str, majors: list[str]) -> list[str]:
    errors: list[str] = []
    if not isinstance(archives, list) or not archives:
        return ["cudnn_archives = [] is invalid with cudnn_method = archive; allowed: a list of NVIDIA's "
                "redistributable tarballs, each with src (a file under files/) or url, and sha256"]
    covered: dict[str, int] = {}
    for index, archive in enumerate(archives):
        name = f"cudnn_archives[{index}]"
        if not isinstance(archive, dict):
            errors.append(f"{name} = {archive!r} is invalid; allowed: a mapping with src or url, and sha256")
            continue
        unknown = sorted(set(archive) - _ARCHIVE_KEYS)
        if unknown:
            errors.append(f"{name} has unknown keys {unknown}; allowed: {', '.join(sorted(_ARCHIVE_KEYS))}")
        if bool(archive.get("src")) == bool(archive.get("url")):
            errors.append(f"{name} needs exactly one of src (a tarball on the controller, under files/) or url")
        url = str(archive.get("url") or "")
        if url and not re.match(r"^(https?|file)://\S+$", url):
            errors.append(f"{name}.url = '{url}' is invalid; allowed: an http(s):// or file:// URL")
        sha = archive.get("sha256")
        if not isinstance(sha, str) or not _SHA256_RE.match(sha.strip()):
            errors.append(f"{name}.sha256 = {sha!r} is invalid; allowed: the archive's SHA-256, 64 hex digits "
                          "(NVIDIA publishes it next to the tarball; sha256sum FILE)")
        info = cudnn_archive_info(archive)
        if not info["top"]:
            errors.append(f"{name}: '{info['name']}' is not named like NVIDIA's redistributable tarball; allowed: "
                          "cudnn-linux-<arch>-<version>_cuda<major>-archive.tar.xz (the name gives its top "
                          "directory, cuDNN version and CUDA major)")
            continue
        if version and not (info["version"] + ".").startswith(version + "."):
            errors.append(f"{name}: '{info['name']}' holds cuDNN {info['version']}, but cudnn_version = '{version}'; "
                          "allowed: an archive of cudnn_version, or set cudnn_version to the archive's version")
        if info["cuda_major"] in covered:
            errors.append(f"{name}: a second archive for CUDA {info['cuda_major']} (cudnn_archives[{covered[info['cuda_major']]}] "
                          "is one); allowed: one archive per CUDA major")
        covered.setdefault(info["cuda_major"], index)
    for major in majors:
        if major not in covered and not errors:
            errors.append(f"cudnn_cuda_versions has CUDA {major}.x releases but cudnn_archives has no archive for "
                          f"CUDA {major} (a ..._cuda{major}-archive.tar.xz); allowed: one archive per CUDA major "
                          f"of cudnn_cuda_versions ({', '.join(majors)})")
    return errors


def _tf_env_errors(envs: Any) -> list[str]:
    if envs in (None, ""):
        return []
    if not isinstance(envs, list):
        return [f"cudnn_tensorflow_envs = {envs!r} is invalid; allowed: a list of "
                "{name, tensorflow: 'X.Y', pip_cuda_wheels: bool}"]
    errors: list[str] = []
    for index, env in enumerate(envs):
        name = f"cudnn_tensorflow_envs[{index}]"
        if not isinstance(env, dict) or not env.get("name"):
            errors.append(f"{name} = {env!r} is invalid; allowed: a mapping with name, tensorflow ('X.Y') and "
                          "pip_cuda_wheels (bool)")
            continue
        unknown = sorted(set(env) - _TF_KEYS)
        if unknown:
            errors.append(f"{name} ({env['name']}) has unknown keys {unknown}; allowed: {', '.join(sorted(_TF_KEYS))}")
        tf = env.get("tensorflow")
        if isinstance(tf, float):
            errors.append(f"{name}.tensorflow = {tf!r} is a number; quote it in YAML (\"{tf}\")")
        elif not isinstance(tf, str) or not _TF_RE.match(tf.strip()):
            errors.append(f"{name}.tensorflow = {tf!r} is invalid; allowed: a quoted TensorFlow version such as '2.21'")
        if not isinstance(env.get("pip_cuda_wheels", False), bool):
            errors.append(f"{name}.pip_cuda_wheels = {env.get('pip_cuda_wheels')!r} is invalid; allowed: true, false")
    return errors


def cudnn_version_matches(found: Any, wanted: Any) -> bool:
    """Whether a header version ('9.3.0') is the wanted cudnn_version ('9.3.0' or '9.3.0.75')."""
    if not found or not wanted:
        return False
    return ".".join(str(wanted).split(".")[:3]) == str(found)


def cudnn_madison_versions(text: Any, package: str) -> list[str]:
    """Versions of a package in `apt-cache madison PKG` output, as listed (newest first)."""
    if not isinstance(text, str):
        raise AnsibleFilterError("cudnn_madison_versions expects the text of apt-cache madison")
    versions = []
    for line in text.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) >= 3 and cols[0] == package and cols[1] not in versions:
            versions.append(cols[1])
    return versions


def cudnn_select_version(versions: list[str], pattern: str) -> str:
    """The first (newest) version matching an apt version pattern ('9.3.0.*'), or ''."""
    for version in versions or []:
        if fnmatch.fnmatchcase(version, pattern):
            return version
    return ""


def cudnn_cuda_from_link(target: Any) -> str:
    """'X.Y' from a /usr/local/cuda link target such as '/usr/local/cuda-12.5' or '/etc/alternatives/cuda' resolved."""
    match = re.search(r"cuda-(\d+\.\d+)/?$", str(target or ""))
    return match.group(1) if match else ""


def cudnn_src_errors(results: Any, search_paths: list[str] | None = None) -> list[str]:
    """Messages for archives given as src that are missing on the controller or fail their sha256.

    Args:
        results: the ``results`` of the role's controller-side stat loop over cudnn_archives
            (each with ``item``, ``__cudnn_idx``, ``stat`` or ``skipped``).
        search_paths: where relative src paths were looked for, for the message.
    """
    errors: list[str] = []
    for result in results or []:
        if not isinstance(result, dict) or result.get("skipped"):
            continue
        item = result.get("item") or {}
        index = result.get("__cudnn_idx", "?")
        stat = result.get("stat") or {}
        src = item.get("src")
        if not stat.get("exists"):
            where = f" (looked in {', '.join(search_paths)})" if search_paths and not str(src).startswith("/") else ""
            errors.append(f"cudnn_archives[{index}].src = '{src}' was not found on the controller{where}; allowed: a "
                          "tarball under the playbook's files/ or an absolute path")
            continue
        wanted = str(item.get("sha256") or "").strip().lower()
        found = str(stat.get("checksum") or "").lower()
        if _SHA256_RE.match(wanted) and found != wanted:
            errors.append(
                f"cudnn_archives[{index}]: {stat.get('path', src)} has sha256 {found}, but cudnn_archives[{index}].sha256 "
                f"is {wanted}: the file is corrupt, incomplete or another archive. Nothing was installed; fetch "
                "NVIDIA's tarball again and compare it with `sha256sum`, or correct the sha256")
    return errors


def cudnn_layout_errors(pairs: Any) -> list[str]:
    """Messages for CUDA releases whose include or lib64 leads outside the release directory.

    ``pairs`` are (PREFIX-X.Y/include or PREFIX-X.Y/lib64, its resolved path from
    `readlink -m`): NVIDIA's layout links them inside the release (targets/<arch>-linux/...);
    the cuda_toolkit role's distro method links them to /usr/include and the multiarch
    directory, where the archive method must not put anything.
    """
    errors: list[str] = []
    for pair in pairs or []:
        path, resolved = str(pair[0]), str(pair[1]).strip()
        release = path.rsplit("/", 1)[0]
        if not (resolved == release or resolved.startswith(release + "/")):
            errors.append(
                f"cudnn_method = archive cannot install into {path}: it leads to {resolved}, outside {release} "
                "(a CUDA release of the distribution, cuda_toolkit_method = distro); allowed: releases from "
                f"NVIDIA's packages, or leave {release.rsplit('-', 1)[-1]} out of cudnn_cuda_versions")
    return errors


def cudnn_installed_list(results: Any, method: str) -> list[dict[str, str]]:
    """One {cuda, version, header, method} per CUDA release from the role's slurp loop results."""
    installed = []
    for result in results or []:
        if not isinstance(result, dict):
            continue
        text = ""
        if result.get("content"):
            text = base64.b64decode(result["content"]).decode("utf-8", errors="replace")
        installed.append({
            "cuda": str(result.get("item", "")),
            "version": dlstack_cudnn.cudnn_header_version(text),
            "header": str(result.get("source") or (result.get("invocation") or {}).get("module_args", {}).get("src", "")),
            "method": method,
        })
    return installed


def cudnn_mismatched(installed: Any, wanted: Any) -> list[dict[str, str]]:
    """The entries of cudnn_installed whose header version is not cudnn_version."""
    return [entry for entry in installed or [] if not cudnn_version_matches(entry.get("version"), wanted)]


def cudnn_checksum_note(node_sum: Any, expected: Any) -> str:
    """The part of the archive failure message that says what the node computed, when it differs."""
    want = str(expected or "").strip().lower()
    got = str(node_sum or "").strip().lower()
    return f" (sha256 on the node: {got}, expected {want})" if got and got != want else ""


def cudnn_default_version(installed: Any, default_cuda: Any, method: str) -> str:
    """The cuDNN version of the default CUDA release (``installed``: cudnn_installed_list's
    entries); with the nvidia method, whose packages serve every release of a major, the first
    one found when the default release has none of its own; '' when there is none."""
    entries = [e for e in installed or [] if isinstance(e, dict)]
    for entry in entries:
        if str(entry.get("cuda")) == str(default_cuda or ""):
            return str(entry.get("version") or "")
    if method == "nvidia" and entries:
        return str(entries[0].get("version") or "")
    return ""


class FilterModule:
    """cudnn role filters."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "cudnn_errors": cudnn_errors,
            "cudnn_archive_name": cudnn_archive_name,
            "cudnn_archive_info": cudnn_archive_info,
            "cudnn_package_version_glob": cudnn_package_version_glob,
            "cudnn_packages": cudnn_packages,
            "cudnn_repo_selection": cudnn_repo_selection,
            "cudnn_cuda_releases": cudnn_cuda_releases,
            "cudnn_preflight": cudnn_preflight,
            "cudnn_version_from_header": dlstack_cudnn.cudnn_header_version,
            "cudnn_version_matches": cudnn_version_matches,
            "cudnn_madison_versions": cudnn_madison_versions,
            "cudnn_select_version": cudnn_select_version,
            "cudnn_cuda_from_link": cudnn_cuda_from_link,
            "cudnn_src_errors": cudnn_src_errors,
            "cudnn_layout_errors": cudnn_layout_errors,
            "cudnn_installed_list": cudnn_installed_list,
            "cudnn_mismatched": cudnn_mismatched,
            "cudnn_checksum_note": cudnn_checksum_note,
            "cudnn_default_version": cudnn_default_version,
        }
