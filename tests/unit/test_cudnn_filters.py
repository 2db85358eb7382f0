"""Unit tests for roles/cudnn/filter_plugins/cudnn.py, and for the compatibility calls the
role makes (TensorFlow warnings, Theano's cuDNN use) with its defaults."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from plugin_loader import load_by_path

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "cudnn"


cd = load_by_path("cudnn_filters", ROLE / "filter_plugins" / "cudnn.py")
compat = load_by_path("dlstack_compat_for_cudnn", ROOT / "plugins" / "filter" / "dlstack_compat.py")

SHA = "a" * 64
NAME = "cudnn-linux-x86_64-9.3.0.75_cuda12-archive.tar.xz"
GOOD_ARCHIVE = {"src": NAME, "sha256": SHA}
HEADER = (ROOT / "tests" / "unit" / "fixtures" / "cudnn" / "cudnn_version-9.3.0.h").read_text()


def errors(method: str = "nvidia", version: Any = "9.3.0", cuda: Any = None, archives: Any = None,
           tf: Any = None, installed: list[str] | None = None) -> list[str]:
    return cd.cudnn_errors(method, version, ["12.5", "12.8"] if cuda is None else cuda,
                           [] if archives is None else archives, [] if tf is None else tf, installed)


# --- input -----------------------------------------------------------------------------------

def test_good_input() -> None:
    assert errors() == []
    assert errors("archive", archives=[GOOD_ARCHIVE]) == []
    assert errors("archive", version="9.3.0.75", archives=[{"url": "https://mirror/x/" + NAME, "sha256": SHA}]) == []
    assert errors(tf=[{"name": "tf", "tensorflow": "2.21", "pip_cuda_wheels": True}]) == []


@pytest.mark.parametrize("version", ["9", "9.3", "v9.3.0", "9.3.0.75.1", "", None])
def test_version_form(version: Any) -> None:
    (message,) = errors(version=version)
    assert message.startswith(f"cudnn_version = {version!r} is invalid; allowed: major.minor.patch such as '9.3.0'")


def test_unquoted_version() -> None:
    assert errors(version=9.3) == ['cudnn_version = 9.3 is a number; quote it in YAML ("9.3")']


def test_cuda_versions_form_and_the_nodes_releases() -> None:
    (message,) = errors(cuda=[], installed=["12.5"])
    assert message == ("cudnn_cuda_versions = [] is invalid; allowed: a non-empty list of the node's CUDA releases "
                       "('X.Y'); this node has 12.5")
    assert errors(cuda=[12.5])[0].startswith("cudnn_cuda_versions[0] = 12.5 is invalid; allowed: a quoted 'X.Y'")


def test_nvidia_method_takes_one_cuda_major() -> None:
    (message,) = errors(cuda=["11.8", "12.5"])
    assert message.startswith("cudnn_cuda_versions = ['11.8', '12.5'] spans CUDA majors 11, 12, but cudnn_method = "
                              "nvidia installs one CUDA major's packages")
    assert message.endswith("or cudnn_method: archive, which installs cuDNN into each release's own directory")


def test_unknown_method() -> None:
    assert errors("tarball") == ["cudnn_method = 'tarball' is invalid; allowed: nvidia, archive"]


# --- archives --------------------------------------------------------------------------------

def test_archive_method_needs_archives() -> None:
    (message,) = errors("archive")
    assert message.startswith("cudnn_archives = [] is invalid with cudnn_method = archive")


@pytest.mark.parametrize("archive, expected", [
    ({"sha256": SHA}, "cudnn_archives[0] needs exactly one of src"),
    ({"src": NAME, "url": "https://x/" + NAME, "sha256": SHA}, "cudnn_archives[0] needs exactly one of src"),
    ({"url": "ftp://x/" + NAME, "sha256": SHA}, "cudnn_archives[0].url = 'ftp://x/"),
    ({"src": NAME}, "cudnn_archives[0].sha256 = None is invalid; allowed: the archive's SHA-256, 64 hex digits"),
    ({"src": NAME, "sha256": "abc"}, "cudnn_archives[0].sha256 = 'abc' is invalid"),
    ({"src": NAME, "sha256": SHA, "md5": "x"}, "cudnn_archives[0] has unknown keys ['md5']"),
    ({"src": "cudnn.tar.xz", "sha256": SHA}, "cudnn_archives[0]: 'cudnn.tar.xz' is not named like NVIDIA's"),
    ({"src": NAME.replace("9.3.0.75", "9.8.0.87"), "sha256": SHA}, "holds cuDNN 9.8.0.87, but cudnn_version = '9.3.0'"),
    ("cudnn.tar.xz", "cudnn_archives[0] = 'cudnn.tar.xz' is invalid; allowed: a mapping"),
])
def test_archive_entry_errors(archive: Any, expected: str) -> None:
    out = errors("archive", archives=[archive])
    assert any(m.startswith(expected) or expected in m for m in out), out


def test_one_archive_per_cuda_major_and_every_major_covered() -> None:
    out = errors("archive", archives=[GOOD_ARCHIVE, dict(GOOD_ARCHIVE)])
    assert out == ["cudnn_archives[1]: a second archive for CUDA 12 (cudnn_archives[0] is one); allowed: one archive "
                   "per CUDA major"]
    out = errors("archive", cuda=["11.8", "12.5"], archives=[GOOD_ARCHIVE])
    assert out == ["cudnn_cuda_versions has CUDA 11.x releases but cudnn_archives has no archive for CUDA 11 (a "
                   "..._cuda11-archive.tar.xz); allowed: one archive per CUDA major of cudnn_cuda_versions (11, 12)"]
    eleven = {"src": NAME.replace("cuda12", "cuda11"), "sha256": SHA}
    assert errors("archive", cuda=["11.8", "12.5"], archives=[GOOD_ARCHIVE, eleven]) == []


def test_archive_info() -> None:
    info = cd.cudnn_archive_info({"url": "https://mirror/cudnn/" + NAME + "?token=1", "sha256": SHA})
    assert info["name"] == NAME and info["top"] == NAME[: -len(".tar.xz")]
    assert (info["version"], info["cuda_major"], info["ext"]) == ("9.3.0.75", "12", "tar.xz")
    assert info["sha256"] == SHA   # the entry is kept
    assert cd.cudnn_archive_info({"src": "my.tar.xz", "cuda_major": 12})["cuda_major"] == "12"
    assert cd.cudnn_archive_info("x")["top"] == ""


def test_src_errors_from_the_controller_stat() -> None:
    results = [
        {"item": {"src": NAME, "sha256": SHA}, "__cudnn_idx": 0, "stat": {"exists": True, "path": "/f/" + NAME,
                                                                          "checksum": SHA}},
        {"item": {"src": NAME, "sha256": SHA}, "__cudnn_idx": 1, "stat": {"exists": True, "path": "/f/" + NAME,
                                                                          "checksum": "b" * 64}},
        {"item": {"src": "gone.tar.xz", "sha256": SHA}, "__cudnn_idx": 2, "stat": {"exists": False}},
        {"item": {"url": "https://x"}, "__cudnn_idx": 3, "skipped": True},
    ]
    out = cd.cudnn_src_errors(results, ["/play/files"])
    assert out == [
        f"cudnn_archives[1]: /f/{NAME} has sha256 {'b' * 64}, but cudnn_archives[1].sha256 is {SHA}: the file is "
        "corrupt, incomplete or another archive. Nothing was installed; fetch NVIDIA's tarball again and compare it "
        "with `sha256sum`, or correct the sha256",
        "cudnn_archives[2].src = 'gone.tar.xz' was not found on the controller (looked in /play/files); allowed: a "
        "tarball under the playbook's files/ or an absolute path",
    ]


def test_layout_errors_refuse_a_distro_release() -> None:
    pairs = [
        ("/usr/local/cuda-12.5/include", "/usr/local/cuda-12.5/targets/x86_64-linux/include"),
        ("/usr/local/cuda-11.8/include", "/usr/include"),
        ("/usr/local/cuda-12.8/lib64", "/usr/local/cuda-12.8/lib64\n"),
    ]
    (message,) = cd.cudnn_layout_errors(pairs)
    assert message.startswith("cudnn_method = archive cannot install into /usr/local/cuda-11.8/include: it leads to "
                              "/usr/include, outside /usr/local/cuda-11.8")
    assert message.endswith("or leave 11.8 out of cudnn_cuda_versions")


# --- TensorFlow envs -------------------------------------------------------------------------

@pytest.mark.parametrize("envs, expected", [
    ("tf", "cudnn_tensorflow_envs = 'tf' is invalid"),
    ([{"tensorflow": "2.21"}], "cudnn_tensorflow_envs[0] = {'tensorflow': '2.21'} is invalid; allowed: a mapping with name"),
    ([{"name": "a", "tensorflow": 2.21}], "cudnn_tensorflow_envs[0].tensorflow = 2.21 is a number; quote it"),
    ([{"name": "a", "tensorflow": "latest"}], "cudnn_tensorflow_envs[0].tensorflow = 'latest' is invalid"),
    ([{"name": "a", "tensorflow": "2.21", "pip_cuda_wheels": "yes"}], "cudnn_tensorflow_envs[0].pip_cuda_wheels = 'yes'"),
    ([{"name": "a", "tensorflow": "2.21", "cuda": "12"}], "cudnn_tensorflow_envs[0] (a) has unknown keys ['cuda']"),
])
def test_tensorflow_env_errors(envs: Any, expected: str) -> None:
    out = errors(tf=envs)
    assert any(m.startswith(expected) for m in out), out


def test_tensorflow_checks_with_the_role_defaults() -> None:
    """What the role prints for the default cuDNN on a CUDA 12.5 node (dlstack_tf_cuda_warnings)."""
    version = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["cudnn_version"]
    assert compat.dlstack_tf_cuda_warnings("2.21", "12.5", version, False, "gpu01") == []
    old = compat.dlstack_tf_cuda_warnings("2.14", "12.5", version, False, "gpu01")
    assert len(old) == 2 and all(m.startswith("gpu01: TensorFlow 2.14 is built for") for m in old)
    (note,) = compat.dlstack_tf_cuda_warnings("2.21", "12.5", version, True, "gpu01")
    assert "host CUDA toolkit (12.5) and cuDNN (9.3.0) are irrelevant" in note
    with pytest.raises(AnsibleFilterError, match=re.escape("unknown TensorFlow version '2.11'; known versions")):
        compat.dlstack_tf_cuda_warnings("2.11", "12.5", version, False)


@pytest.mark.parametrize("version, enabled", [("9.3.0", False), ("8.9.7", False), ("7.6.5", True), ("5.1.10", True),
                                              ("4.0.7", False), ("", False)])
def test_theano_fact_shape(version: str, enabled: bool) -> None:
    """The role publishes dlstack_theano_dnn(version) + {version, cuda} as cudnn_theano_dnn."""
    fact = {**compat.dlstack_theano_dnn(version or None), "version": version, "cuda": "12.5"}
    assert set(fact) == {"enabled", "reason", "version", "cuda"}
    assert fact["enabled"] is enabled


# --- headers, apt, results ----------------------------------------------------------------------

@pytest.mark.parametrize("found, wanted, ok", [("9.3.0", "9.3.0", True), ("9.3.0", "9.3.0.75", True),
                                                ("9.8.0", "9.3.0", False), ("", "9.3.0", False)])
def test_version_matches(found: str, wanted: str, ok: bool) -> None:
    assert cd.cudnn_version_matches(found, wanted) is ok


MADISON = """libcudnn9-cuda-12 | 9.8.0.87-1 | http://127.0.0.1:8086/debian12/x86_64  Packages
libcudnn9-cuda-12 | 9.3.0.75-1 | http://127.0.0.1:8086/debian12/x86_64  Packages
"""


def test_madison_and_version_selection() -> None:
    versions = cd.cudnn_madison_versions(MADISON, "libcudnn9-cuda-12")
    assert versions == ["9.8.0.87-1", "9.3.0.75-1"]
    assert cd.cudnn_select_version(versions, cd.cudnn_package_version_glob("9.3.0")) == "9.3.0.75-1"
    assert cd.cudnn_select_version(versions, cd.cudnn_package_version_glob("9.3.0.75")) == "9.3.0.75-1"
    assert cd.cudnn_select_version(versions, cd.cudnn_package_version_glob("9.3.1")) == ""
    assert cd.cudnn_madison_versions("", "x") == []
    with pytest.raises(AnsibleFilterError):
        cd.cudnn_madison_versions(None, "x")


def test_package_names() -> None:
    assert cd.cudnn_packages("9.3.0", "12") == ["libcudnn9-cuda-12", "libcudnn9-dev-cuda-12", "libcudnn9-headers-cuda-12"]
    assert cd.cudnn_packages("8.9.7", "11") == ["libcudnn8-cuda-11", "libcudnn8-dev-cuda-11", "libcudnn8-headers-cuda-11"]


# apt-cache madison of the three packages on the fixture repository (generated from
# tests/fixtures/nvidia_repo/facts.yml: 9.3.0 and 9.8.0 in two packages, 9.13.0 in three)
REPO_MADISON = """\
libcudnn9-cuda-12 | 9.13.0.50-1 | http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
libcudnn9-cuda-12 |  9.8.0.87-1 | http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
libcudnn9-cuda-12 |  9.3.0.75-1 | http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
libcudnn9-dev-cuda-12 | 9.13.0.50-1 | http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
libcudnn9-dev-cuda-12 |  9.8.0.87-1 | http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
libcudnn9-dev-cuda-12 |  9.3.0.75-1 | http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
libcudnn9-headers-cuda-12 | 9.13.0.50-1 | http://127.0.0.1:8555/compute/cuda/repos/debian12/x86_64  Packages
"""


def test_repo_selection_adds_the_headers_package_where_it_is_split_out() -> None:
    split = cd.cudnn_repo_selection(REPO_MADISON, "9.13.0", "12")
    assert split["version"] == "9.13.0.50-1"
    assert split["packages"] == ["libcudnn9-cuda-12", "libcudnn9-dev-cuda-12", "libcudnn9-headers-cuda-12"]
    two = cd.cudnn_repo_selection(REPO_MADISON, "9.3.0", "12")
    assert two["version"] == "9.3.0.75-1" and two["packages"] == ["libcudnn9-cuda-12", "libcudnn9-dev-cuda-12"]
    assert cd.cudnn_repo_selection(REPO_MADISON, "9.8.0.87", "12")["version"] == "9.8.0.87-1"
    missing = cd.cudnn_repo_selection(REPO_MADISON, "9.9.9", "12")
    assert missing["version"] == "" and missing["packages"] == []
    assert missing["offered"] == ["9.13.0.50-1", "9.8.0.87-1", "9.3.0.75-1"]
    # a build the dev package lacks is not installable
    runtime_only = "libcudnn9-cuda-12 | 9.14.0.64-1 | http://x Packages\n"
    assert cd.cudnn_repo_selection(runtime_only, "9.14.0", "12")["version"] == ""


def test_cuda_releases_given_from_the_toolkit_or_on_the_node() -> None:
    toolkit = {"versions": ["12.5", "12.8"], "default": "12.8"}
    assert cd.cudnn_cuda_releases(["12.8"], toolkit, ["12.5", "12.8"]) == ["12.8"]
    assert cd.cudnn_cuda_releases([], toolkit, ["11.8"]) == ["12.5", "12.8"]
    assert cd.cudnn_cuda_releases([], {}, ["11.8", "12.5"]) == ["11.8", "12.5"]
    assert cd.cudnn_cuda_releases("12.5", toolkit, []) == "12.5"   # malformed: cudnn_errors names it


def test_preflight_assembles_every_message() -> None:
    checks = {"input": ["cudnn_version = 9.3 is a number"], "sources": ["cudnn_archives[0].src = 'x' was not found"],
              "layout": [], "cuda": ["11.8", "12.5", "13.1"], "node_cuda": ["12.5"], "planned": ["13.1"],
              "prefix": "/usr/local/cuda"}
    assert cd.cudnn_preflight(checks) == [
        "cudnn_version = 9.3 is a number", "cudnn_archives[0].src = 'x' was not found",
        "cudnn_cuda_versions: CUDA 11.8 is not installed on this node (/usr/local/cuda-11.8 is missing; it has 12.5); "
        "install it first (the cuda_toolkit role, cuda_toolkit_versions) or leave it out"]
    assert cd.cudnn_preflight({"cuda": "12.5"}) == []


def test_nvidia_method_is_refused_where_the_repository_has_no_cudnn() -> None:
    repo = {"has_cudnn": False, "platform": "Debian 13"}
    errors = cd.cudnn_errors("nvidia", "9.13.0", ["13.1"], [], [], ["13.1"], repo)
    assert errors == [
        "cudnn_method = nvidia: NVIDIA's repository for Debian 13 has no cuDNN packages (NVIDIA/cuda-repo-management#32: "
        "expected until a cuDNN release supports it); allowed: cudnn_method: archive with NVIDIA's redistributable "
        "tarball in cudnn_archives"]
    assert cd.cudnn_errors("nvidia", "9.3.0", ["12.5"], [], [], ["12.5"], {"has_cudnn": True}) == []


def test_cuda_from_link() -> None:
    assert cd.cudnn_cuda_from_link("/usr/local/cuda-12.8") == "12.8"
    assert cd.cudnn_cuda_from_link("/etc/alternatives/cuda") == ""
    assert cd.cudnn_cuda_from_link(None) == ""


def test_installed_list_and_mismatches() -> None:
    results = [
        {"item": "12.5", "content": base64.b64encode(HEADER.encode()).decode(), "source": "/usr/include/cudnn_version.h"},
        {"item": "12.8", "failed": True, "msg": "file not found", "invocation": {"module_args": {"src": "/x.h"}}},
    ]
    installed = cd.cudnn_installed_list(results, "nvidia")
    assert installed == [
        {"cuda": "12.5", "version": "9.3.0", "header": "/usr/include/cudnn_version.h", "method": "nvidia"},
        {"cuda": "12.8", "version": "", "header": "/x.h", "method": "nvidia"},
    ]
    assert cd.cudnn_mismatched(installed, "9.3.0") == [installed[1]]


def test_filter_module_exposes_every_public_filter() -> None:
    public = {name for name in dir(cd) if name.startswith("cudnn_") and callable(getattr(cd, name))}
    # and the project's one cuDNN header parser (plugins/module_utils/dlstack_cudnn.py) under the role's name
    assert set(cd.FilterModule().filters()) == public | {"cudnn_version_from_header"}


def test_checksum_note_only_when_the_node_computed_another_sum() -> None:
    assert cd.cudnn_checksum_note("", SHA) == ""
    assert cd.cudnn_checksum_note(SHA, SHA.upper() + " ") == ""
    assert cd.cudnn_checksum_note("b" * 64, SHA) == f" (sha256 on the node: {'b' * 64}, expected {SHA})"


@pytest.mark.parametrize("installed, cuda, method, want", [
    ([{"cuda": "12.5", "version": "9.3.0"}, {"cuda": "12.8", "version": "9.8.0"}], "12.8", "archive", "9.8.0"),
    ([{"cuda": "12.5", "version": "9.3.0"}], "12.8", "archive", ""),
    ([{"cuda": "12.5", "version": "9.3.0"}], "12.8", "nvidia", "9.3.0"),   # the system packages serve every release
    ([], "12.8", "nvidia", ""),
])
def test_default_version_is_the_default_releases(installed: list, cuda: str, method: str, want: str) -> None:
    assert cd.cudnn_default_version(installed, cuda, method) == want
