"""Unit tests for tests/fixtures/nvidia_repo/build, the signed apt repository fixture builder.

The builder is shared by the Molecule scenarios of the NVIDIA roles (driver now, CUDA toolkit and
cuDNN later), so its output is checked here the way apt will read it: .deb archives, Packages
entries with sizes and hashes, a Release whose hashes match, and signatures that verify with
the public key the keyring package installs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from plugin_loader import load_by_path

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "tests" / "fixtures" / "nvidia_repo" / "build"

needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")


b = load_by_path("nvidia_repo_build", BUILDER)

SMALL_SPEC = {
    "origin": "NVIDIA",
    "label": "NVIDIA CUDA",
    "repos": [{"path": "debian12/x86_64", "architecture": "amd64"}],
    "keyring": {"package": "cuda-keyring", "version": "1.1-1", "keyring": "/usr/share/keyrings/cuda-archive-keyring.gpg",
                "sources_list": "/etc/apt/sources.list.d/cuda-@REPO_ID@.list"},
    "packages": [
        {"name": "libcuda1", "versions": ["580.95.05-1", "590.44.01-1"], "provides": "libcuda.so.1 (= @UPSTREAM@)"},
        {"name": "cuda-drivers-@BRANCH@", "versions": ["580.95.05-1"], "depends": "libcuda1 (>= @UPSTREAM@)",
         "files": {"/usr/bin/fake-@BRANCH@": {"mode": "0755", "content": "#!/bin/sh\necho ${HOME} @VERSION@\n"}}},
    ],
}


def ar_members(data: bytes) -> dict[str, bytes]:
    assert data[:8] == b"!<arch>\n"
    members, pos = {}, 8
    while pos < len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def tar_files(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def tar_read(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(name)
        assert member is not None
        return member.read()


# --- pure parts -------------------------------------------------------------------------------


def test_upstream_and_tokens() -> None:
    assert b.upstream_of("580.95.05-1") == "580.95.05"
    assert b.upstream_of("1:580.95.05-0ubuntu1") == "580.95.05"
    assert b.upstream_of("1.1") == "1.1"
    packages = b.expand_packages(SMALL_SPEC, SMALL_SPEC["repos"][0], "http://127.0.0.1:8555/repos")
    names = [(p["name"], p["version"]) for p in packages]
    assert names == [("libcuda1", "580.95.05-1"), ("libcuda1", "590.44.01-1"), ("cuda-drivers-580", "580.95.05-1")]
    meta = packages[2]
    assert meta["fields"]["depends"] == "libcuda1 (>= 580.95.05)"
    # shell syntax in contents is left alone, tokens are replaced
    assert meta["files"]["/usr/bin/fake-580"]["content"] == b"#!/bin/sh\necho ${HOME} 580.95.05-1\n"
    assert meta["files"]["/usr/bin/fake-580"]["mode"] == 0o755


def test_deb_layout_and_reproducibility() -> None:
    package = b.expand_packages(SMALL_SPEC, SMALL_SPEC["repos"][0], "")[2]
    deb, control = b.build_deb(package)
    assert deb == b.build_deb(package)[0]           # same spec, same bytes
    members = ar_members(deb)
    assert list(members) == ["debian-binary", "control.tar.gz", "data.tar.gz"]
    assert members["debian-binary"] == b"2.0\n"
    assert "./control" in tar_files(members["control.tar.gz"])
    data = tar_files(members["data.tar.gz"])
    assert data["./usr/bin/fake-580"].mode == 0o755 and data["./usr/bin/fake-580"].uid == 0
    assert "./usr/share/doc/cuda-drivers-580/README.fixture" in data
    assert control.startswith("Package: cuda-drivers-580\nVersion: 580.95.05-1\nArchitecture: amd64\n")
    assert "Depends: libcuda1 (>= 580.95.05)\n" in control
    md5sums = tar_read(members["control.tar.gz"], "./md5sums").decode()
    script = tar_read(members["data.tar.gz"], "./usr/bin/fake-580")
    assert f"{hashlib.md5(script).hexdigest()}  usr/bin/fake-580\n" in md5sums


@pytest.mark.parametrize("bad, message", [
    ({"repos": []}, "'repos' is required"),
    ({"packages": [{"name": "x"}]}, "'version' or 'versions' is required"),
    ({"packages": []}, "'packages' is required"),
    ({"repos": [{"path": "/abs", "architecture": "amd64"}]}, "must be relative"),
])
def test_spec_errors(tmp_path: Path, bad: dict, message: str) -> None:
    spec = dict(SMALL_SPEC, **bad)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(b.SpecError, match=message):
        if "packages" in bad:
            b.expand_packages(b.load_spec(path), spec["repos"][0], "")
        else:
            b.load_spec(path)


@needs_gpg
def test_repositories_with_their_own_packages_and_keys(tmp_path: Path) -> None:
    """A spec can give each repository its packages and one of its named keys (as NVIDIA signs
    debian13 with another key than debian12); the keyring package carries that key."""
    spec = dict(SMALL_SPEC, packages=[], keys={"A": {"publish_as": "aaaa.pub"}, "B": {"publish_as": "bbbb.pub"}},
                repos=[{"path": "debian12/x86_64", "architecture": "amd64", "key": "A",
                        "packages": [{"name": "libcuda1", "version": "580.95.05-1"}]},
                       {"path": "debian13/x86_64", "architecture": "amd64", "key": "B",
                        "keyring": {"version": "1.2-1"},
                        "packages": [{"name": "libcuda1", "version": "590.44.01-1"}]}])
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    manifest = b.build(spec_path, tmp_path / "out", "", force=False)
    repos = manifest["repos"]
    assert repos["debian12/x86_64"]["packages"] == ["cuda-keyring=1.1-1", "libcuda1=580.95.05-1"]
    assert repos["debian13/x86_64"]["packages"] == ["cuda-keyring=1.2-1", "libcuda1=590.44.01-1"]
    assert repos["debian12/x86_64"]["fingerprint"] != repos["debian13/x86_64"]["fingerprint"]
    assert (tmp_path / "out" / "debian13" / "x86_64" / "bbbb.pub").is_file()
    for name in ("A", "B"):
        assert ((tmp_path / "out" / ".key" / name / "secret.asc").stat().st_mode & 0o077) == 0
    assert ((tmp_path / "out" / ".key").stat().st_mode & 0o077) == 0
    # an unknown key name is a spec error
    spec["repos"][0]["key"] = "C"
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(b.SpecError, match="names key 'C'"):
        b.load_spec(spec_path)


# --- a whole build ----------------------------------------------------------------------------


@needs_gpg
def test_build_signs_a_repository_apt_can_read(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SMALL_SPEC))
    out = tmp_path / "out"
    base = "http://127.0.0.1:8555/compute/cuda/repos"
    manifest = b.build(spec_path, out, base, force=False)
    assert manifest["changed"] is True
    repo = out / "debian12" / "x86_64"

    # Packages: one entry per .deb, with the right size and hashes, gzip copy identical
    packages = (repo / "Packages").read_text()
    assert gzip.decompress((repo / "Packages.gz").read_bytes()).decode() == packages
    entries = [dict(line.split(": ", 1) for line in para.splitlines() if ": " in line and not line.startswith(" "))
               for para in packages.strip().split("\n\n")]
    assert {(e["Package"], e["Version"]) for e in entries} == {
        ("libcuda1", "580.95.05-1"), ("libcuda1", "590.44.01-1"), ("cuda-drivers-580", "580.95.05-1"),
        ("cuda-keyring", "1.1-1")}
    for entry in entries:
        deb = (repo / entry["Filename"]).read_bytes()
        assert entry["Filename"].startswith("./")
        assert int(entry["Size"]) == len(deb) and entry["SHA256"] == hashlib.sha256(deb).hexdigest()

    # Release lists the indexes with their hashes
    release = (repo / "Release").read_text()
    assert "Origin: NVIDIA\nLabel: NVIDIA CUDA\n" in release
    for name in ("Packages", "Packages.gz"):
        data = (repo / name).read_bytes()
        assert f" {hashlib.sha256(data).hexdigest()} {len(data):>8} {name}\n" in release

    # the keyring package carries the key that verifies InRelease and Release.gpg
    keyring_deb = (repo / manifest["repos"]["debian12/x86_64"]["keyring_deb"]).read_bytes()
    assert hashlib.sha256(keyring_deb).hexdigest() == manifest["repos"]["debian12/x86_64"]["keyring_sha256"]
    data = ar_members(keyring_deb)["data.tar.gz"]
    keyring = tar_read(data, "./usr/share/keyrings/cuda-archive-keyring.gpg")
    assert hashlib.sha256(keyring).hexdigest() == manifest["keyring_file_sha256"]
    sources = tar_read(data, "./etc/apt/sources.list.d/cuda-debian12-x86_64.list").decode()
    assert sources == f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {base}/debian12/x86_64/ /\n"
    conffiles = tar_read(ar_members(keyring_deb)["control.tar.gz"], "./conffiles").decode()
    assert conffiles == "/etc/apt/sources.list.d/cuda-debian12-x86_64.list\n"
    (tmp_path / "keyring.gpg").write_bytes(keyring)
    for args in (["InRelease"], ["Release.gpg", "Release"]):
        verify = subprocess.run(["gpgv", "--keyring", str(tmp_path / "keyring.gpg"), *[str(repo / a) for a in args]],
                                capture_output=True, text=True, check=False)
        assert verify.returncode == 0, verify.stderr
    assert (repo / manifest["public_key"]).read_text().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert manifest["fingerprint"][-8:].lower() + ".pub" == manifest["public_key"]

    # dpkg-deb reads the archives where it is installed
    if shutil.which("dpkg-deb"):
        info = subprocess.run(["dpkg-deb", "-f", str(repo / "cuda-drivers-580_580.95.05-1_amd64.deb"), "Depends"],
                              capture_output=True, text=True, check=True)
        assert info.stdout.strip() == "libcuda1 (>= 580.95.05)"

    # the secret key stays in the output directory, private
    assert ((out / ".key" / "secret.asc").stat().st_mode & 0o077) == 0


@needs_gpg
def test_rebuild_only_when_something_changed(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SMALL_SPEC))
    out = tmp_path / "out"
    first = b.build(spec_path, out, "", force=False)
    second = b.build(spec_path, out, "", force=False)
    assert first["changed"] and not second["changed"]
    assert second["fingerprint"] == first["fingerprint"]
    # a changed spec rebuilds, with the same key
    spec_path.write_text(json.dumps(dict(SMALL_SPEC, label="NVIDIA CUDA 2")))
    third = b.build(spec_path, out, "", force=False)
    assert third["changed"] and third["fingerprint"] == first["fingerprint"]
    assert "Label: NVIDIA CUDA 2\n" in (out / "debian12" / "x86_64" / "Release").read_text()
    # no base URL: the keyring package brings no sources entry
    keyring_deb = (out / "debian12" / "x86_64" / "cuda-keyring_1.1-1_all.deb").read_bytes()
    assert not any("sources.list.d" in name for name in tar_files(ar_members(keyring_deb)["data.tar.gz"]))


@needs_gpg
def test_command_line(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(SMALL_SPEC))
    run = subprocess.run([str(BUILDER), str(spec_path), str(tmp_path / "out")], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["changed"] is True
    bad = subprocess.run([str(BUILDER), str(tmp_path / "missing.yml"), str(tmp_path / "out")], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("build: ")
