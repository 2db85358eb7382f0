"""Verify the site scenario: the whole site on three nodes, layered users, the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPORTS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "reports"
NODES = ["site-gpu01", "site-gpu02", "site-ws01"]
USERS = ["alice", "bob", "carol"]

# What the inventory's levels add up to (all < group < host < user, see inventory/).
# keras.json: backend, floatx, epsilon
KERAS = {
    ("site-gpu01", "alice"): ("theano", "float32", 1e-06),
    ("site-gpu01", "bob"): ("tensorflow", "float32", 1e-06),
    ("site-gpu01", "carol"): ("tensorflow", "float32", 1e-06),
    ("site-gpu02", "alice"): ("theano", "float32", 1e-05),
    ("site-gpu02", "bob"): ("tensorflow", "float32", 1e-05),
    ("site-gpu02", "carol"): ("theano", "float32", 1e-05),
    ("site-ws01", "alice"): ("tensorflow", "float32", 1e-06),
    ("site-ws01", "bob"): ("tensorflow", "float64", 1e-06),
    ("site-ws01", "carol"): ("tensorflow", "float32", 1e-06),
}
ENVS = {"site-gpu01": ["keras2-theano", "keras3-tensorflow"], "site-gpu02": ["keras2-theano", "keras3-tensorflow"],
        "site-ws01": ["keras3-tensorflow"]}


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((REPORTS / "dl-verify-results.json").read_text())


def name(host) -> str:
    return host.check_output("hostname")


@pytest.mark.parametrize("user", USERS)
def test_keras_json_layers(host, user: str) -> None:
    node = name(host)
    f = host.file(f"/home/{user}/.keras/keras.json")
    assert f.user == user and f.mode == 0o644
    data = json.loads(f.content_string)
    backend, floatx, epsilon = KERAS[(node, user)]
    assert (data["backend"], data["floatx"], data["epsilon"]) == (backend, floatx, epsilon), (node, user, data)
    assert data["image_data_format"] == "channels_last"


@pytest.mark.parametrize("user", USERS)
def test_theanorc_layers(host, user: str) -> None:
    node = name(host)
    text = host.file(f"/home/{user}/.theanorc").content_string
    optimizer = "fast_compile" if node.startswith("site-gpu") else "fast_run"
    floatx = "float64" if (node, user) == ("site-gpu02", "carol") else "float32"
    assert f"optimizer = {optimizer}" in text, text
    assert f"floatX = {floatx}" in text, text


def test_envs_built(host) -> None:
    node = name(host)
    config = json.loads(host.file("/etc/dlstack/envs.json").content_string)
    assert [e["name"] for e in config["envs"]] == ENVS[node]
    for env in ENVS[node]:
        assert host.file(f"/opt/dlstack/envs/{env}").is_symlink
    # the GPU nodes installed from their wheelhouse (offline); the workstation from PyPI
    assert host.file("/var/lib/dlstack/wheelhouse").is_directory == node.startswith("site-gpu")


def test_gpu_stack_skipped_without_gpu(host) -> None:
    # no NVIDIA GPU in these containers: no driver, toolkit or cuDNN was installed
    assert not host.file("/usr/local/cuda").exists
    assert not host.package("nvidia-driver").is_installed
    assert not host.package("nvidia-smi").is_installed


def test_workstation_onboarded_itself(host) -> None:
    node = name(host)
    pulled = host.file("/var/lib/dlstack/pull/playbooks/onboard_workstation.yml")
    assert pulled.exists == (node == "site-ws01")
    if node == "site-ws01":
        local_report = json.loads(host.file("/var/lib/dlstack/reports/dl-verify-results.json").content_string)
        assert list(local_report) == ["site-ws01"]
        assert all(run["rc"] == 0 for run in local_report["site-ws01"])


def test_every_user_on_every_node_passed(results: dict) -> None:
    assert sorted(results) == NODES
    for node, runs in results.items():
        assert sorted(r["user"] for r in runs) == USERS, node
        for run in runs:
            assert run["rc"] == 0 and run["report"]["ok"], (node, run["user"], run["report"])


def test_each_env_trained_with_the_users_backend(results: dict) -> None:
    for node, runs in results.items():
        for run in runs:
            probes = {c["id"][4:]: c for c in run["report"]["checks"] if c["id"].startswith("env:")}
            assert sorted(probes) == ENVS[node], (node, run["user"])
            backend, floatx, _ = KERAS[(node, run["user"])]
            for env, check in probes.items():
                assert check["status"] == "pass", (node, run["user"], env, check["reason"])
                probe = check["data"]["probe"]
                served = "theano" if env == "keras2-theano" else "tensorflow"
                assert probe["backend"] == (backend if backend == served else served), (node, run["user"], env)
                assert probe["floatx"] == floatx
                assert {"dense", "conv"} <= set(probe["training"])


def test_cluster_report() -> None:
    md = (REPORTS / "dl-verify-report.md").read_text()
    assert "9 of 9 user/node runs passed" in md
    for node in NODES:
        assert node in md


# dave, added by playbooks/add_user.yml in the side effect (all < group < host settings; his
# host-level entry asks for float64)
DAVE_EPSILON = {"site-gpu01": 1e-06, "site-gpu02": 1e-05, "site-ws01": 1e-06}


def test_added_user_has_his_account_and_files(host) -> None:
    node = name(host)
    assert host.user("dave").exists and host.user("dave").home == "/home/dave"
    keras = json.loads(host.file("/home/dave/.keras/keras.json").content_string)
    assert (keras["backend"], keras["floatx"], keras["epsilon"]) == ("tensorflow", "float64", DAVE_EPSILON[node])
    theanorc = host.file("/home/dave/.theanorc")
    assert theanorc.user == "dave" and "base_compiledir = /var/tmp/theano-dave" in theanorc.content_string
    compiledir = host.file("/var/tmp/theano-dave")
    assert compiledir.is_directory and compiledir.user == "dave" and compiledir.mode == 0o700
