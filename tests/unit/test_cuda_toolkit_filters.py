"""Unit tests for roles/cuda_toolkit/filter_plugins/cuda_toolkit.py, and for how the role's
preflight combines them with the compatibility filters of plugins/filter/dlstack_compat.py
(the table itself is tested in test_dlstack_compat.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from plugin_loader import load_by_path

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "cuda_toolkit"


ct = load_by_path("cuda_toolkit_filters", ROLE / "filter_plugins" / "cuda_toolkit.py")
compat = load_by_path("dlstack_compat_for_cuda_toolkit", ROOT / "plugins" / "filter" / "dlstack_compat.py")
KNOWN = compat.dlstack_cuda_known_versions()
DEBIAN12 = {"version": "11.8", "package": "nvidia-cuda-toolkit"}


def errors(versions: Any, default: Any = "", method: str = "nvidia", distro: dict[str, str] | None = None) -> list[str]:
    return ct.cuda_toolkit_errors(versions, default, method, KNOWN, distro, "Debian 12")


def preflight(versions: list[Any], driver: str, default: str = "") -> list[str]:
    """The role's preflight expression (tasks/preflight.yml), in Python."""
    good = ct.cuda_toolkit_wellformed(versions)
    unknown = [v for v in good if v not in KNOWN]
    runnable = [v for v in good if v in KNOWN]
    out = errors(versions, default)
    out += ["cuda_toolkit_versions: " + m for m in (compat.dlstack_cuda_driver_errors(unknown, "0") if unknown else [])]
    if runnable and driver:
        out += ["cuda_toolkit_versions: " + m for m in compat.dlstack_cuda_driver_errors(runnable, driver)]
    return out


# --- input ---------------------------------------------------------------------------------

def test_good_input_has_no_errors() -> None:
    assert errors(["12.5", "12.8"], "12.5") == []
    assert errors(["12.5"]) == []


@pytest.mark.parametrize("versions", [[], None, "12.5", {"v": "12.5"}])
def test_versions_must_be_a_non_empty_list(versions: Any) -> None:
    (message,) = errors(versions)
    assert message.startswith(f"cuda_toolkit_versions = {versions!r} is invalid; allowed: a non-empty list")
    assert "10.0, 10.1" in message   # the known releases are listed


def test_unquoted_version_is_refused_with_the_reason() -> None:
    (message,) = errors(["12.5", 12.1])
    assert message.startswith("cuda_toolkit_versions[1] = 12.1 is a number, not a string; quote it")
    assert "an unquoted 12.10 arrives as 12.1" in message


@pytest.mark.parametrize("bad", ["12", "12.5.1", "v12.5", "12.x", "", " "])
def test_major_minor_only(bad: str) -> None:
    (message,) = errors([bad])
    assert message.startswith(f"cuda_toolkit_versions[0] = '{bad}' is invalid; allowed: major.minor only")


def test_non_string_entries() -> None:
    assert errors([None])[0].startswith("cuda_toolkit_versions[0] = None is invalid")
    assert errors([["12.5"]])[0].startswith("cuda_toolkit_versions[0] = ['12.5'] is invalid")


def test_duplicates() -> None:
    assert errors(["12.5", "12.8", "12.5"]) == ["cuda_toolkit_versions[2] = '12.5' is listed twice"]


def test_default_must_be_listed() -> None:
    (message,) = errors(["12.5", "12.8"], "12.6")
    assert message == ("cuda_toolkit_default = '12.6' is not one of cuda_toolkit_versions (12.5, 12.8); "
                       "allowed: '' (the newest) or one of them")
    assert errors(["12.5"], 12.5)[0].startswith("cuda_toolkit_default = 12.5 is a number")
    assert errors(["12.5"], None)[0].startswith("cuda_toolkit_default = None is invalid")


