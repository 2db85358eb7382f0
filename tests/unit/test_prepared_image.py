"""Unit tests for scripts/prepared-image: which platforms take part, the key, and when a
recorded prepared image may be used."""

from __future__ import annotations

import subprocess
from pathlib import Path

import plugin_loader
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
prepared = plugin_loader.load_by_path("prepared_image", REPO / "scripts" / "prepared-image")


def test_base_config_platforms_are_start_tags() -> None:
    found = prepared.platforms("cuda_toolkit")
    assert found == [
        prepared.Platform("cuda_toolkit-debian12", "localhost/dlstack/debian:12-common.cuda_toolkit-debian12",
                          "localhost/dlstack/debian:12-common"),
        prepared.Platform("cuda_toolkit-debian13", "localhost/dlstack/debian:13-common.cuda_toolkit-debian13",
                          "localhost/dlstack/debian:13-common"),
    ]


def test_a_scenario_with_its_own_platforms() -> None:
    assert [(p.container, p.base) for p in prepared.platforms("python_envs_offline")] == [
        ("python_envs_offline-node1", "localhost/dlstack/debian:12-common"),
        ("python_envs_offline-node2", "localhost/dlstack/debian:13-common")]
    # the scenarios about a node without the common role start from the bare sshd images
    for name in ("common", "nvidia_driver_repo"):
        assert [p.base for p in prepared.platforms(name)] == [
            "localhost/dlstack/debian:12-sshd", "localhost/dlstack/debian:13-sshd"], name
    # site names its base images directly: it always starts from them
    assert prepared.platforms("site") == []


def test_which_bases_are_layers() -> None:
    layer = prepared.layer_of("localhost/dlstack/debian:12-common")
    assert layer == prepared.Layer("localhost/dlstack/debian:12-common", "localhost/dlstack/debian:12-sshd",
                                   "layer-common", "molecule/shared/layer_common.yml")
    assert (REPO / layer.playbook).is_file()
    assert prepared.layer_of("localhost/dlstack/debian:12-sshd") is None       # a plain image
    assert prepared.layer_of("localhost/dlstack/debian:12-other") is None      # no such layer
    assert prepared.layer_of("localhost/dlstack/debian:12-common.x") is None   # a start tag, not a base


def test_layer_container_and_inventory_come_from_the_base_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLSTACK_CACHE_DIR", "/srv/cache")
    monkeypatch.delenv("DLSTACK_HOST_CA_BUNDLE", raising=False)
    layer = prepared.layer_of("localhost/dlstack/debian:13-common")
    spec = prepared.layer_platform(layer)
    assert spec["name"] == "layer-common-debian13"
    assert spec["image"] == "localhost/dlstack/debian:13-common.layer-common-debian13"
    assert "/srv/cache/apt/debian13:/var/cache/apt/archives:rw" in spec["volumes"]
    inventory = prepared.layer_inventory(["layer-common-debian12", "layer-common-debian13"])["all"]
    assert sorted(inventory["hosts"]) == ["layer-common-debian12", "layer-common-debian13"]
    assert inventory["vars"]["ansible_connection"] == "ssh"
    assert f"{REPO}/scripts/images/container-ssh %h" in inventory["vars"]["ansible_ssh_common_args"]
    assert inventory["vars"]["common_extra_ca_certificates"] == [
        {"name": "molecule-host-bundle", "src": "/etc/ssl/certs/ca-certificates.crt"}]


def test_which_prepares_keep_images() -> None:
    keeping = sorted(p.parent.name for p in (REPO / "molecule").glob("*/prepare.yml") if prepared.keeps_images(p.parent.name))
    assert keeping == ["cuda_toolkit", "cudnn_archive", "dl_user_config", "dl_verify", "nvidia_driver_distro",
                       "python_envs_offline"]
    for name in keeping:
        text = (REPO / "molecule" / name / "prepare.yml").read_text()
        # every node play of such a prepare ends early on a node that starts prepared
        assert text.count("hosts: all") == text.count("../shared/tasks/prepared_skip.yml"), name


def test_start_tag_must_name_its_own_container(tmp_path: Path) -> None:
    (tmp_path / "molecule" / "x").mkdir(parents=True)
    (tmp_path / ".config" / "molecule").mkdir(parents=True)
    (tmp_path / ".config" / "molecule" / "config.yml").write_text("platforms: []\n")
    (tmp_path / "molecule" / "x" / "molecule.yml").write_text(
        "platforms:\n"
        "  - {name: x-a, image: 'localhost/dlstack/debian:12-sshd.x-a'}\n"
        "  - {name: x-b, image: 'localhost/dlstack/debian:12-sshd.x-a'}\n"   # another container's tag
        "  - {name: x-c, image: 'localhost/dlstack/debian:12-sshd'}\n")       # a base image
    assert [p.container for p in prepared.platforms("x", tmp_path)] == ["x-a"]


def git_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    subprocess.run(["git", "init", "-q", str(root)], check=True)


