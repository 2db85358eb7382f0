"""Verify offline mode: nodes with no network built their envs from the shipped wheelhouse.

node1 (Debian 12): keras2-theano, shared and per-user; it also went through side_effect.yml
(a tampered wheel refused, a rebuild killed mid-install, its repair, a switch back to the
kept build, rejected bad input) and its env must still work. node2 (Debian 13): the
defaults, keras2-theano on the CPython 3.11 the role built (or took from the machine's
store) and keras3-tensorflow; both train as a user.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest
from testinfra.backend.base import CommandResult

ROOT = "/opt/dlstack/envs"
USER = "tester"
USER_ROOT = f"/home/{USER}/.local/share/dlstack/envs"
WHEELHOUSE = "/var/lib/dlstack/wheelhouse"
# the controller's store (python_envs_wheelhouse_build_dir in molecule.yml): the machine's, shared
# with every scenario and fleet here, so a target's directory may hold more than these locks need
STORE = Path(os.environ.get("DLSTACK_CACHE_DIR", "/var/cache/dlstack")) / "wheelhouse" / "wheels"
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


NODE1 = {"envs": [("keras2-theano", f"{ROOT}/keras2-theano/bin/python", "theano"),
                  ("tester-keras2", f"{USER_ROOT}/tester-keras2/bin/python", "theano")],
         "trains": ["keras2-theano"], "pythons": ["cp311"]}
NODE2 = {"envs": [("keras2-theano", f"{ROOT}/keras2-theano/bin/python", "theano"),
                  ("keras3-tensorflow", f"{ROOT}/keras3-tensorflow/bin/python", "tensorflow")],
         "trains": ["keras2-theano", "keras3-tensorflow"], "pythons": ["cp311", "cp313"]}


def node(host) -> dict:
    return NODE1 if host.backend.name.endswith("node1") else NODE2


def as_user(host, command: str, backend: str = "theano") -> CommandResult:
    return host.run(f"runuser -u {USER} -- env -i HOME=/home/{USER} PATH=/usr/bin:/bin KERAS_BACKEND={backend} "
                    f"sh -c {shlex.quote(command)}")


def builds(host, root: str, name: str) -> list[str]:
    listing = host.run(f"ls -a {root}").stdout.split()
    return sorted(entry for entry in listing if re.fullmatch(rf"\.{re.escape(name)}-[0-9a-f]{{16}}", entry))


def test_node_has_no_network(host) -> None:
    assert host.run("ip -4 route").stdout.strip() == ""
    assert host.run("ip -o link show | grep -v ' lo:'").stdout.strip() == ""
    assert host.run("getent hosts pypi.org").rc != 0


def test_wheelhouse_holds_only_files_for_this_node(host) -> None:
    files = host.run(f"ls {WHEELHOUSE}").stdout.split()
    wheels = [f for f in files if f.endswith(".whl")]
    # the one source distribution the locks allow, built on the node by uv (build-tools.txt)
    assert [f for f in files if f.endswith((".tar.gz", ".zip"))] == ["Theano-1.0.5.tar.gz"]
    # each wheel is for any Python 3, one of the node's CPythons, or the stable ABI: no other target's
    tags = {w: w[:-4].split("-")[-3:-1] for w in wheels}
    pythons = node(host)["pythons"]
    assert all(py in ("py3", "py2.py3", *pythons) or abi == "abi3" for py, abi in tags.values()), tags
    assert "pygpu-0.7.6-cp311-cp311-manylinux_2_34_x86_64.whl" in wheels  # assembled on the controller
    assert any(w.startswith("uv-0.13.9-") for w in wheels) and any(w.startswith("setuptools-") for w in wheels)
    if node(host) is NODE2:
        assert any(w.startswith("tensorflow_cpu-2.21.0-cp313-") for w in wheels)
    # shipped from the store's directories of the node's own targets (cpXY-arch-glibcX.Y), whole:
    # nothing else, whatever other fleets' envs put there (TensorFlow for cp311, a Debian 12 demo node's)
    glibc = host.run("getconf GNU_LIBC_VERSION").stdout.split()[-1]
    targets = [f"{py}-{host.system_info.arch}-glibc{glibc}" for py in pythons]
    offered = {f for t in targets if (STORE / t).is_dir() for f in os.listdir(STORE / t)}
    assert sorted(set(files) - offered) == [], targets
    assert host.file(WHEELHOUSE).user == "root" and host.file(WHEELHOUSE).mode == 0o755


def test_envs_config_lists_the_nodes_envs(host) -> None:
    data = json.loads(host.file("/etc/dlstack/envs.json").content_string)
    assert data == {"envs": [{"name": name, "python": python, "backends": [backend]}
                             for name, python, backend in node(host)["envs"]]}


@pytest.mark.parametrize("name", ["keras2-theano", "keras3-tensorflow"])
def test_shared_env_trains_offline_as_a_user(host, name: str) -> None:
    if name not in node(host)["trains"]:
        pytest.skip(f"no {name} on this node")
    python, backend = next((p, b) for n, p, b in node(host)["envs"] if n == name)
    run = as_user(host, f"cd /tmp && {python} -c {shlex.quote(TRAIN)}", backend)
    assert run.rc == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend and 0 < result["dense"] < 5 and 0 < result["conv"] < 20
    if backend == "theano":
        pygpu = as_user(host, f"{python} -c 'import pygpu; print(pygpu.__version__, pygpu.__file__)'")
        assert pygpu.rc == 0, pygpu.stderr
        version, path = pygpu.stdout.strip().splitlines()[-1].split()
        assert version == "0.7.6" and path.startswith(f"{ROOT}/{name}/lib/python3.11/site-packages/pygpu/")


def test_theano_env_on_debian_13_runs_on_the_roles_interpreter(host) -> None:
    if node(host) is not NODE2:
        return
    real = host.run(f"readlink -f {ROOT}/keras2-theano/bin/python").stdout.strip()
    assert real == "/opt/dlstack/python/3.11/bin/python3.11"
    assert host.run("dpkg-query --show --showformat '${Status}' dlstack-python3.11").stdout == "install ok installed"


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
    # pygpu like any pin, from the wheel, in the user's own env
    pygpu = as_user(host, f"{USER_ROOT}/tester-keras2/bin/python -c 'import pygpu; print(pygpu.__file__)'")
    assert pygpu.rc == 0 and pygpu.stdout.strip().startswith(f"{USER_ROOT}/tester-keras2/"), pygpu.stderr


def test_builds_and_installer_work(host) -> None:
    """One build per env (and uv's); node1's side effects: one refused, one more kept as previous."""
    log = [json.loads(line) for line in host.file("/var/log/dlstack/python-envs.log").content_string.splitlines()]
    name = node(host)["envs"][0][0]
    shared = builds(host, ROOT, name)
    current = host.file(f"{ROOT}/{name}").linked_to.rsplit("/", 1)[1]
    for entry in shared:
        assert host.file(f"{ROOT}/{entry}/.dlstack-env.json").exists, f"{entry} is incomplete"
    if node(host) is NODE1:
        # converge installed uv and built the original; the tampered wheel failed a rebuild
        # (logged); the killed run left no log line and no build; its repair built the
        # variant; going back to the original reused the kept build
        assert [(e["env"], e["result"]) for e in log] == [("uv", "built"), (name, "built"), (name, "failed"),
                                                          (name, "built")]
        assert "does not match the lock" in log[2]["error"]
        assert log[1]["build"].endswith(current) and len(shared) == 2
        per_user = builds(host, USER_ROOT, "tester-keras2")
        assert per_user == [host.file(f"{USER_ROOT}/tester-keras2").linked_to.rsplit("/", 1)[1]]
    else:
        assert [(e["env"], e["result"]) for e in log] == [("uv", "built"), (name, "built"),
                                                          ("keras3-tensorflow", "built")]
        assert shared == [current]
