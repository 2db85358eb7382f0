"""The recorded facts about NVIDIA's repositories, and the fixture generated from them.

tests/fixtures/nvidia_repo/facts.yml is the one place the project records what NVIDIA
publishes; the fixture repository is generated from it (``generate``, then ``build``). These
tests check that the facts are well formed (every source named exists, every fact says how
sure it is), that the built fixture serves no package and no version the facts do not list
(the allowed set is computed here from the facts, not by the generator), and the facts the
issue is about: debian13 has its own key, no 575/580 branch, no CUDA 12 toolkit and no cuDNN.
The roles' platform data is checked against the same facts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from plugin_loader import load_by_path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "nvidia_repo"
FACTS = yaml.safe_load((FIXTURE / "facts.yml").read_text(encoding="utf-8"))
TEMPLATES = yaml.safe_load((FIXTURE / "specs" / "templates.yml").read_text(encoding="utf-8"))
STATUSES = {"confirmed", "inferred", "assumed", "absent"}

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")


generate = load_by_path("nvidia_repo_generate", FIXTURE / "generate")
build = load_by_path("nvidia_repo_build", FIXTURE / "build")


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def upstream(version: str) -> str:
    return version.split(":", 1)[-1].rsplit("-", 1)[0]


# --- the facts themselves ---------------------------------------------------------------------


def test_every_source_named_is_recorded_and_every_fact_says_how_sure_it_is() -> None:
    sources = set(FACTS["sources"])
    for name, source in FACTS["sources"].items():
        assert source["url"].startswith(("http://", "https://")) and source["says"], name
    for path, node in _walk({k: v for k, v in FACTS.items() if k != "sources"}):
        for key in ("sources", "first_branch_sources", "cudnn_sources"):
            for ref in node.get(key) or []:
                assert ref in sources, f"{path}.{key} names unknown source {ref}"
        if "status" in node:
            assert node["status"] in STATUSES, f"{path}: status {node['status']!r}"
            if node["status"] in ("confirmed", "inferred"):
                assert node.get("sources") or node.get("note"), f"{path}: {node['status']} without a source or a rule"
            if node["status"] == "assumed":
                assert node.get("note"), f"{path}: an assumption must say so in a note"


def test_every_served_release_is_qualified() -> None:
    for dist, repo in FACTS["repos"].items():
        for version, info in repo["driver"]["releases"].items():
            assert info["status"] in STATUSES, (dist, version)
        for release in repo["cuda"]:
            assert FACTS["cuda"][release]["status"] in STATUSES, (dist, release)
        for version in repo["cudnn"]:
            assert FACTS["cudnn"][version]["status"] in STATUSES, (dist, version)


def test_the_facts_the_issue_is_about() -> None:
    deb12, deb13 = FACTS["repos"]["debian12"], FACTS["repos"]["debian13"]
    assert deb12["key"] == "3BF863CC" and deb13["key"] == "8793F200"
    assert FACTS["keys"]["3BF863CC"]["sha1_binding_signature"] is True
    # debian13: 590 and later only, the CUDA 13 generation only, no cuDNN, no sbsa
    assert deb13["driver"]["first_branch"] == "590"
    assert all(int(upstream(v).split(".")[0]) >= 590 for v in deb13["driver"]["releases"])
    assert deb13["cuda"] and all(r.startswith("13.") for r in deb13["cuda"])
    assert deb13["cudnn"] == []
    assert deb13["architectures"]["sbsa"]["status"] == "absent"
    # Debian's nvidia-support (contrib) is what the driver needs from the distribution
    assert [c["component"] for c in deb12["distribution_components"]] == ["contrib"]
    assert "nvidia-support" in FACTS["driver_packages"]["debian"]["packages"]["libcuda1"]["depends"]
    # cuDNN's headers package exists for the split builds only
    assert [v for v, i in FACTS["cudnn"].items() if "headers" in i["packages"]] == ["9.13.0.50-1"]


# --- the fixture serves what the facts list, and nothing else ---------------------------------


def allowed_packages(dist: str, arch: str) -> set[tuple[str, str]]:
    """(name, version) pairs the facts allow in dist/arch, worked out here from the facts alone."""
    repo = FACTS["repos"][dist]
    allowed = {(repo["keyring_deb"]["package"], repo["keyring_deb"]["version"])}
    scheme = FACTS["driver_packages"][repo["driver"]["scheme"]]
    for version in repo["driver"]["releases"]:
        branch = upstream(version).split(".")[0]
        for pattern in scheme["packages"]:
            allowed.add((pattern.replace("@BRANCH@", branch), version))
        for pattern, info in scheme["fabric"].items():
            if int(branch) <= int(info.get("until_branch", 999)) and int(branch) >= int(info.get("from_branch", 0)):
                allowed.add((pattern.replace("@BRANCH@", branch), version))
        for pattern in scheme["pinning"]:
            allowed.add((pattern.replace("@BRANCH@", branch), version))
    cuda_versions: dict[str, list[str]] = {}
    for release in repo["cuda"]:
        info, dash = FACTS["cuda"][release], release.replace(".", "-")
        allowed |= {(f"cuda-toolkit-{dash}", info["toolkit"]), (f"cuda-nvcc-{dash}", info["nvcc"]),
                    (f"cuda-cudart-{dash}", info["cudart"]), (f"cuda-cudart-dev-{dash}", info["cudart"]),
                    (f"cuda-toolkit-{dash}-config-common", info["cudart"])}
        cuda_versions.setdefault(release.split(".")[0], []).append(info["cudart"])
    for major, versions in cuda_versions.items():
        allowed |= {(f"cuda-toolkit-{major}-config-common", v) for v in versions}
        allowed |= {("cuda-toolkit-config-common", v) for v in versions}
    for version in repo["cudnn"]:
        info = FACTS["cudnn"][version]
        major = version.split(".")[0]
        names = {"runtime": "libcudnn{m}-cuda-{c}", "dev": "libcudnn{m}-dev-cuda-{c}",
                 "headers": "libcudnn{m}-headers-cuda-{c}"}
        for cuda_major in info["cuda_majors"]:
            allowed |= {(names[p].format(m=major, c=cuda_major), version) for p in info["packages"]}
            allowed.add((f"cudnn{major}-cuda-{cuda_major}", version))
    return allowed


def served(out: Path, path: str) -> dict[tuple[str, str], dict[str, str]]:
    text = (out / path / "Packages").read_text(encoding="utf-8")
    entries = {}
    for para in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in para.splitlines() if ": " in line and not line.startswith(" "))
        entries[(fields["Package"], fields["Version"])] = fields
    return entries


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    tmp = tmp_path_factory.mktemp("nvidia_repo")
    spec = generate.generate(FACTS, TEMPLATES, generate.served_repos(FACTS))
    spec_path = tmp / "spec.json"
    spec_path.write_text(__import__("json").dumps(spec))
    build.build(spec_path, tmp / "out", "http://127.0.0.1:8555/compute/cuda/repos", force=False)
    return tmp / "out"


def test_the_served_repositories_are_the_recorded_ones() -> None:
    assert generate.served_repos(FACTS) == ["debian12/x86_64", "debian13/x86_64"]


@needs_gpg
@pytest.mark.parametrize("path", ["debian12/x86_64", "debian13/x86_64"])
def test_the_fixture_serves_nothing_the_facts_do_not_list(fixture_repo: Path, path: str) -> None:
    dist, arch = path.split("/")
    packages = served(fixture_repo, path)
    extra = set(packages) - allowed_packages(dist, arch)
    assert not extra, f"{path} serves packages the facts do not list: {sorted(extra)}"
    # and it serves every recorded driver release and toolkit
    names = {n for n, _ in packages}
    for version in FACTS["repos"][dist]["driver"]["releases"]:
        assert ("nvidia-driver-cuda", version) in packages
    for release in FACTS["repos"][dist]["cuda"]:
        assert f"cuda-toolkit-{release.replace('.', '-')}" in names


@needs_gpg
def test_debian13_has_no_580_branch_no_cuda12_no_cudnn_and_its_own_key(fixture_repo: Path, tmp_path: Path) -> None:
    packages = served(fixture_repo, "debian13/x86_64")
    assert not [p for p in packages if re.match(r"^(575|580)\.", p[1])]
    assert not [p for p in packages if p[0].startswith("cuda-toolkit-12")]
    assert not [p for p in packages if "cudnn" in p[0]]
    assert ("nvidia-driver-cuda", "590.48.01-1") in packages
    deb12 = served(fixture_repo, "debian12/x86_64")
    assert ("cuda-drivers-580", "580.105.08-1") in deb12 and ("cuda-toolkit-12-5", "12.5.1-1") in deb12
    # each repository is signed with its own key, published under NVIDIA's key file name
    assert (fixture_repo / "debian13" / "x86_64" / "8793F200.pub").is_file()
    assert (fixture_repo / "debian12" / "x86_64" / "3bf863cc.pub").is_file()
    manifest = __import__("json").loads((fixture_repo / "fixture.json").read_text())
    keys = {p: r["fingerprint"] for p, r in manifest["repos"].items()}
    assert keys["debian12/x86_64"] != keys["debian13/x86_64"]
    # debian12's key does not verify debian13's index (a client trusting the wrong key fails)
    for dist, expect in (("debian13", 0), ("debian12", 1)):
        keyring = tmp_path / f"{dist}.gpg"
        subprocess.run(["gpg", "--dearmor", "-o", str(keyring),
                        str(next((fixture_repo / dist / "x86_64").glob("*.pub")))], check=True)
        verify = subprocess.run(["gpgv", "--keyring", str(keyring), str(fixture_repo / "debian13/x86_64/InRelease")],
                                capture_output=True, check=False)
        assert (verify.returncode != 0) == bool(expect), dist


@needs_gpg
def test_the_dependencies_that_matter(fixture_repo: Path) -> None:
    deb12 = served(fixture_repo, "debian12/x86_64")
    # NVIDIA's branch metapackage depends with open bounds (the reason for the pin)
    assert deb12[("cuda-drivers-580", "580.105.08-1")]["Depends"].startswith("nvidia-driver (>= 580.65.06)")
    assert "nvidia-support" in deb12[("libcuda1", "580.65.06-1")]["Depends"]
    # Fabric Manager: per branch up to 580, one package from 590 (assumed); NSCQ without the branch
    assert ("nvidia-fabricmanager-580", "580.65.06-1") in deb12 and ("nvidia-fabricmanager", "590.48.01-1") in deb12
    assert ("libnvidia-nscq", "580.65.06-1") in deb12
    # cuDNN: three packages from the split on, the dev package depending on the headers
    dev = deb12[("libcudnn9-dev-cuda-12", "9.13.0.50-1")]["Depends"]
    assert "libcudnn9-headers-cuda-12 (= 9.13.0.50-1)" in dev
    assert ("libcudnn9-headers-cuda-12", "9.3.0.75-1") not in deb12


def test_a_template_for_an_unlisted_package_is_refused() -> None:
    templates = dict(TEMPLATES, driver=dict(TEMPLATES["driver"], **{"nvidia-made-up": {"description": "x"}}))
    with pytest.raises(generate.FactsError, match="nvidia-made-up"):
        generate.generate(FACTS, templates, ["debian12/x86_64"])


@pytest.mark.parametrize("path, message", [
    ("debian13/sbsa", "no sbsa repository for debian13"),
    ("ubuntu2404/x86_64", "not served"),
    ("debian11/x86_64", "no repository debian11"),
])
def test_repositories_the_facts_do_not_serve_are_refused(path: str, message: str) -> None:
    with pytest.raises(generate.FactsError, match=message):
        generate.generate(FACTS, TEMPLATES, [path])
# --- the roles' platform data agrees with the facts -------------------------------------------


def _vars(role: str, name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "roles" / role / "vars" / f"{name}.yml").read_text(encoding="utf-8"))


def test_nvidia_repo_knows_each_repository_and_key() -> None:
    platforms = _vars("nvidia_repo", "main")["__nvidia_repo_platforms"]
    for dist, info in platforms.items():
        facts = FACTS["repos"][dist]
        assert info["key"] == facts["key"], dist
        assert sorted(info["architectures"]) == sorted(
            a for a, i in facts["architectures"].items() if i["status"] != "absent"), dist


def test_the_driver_role_offers_what_the_repositories_carry() -> None:
    deb13 = _vars("nvidia_driver", "Debian_13")["__nvidia_driver_nvidia"]
    assert deb13["first_branch"] == FACTS["repos"]["debian13"]["driver"]["first_branch"]
    assert int(deb13["default_branch"]) >= int(deb13["first_branch"])
    assert any(upstream(v).startswith(deb13["default_branch"] + ".") for v in FACTS["repos"]["debian13"]["driver"]["releases"])
    deb12 = _vars("nvidia_driver", "Debian_12")["__nvidia_driver_nvidia"]
    assert any(upstream(v).startswith(deb12["default_branch"] + ".") for v in FACTS["repos"]["debian12"]["driver"]["releases"])


def test_the_toolkit_and_cudnn_roles_know_what_debian13_lacks() -> None:
    cuda13 = _vars("cuda_toolkit", "Debian_13")["__cuda_toolkit_repo"]
    assert cuda13["cuda_majors"] == sorted({r.split(".")[0] for r in FACTS["repos"]["debian13"]["cuda"]})
    assert cuda13["default_versions"][0] in FACTS["repos"]["debian13"]["cuda"]
    assert _vars("cudnn", "Debian_13")["__cudnn_repo_has_cudnn"] is bool(FACTS["repos"]["debian13"]["cudnn"])
    assert _vars("cudnn", "Debian_12")["__cudnn_repo_has_cudnn"] is bool(FACTS["repos"]["debian12"]["cudnn"])


def test_the_fabric_manager_names_follow_the_facts() -> None:
    debian = _vars("nvidia_driver", "Debian")["__nvidia_driver_fabric"]
    fabric = FACTS["driver_packages"]["debian"]["fabric"]
    assert debian["nvidia"]["until_580"] == [n.replace("@BRANCH@", "{branch}") for n, i in fabric.items()
                                             if "from_branch" not in i]
    assert debian["nvidia"]["from_590"] == [n for n, i in fabric.items() if "until_branch" not in i]


# --- Ubuntu: the plan's package names against the recorded facts ------------------------------
# No Ubuntu image can be built here (no Ubuntu mirror is reachable), so Ubuntu's package choices
# are tested only here: the names the role installs from NVIDIA's Ubuntu repositories carry the
# branch up to 580 and drop it from 590 (the guide's rename table), Ubuntu's archive uses the
# -server builds.

nd = load_by_path("nvidia_driver_filters_facts", ROOT / "roles" / "nvidia_driver" / "filter_plugins" / "nvidia_driver.py")
UBUNTU_VARS = yaml.safe_load((ROOT / "roles" / "nvidia_driver" / "vars" / "Ubuntu.yml").read_text(encoding="utf-8"))


def ubuntu_names(method: str, branch: str, flavor: str = "open", headless: bool = True) -> dict[str, list[str]]:
    plan = {"branch": branch, "flavor": flavor, "fabric": True}
    return nd.nvidia_driver_packages(plan, UBUNTU_VARS["__nvidia_driver_packages"][method],
                                     UBUNTU_VARS["__nvidia_driver_fabric"][method], headless, True, True)


@pytest.mark.parametrize("branch", ["575", "580", "590", "595"])
def test_ubuntu_names_follow_the_rename_table(branch: str) -> None:
    ubuntu = FACTS["driver_packages"]["ubuntu"]
    suffixed = int(branch) <= int(ubuntu["suffixed_until"])
    names = ubuntu_names("nvidia", branch, headless=False)

    def recorded(name: str) -> str:   # nvidia-dkms-open -> nvidia-dkms-580-open, as the table renames
        if not suffixed:
            return name
        return name[:-5] + f"-{branch}-open" if name.endswith("-open") else f"{name}-{branch}"

    expected = {recorded(n) for n in ubuntu["packages"]}
    assert set(names["main"] + names["aux"]) <= expected, set(names["main"] + names["aux"]) - expected
    assert ("libnvidia-compute-580" in names["main"]) is (branch == "580")
    assert ("libnvidia-compute" in names["main"]) is (int(branch) >= 590)
    assert names["main"][-1] == ("nvidia-dkms-open" if not suffixed else f"nvidia-dkms-{branch}-open")
    # NSCQ keeps one name; Fabric Manager drops the branch from 590 (assumed, see the facts)
    assert names["fabric"] == ([f"nvidia-fabricmanager-{branch}"] if suffixed else ["nvidia-fabricmanager"]) + ["libnvidia-nscq"]
    # the metapackage cuda-drivers-<branch> is gone from 590: the role never installs it
    assert not any(n.startswith("cuda-drivers") for n in names["main"])


def test_ubuntu_archive_uses_the_server_builds() -> None:
    names = ubuntu_names("distro", "580", flavor="proprietary")
    assert names["main"] == ["libnvidia-compute-580-server", "nvidia-utils-580-server", "nvidia-dkms-580-server"]
    assert names["aux"] == ["nvidia-compute-utils-580-server"]
    assert names["fabric"] == ["nvidia-fabricmanager-580", "libnvidia-nscq-580"]
    assert ubuntu_names("distro", "595")["main"][0] == "libnvidia-compute-595-server"
