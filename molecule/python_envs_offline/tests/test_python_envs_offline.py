"""Verify offline mode: nodes with no network built their envs from the shipped wheelhouse.

node1 (Debian 12): keras2-theano, shared and per-user; it also went through side_effect.yml
(a rebuild killed mid-install, its repair, a switch back to the kept build, rejected bad
input) and its env must still work. node2 (Debian 13): keras3-tensorflow.
"""

from __future__ import annotations

import json
import re
import shlex

ROOT = "/opt/dlstack/envs"
USER = "tester"
USER_ROOT = f"/home/{USER}/.local/share/dlstack/envs"
WHEELHOUSE = "/var/lib/dlstack/wheelhouse"
TRAIN = r"""
import json, math, numpy as np, keras
from keras.layers import Conv2D, Dense, Flatten, Input
from keras.models import Sequential
k3 = int(keras.__version__.split(".")[0]) >= 3
def model(shape, first, rest):  # Keras 3 takes an Input layer, Keras 2 an input_shape
    return Sequential(([Input(shape=shape), first()] if k3 else [first(input_shape=shape)]) + rest)
rng = np.random.RandomState(0)
m = model((20,), lambda **kw: Dense(64, activation="relu", **kw), [Dense(1, activation="sigmoid")])
m.compile(optimizer="adam", loss="binary_crossentropy")
dense = m.fit(rng.rand(64, 20), rng.randint(0, 2, size=(64, 1)), epochs=1, verbose=0).history["loss"][-1]
m = model((28, 28, 1), lambda **kw: Conv2D(32, (3, 3), activation="relu", **kw),
          [Flatten(), Dense(10, activation="softmax")])
m.compile(optimizer="adam", loss="categorical_crossentropy")
conv = m.fit(rng.rand(32, 28, 28, 1), np.eye(10)[rng.randint(0, 10, size=32)], epochs=1,
             verbose=0).history["loss"][-1]
print(json.dumps({"backend": keras.backend.backend(), "dense": float(dense), "conv": float(conv)}))
"""


NODE1 = {"envs": [("keras2-theano", f"{ROOT}/keras2-theano/bin/python"),
                  ("tester-keras2", f"{USER_ROOT}/tester-keras2/bin/python")],
         "backend": "theano", "tag": "cp311-cp311", "keras": "2.3.1"}
NODE2 = {"envs": [("keras3-tensorflow", f"{ROOT}/keras3-tensorflow/bin/python")],
         "backend": "tensorflow", "tag": "cp313-cp313", "keras": "3.12.4"}


def node(host) -> dict:
    return NODE1 if host.backend.name.endswith("node1") else NODE2


def as_user(host, command: str, backend: str = "theano"):
    return host.run(f"runuser -u {USER} -- env -i HOME=/home/{USER} PATH=/usr/bin:/bin KERAS_BACKEND={backend} "
                    f"sh -c {shlex.quote(command)}")


def builds(host, root: str, name: str) -> list[str]:
    listing = host.run(f"ls -a {root}").stdout.split()
    return sorted(entry for entry in listing if re.fullmatch(rf"\.{re.escape(name)}-[0-9a-f]{{16}}", entry))


def test_node_has_no_network(host) -> None:
    assert host.run("ip -4 route").stdout.strip() == ""
    assert host.run("ip -o link show | grep -v ' lo:'").stdout.strip() == ""
    assert host.run("getent hosts pypi.org").rc != 0


def test_wheelhouse_holds_only_wheels_for_this_node(host) -> None:
    files = host.run(f"ls {WHEELHOUSE}").stdout.split()
    wheels = [f for f in files if f.endswith(".whl")]
    assert not [f for f in files if f.endswith((".tar.gz", ".zip"))]
    # each wheel is for any Python 3, the node's own CPython, or the stable ABI: no other target's
    tags = {w: w[:-4].split("-")[-3:-1] for w in wheels}
    python = node(host)["tag"].split("-")[0]
    assert any(py == python for py, _ in tags.values())
    assert all(py in ("py3", "py2.py3", python) or abi == "abi3" for py, abi in tags.values()), tags
    if node(host) is NODE1:
        assert "theano-1.0.5-py3-none-any.whl" in wheels  # built once on the controller from the sdist
    else:
        assert any(w.startswith("tensorflow_cpu-2.21.0-cp313-") for w in wheels)
        assert not [w for w in wheels if w.startswith("theano")]
    assert host.file(WHEELHOUSE).user == "root" and host.file(WHEELHOUSE).mode == 0o755


def test_envs_config_lists_the_nodes_envs(host) -> None:
    data = json.loads(host.file("/etc/dlstack/envs.json").content_string)
    assert data == {"envs": [{"name": name, "python": python, "backends": [node(host)["backend"]]}
                             for name, python in node(host)["envs"]]}


def test_shared_env_trains_offline_as_a_user(host) -> None:
    name, python = node(host)["envs"][0]
    run = as_user(host, f"cd /tmp && {python} -c {shlex.quote(TRAIN)}", node(host)["backend"])
    assert run.rc == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["backend"] == node(host)["backend"] and 0 < result["dense"] < 5 and 0 < result["conv"] < 20
    if node(host) is NODE1:
        pygpu = as_user(host, f"{python} -c 'import pygpu'")
        assert pygpu.rc == 0, pygpu.stderr


def test_per_user_env_belongs_to_its_owner(host) -> None:
    if node(host) is not NODE1:
        return
    link = host.file(f"{USER_ROOT}/tester-keras2")
    assert link.is_symlink and link.user == USER
    build = host.file(link.linked_to)
    assert build.user == USER and build.group == USER
    assert host.run(f"find {USER_ROOT} ! -user {USER} -print -quit").stdout == ""
    touch = as_user(host, f"touch {USER_ROOT}/tester-keras2/bin/mine && rm {USER_ROOT}/tester-keras2/bin/mine")
    assert touch.rc == 0, touch.stderr
    run = as_user(host, f"{USER_ROOT}/tester-keras2/bin/python -c "
                        "'import keras; print(keras.__version__, keras.backend.backend())'")
    assert run.rc == 0 and run.stdout.strip().splitlines()[-1] == "2.3.1 theano", run.stderr
    # no system site packages for this one: pygpu stays out
    assert as_user(host, f"{USER_ROOT}/tester-keras2/bin/python -c 'import pygpu'").rc != 0


def test_builds_and_pip_work(host) -> None:
    """One build per env; node1's side effects added exactly one more, now kept as previous."""
    log = [json.loads(line) for line in host.file("/var/log/dlstack/python-envs.log").content_string.splitlines()]
    name = node(host)["envs"][0][0]
    shared = builds(host, ROOT, name)
    current = host.file(f"{ROOT}/{name}").linked_to.rsplit("/", 1)[1]
    for entry in shared:
        assert host.file(f"{ROOT}/{entry}/.dlstack-env.json").exists, f"{entry} is incomplete"
    if node(host) is NODE1:
        # converge built the original; the killed run left no log line and no build; its
        # repair built the variant; going back to the original reused the kept build
        assert [(e["env"], e["result"]) for e in log] == [(name, "built")] * 2
        assert log[0]["build"].endswith(current) and len(shared) == 2
        per_user = builds(host, USER_ROOT, "tester-keras2")
        assert per_user == [host.file(f"{USER_ROOT}/tester-keras2").linked_to.rsplit("/", 1)[1]]
    else:
        assert [(e["env"], e["result"]) for e in log] == [(name, "built")]
        assert shared == [current]
