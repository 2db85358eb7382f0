"""Unit tests for the nvidia_repo role's filters and the shared apt_sources_info module.

nvidia_repo is the one owner of NVIDIA's repository: which directory a node uses (debian13 has
its own, and no sbsa), the input checks, and whether Debian's contrib component must be added
(NVIDIA's libcuda1 needs nvidia-support from it) judged on the node's APT sources as the
apt_sources_info module reads them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from plugin_loader import load_by_path, run_module

ROOT = Path(__file__).resolve().parents[2]
f = load_by_path("nvidia_repo_filters", ROOT / "roles" / "nvidia_repo" / "filter_plugins" / "nvidia_repo.py")
SOURCES = ROOT / "plugins" / "modules" / "apt_sources_info.py"
s = load_by_path("apt_sources_info", SOURCES)
VARS = yaml.safe_load((ROOT / "roles" / "nvidia_repo" / "vars" / "main.yml").read_text(encoding="utf-8"))
OWN = "/etc/apt/sources.list.d/dlstack-debian-contrib.sources"
GOOD = {"base_url": "http://mirror/cuda/repos/", "keyring_deb": "cuda-keyring_1.1-1_all.deb", "keyring_checksum": ""}


def plan(platform: str, machine: str = "x86_64", **cfg: str) -> dict:
    return f.nvidia_repo_plan(dict(GOOD, **cfg), VARS["__nvidia_repo_platforms"], VARS["__nvidia_repo_dist_by_platform"],
                              VARS["__nvidia_repo_arch_map"], platform, machine)


@pytest.mark.parametrize("platform, machine, url, key", [
    ("Debian 12", "x86_64", "http://mirror/cuda/repos/debian12/x86_64/", "3BF863CC"),
    ("Debian 13", "x86_64", "http://mirror/cuda/repos/debian13/x86_64/", "8793F200"),
    ("Ubuntu 24", "aarch64", "http://mirror/cuda/repos/ubuntu2404/sbsa/", "3BF863CC"),
    ("Ubuntu 22", "x86_64", "http://mirror/cuda/repos/ubuntu2204/x86_64/", "3BF863CC"),
])
def test_the_repository_of_a_platform(platform: str, machine: str, url: str, key: str) -> None:
    result = plan(platform, machine)
    assert result["errors"] == [] and result["url"] == url and result["key"] == key
    assert result["keyring_package"] == "cuda-keyring" and result["keyring_version"] == "1.1-1"


def test_debian13_has_no_sbsa_repository() -> None:
    assert plan("Debian 13", "aarch64")["errors"] == [
        "NVIDIA publishes no sbsa repository for Debian 13 (debian13); it has: x86_64 "
        "(no aarch64 for Debian 13: NVIDIA/cuda-repo-management#39)"]
    assert "no directory for Debian 11" in plan("Debian 11")["errors"][0]
    assert plan("Debian 12", "ppc64le")["errors"][0].startswith("NVIDIA publishes no ppc64le repository")


def test_every_input_problem_at_once() -> None:
    errors = plan("Debian 12", base_url="mirror/repos", keyring_deb="keyring.deb", keyring_checksum="md5:1")["errors"]
    assert [e.split(" = ")[0] for e in errors] == [
        "nvidia_repo_base_url", "nvidia_repo_keyring_deb", "nvidia_repo_keyring_checksum"]


# --- Debian's contrib ---------------------------------------------------------------------------


def entry(path: str, suites: list[str], components: list[str], uris: tuple[str, ...] = ("http://deb.debian.org/debian",),
          signed_by: str = "/usr/share/keyrings/debian-archive-keyring.gpg", enabled: bool = True) -> dict:
    return {"file": path, "format": "deb822", "types": ["deb"], "uris": list(uris), "suites": suites,
            "components": components, "signed_by": signed_by, "enabled": enabled}


MAIN_ONLY = [
    entry("/etc/apt/sources.list.d/debian.sources", ["bookworm", "bookworm-updates"], ["main"]),
    entry("/etc/apt/sources.list.d/debian.sources", ["bookworm-security"], ["main"],
          uris=("http://deb.debian.org/debian-security",)),
    entry("/etc/apt/sources.list.d/nvidia-cuda.sources", ["/"], [], uris=("http://127.0.0.1:8555/repos/debian12/x86_64/",)),
]


def test_contrib_is_added_from_the_entries_that_carry_main() -> None:
    result = f.nvidia_repo_contrib(MAIN_ONLY, OWN, "bookworm")
    assert result["needed"] is True
    assert result["stanzas"] == [
        {"uris": ["http://deb.debian.org/debian"], "suites": ["bookworm", "bookworm-updates"],
         "signed_by": "/usr/share/keyrings/debian-archive-keyring.gpg"},
        {"uris": ["http://deb.debian.org/debian-security"], "suites": ["bookworm-security"],
         "signed_by": "/usr/share/keyrings/debian-archive-keyring.gpg"}]


def test_contrib_is_left_alone_when_an_entry_has_it_and_the_roles_own_entry_does_not_count() -> None:
    with_contrib = [dict(MAIN_ONLY[0], components=["main", "contrib", "non-free"]), *MAIN_ONLY[1:]]
    assert f.nvidia_repo_contrib(with_contrib, OWN, "bookworm") == {
        "needed": False, "stanzas": [], "reason": "contrib is enabled"}
    ours = [*MAIN_ONLY, entry(OWN, ["bookworm"], ["contrib"])]
    assert f.nvidia_repo_contrib(ours, OWN, "bookworm")["needed"] is True          # stays idempotent
    disabled = [dict(with_contrib[0], enabled=False), *MAIN_ONLY[1:]]
    assert f.nvidia_repo_contrib(disabled, OWN, "bookworm")["needed"] is True
    # another release's entries are not Debian's of this node
    assert f.nvidia_repo_contrib([entry("/x.sources", ["trixie"], ["main"])], OWN, "bookworm") == {
        "needed": False, "stanzas": [], "reason": "no sources entry carries bookworm's main component"}


# --- apt_sources_info -------------------------------------------------------------------------


def test_apt_sources_info_reads_both_formats(tmp_path: Path) -> None:
    apt = tmp_path / "etc" / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# the image's\ndeb http://deb.debian.org/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://x/repo stable main contrib # comment\n"
        "#deb http://old bookworm main\ndeb-src http://deb.debian.org/debian bookworm main\n")
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main contrib\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "# disabled\nTypes: deb deb-src\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n"
        "Components: main\nEnabled: no\n")
    (apt / "sources.list.d" / "nvidia-cuda.sources").write_text(
        "Types: deb\nURIs: http://127.0.0.1:8555/repos/debian12/x86_64/\nSuites: /\n"
        "Signed-By: /usr/share/keyrings/cuda-archive-keyring.gpg\n")
    (apt / "sources.list.d" / "ignored.save").write_text("deb http://nothing bookworm main\n")
    entries = s.read_sources(str(tmp_path))
    assert [(e["file"], e["suites"], e["components"], e["enabled"]) for e in entries] == [
        ("/etc/apt/sources.list", ["bookworm"], ["main"], True),
        ("/etc/apt/sources.list", ["stable"], ["main", "contrib"], True),
        ("/etc/apt/sources.list", ["bookworm"], ["main"], True),
        ("/etc/apt/sources.list.d/debian.sources", ["bookworm", "bookworm-updates"], ["main", "contrib"], True),
        ("/etc/apt/sources.list.d/debian.sources", ["bookworm-security"], ["main"], False),
        ("/etc/apt/sources.list.d/nvidia-cuda.sources", ["/"], [], True),
    ]
    assert entries[1]["signed_by"] == "/usr/share/keyrings/x.gpg" and entries[2]["types"] == ["deb-src"]
    assert entries[4]["types"] == ["deb", "deb-src"]
    # the image's one-line main entry: contrib is needed, copied from it
    assert f.nvidia_repo_contrib(entries[:1], OWN, "bookworm")["stanzas"] == [
        {"uris": ["http://deb.debian.org/debian"], "suites": ["bookworm"], "signed_by": ""}]
    assert f.nvidia_repo_contrib(entries, OWN, "bookworm")["needed"] is False


def test_apt_sources_info_as_a_module(tmp_path: Path) -> None:
    (tmp_path / "etc" / "apt").mkdir(parents=True)
    (tmp_path / "etc" / "apt" / "sources.list").write_text("deb http://deb.debian.org/debian trixie main\n")
    rc, result = run_module(SOURCES, tmp_path, {"root": str(tmp_path), "_ansible_check_mode": True})
    assert rc == 0 and result["changed"] is False and result["entries"][0]["suites"] == ["trixie"]
    rc, result = run_module(SOURCES, tmp_path, {"root": str(tmp_path / "missing")})
    assert rc == 1 and "root must be an existing directory" in result["msg"]
