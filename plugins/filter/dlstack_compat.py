"""dlstack compatibility data and preflight filters.

This module is the single place where dlstack records which NVIDIA driver a
CUDA toolkit needs, which CUDA/cuDNN each TensorFlow release was built and
tested against, and which cuDNN versions Theano 1.0.5 can use.  Roles call the
``dlstack_*`` Jinja2 filters below from their preflight tasks; nothing else in
the project should repeat these numbers.

Version arguments are dotted strings (``'12.5'``, ``'580.65.06'``).  Plain
integers are accepted too (``580`` as a driver branch).  Floats are rejected on
purpose: an unquoted YAML ``cuda: 12.10`` would arrive as ``12.1``, so a float
is always a sign that a version was not quoted.

Filters (all raise ``AnsibleFilterError`` on malformed input unless their
docstring says they report problems as messages instead):

- ``dlstack_cuda_min_driver(cuda)``
- ``dlstack_cuda_known_versions()``
- ``dlstack_cuda_minor_compat_floor(cuda)``
- ``dlstack_driver_branch(driver)``
- ``dlstack_driver_supports_cuda(driver, cuda)``
- ``dlstack_cuda_driver_errors(cuda_versions, driver, host='')``
- ``dlstack_tf_build(tf_version)``
- ``dlstack_tf_cuda_warnings(tf_version, host_cuda, host_cudnn, pip_cuda_wheels, host='')``
- ``dlstack_theano_dnn(cudnn_version)``
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

# Minimum Linux x86_64 NVIDIA driver for each CUDA toolkit release (the GA row
# of each minor release).
# Source: NVIDIA CUDA Toolkit Release Notes, Table 3 "CUDA Toolkit and
# Corresponding Driver Versions" (https://docs.nvidia.com/cuda/
# cuda-toolkit-release-notes/), column "Toolkit Driver Version, Linux x86_64".
# Some update releases need a slightly newer driver of the same branch than
# their GA row (e.g. 11.4 Update 1 needs 470.57.02); this table keeps the GA
# minimum, which is what "CUDA X.Y" means throughout dlstack.
# There is no CUDA 12.7: NVIDIA went from 12.6 to 12.8.
# CUDA 13.3 (released 2026-05-26): 610.43.02 is the driver NVIDIA released with 13.3.0
# (cuda_compat in https://developer.download.nvidia.com/compute/cuda/redist/redistrib_13.3.0.json),
# which is how every GA row above relates to its release; the release notes' own row was not
# readable in the stored copy (docs/compat.md says so). CUDA 13.4 and 13.5 exist but their
# minimum drivers could not be confirmed: they are not in the table (unknown releases are refused).
# Every row, with its source: docs/compat.md (tests/unit/test_dlstack_compat.py reads it).
CUDA_MIN_DRIVER: Final[Mapping[str, str]] = MappingProxyType({
    "10.0": "410.48",
    "10.1": "418.39",
    "10.2": "440.33",
    "11.0": "450.51.05",
    "11.1": "455.23",
    "11.2": "460.27.03",
    "11.3": "465.19.01",
    "11.4": "470.42.01",
    "11.5": "495.29.05",
    "11.6": "510.39.01",
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
    "13.1": "590.44.01",
    "13.2": "595.45.04",
    "13.3": "610.43.02",
})

# CUDA minor-version compatibility: an application built with any CUDA X.y
# runs on a driver at or above this floor, with reduced features (no JIT of
# newer PTX, no APIs newer than the driver) when the driver is below the
# release's own minimum from CUDA_MIN_DRIVER.
# Source: NVIDIA CUDA Toolkit Release Notes, Table 2 "CUDA Toolkit and Minimum
# Required Driver Version for CUDA Minor Version Compatibility".
CUDA_MINOR_COMPAT_FLOOR: Final[Mapping[int, str]] = MappingProxyType({
    11: "450.80.02",
    12: "525.60.13",
    13: "580",
})

# Releases people ask for that never existed, with the reason to show.
CUDA_NONEXISTENT: Final[Mapping[str, str]] = MappingProxyType({
    "12.7": "there is no CUDA 12.7; NVIDIA went from 12.6 to 12.8",
})

# TensorFlow minor release -> (cuDNN major.minor, CUDA major.minor) of the
# official Linux GPU build.
# Source: TensorFlow "Build from source" page, section "Tested build
# configurations", Linux GPU table (https://www.tensorflow.org/install/source).
TF_BUILDS: Final[Mapping[str, tuple[str, str]]] = MappingProxyType({
    "2.12": ("8.6", "11.8"),
    "2.13": ("8.6", "11.8"),
    "2.14": ("8.7", "11.8"),
    "2.15": ("8.9", "12.2"),
    "2.16": ("8.9", "12.3"),
    "2.17": ("8.9", "12.3"),
    "2.18": ("9.3", "12.5"),
    "2.19": ("9.3", "12.5"),
    "2.20": ("9.3", "12.5"),
    "2.21": ("9.3", "12.5"),
})

# cuDNN major versions Theano 1.0.5's gpuarray backend can use.
# Source: Theano 1.0.5, theano/gpuarray/dnn.py, _dnn_check_version(): a
# version below 5000 is rejected ("cuDNN version is too old. Update to v5* or
# higher"), 7200 and above only warns ("... downgrading cuDNN to a version
# >= v5 and <= v7").  cuDNN 8 removed cudnnGetConvolutionForwardAlgorithm,
# which theano/gpuarray/c_code/dnn_fwd.c calls, so v8+ cannot work.
THEANO_CUDNN_MIN_MAJOR: Final[int] = 5
THEANO_CUDNN_MAX_MAJOR: Final[int] = 7
# cudnnGetVersion() value from which Theano 1.0.5 warns (cuDNN 7.2).
THEANO_CUDNN_WARN_FROM: Final[tuple[int, ...]] = (7, 2)

_VERSION_RE: Final[re.Pattern[str]] = re.compile(r"\d+(?:\.\d+)*")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def _parse_version(s: Any) -> tuple[int, ...]:
    """Parse a dotted numeric version into a tuple of ints.

    Args:
        s: A string such as ``'580.65.06'`` or ``'12.5'`` (surrounding
            whitespace is ignored), or a non-negative int such as ``580``.

    Returns:
        The components as ints, e.g. ``(580, 65, 6)``.

    Raises:
        AnsibleFilterError: for None, bools, floats (an unquoted YAML version
            loses trailing zeros), empty strings, and anything that is not
            digits separated by single dots (``'abc'``, ``'1..2'``, ``'1.'``).
    """
    if isinstance(s, bool) or s is None:
        raise AnsibleFilterError(f"invalid version {s!r}: expected a dotted version string such as '12.5'")
    if isinstance(s, float):
        raise AnsibleFilterError(
            f"invalid version {s!r}: got a float; quote versions in YAML "
            "(an unquoted 12.10 would arrive as 12.1)"
        )
    if isinstance(s, int):
        if s < 0:
            raise AnsibleFilterError(f"invalid version {s!r}: negative")
        return (s,)
    if not isinstance(s, str):
        raise AnsibleFilterError(
            f"invalid version {s!r}: expected a string, got {type(s).__name__}"
        )
    text = s.strip()
    if not _VERSION_RE.fullmatch(text):
        raise AnsibleFilterError(
            f"invalid version {s!r}: expected digits separated by dots, such as '12.5' or '580.65.06'"
        )
    return tuple(int(part) for part in text.split("."))


def _fmt(version: tuple[int, ...]) -> str:
    """Format a version tuple as a dotted string (no zero padding)."""
    return ".".join(str(part) for part in version)


def _version_ge(have: tuple[int, ...], need: tuple[int, ...]) -> bool:
    """Compare two version tuples component-wise, padding the shorter with zeros."""
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) >= need + (0,) * (width - len(need))


def _sorted_cuda() -> list[str]:
    """Known CUDA releases, oldest first."""
    return sorted(CUDA_MIN_DRIVER, key=_parse_version)


def _known_cuda_text() -> str:
    return ", ".join(_sorted_cuda())


def _cuda_key(cuda: Any) -> str:
    """Normalise a CUDA version to its ``major.minor`` table key.

    ``'12.5'``, ``'12.5.1'`` and ``' 12.05 '`` all give ``'12.5'``.  The
    result is not checked against the table.

    Raises:
        AnsibleFilterError: if the version is malformed or has no minor part.
    """
    parsed = _parse_version(cuda)
    if len(parsed) < 2:
        raise AnsibleFilterError(
            f"invalid CUDA version {cuda!r}: give major.minor, e.g. '12.5'; known versions: {_known_cuda_text()}"
        )
    return _fmt(parsed[:2])


def _unknown_cuda_message(cuda: Any) -> str:
    """Text explaining that a CUDA version is not in the table."""
    try:
        key: str | None = _cuda_key(cuda)
    except AnsibleFilterError:
        key = None
    why = CUDA_NONEXISTENT.get(key or "", "")
    detail = f" ({why})" if why else ""
    return f"unknown CUDA version {cuda!r}{detail}; known versions: {_known_cuda_text()}"


def _lookup_min_driver(cuda: Any) -> tuple[str, str]:
    """Return ``(table key, minimum driver)`` for a CUDA version.

    Raises:
        AnsibleFilterError: if the version is malformed or not in the table.
    """
    key = _cuda_key(cuda)
    if key not in CUDA_MIN_DRIVER:
        raise AnsibleFilterError(_unknown_cuda_message(cuda))
    return key, CUDA_MIN_DRIVER[key]


def _driver_meets(driver: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    """Whether a parsed driver satisfies a parsed minimum driver.

    A bare branch (one component, e.g. ``(580,)``) stands for the newest
    release of that branch, so it satisfies any minimum whose major equals
    the branch.  Full versions compare numerically component-wise.
    """
    if len(driver) == 1:
        return driver[0] >= minimum[0]
    return _version_ge(driver, minimum)


def _parse_cudnn(value: Any) -> tuple[int, ...]:
    """Parse a cuDNN version given as a dotted string or as CUDNN_VERSION.

    Accepted forms:

    - dotted strings: ``'7.6.5'``, ``'8'``, ``'9.3.0'``;
    - ints (or all-digit strings) below 100: a bare major, ``8`` -> ``(8,)``;
    - ints 1000-9999: cuDNN <= 8 ``CUDNN_VERSION`` encoding
      ``major*1000 + minor*100 + patch``, ``7605`` -> ``(7, 6, 5)``;
    - ints 90000-999999: cuDNN >= 9 encoding
      ``major*10000 + minor*100 + patch``, ``90300`` -> ``(9, 3, 0)``.

    Raises:
        AnsibleFilterError: for malformed values and ints outside those ranges.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None:
        return _parse_version(value)
    if 0 <= number < 100:
        return (number,)
    if 1000 <= number < 10000:
        return (number // 1000, number % 1000 // 100, number % 100)
    if 90000 <= number < 1000000:
        return (number // 10000, number % 10000 // 100, number % 100)
    raise AnsibleFilterError(
        f"invalid cuDNN version {value!r}: use a dotted version ('8.9.7') or a CUDNN_VERSION "
        "integer (7605 for 7.6.5, 90300 for 9.3.0)"
    )


def _as_list(value: Any) -> list[Any]:
    """Wrap a scalar in a list; turn any other non-mapping iterable into a list."""
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return list(value)
    raise AnsibleFilterError(f"expected a CUDA version or a list of them, got {type(value).__name__}")


def _prefix(host: Any) -> str:
    return f"{host}: " if host else ""


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------

def dlstack_cuda_min_driver(cuda: str) -> str:
    """Return the minimum Linux x86_64 NVIDIA driver for a CUDA release.

    Args:
        cuda: CUDA version, ``'12.5'``; a patch level (``'12.5.1'``) is
            accepted and looked up by its major.minor.

    Returns:
        The driver version string from the release notes, ``'555.42.02'``.

    Raises:
        AnsibleFilterError: if the version is malformed or unknown; the
            message lists the known versions.
    """
    return _lookup_min_driver(cuda)[1]


def dlstack_cuda_known_versions(_: Any = None) -> list[str]:
    """Return the CUDA releases in the table, oldest first.

    Args:
        _: Ignored; lets the filter be applied to anything
            (``{{ none | dlstack_cuda_known_versions }}``).

    Returns:
        ``['10.0', '10.1', ..., '13.3']`` sorted numerically, so ``'12.10'``
        would sort after ``'12.9'``.
    """
    return _sorted_cuda()


def dlstack_cuda_minor_compat_floor(cuda: str) -> str:
    """Return the minor-version-compatibility driver floor for a CUDA release.

    Any CUDA X.y application runs (with reduced features) on a driver at or
    above the floor of major X, even below the release's own minimum.

    Args:
        cuda: CUDA version, ``'12.5'``.

    Returns:
        ``'450.80.02'`` for 11.x, ``'525.60.13'`` for 12.x, ``'580'`` for 13.x.

    Raises:
        AnsibleFilterError: if the version is malformed, unknown, or its major
            has no minor-version compatibility (10.x).
    """
    key, _minimum = _lookup_min_driver(cuda)
    major = _parse_version(key)[0]
    if major not in CUDA_MINOR_COMPAT_FLOOR:
        raise AnsibleFilterError(
            f"CUDA {key} has no minor-version compatibility; it exists for CUDA "
            + ", ".join(f"{m}.x" for m in sorted(CUDA_MINOR_COMPAT_FLOOR))
        )
    return CUDA_MINOR_COMPAT_FLOOR[major]


def dlstack_driver_branch(version: str) -> str:
    """Return the branch (major component) of an NVIDIA driver version.

    Args:
        version: ``'580.65.06'``, ``'580'`` or the int ``580``.

    Returns:
        ``'580'``.

    Raises:
        AnsibleFilterError: if the version is malformed.
    """
    return str(_parse_version(version)[0])


def dlstack_driver_supports_cuda(driver: str, cuda: str) -> bool:
    """Whether an NVIDIA driver meets a CUDA release's minimum driver.

    Args:
        driver: A full driver version (``'580.65.06'``), compared numerically
            component-wise with the minimum (missing components count as 0,
            so ``'570.26.0'`` equals ``'570.26'``); or a bare branch
            (``'580'``), which stands for the newest driver of that branch and
            therefore satisfies every minimum whose major is ``<=`` the branch.
        cuda: CUDA version, ``'13.0'``.

    Returns:
        True if the driver is at or above the table's minimum for ``cuda``.
        Minor-version compatibility is deliberately not applied here; see
        ``dlstack_cuda_minor_compat_floor``.

    Raises:
        AnsibleFilterError: if either version is malformed or the CUDA
            version is unknown.
    """
    _key, minimum = _lookup_min_driver(cuda)
    return _driver_meets(_parse_version(driver), _parse_version(minimum))


def dlstack_cuda_driver_errors(cuda_versions: list[str] | str, driver: str, host: str = "") -> list[str]:
    """List every CUDA release in ``cuda_versions`` that ``driver`` cannot run.

    Problems are returned as messages rather than raised so that a preflight
    task can report all of them at once.

    Args:
        cuda_versions: One CUDA version or a list of them; duplicates (by
            major.minor) are reported once.
        driver: Installed driver, full version or bare branch (see
            ``dlstack_driver_supports_cuda``).
        host: Inventory name to prefix each message with; omitted when empty.

    Returns:
        One message per problem, in input order; empty when all is well.

        - A CUDA release the driver is too old for names the host, the CUDA
          version, its minimum driver, the given driver and the fix
          ``install driver branch >= X (at least M) or choose CUDA <= Y``
          where Y is the newest known CUDA the driver supports (or a note
          that it supports none).  When the driver still meets the
          minor-version-compatibility floor, the message says so.
        - An unknown or malformed CUDA version gives a message listing the
          known versions.
        - A missing or malformed driver gives a single message and stops.
    """
    pre = _prefix(host)
    wanted = _as_list(cuda_versions)
    try:
        have = _parse_version(driver)
    except AnsibleFilterError:
        if not wanted:
            return []
        if driver is None or (isinstance(driver, str) and not driver.strip()):
            return [f"{pre}no NVIDIA driver version given, cannot run CUDA {', '.join(map(str, wanted))}"]
        return [f"{pre}NVIDIA driver version {driver!r} is not a valid version (expected e.g. '580.65.06' or '580')"]

    supported = [v for v in _sorted_cuda() if _driver_meets(have, _parse_version(CUDA_MIN_DRIVER[v]))]
    newest = supported[-1] if supported else None

    errors: list[str] = []
    seen: set[str] = set()
    for cuda in wanted:
        try:
            key, minimum = _lookup_min_driver(cuda)
        except AnsibleFilterError:
            errors.append(f"{pre}{_unknown_cuda_message(cuda)}")
            continue
        if key in seen:
            continue
        seen.add(key)
        need = _parse_version(minimum)
        if _driver_meets(have, need):
            continue
        if newest:
            alternative = f"choose CUDA <= {newest}"
        else:
            oldest = _sorted_cuda()[0]
            alternative = (
                f"no known CUDA release runs on it (the oldest, {oldest}, needs {CUDA_MIN_DRIVER[oldest]})"
            )
        message = (
            f"{pre}CUDA {key} needs NVIDIA driver >= {minimum}, but the driver is {driver}; "
            f"fix: install driver branch >= {need[0]} (at least {minimum}) or {alternative}"
        )
        cuda_major = _parse_version(key)[0]
        floor = CUDA_MINOR_COMPAT_FLOOR.get(cuda_major)
        if floor and _driver_meets(have, _parse_version(floor)):
            message += (
                f" (the driver meets the CUDA {cuda_major}.x minor-version-compatibility floor "
                f"{floor}, so CUDA {key} applications may run with reduced features)"
            )
        errors.append(message)
    return errors


def dlstack_tf_build(tf_version: str) -> dict[str, str]:
    """Return the CUDA and cuDNN of TensorFlow's official Linux GPU build.

    Args:
        tf_version: ``'2.18.1'`` or ``'2.18'``; only major.minor is used.

    Returns:
        ``{'cuda': '12.5', 'cudnn': '9.3'}``.

    Raises:
        AnsibleFilterError: if the version is malformed, lacks a minor part,
            or is not in the table; the message lists the known versions.
    """
    parsed = _parse_version(tf_version)
    known = ", ".join(sorted(TF_BUILDS, key=_parse_version))
    if len(parsed) < 2:
        raise AnsibleFilterError(f"invalid TensorFlow version {tf_version!r}: give major.minor; known versions: {known}")
    key = _fmt(parsed[:2])
    if key not in TF_BUILDS:
        raise AnsibleFilterError(f"unknown TensorFlow version {tf_version!r}; known versions: {known}")
    cudnn, cuda = TF_BUILDS[key]
    return {"cuda": cuda, "cudnn": cudnn}


def dlstack_tf_cuda_warnings(
    tf_version: str,
    host_cuda: str | None,
    host_cudnn: str | None,
    pip_cuda_wheels: bool,
    host: str = "",
) -> list[str]:
    """Compare a host's CUDA/cuDNN with what a TensorFlow build expects.

    Args:
        tf_version: TensorFlow version to be installed, ``'2.18'``.
        host_cuda: Host CUDA toolkit version, or None/'' when there is none.
        host_cudnn: Host cuDNN version (dotted or CUDNN_VERSION integer, see
            ``dlstack_theano_dnn``), or None/'' when there is none.
        pip_cuda_wheels: True when the env installs ``tensorflow[and-cuda]``
            (NVIDIA's CUDA/cuDNN wheels inside the virtualenv).  Ansible
            boolean strings (``'yes'``, ``'false'``) are accepted.
        host: Inventory name to prefix messages with; omitted when empty.

    Returns:
        With ``pip_cuda_wheels``: exactly one informational note saying the
        host toolkit is irrelevant and only the driver matters (with the
        driver minimum for the build's CUDA).  Otherwise one warning each
        when host CUDA or cuDNN is missing, unparsable, or of a different
        major than the build's; empty when the majors match.

    Raises:
        AnsibleFilterError: if ``tf_version`` is malformed or unknown, or
            ``pip_cuda_wheels`` is not a boolean.
    """
    build = dlstack_tf_build(tf_version)
    tf_key = _fmt(_parse_version(tf_version)[:2])
    pre = _prefix(host)
    try:
        use_wheels = boolean(pip_cuda_wheels, strict=True)
    except TypeError as exc:
        raise AnsibleFilterError(f"pip_cuda_wheels must be a boolean, got {pip_cuda_wheels!r}") from exc

    if use_wheels:
        min_driver = CUDA_MIN_DRIVER.get(build["cuda"], "?")
        return [
            f"{pre}TensorFlow {tf_key} installs CUDA {build['cuda']} and cuDNN {build['cudnn']} as pip wheels "
            f"inside the env, so the host CUDA toolkit ({host_cuda or 'none'}) and cuDNN ({host_cudnn or 'none'}) "
            f"are irrelevant; only the NVIDIA driver matters (>= {min_driver} for CUDA {build['cuda']})"
        ]

    warnings: list[str] = []
    checks: list[tuple[str, Any, str, Callable[[Any], tuple[int, ...]]]] = [
        ("CUDA", host_cuda, build["cuda"], _parse_version),
        ("cuDNN", host_cudnn, build["cudnn"], _parse_cudnn),
    ]
    for name, found, expected, parse in checks:
        if found is None or (isinstance(found, str) and not found.strip()):
            warnings.append(
                f"{pre}TensorFlow {tf_key} is built for {name} {expected}, but the host has no {name}; "
                f"install {name} {expected.split('.')[0]}.x or use pip CUDA wheels (tensorflow[and-cuda])"
            )
            continue
        try:
            found_major = parse(found)[0]
        except AnsibleFilterError:
            warnings.append(f"{pre}cannot parse host {name} version {found!r}; TensorFlow {tf_key} needs {name} {expected}")
            continue
        expected_major = _parse_version(expected)[0]
        if found_major != expected_major:
            warnings.append(
                f"{pre}TensorFlow {tf_key} is built for {name} {expected} (major {expected_major}), "
                f"but the host has {name} {found} (major {found_major}); TensorFlow will not load the host's "
                f"{name} libraries: install {name} {expected_major}.x or use pip CUDA wheels (tensorflow[and-cuda])"
            )
    return warnings


def dlstack_theano_dnn(cudnn_version: str | int | None) -> dict[str, Any]:
    """Decide whether Theano 1.0.5 should use cuDNN (its ``[dnn] enabled``).

    Args:
        cudnn_version: None or ``''`` when there is no cuDNN; a dotted
            version (``'7.6.5'``, ``'8'``, ``'9.3.0'``); or a CUDNN_VERSION /
            cudnnGetVersion() integer (``7605`` = 7.6.5, ``90300`` = 9.3.0;
            all-digit strings are read the same way, ``'8'`` = v8).

    Returns:
        ``{'enabled': bool, 'reason': str}``: enabled for majors 5-7
        (the reason notes Theano's warning from 7.2 on); disabled for no
        cuDNN (reason ``'no cuDNN'``), below v5 (Theano rejects it) and
        above v7 (Theano 1.0.5 supports v5-v7: set ``[dnn] enabled=False``).

    Raises:
        AnsibleFilterError: if the version is malformed.
    """
    if cudnn_version is None or (isinstance(cudnn_version, str) and not cudnn_version.strip()):
        return {"enabled": False, "reason": "no cuDNN"}
    parsed = _parse_cudnn(cudnn_version)
    shown = _fmt(parsed)
    lo, hi = THEANO_CUDNN_MIN_MAJOR, THEANO_CUDNN_MAX_MAJOR
    if parsed[0] < lo:
        return {
            "enabled": False,
            "reason": f"cuDNN {shown} is older than v{lo}: Theano 1.0.5 rejects cuDNN < v{lo}; "
                      f"set [dnn] enabled=False or install cuDNN v{lo}-v{hi}",
        }
    if parsed[0] > hi:
        return {
            "enabled": False,
            "reason": f"cuDNN {shown} is newer than Theano 1.0.5 supports (v{lo}-v{hi}; v8 removed APIs "
                      f"Theano calls): set [dnn] enabled=False",
        }
    reason = f"cuDNN {shown} is within Theano 1.0.5's supported range v{lo}-v{hi}"
    if _version_ge(parsed, THEANO_CUDNN_WARN_FROM):
        reason += f" (Theano warns that cuDNN >= {_fmt(THEANO_CUDNN_WARN_FROM)} is more recent than Theano)"
    return {"enabled": True, "reason": reason}


class FilterModule:
    """Ansible filter plugin exposing dlstack's compatibility checks."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        """Map filter names to their functions."""
        return {
            "dlstack_cuda_min_driver": dlstack_cuda_min_driver,
            "dlstack_cuda_known_versions": dlstack_cuda_known_versions,
            "dlstack_cuda_minor_compat_floor": dlstack_cuda_minor_compat_floor,
            "dlstack_driver_branch": dlstack_driver_branch,
            "dlstack_driver_supports_cuda": dlstack_driver_supports_cuda,
            "dlstack_cuda_driver_errors": dlstack_cuda_driver_errors,
            "dlstack_tf_build": dlstack_tf_build,
            "dlstack_tf_cuda_warnings": dlstack_tf_cuda_warnings,
            "dlstack_theano_dnn": dlstack_theano_dnn,
        }
