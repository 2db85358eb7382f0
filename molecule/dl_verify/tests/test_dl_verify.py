"""Verify dl_verify: the script on the nodes, the cluster report of the converge run, and the
Theano seeds: reused by every user's training, replaced after a rebuild, and nothing another
user's Theano process loads is writable to a user."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import textwrap
from pathlib import Path

import pytest

REPORTS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "reports"
GPU_NODE = "dl_verify-debian12"
THEANO = "/opt/dlstack/envs/keras2-theano"
SEEDS = "/var/lib/dlstack/theano-seeds/keras2-theano"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((REPORTS / "dl-verify-results.json").read_text())


def name(host) -> str:
    return host.backend.get_hostname()


def checks(part: dict) -> dict:
    return {c["id"]: c for c in part["checks"]}


def test_script_probe_and_shared_modules_installed(host) -> None:
    script = host.file("/usr/local/bin/dl-verify")
    assert script.user == "root" and script.mode == 0o755
    repo = Path(__file__).resolve().parents[3]
    for name in ("dl_verify_probe.py", "dlstack_as_user.py", "dlstack_cudnn.py"):
        installed = host.file(f"/usr/local/lib/dl-verify/{name}")
        assert installed.user == "root" and installed.mode == 0o644, name
        source = repo / ("roles/dl_verify/files" if name == "dl_verify_probe.py" else "plugins/module_utils") / name
        assert installed.sha256sum == hashlib.sha256(source.read_bytes()).hexdigest(), name


def test_the_node_and_every_user_on_every_node_passed(results: dict) -> None:
    assert sorted(results) == [GPU_NODE, "dl_verify-debian13"]
    for node, outcome in results.items():
        assert outcome["rc"] == 0 and outcome["node"]["ok"], (node, outcome["node"])
        assert sorted(u["user"] for u in outcome["users"]) == ["alice", "bob"], node
        assert all(u["report"]["ok"] for u in outcome["users"]), node


def test_each_env_trained_once_per_node_as_its_owner(results: dict) -> None:
    for node, outcome in results.items():
        envs = {cid: c for cid, c in checks(outcome["node"]).items() if cid.startswith("env:")}
        assert sorted(envs) == ["env:keras2-theano", "env:keras3-tensorflow"]  # both envs on every platform
        for cid, check in envs.items():
            assert check["status"] == "pass" and check["data"]["as"] == "root", (node, cid, check["reason"])
            for run in check["data"]["runs"]:
                assert {"dense", "conv"} <= set(run["probe"]["training"]), run
        # TensorFlow once per distinct keras setting of the users: float64 is bob's on Debian 13
        labels = [r["label"] for r in envs["env:keras3-tensorflow"]["data"]["runs"]]
        assert len(labels) == (1 if node == GPU_NODE else 2), labels
    # the Theano env trains from a private copy of the seed, which must be complete
    (run,) = checks(results[GPU_NODE]["node"])["env:keras2-theano"]["data"]["runs"]
    assert run["label"].startswith("seed ") and run["probe"]["theano_cache"]["compiled_versioned"] == 0


def test_each_user_gets_their_backend_and_settings(results: dict) -> None:
    for node, outcome in results.items():
        for user in outcome["users"]:
            probes = {cid[9:]: c["data"]["probe"] for cid, c in checks(user["report"]).items()
                      if cid.startswith("user-env:")}
            # keras3-tensorflow serves tensorflow only: alice's theano falls back to it there;
            # read as the user, nothing imported
            assert probes["keras3-tensorflow"]["backend"] == "tensorflow" and probes["keras3-tensorflow"]["config_only"]
            if "keras2-theano" in probes:
                assert probes["keras2-theano"]["backend"] == "theano"
                assert set(probes["keras2-theano"]["training"]) == {"dense"}  # the short per-user training
            want = "float64" if (node, user["user"]) == ("dl_verify-debian13", "bob") else "float32"
            assert all(p["floatx"] == want for p in probes.values()), (node, user["user"])


def test_every_users_theano_training_found_its_modules_in_the_seed(results: dict) -> None:
    """Theano's own cache counters: the modules the Dense fit needs were loaded from the user's
    seeded compile directory, none compiled that Theano caches (only the few it compiles in
    every process: no cache version, or a key salted per process)."""
    for node, outcome in results.items():
        for user in outcome["users"]:
            check = checks(user["report"])["user-env:keras2-theano"]
            cache = check["data"]["probe"]["theano_cache"]
            assert cache["compiled_versioned"] == 0 and cache["loaded"] >= 20, (node, user["user"], cache)
            assert cache["compiledir"].startswith(f"/var/tmp/theano-{user['user']}/")
            assert check["data"]["seed"]["problem"] == "" and "seeded from" in check["reason"]


def test_gpu_checks_skip_with_reasons(results: dict) -> None:
    # no GPU, driver, toolkit or cuDNN in the containers: those checks skip, saying why; the
    # inventory expects 0 GPUs (dl_verify_node_expect), so the GPU count check passes
    for outcome in results.values():
        node = checks(outcome["node"])
        for cid in ("driver", "cuda", "cudnn"):
            assert node[cid]["status"] == "skip" and node[cid]["reason"], node[cid]
        assert node["gpus"]["status"] == "pass" and "no GPUs, as expected" in node["gpus"]["reason"]


def test_idempotence_run_reused_the_passing_results(results: dict) -> None:
    # the report is the idempotence run's: nothing changed since converge, so the node's and
    # each user's passing result was reused (dl-verify --reuse), with the converge run's time
    for node, outcome in results.items():
        assert outcome["node"]["reused"]["from"] == outcome["node"]["time"], node
        for user in outcome["users"]:
            assert user["report"]["reused"]["from"] == user["report"]["time"], (node, user["user"])


def test_reports_written() -> None:
    md = (REPORTS / "dl-verify-report.md").read_text()
    html = (REPORTS / "dl-verify-report.html").read_text()
    assert "4 of 4 user/node runs passed" in md
    assert md.count("| PASS |") == 4 and md.count("(reused)") == 4
    assert html.startswith("<!DOCTYPE html>") and 'class="pass"' in html and "<script" not in html
    assert "dl_verify-debian12" in html and "env:keras3-tensorflow" in html and "user-env:keras2-theano" in html


# --- the seeds on the node, after the side effect (env changed, carol added) ---------------


def test_one_root_owned_template_of_the_current_build(host) -> None:
    templates = host.file(SEEDS).listdir()
    writable = host.run("find /var/lib/dlstack/theano-seeds \\( ! -user root -o -perm /022 -o -type l \\) -print")
    assert writable.rc == 0 and writable.stdout == "", writable.stdout
    if name(host) != GPU_NODE:
        # the workstation: alice's profile (float32) and bob's (float64), each a template
        assert len(templates) == 2, templates
        return
    (template,) = templates
    base = f"{SEEDS}/{template}"
    seed = json.loads(host.file(f"{base}/seed.json").content_string)
    assert seed["real"] == host.check_output(f"realpath {THEANO}") and len(seed["modules"]) >= 50
    assert seed["from_previous"]  # the rebuild started from the template of the old build
    assert "base_compiledir" not in host.file(f"{base}/theanorc").content_string


@pytest.mark.parametrize("user", ["alice", "bob", "carol"])
def test_every_user_is_seeded_from_the_current_template(host, user: str) -> None:
    compiledir = host.file(f"/var/tmp/theano-{user}")
    assert compiledir.user == user and compiledir.mode == 0o700
    marker = json.loads(host.check_output(f"cat /var/tmp/theano-{user}/.dlstack-seed.json"))
    assert marker["keras2-theano"]["id"] in host.file(SEEDS).listdir()
    assert host.run(f"find /var/tmp/theano-{user} ! -user {user} -print").stdout == ""


def test_after_the_rebuild_every_users_training_hits_the_new_seed(host) -> None:
    run = host.run("dl-verify --json --no-node-checks --env keras2-theano --user alice --user bob --user carol "
                   "--expect-json '{\"theano_seeded\": true}'")
    report = json.loads(run.stdout)
    assert run.rc == 0, [c["reason"] for u in report["users"] for c in u["checks"] if c["status"] == "fail"]
    for user in report["users"]:
        cache = checks(user)["user-env:keras2-theano"]["data"]["probe"]["theano_cache"]
        assert cache["compiled_versioned"] == 0 and cache["loaded"] >= 20, (user["user"], cache)


# What alice's Theano process loads: every mapped file, every imported module's file, every
# key.pkl Theano unpickled and module it loaded, the configuration files it read.
LOADED = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from keras.layers import Dense
    from keras.models import Sequential
    import theano
    from theano.gof import cc
    m = Sequential([Dense(64, activation="relu", input_shape=(20,)), Dense(1, activation="sigmoid")])
    m.compile(optimizer="adam", loss="binary_crossentropy")
    m.fit(np.random.rand(64, 20).astype("float32"), np.random.randint(0, 2, (64, 1)).astype("float32"), verbose=0)
    cache = cc.get_module_cache()
    paths = set(cache.loaded_key_pkl) | set(cache.module_from_name)
    paths |= {line.split()[-1] for line in open("/proc/self/maps") if len(line.split()) >= 6 and line.split()[-1].startswith("/")}
    paths |= {getattr(mod, "__file__", None) or "" for mod in list(sys.modules.values())}
    paths |= {os.path.expanduser("~/.theanorc"), os.path.expanduser("~/.keras/keras.json"), sys.prefix + "/etc/theanorc"}
    loaded = sorted(p for p in paths if p.startswith("/") and os.path.exists(p))
    with open(sys.argv[1], "w") as out:
        json.dump(loaded, out)
    os.chmod(sys.argv[1], 0o644)
""")