def test_key_follows_what_a_prepare_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLSTACK_HOST_CA_BUNDLE", str(tmp_path / "no-bundle"))
    git_tree(tmp_path, {"roles/common/tasks/main.yml": "a", "molecule/x/prepare.yml": "p", "molecule/y/prepare.yml": "q",
                        "docs/notes.md": "d", ".gitignore": "molecule/x/files/store/\n",
                        "molecule/x/files/store/seed": "s"})
    first = prepared.key("x", "base1", tmp_path)
    assert prepared.key("x", "base1", tmp_path) == first
    assert prepared.key("x", "base2", tmp_path) != first                  # another base image
    (tmp_path / "docs" / "notes.md").write_text("other")                  # not read by a prepare
    (tmp_path / "molecule" / "y" / "prepare.yml").write_text("other")     # another scenario's
    (tmp_path / "molecule" / "x" / "files" / "store" / "seed").write_text("written by a run")  # ignored
    assert prepared.key("x", "base1", tmp_path) == first
    (tmp_path / "roles" / "common" / "tasks" / "main.yml").write_text("b")
    second = prepared.key("x", "base1", tmp_path)
    assert second != first
    (tmp_path / "molecule" / "x" / "prepare.yml").write_text("p2")
    assert prepared.key("x", "base1", tmp_path) != second
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("cert")
    monkeypatch.setenv("DLSTACK_HOST_CA_BUNDLE", str(bundle))
    assert prepared.key("x", "base1", tmp_path) != prepared.key("y", "base1", tmp_path)
    # a layer reads KEY_PATHS and the bundle, no scenario's directory
    layer = prepared.key(None, "base1", tmp_path)
    (tmp_path / "molecule" / "x" / "prepare.yml").write_text("p3")
    assert prepared.key(None, "base1", tmp_path) == layer
    (tmp_path / "roles" / "common" / "tasks" / "main.yml").write_text("c")
    assert prepared.key(None, "base1", tmp_path) != layer


def test_verdict() -> None:
    now = 1_000_000.0
    record = {"key": "k", "image": "i", "created": now - 3600}
    assert prepared.verdict(record, "k", True, now) is None
    assert prepared.verdict(None, "k", True, now) == "none recorded in this cache directory"
    assert prepared.verdict(record, "other", True, now) == "what its prepare reads has changed since it was made"
    assert prepared.verdict(record, "k", False, now) == "the image is gone"
    old = dict(record, created=now - (prepared.MAX_AGE_DAYS * 86400 + 1))
    assert prepared.verdict(old, "k", True, now) == f"older than {prepared.MAX_AGE_DAYS} days"


def test_the_bare_scenarios_platforms_are_the_base_configs_but_for_the_image() -> None:
    """common and nvidia_driver_repo repeat the base config's platforms to start from -sshd:
    anything else that differs (a volume, the CA bundle's mount, a group) is drift."""
    base = prepared.base_config()["platforms"]
    for name in ("common", "nvidia_driver_repo"):
        own = yaml.safe_load((REPO / "molecule" / name / "molecule.yml").read_text())["platforms"]
        strip = [{k: v for k, v in entry.items() if k != "image"} for entry in own]
        assert strip == [{k: v for k, v in entry.items() if k != "image"} for entry in base], name
        assert [entry["image"].replace("-sshd.", "-common.") for entry in own] == [e["image"] for e in base], name


def _fake_podman(monkeypatch: pytest.MonkeyPatch, images: dict[str, str]) -> list[tuple[str, ...]]:
    """podman replaced: ``images`` maps an image ref to its ID (absent: no such image); every
    call is recorded."""
    calls: list[tuple[str, ...]] = []

    def fake(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        out = ""
        if args[:2] == ("image", "inspect"):
            out = images.get(args[-1], "")
        elif args[0] == "images":
            out = "sha256:old1\nsha256:keep\n"
        return subprocess.CompletedProcess(["podman", *args], 0, out, "")

    monkeypatch.setattr(prepared, "podman", fake)
    return calls


def test_an_old_layer_is_removed_without_force(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's own old image goes with its containers (--force); an old layer only when no
    container runs from it: another scenario's nodes may (podman refuses, a later call retries)."""
    calls = _fake_podman(monkeypatch, {})
    prepared.remove_stale("cudnn_archive-debian12", "keep")
    prepared.remove_stale("layer-common-debian12", "keep", force=False)
    assert [c for c in calls if c[0] == "rmi"] == [("rmi", "--force", "old1"), ("rmi", "old1")]


def test_status_reports_a_missing_base_image_without_stopping(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DLSTACK_CACHE_DIR", str(tmp_path))
    _fake_podman(monkeypatch, {"localhost/dlstack/debian:13-sshd": "b" * 64})  # 12-sshd missing
    assert prepared.status(["python_envs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "localhost/dlstack/debian:12-common: no usable layer (the base image localhost/dlstack/debian:12-sshd"
        " is missing; scripts/setup builds it)",
        "localhost/dlstack/debian:13-common: no usable layer (none recorded in this cache directory)"]


@pytest.mark.parametrize(("scenario", "image"), [("common", "localhost/dlstack/debian:12-sshd"),
                                                 ("python_envs", "localhost/dlstack/debian:12-sshd")])
def test_select_stops_on_a_missing_base_image_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            scenario: str, image: str) -> None:
    """A bare scenario's own base image, or the base of the layer a scenario starts from."""
    monkeypatch.setenv("DLSTACK_CACHE_DIR", str(tmp_path))
    _fake_podman(monkeypatch, {})  # no image at all
    with pytest.raises(SystemExit) as stopped:
        prepared.select(scenario)
    assert stopped.value.code == f"prepared-image: the base image {image} is missing; scripts/setup builds it"