def test_distro_method_fits_only_the_distributions_release() -> None:
    assert errors(["11.8"], method="distro", distro=DEBIAN12) == []
    (message,) = errors(["12.5", "12.8"], method="distro", distro=DEBIAN12)
    assert message == ("cuda_toolkit_versions = ['12.5', '12.8'] cannot be installed with cuda_toolkit_method = distro: "
                       "Debian 12 ships CUDA 11.8 only (nvidia-cuda-toolkit); allowed: ['11.8'], or "
                       "cuda_toolkit_method: nvidia for other or several versions")
    assert errors(["11.8"], method="distro", distro=None)[0].startswith(
        "cuda_toolkit_method = distro: Debian 12 ships no CUDA toolkit")


def test_unknown_method() -> None:
    assert errors(["12.5"], method="runfile") == ["cuda_toolkit_method = 'runfile' is invalid; allowed: nvidia, distro"]


def test_wellformed_and_newest() -> None:
    assert ct.cuda_toolkit_wellformed(["12.5", 12.8, "12", "12.5", " 12.9 "]) == ["12.5", "12.9"]
    assert ct.cuda_toolkit_wellformed("12.5") == []
    assert ct.cuda_toolkit_newest(["12.10", "12.9", "11.8"]) == "12.10"   # numerically, not as text
    assert ct.cuda_toolkit_newest([]) == ""


def test_package_names() -> None:
    assert ct.cuda_toolkit_package("12.5") == "cuda-toolkit-12-5"
    assert ct.cuda_toolkit_package("13.0") == "cuda-toolkit-13-0"


# --- the preflight: input + compatibility table -------------------------------------------

def test_unknown_release_lists_the_known_ones_with_the_reason() -> None:
    (message,) = preflight(["12.7"], "580")
    assert message.startswith("cuda_toolkit_versions: unknown CUDA version '12.7' (there is no CUDA 12.7; "
                              "NVIDIA went from 12.6 to 12.8); known versions: 10.0,")
    assert message.endswith("13.3")


def test_unknown_release_is_reported_without_a_driver_too() -> None:
    assert preflight(["14.0"], "")[0].startswith("cuda_toolkit_versions: unknown CUDA version '14.0'")


def test_release_above_the_driver_branch_is_refused_with_the_fix() -> None:
    (message,) = preflight(["12.5", "13.0"], "575")
    assert message == ("cuda_toolkit_versions: CUDA 13.0 needs NVIDIA driver >= 580.65.06, but the driver is 575; "
                       "fix: install driver branch >= 580 (at least 580.65.06) or choose CUDA <= 12.9")


@pytest.mark.parametrize("cuda", KNOWN)
def test_every_release_runs_on_its_own_minimum_and_not_one_below(cuda: str) -> None:
    minimum = compat.dlstack_cuda_min_driver(cuda)
    assert preflight([cuda], minimum) == []
    parts = [int(p) for p in minimum.split(".")]
    below = ".".join(str(p) for p in [*parts[:-1], parts[-1] - 1]) if parts[-1] > 0 else f"{parts[0] - 1}.99"
    (message,) = preflight([cuda], below)
    assert f"CUDA {cuda} needs NVIDIA driver >= {minimum}, but the driver is {below}" in message


def test_no_driver_known_skips_only_the_driver_check() -> None:
    assert preflight(["13.2"], "") == []


def test_all_problems_at_once() -> None:
    out = preflight(["12.7", 12.8, "13.0", "12", "12.5"], "575", "11.8")
    assert len(out) == 5, out


# --- data consistency: the role's defaults and vars against the compatibility table -------

def _vars(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROLE / "vars" / name).read_text())


DISTRO_DRIVER = {  # the distribution's own driver branch (roles/nvidia_driver/vars) or NVIDIA's default
    "Debian_12.yml": "535", "Debian_13.yml": "550", "Ubuntu_22.yml": "580", "Ubuntu_24.yml": "580",
}


@pytest.mark.parametrize("name", sorted(DISTRO_DRIVER))
def test_distro_release_is_known_and_runs_on_the_distribution_driver(name: str) -> None:
    release = _vars(name)["__cuda_toolkit_distro"]["version"]
    assert release in KNOWN
    assert compat.dlstack_driver_supports_cuda(DISTRO_DRIVER[name], release)


