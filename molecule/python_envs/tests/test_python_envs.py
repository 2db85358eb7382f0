"""Verify the python_envs role: both stacks built, usable by an unprivileged user, not writable.

Debian 12 gets keras2-theano and keras3-tensorflow (the platform default), Debian 13 only
keras3-tensorflow. Every Keras run sets KERAS_BACKEND explicitly: the backend selection
hook belongs to the dl_user_config role, not to this one.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest

ROOT = "/opt/dlstack/envs"
USER = "tester"
ENVS = {
    "keras2-theano": {"backends": ["theano"], "keras": "2.3.1"},
    "keras3-tensorflow": {"backends": ["tensorflow"], "keras": "3.12.4"},
}
EXPECTED = {"bookworm": ["keras2-theano", "keras3-tensorflow"], "trixie": ["keras3-tensorflow"]}

# The seeds' small models: Dense (20 inputs, 64 relu, 1 sigmoid) and a Conv2D on 28x28x1,
# one epoch each; prints one JSON line with the losses.
TRAIN = r"""
import json, math, numpy as np, keras
from keras import layers as L
from keras.models import Sequential
k3 = int(keras.__version__.split(".")[0]) >= 3
def model(shape, first, rest):
    if k3:
        return Sequential([L.Input(shape=shape), first({})] + rest)
    return Sequential([first({"input_shape": shape})] + rest)
rng = np.random.RandomState(0)
x = rng.rand(64, 20).astype("float32"); y = rng.randint(0, 2, size=(64, 1)).astype("float32")
m = model((20,), lambda kw: L.Dense(64, activation="relu", **kw), [L.Dense(1, activation="sigmoid")])
m.compile(optimizer="adam", loss="binary_crossentropy")
dense = float(m.fit(x, y, epochs=1, batch_size=32, verbose=0).history["loss"][-1])
x = rng.rand(32, 28, 28, 1).astype("float32"); y = np.eye(10, dtype="float32")[rng.randint(0, 10, size=32)]
m = model((28, 28, 1), lambda kw: L.Conv2D(32, (3, 3), activation="relu", **kw),
          [L.Flatten(), L.Dense(10, activation="softmax")])
m.compile(optimizer="adam", loss="categorical_crossentropy")
conv = float(m.fit(x, y, epochs=1, batch_size=32, verbose=0).history["loss"][-1])
be = keras.backend.backend()
print(json.dumps({"keras": keras.__version__, "backend": be, "dense": dense, "conv": conv,
                  "finite": math.isfinite(dense) and math.isfinite(conv)}))