# What of those another user could change: a file they can write, or a directory on the way
# where they can create, remove or rename entries (a sticky directory such as /var/tmp only
# lets them touch their own entries: it is safe when the entry on the way is not theirs).
WRITABLE = textwrap.dedent("""
    import json, os, stat, sys
    bad = set()
    for path in json.load(open(sys.argv[1])):
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                continue  # a device node such as /dev/zero: mapped, not loaded code or data
        except FileNotFoundError:
            continue  # a module Theano compiled for that process alone, removed at its exit
        except PermissionError:
            pass  # out of reach: the directories on the way decide
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            here = "/".join(parts[:i]) or "/"
            if not os.access(here, os.W_OK):
                continue
            if i < len(parts) and os.lstat(here).st_mode & stat.S_ISVTX:
                try:
                    mine = os.lstat("/".join(parts[:i + 1])).st_uid == os.getuid()
                except OSError:
                    mine = False
                if not mine:
                    continue
            bad.add(here)
    print(json.dumps(sorted(bad)))
""")



def test_no_user_can_write_what_another_users_theano_process_loads(host) -> None:
    listing = "/tmp/dlstack-alice-loaded.json"
    host.run(f"rm -f {listing}")
    loaded = host.run(f"cd / && runuser -u alice -- {THEANO}/bin/python -c {shlex.quote(LOADED)} {listing}")
    assert loaded.rc == 0, loaded.stderr
    paths = json.loads(host.file(listing).content_string)
    own = [p for p in paths if p.startswith("/var/tmp/theano-alice/")]
    assert len([p for p in own if p.endswith("key.pkl")]) >= 20 and any(p.endswith(".so") for p in own)
    assert not [p for p in paths if p.startswith("/var/lib/dlstack/theano-seeds")]  # copies, never the template
    for other in ("bob", "carol"):
        check = host.run(f"runuser -u {other} -- python3 -c {shlex.quote(WRITABLE)} {listing}")
        assert check.rc == 0, check.stderr
        assert json.loads(check.stdout) == [], f"{other} can change what alice's Theano loads: {check.stdout}"
    # and the probe itself is honest: alice can write her own compile directory
    mine = host.run(f"runuser -u alice -- python3 -c {shlex.quote(WRITABLE)} {listing}")
    assert "/var/tmp/theano-alice" in json.loads(mine.stdout)