def test_default_releases_fit_tensorflow_where_the_repository_has_cuda12() -> None:
    assert compat.dlstack_tf_build("2.21")["cuda"] in _vars("Debian_12.yml")["__cuda_toolkit_repo"]["default_versions"]


# --- linker entries ---------------------------------------------------------------------------

LD_CONF = """\
/etc/ld.so.conf:1:include /etc/ld.so.conf.d/*.conf
/etc/ld.so.conf.d/000_cuda.conf:1:/usr/local/cuda/targets/x86_64-linux/lib
/etc/ld.so.conf.d/988_cuda-12.conf:1:/usr/local/cuda-12/targets/x86_64-linux/lib
/etc/ld.so.conf.d/988_cuda-13.conf:1:/usr/local/cuda-13/targets/sbsa-linux/lib
/etc/ld.so.conf.d/cuda-from-a-blog.conf:1:/usr/local/cuda/lib
/etc/ld.so.conf.d/cuda-from-a-blog.conf:2:  /usr/local/cuda-12.8/lib/   # comment
/etc/ld.so.conf.d/dlstack-cuda.conf:3:/usr/local/cuda/lib64
/etc/ld.so.conf.d/x86_64-linux-gnu.conf:2:/usr/lib/x86_64-linux-gnu
"""


def test_lib_entries_flags_lib_but_not_nvidias_targets_entries() -> None:
    assert ct.cuda_toolkit_lib_entries(LD_CONF) == [
        "/etc/ld.so.conf.d/cuda-from-a-blog.conf:1:/usr/local/cuda/lib",
        "/etc/ld.so.conf.d/cuda-from-a-blog.conf:2:/usr/local/cuda-12.8/lib/   # comment"]
    assert ct.cuda_toolkit_lib_entries("") == [] and ct.cuda_toolkit_lib_entries(None) == []


# --- the platform's repository -----------------------------------------------------------------

DEBIAN13_REPO = {"name": "debian13", "cuda_majors": ["13"], "default_versions": ["13.1"]}


def test_debian13s_repository_refuses_cuda12_naming_what_it_has() -> None:
    distro = {"version": "12.4", "package": "nvidia-cuda-toolkit"}
    assert ct.cuda_toolkit_errors(["12.5", "13.1"], "", "nvidia", KNOWN, distro, "Debian 13", DEBIAN13_REPO) == [
        "cuda_toolkit_versions = ['12.5'] cannot come from NVIDIA's debian13 repository, which carries CUDA 13 "
        "releases only; allowed: releases such as 13.1, or cuda_toolkit_method: distro (Debian 13 ships CUDA 12.4)"]
    assert ct.cuda_toolkit_errors(["13.1", "13.2"], "", "nvidia", KNOWN, distro, "Debian 13", DEBIAN13_REPO) == []
    # the distro method is not limited by NVIDIA's repository
    assert ct.cuda_toolkit_errors(["12.4"], "", "distro", KNOWN, distro, "Debian 13", DEBIAN13_REPO) == []


@pytest.mark.parametrize("name", ["Debian_12.yml", "Debian_13.yml", "Ubuntu_22.yml", "Ubuntu_24.yml"])
def test_platform_defaults_are_offered_by_the_repository_and_known(name: str) -> None:
    repo = _vars(name)["__cuda_toolkit_repo"]
    for release in repo["default_versions"]:
        assert release in KNOWN and release.split(".")[0] in repo["cuda_majors"]
        # they run on the nvidia_driver role's default branch of the platform
        branch = yaml.safe_load((ROOT / "roles" / "nvidia_driver" / "vars" / name).read_text())["__nvidia_driver_nvidia"]
        assert compat.dlstack_driver_supports_cuda(branch["default_branch"], release), (name, release)


# --- the preflight assembly ---------------------------------------------------------------------