"""


def expected_envs(host) -> list[str]:
    return EXPECTED[host.system_info.codename]


def as_user(host, command: str, env: dict[str, str] | None = None):
    """Run a command as the unprivileged test user, in a login-less clean environment."""
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return host.run(f"runuser -u {USER} -- env -i HOME=/home/{USER} PATH=/usr/bin:/bin {assigns} "
                    f"sh -c {shlex.quote(command)}")


def each_env(host):
    return [pytest.param(name) for name in expected_envs(host)]


def test_envs_json_lists_the_platform_envs(host) -> None:
    config = host.file("/etc/dlstack/envs.json")
    assert config.user == "root" and config.group == "root" and config.mode == 0o644
    data = json.loads(config.content_string)
    assert data == {"envs": [{"name": name, "python": f"{ROOT}/{name}/bin/python",
                              "backends": ENVS[name]["backends"]} for name in expected_envs(host)]}


def test_env_is_a_link_to_one_complete_root_owned_build(host) -> None:
    for name in expected_envs(host):
        link = host.file(f"{ROOT}/{name}")
        assert link.is_symlink
        target = link.linked_to
        assert re.fullmatch(rf"{ROOT}/\.{re.escape(name)}-[0-9a-f]{{16}}", target), target
        build = host.file(target)
        assert build.user == "root" and build.group == "root" and build.mode == 0o755
        stamp = json.loads(host.file(f"{target}/.dlstack-env.json").content_string)
        assert target.endswith(stamp["hash"][:16]) and stamp["name"] == name
        lock = host.file(f"{target}/dlstack-requirements.txt").content_string
        assert f"keras=={ENVS[name]['keras']}\n" in lock
        if name == "keras3-tensorflow":  # python_envs_gpu: auto, from the PCI bus the container sees
            gpu = host.run("for d in /sys/bus/pci/devices/*; do [ \"$(cat $d/vendor)\" = 0x10de ] && "
                           "grep -q '^0x03' $d/class && exit 0; done; exit 1").rc == 0
            assert ("tensorflow==2.21.0\n" in lock and "nvidia-cudnn-cu12==" in lock) if gpu \
                else ("tensorflow-cpu==2.21.0\n" in lock and "nvidia-" not in lock)
        # exactly one build of each env: no stale or half-built directory next to it
        builds = host.run(f"ls -a {ROOT}").stdout.split()
        assert [b for b in builds if b.startswith(f".{name}-")] == [target.rsplit("/", 1)[1]]


def test_user_cannot_write_into_the_envs(host) -> None:
    for name in expected_envs(host):
        site = host.run(f"{ROOT}/{name}/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'")
        assert site.rc == 0 and site.stdout.strip().startswith(f"{ROOT}/{name}/lib/python3.")
        for path in (f"{ROOT}/{name}/", f"{ROOT}/{name}/bin/", site.stdout.strip() + "/"):
            touch = as_user(host, f"touch {path}dlstack-test-write")
            assert touch.rc != 0 and "Permission denied" in touch.stderr, path
        pip = as_user(host, f"{ROOT}/{name}/bin/python -m pip uninstall --yes six")
        assert pip.rc != 0 and "Permission denied" in pip.stderr + pip.stdout
        assert host.run(f"{ROOT}/{name}/bin/python -c 'import six'").rc == 0
        # nobody but root can replace the link either
        assert as_user(host, f"ln -sfn /tmp {ROOT}/{name}").rc != 0
    find = host.run(f"find -L {ROOT} -xdev ! -user root -print -quit")
    assert find.rc == 0 and find.stdout == ""
    writable = host.run(f"find {ROOT}/ -perm /022 ! -type l -print -quit")
    assert writable.stdout == "", f"group/world-writable: {writable.stdout}"


@pytest.mark.parametrize("name", list(ENVS))
def test_user_trains_the_seed_models(host, name: str) -> None:
    if name not in expected_envs(host):
        pytest.skip(f"{name} is not a default env on {host.system_info.codename}")
    backend = ENVS[name]["backends"][0]
    run = as_user(host, f"cd /tmp && {ROOT}/{name}/bin/python -c {shlex.quote(TRAIN)}", {"KERAS_BACKEND": backend})
    assert run.rc == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["keras"] == ENVS[name]["keras"] and result["backend"] == backend
    assert result["finite"] and 0 < result["dense"] < 5 and 0 < result["conv"] < 20, result


def test_theano_env_sees_pygpu_and_its_own_theanorc(host) -> None:
    if "keras2-theano" not in expected_envs(host):
        pytest.skip("no Theano env on this platform")
    python = f"{ROOT}/keras2-theano/bin/python"
    pygpu = as_user(host, f"{python} -c 'import pygpu, theano.gpuarray; print(pygpu.__version__)'")
    assert pygpu.rc == 0, pygpu.stderr
    assert pygpu.stdout.strip().splitlines()[-1].startswith("0.7.")
    # the env's etc/theanorc comes first in THEANORC; the user's ~/.theanorc still wins
    flags = as_user(host, f"{python} -c 'import os, theano; print(os.environ[\"THEANORC\"]); "
                          "print(theano.config.blas.ldflags)'")
    assert flags.rc == 0, flags.stderr
    theanorc, ldflags = flags.stdout.strip().splitlines()[-2:]
    assert theanorc == f"{ROOT}/keras2-theano/etc/theanorc:~/.theanorc" and ldflags == "-lopenblas"
    user_rc = as_user(host, f"printf '[blas]\\nldflags =\\n' > ~/.theanorc && {python} -c "
                            "'import theano; print(repr(theano.config.blas.ldflags))'; rc=$?; rm -f ~/.theanorc; exit $rc")
    assert user_rc.rc == 0 and user_rc.stdout.strip().splitlines()[-1] == "''", user_rc.stderr


def test_collections_hook_only_where_asked(host) -> None:
    probe = "import collections; print(hasattr(collections, 'Iterable'))"
    for name in expected_envs(host):
        out = host.run(f"{ROOT}/{name}/bin/python -c {shlex.quote(probe)}")
        assert out.rc == 0 and out.stdout.strip() == str(name == "keras2-theano")


def test_second_converge_did_no_pip_work(host) -> None:
    # converge and idempotence ran; the build log has one build per env, from the first run
    lines = [json.loads(line) for line in host.file("/var/log/dlstack/python-envs.log").content_string.splitlines()]
    assert sorted((e["env"], e["result"]) for e in lines) == sorted((n, "built") for n in expected_envs(host))


def test_jupyter_kernel_runs_in_its_env(host) -> None:
    for name in expected_envs(host):
        spec = json.loads(host.file(f"/usr/local/share/jupyter/kernels/dlstack-{name}/kernel.json").content_string)
        assert spec["argv"][:3] == [f"{ROOT}/{name}/bin/python", "-m", "ipykernel_launcher"]
    name = expected_envs(host)[-1]
    client = (
        "from jupyter_client.manager import start_new_kernel\n"
        f"km, kc = start_new_kernel(kernel_name='dlstack-{name}')\n"
        "out = []\n"
        "kc.execute_interactive('import sys; print(sys.prefix)', timeout=60,"
        " output_hook=lambda m: out.append(m['content'].get('text', '')))\n"
        "kc.stop_channels(); km.shutdown_kernel(now=True)\n"
        "print(''.join(out).strip())\n"
    )
    run = as_user(host, f"cd /tmp && {ROOT}/{name}/bin/python -c {shlex.quote(client)}")
    assert run.rc == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == f"{ROOT}/{name}"


def test_environment_module_puts_the_env_on_path(host) -> None:
    for name in expected_envs(host):
        run = host.run(f"runuser -u {USER} -- bash -lc "
                       f"{shlex.quote(f'module load dlstack/{name} && command -v python && echo $VIRTUAL_ENV')}")
        assert run.rc == 0, run.stderr
        assert run.stdout.split() == [f"{ROOT}/{name}/bin/python", f"{ROOT}/{name}"]
