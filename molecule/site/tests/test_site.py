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
    ("site-ws01", "alice"): ("theano", "float32", 1e-06),
    ("site-ws01", "bob"): ("tensorflow", "float64", 1e-06),
    ("site-ws01", "carol"): ("tensorflow", "float32", 1e-06),
}
# both envs on every platform (Debian 13's Theano env on python_envs' CPython 3.11)
ENVS = {node: ["keras2-theano", "keras3-tensorflow"] for node in NODES}


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
        # the GPU nodes installed from their wheelhouse only (offline); the workstation from
        # PyPI (the build log's first line is the installer's command)
        command = host.file(f"/opt/dlstack/envs/{env}/dlstack-build.log").content_string.splitlines()[0]
        assert ("--no-index" in command) == node.startswith("site-gpu"), (node, env, command)
        assert "--find-links /var/lib/dlstack/wheelhouse" in command, (node, env, command)
    # every node has a wheelhouse: the Theano env's pygpu wheel, which the role assembles on the
    # controller, is installed from there on the workstation too
    wheels = host.file("/var/lib/dlstack/wheelhouse").listdir()
    assert any(w.startswith("pygpu-0.7.6-cp311-") for w in wheels), wheels
    if not node.startswith("site-gpu"):
        assert len(wheels) == 1, wheels


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
        assert local_report["site-ws01"]["rc"] == 0


def test_every_user_on_every_node_passed(results: dict) -> None:
    assert sorted(results) == NODES
    for node, outcome in results.items():
        assert outcome["rc"] == 0 and outcome["node"]["ok"], (node, outcome["node"])
        assert sorted(u["user"] for u in outcome["users"]) == USERS, node
        for user in outcome["users"]:
            assert user["report"]["ok"], (node, user["user"], user["report"])


def test_each_env_trained_once_per_node_and_as_each_user_with_their_backend(results: dict) -> None:
    for node, outcome in results.items():
        node_envs = {c["id"][4:]: c for c in outcome["node"]["checks"] if c["id"].startswith("env:")}
        assert sorted(node_envs) == ENVS[node]
        for env, check in node_envs.items():
            assert check["status"] == "pass", (node, env, check["reason"])
            assert all({"dense", "conv"} <= set(run["probe"]["training"]) for run in check["data"]["runs"])
        for user in outcome["users"]:
            probes = {c["id"][9:]: c for c in user["report"]["checks"] if c["id"].startswith("user-env:")}
            assert sorted(probes) == ENVS[node], (node, user["user"])
            backend, floatx, _ = KERAS[(node, user["user"])]
            for env, check in probes.items():
                assert check["status"] == "pass", (node, user["user"], env, check["reason"])
                probe = check["data"]["probe"]
                cache = probe.get("theano_cache") or {}
                # what each user's run found, in the log (the scenario runs pytest with -r A)
                print(f"{node} {user['user']} {env}: backend {probe['backend']}, floatx {probe['floatx']}, "
                      f"training {sorted(probe.get('training') or {})}, config only {bool(probe.get('config_only'))}, "
                      f"Theano cache {cache.get('loaded')} loaded {cache.get('compiled_versioned')} compiled")
                served = "theano" if env == "keras2-theano" else "tensorflow"
                assert probe["backend"] == (backend if backend == served else served), (node, user["user"], env)
                assert probe["floatx"] == floatx
                if env == "keras2-theano":  # trained as the user, every module from the user's seed
                    assert set(probe["training"]) == {"dense"}
                    assert probe["theano_cache"]["compiled_versioned"] == 0 and probe["theano_cache"]["loaded"] >= 20
                else:  # read as the user, nothing imported
                    assert probe["config_only"]


def test_cluster_report() -> None:
    md = (REPORTS / "dl-verify-report.md").read_text()
    assert "9 of 9 user/node runs passed" in md
    for node in NODES:
        assert node in md


# dave, added by playbooks/add_user.yml in the side effect (all < group < host settings)
DAVE_EPSILON = {"site-gpu01": 1e-06, "site-gpu02": 1e-05, "site-ws01": 1e-06}


def test_added_user_has_his_account_and_files(host) -> None:
    node = name(host)
    assert host.user("dave").exists and host.user("dave").home == "/home/dave"
    keras = json.loads(host.file("/home/dave/.keras/keras.json").content_string)
    assert (keras["backend"], keras["floatx"], keras["epsilon"]) == ("tensorflow", "float32", DAVE_EPSILON[node])
    theanorc = host.file("/home/dave/.theanorc")
    assert theanorc.user == "dave" and "base_compiledir = /var/tmp/theano-dave" in theanorc.content_string
    compiledir = host.file("/var/tmp/theano-dave")
    assert compiledir.is_directory and compiledir.user == "dave" and compiledir.mode == 0o700
    # seeded from the template the users with his settings already had (none built for him)
    assert host.file("/var/tmp/theano-dave/.dlstack-seed.json").exists


# Theano seed templates: one per env build and settings profile (dl_user_config). On gpu01 every
# user has the same Theano settings; on gpu02 carol's floatX float64 is a second profile; on
# ws01 bob's Keras floatx float64 (the all level; the GPU group sets float32) is the second.
SEED_TEMPLATES = {"site-gpu01": 1, "site-gpu02": 2, "site-ws01": 2}


def test_one_seed_template_per_profile_shared_by_the_users(host) -> None:
    node = name(host)
    seeds = host.file("/var/lib/dlstack/theano-seeds/keras2-theano")
    templates = seeds.listdir() if seeds.exists else []
    assert len(templates) == SEED_TEMPLATES[node], templates
    assert host.run("find /var/lib/dlstack/theano-seeds ! -user root -print -o -perm /022 -print").stdout == ""
    for user in [*USERS, "dave"] if templates else []:
        marker = json.loads(host.check_output(f"cat /var/tmp/theano-{user}/.dlstack-seed.json"))
        assert marker["keras2-theano"]["id"] in templates, (node, user)