def test_preflight_assembles_every_message() -> None:
    checks = {
        "input": ["cuda_toolkit_default = '11.8' is not one of cuda_toolkit_versions"],
        "unknown": ["unknown CUDA version '12.7'"],
        "driver": ["CUDA 13.0 needs NVIDIA driver >= 580.65.06, but the driver is 575"],
        "driver_source": "the nvidia_driver role in this play",
        "method": "distro",
        "repo_base_url": "developer.download.nvidia.com",
        "link": {"exists": True, "islnk": False, "isdir": True, "path": "/usr/local/cuda"},
        "release_bins": [["/usr/local/cuda-11.8/bin", {"exists": True, "isdir": True, "islnk": False}],
                         ["/usr/local/cuda-12.4/bin", {"exists": True, "isdir": True, "islnk": True}]],
    }
    assert ct.cuda_toolkit_preflight(checks) == [
        "cuda_toolkit_default = '11.8' is not one of cuda_toolkit_versions",
        "cuda_toolkit_versions: unknown CUDA version '12.7'",
        "cuda_toolkit_versions: CUDA 13.0 needs NVIDIA driver >= 580.65.06, but the driver is 575 "
        "(driver from the nvidia_driver role in this play)",
        "/usr/local/cuda is a directory, not a link: another CUDA installation owns it; move it away (for example to "
        "/usr/local/cuda.orig) so that the role can manage the default release",
        "cuda_toolkit_method = distro cannot use /usr/local/cuda-11.8: another CUDA installation is there (its bin is "
        "a directory); remove it, or install that release with cuda_toolkit_method: nvidia"]
    # the URL matters only to the nvidia method
    assert ct.cuda_toolkit_preflight({"method": "nvidia", "repo_base_url": "x"}) == [
        "cuda_toolkit_repo_base_url = 'x' is invalid; allowed: an http(s):// or file:// URL"]
    assert ct.cuda_toolkit_preflight({"method": "nvidia", "repo_base_url": "https://mirror/repos", "link": {}}) == []


POLICY = """cuda-toolkit-12-5:
  Installed: (none)
  Candidate: 12.5.1-1
  Version table:
     12.5.1-1 500
        500 http://127.0.0.1:8086/debian12/x86_64  Packages
cuda-toolkit-12-9:
  Installed: (none)
  Candidate: (none)
  Version table:
"""


def test_missing_candidates() -> None:
    packages = ["cuda-toolkit-12-5", "cuda-toolkit-12-9", "cuda-toolkit-13-0"]
    # 12-9 has no candidate, 13-0 is unknown to apt (apt-cache policy prints nothing for it)
    assert ct.cuda_toolkit_missing_candidates(POLICY, packages) == ["cuda-toolkit-12-9", "cuda-toolkit-13-0"]
    with pytest.raises(AnsibleFilterError):
        ct.cuda_toolkit_missing_candidates(None, packages)


def test_filter_module_exposes_every_filter() -> None:
    names = set(ct.FilterModule().filters())
    assert names == {"cuda_toolkit_errors", "cuda_toolkit_wellformed", "cuda_toolkit_newest", "cuda_toolkit_preflight",
                     "cuda_toolkit_lib_entries", "cuda_toolkit_missing_candidates", "cuda_toolkit_missing_error",
                     "cuda_toolkit_package"}


def test_missing_error_names_the_packages_the_source_and_the_way_out() -> None:
    message = ct.cuda_toolkit_missing_error(["cuda-toolkit-12-7"], "gpu01", "http://mirror/debian12/x86_64/",
                                            ["12.7"], "nvidia")
    assert message == ("cuda_toolkit: on gpu01, cuda-toolkit-12-7 cannot be installed from http://mirror/debian12/x86_64/: "
                       "apt has no candidate (cuda_toolkit_versions = ['12.7']). Choose releases that the repository "
                       "offers (apt-cache search --names-only ^cuda-toolkit-), or check cuda_toolkit_repo_base_url.")
    distro = ct.cuda_toolkit_missing_error(["nvidia-cuda-toolkit"], "gpu01", "the distribution's sources", ["11.8"],
                                           "distro", "Debian ships nvidia-cuda-toolkit in non-free:\n  enable it.")
    assert distro.endswith("(cuda_toolkit_versions = ['11.8']). Debian ships nvidia-cuda-toolkit in non-free: enable it.")
