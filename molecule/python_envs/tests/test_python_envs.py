"""Verify the python_envs role: both stacks built, usable by an unprivileged user, not writable.

Both platforms get keras2-theano and keras3-tensorflow (the defaults): on Debian 12 the
Theano env runs on the system's python3.11, on Debian 13 on the CPython 3.11 the role built
(the package dlstack-python3.11 under /opt/dlstack/python/3.11); pygpu comes from the wheel
the role assembled, uv built every env. Every Keras run sets KERAS_BACKEND explicitly: the
backend selection hook belongs to the dl_user_config role, not to this one. Training under
Theano (about two minutes of C compilation on a fresh node) runs on Debian 13 here and on
Debian 12 in python_envs_offline; TensorFlow trains on both.
"""

from __future__ import annotations

import json
import re
import shlex

import pytest
from testinfra.backend.base import CommandResult

ROOT = "/opt/dlstack/envs"
USER = "tester"
UV = "/opt/dlstack/tools/uv/bin/uv"
PREFIX = "/opt/dlstack/python/3.11"
ENVS = {
    "keras2-theano": {"backends": ["theano"], "keras": "2.3.1"},
    "keras3-tensorflow": {"backends": ["tensorflow"], "keras": "3.12.4"},
}
EXPECTED = {"bookworm": ["keras2-theano", "keras3-tensorflow"], "trixie": ["keras2-theano", "keras3-tensorflow"]}
# where each platform trains under each backend (see the module docstring)
TRAINS = {"bookworm": ["keras3-tensorflow"], "trixie": ["keras2-theano", "keras3-tensorflow"]}

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


def as_user(host, command: str, env: dict[str, str] | None = None) -> CommandResult:
    """Run a command as the unprivileged test user, in a login-less clean environment."""
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    return host.run(f"runuser -u {USER} -- env -i HOME=/home/{USER} PATH=/usr/bin:/bin {assigns} "
                    f"sh -c {shlex.quote(command)}")


def realpath(host, path: str) -> str:
    return host.run(f"readlink -f {shlex.quote(path)}").stdout.strip()


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
        pins = [line.split(" ", 1)[0] for line in lock.splitlines()]
        assert f"keras=={ENVS[name]['keras']}" in pins
        if name == "keras3-tensorflow":  # python_envs_gpu: auto, from the PCI bus the container sees
            gpu = host.run("for d in /sys/bus/pci/devices/*; do [ \"$(cat $d/vendor)\" = 0x10de ] && "
                           "grep -q '^0x03' $d/class && exit 0; done; exit 1").rc == 0
            assert ("tensorflow==2.21.0" in pins and "nvidia-cudnn-cu12==" in lock) if gpu \
                else ("tensorflow-cpu==2.21.0" in pins and "nvidia-" not in lock)
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
        uninstall = as_user(host, f"{UV} pip uninstall --python {ROOT}/{name}/bin/python six")
        assert uninstall.rc != 0 and "Permission denied" in uninstall.stderr + uninstall.stdout
        assert host.run(f"{ROOT}/{name}/bin/python -c 'import six'").rc == 0
        # nobody but root can replace the link either
        assert as_user(host, f"ln -sfn /tmp {ROOT}/{name}").rc != 0
    find = host.run(f"find -L {ROOT} -xdev ! -user root -print -quit")
    assert find.rc == 0 and find.stdout == ""
    writable = host.run(f"find {ROOT}/ -perm /022 ! -type l -print -quit")
    assert writable.stdout == "", f"group/world-writable: {writable.stdout}"


@pytest.mark.parametrize("name", list(ENVS))
def test_user_trains_the_seed_models(host, name: str) -> None:
    if name not in TRAINS[host.system_info.codename]:
        pytest.skip(f"{name} trains on {host.system_info.codename} in python_envs_offline")
    backend = ENVS[name]["backends"][0]
    run = as_user(host, f"cd /tmp && {ROOT}/{name}/bin/python -c {shlex.quote(TRAIN)}", {"KERAS_BACKEND": backend})
    assert run.rc == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["keras"] == ENVS[name]["keras"] and result["backend"] == backend
    assert result["finite"] and 0 < result["dense"] < 5 and 0 < result["conv"] < 20, result


def test_theano_env_imports_pygpu_from_its_own_wheel(host) -> None:
    python = f"{ROOT}/keras2-theano/bin/python"
    probe = ("import json, numpy, pygpu, theano.gpuarray; "
             "maps = open('/proc/self/maps').read(); "
             "print(json.dumps({'pygpu': pygpu.__version__, 'file': pygpu.__file__, 'numpy': numpy.__version__, "
             "'lib': [l.split()[-1] for l in maps.splitlines() if 'libgpuarray' in l][:1]}))")
    run = as_user(host, f"cd /tmp && {python} -c {shlex.quote(probe)}")
    assert run.rc == 0, run.stderr[-2000:]
    assert "pkg_resources is deprecated" not in run.stderr  # the env's Theano hook silences it
    info = json.loads(run.stdout.strip().splitlines()[-1])
    site = f"{ROOT}/keras2-theano/lib/python3.11/site-packages"
    assert info["pygpu"] == "0.7.6" and info["numpy"] == "1.23.5"
    assert realpath(host, info["file"]).startswith(realpath(host, site) + "/pygpu/")
    assert info["lib"] and info["lib"][0].endswith("/pygpu.libs/libgpuarray.so.3")  # the wheel's, not the system's
    assert "include-system-site-packages = false" in host.file(f"{ROOT}/keras2-theano/pyvenv.cfg").content_string


def test_theano_reports_a_missing_gpu_clearly(host) -> None:
    """device=cuda without a GPU: Theano logs why pygpu could not start and goes on, no crash."""
    python = f"{ROOT}/keras2-theano/bin/python"
    run = as_user(host, f"cd /tmp && {python} -c 'import theano; print(theano.config.device)'",
                  {"THEANO_FLAGS": "device=cuda"})
    assert run.rc == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "cuda"
    assert "Could not initialize pygpu" in run.stderr and "libcuda.so" in run.stderr, run.stderr[-2000:]


def test_theano_env_reads_its_own_theanorc_and_the_users(host) -> None:
    python = f"{ROOT}/keras2-theano/bin/python"
    # the env's etc/theanorc comes first in THEANORC; the user's ~/.theanorc still wins
    flags = as_user(host, f"{python} -c 'import os, theano; print(os.environ[\"THEANORC\"]); "
                          "print(theano.config.blas.ldflags)'")
    assert flags.rc == 0, flags.stderr
    theanorc, ldflags = flags.stdout.strip().splitlines()[-2:]
    assert theanorc == f"{ROOT}/keras2-theano/etc/theanorc:~/.theanorc" and ldflags == "-lopenblas"
    user_rc = as_user(host, f"printf '[blas]\\nldflags =\\n' > ~/.theanorc && {python} -c "
                            "'import theano; print(repr(theano.config.blas.ldflags))'; rc=$?; rm -f ~/.theanorc; exit $rc")
    assert user_rc.rc == 0 and user_rc.stdout.strip().splitlines()[-1] == "''", user_rc.stderr


def test_theano_env_runs_on_the_platforms_interpreter(host) -> None:
    real = realpath(host, f"{ROOT}/keras2-theano/bin/python")
    if host.system_info.codename == "bookworm":
        assert real == "/usr/bin/python3.11"
        assert host.run("dpkg-query --show dlstack-python3.11").rc != 0  # not needed, not built
        return
    assert real == f"{PREFIX}/bin/python3.11"
    assert realpath(host, "/usr/bin/python3") == "/usr/bin/python3.13"  # the system's untouched
    version = host.run("dpkg-query --show --showformat '${Version}' dlstack-python3.11")
    assert version.rc == 0 and version.stdout.startswith("3.11.2+dlstack."), version.stdout
    probe = ("import ctypes, bz2, curses, dbm.gnu, decimal, lzma, readline, sqlite3, ssl, sysconfig, uuid, zlib; "
             "print(sysconfig.get_config_var('Py_ENABLE_SHARED'), ssl.OPENSSL_VERSION)")
    run = as_user(host, f"{PREFIX}/bin/python3.11 -c {shlex.quote(probe)}")
    assert run.rc == 0 and run.stdout.startswith("1 OpenSSL 3."), run.stderr
    files = host.run(f"dpkg-query --listfiles dlstack-python3.11 | grep -v '^{PREFIX}' | grep -v '^/opt/dlstack/python$' "
                     "| grep -v '^/opt/dlstack$' | grep -v '^/opt$' | grep -v '^/\\.$'")
    assert files.stdout.strip() == "", f"the package installs outside its prefix: {files.stdout[:500]}"
    assert host.run(f"find {PREFIX} ! -user root -print -quit").stdout == ""
    assert host.run(f"find {PREFIX} -perm /022 ! -type l -print -quit").stdout == ""
    assert as_user(host, f"touch {PREFIX}/lib/python3.11/site-packages/mine").rc != 0


def test_uv_is_the_pinned_release_and_root_owned(host) -> None:
    run = host.run(f"{UV} --version")
    assert run.rc == 0 and run.stdout.split()[:2] == ["uv", "0.13.9"], run.stdout
    assert host.file("/opt/dlstack/tools/uv").is_symlink
    assert host.run("find -L /opt/dlstack/tools ! -user root -print -quit").stdout == ""
    for name in expected_envs(host):
        stamp = json.loads(host.file(f"{ROOT}/{name}/.dlstack-env.json").content_string)
        assert stamp["installer"] == "uv"
        lock = host.file(f"{ROOT}/{name}/dlstack-requirements.txt").content_string
        assert all(" --hash=sha256:" in line for line in lock.splitlines()), lock[:500]


def test_collections_hook_only_where_asked(host) -> None:
    probe = "import collections; print(hasattr(collections, 'Iterable'))"
    for name in expected_envs(host):
        out = host.run(f"{ROOT}/{name}/bin/python -c {shlex.quote(probe)}")
        assert out.rc == 0 and out.stdout.strip() == str(name == "keras2-theano")


def test_second_converge_did_no_installer_work(host) -> None:
    # converge and idempotence ran; the build log has one build per env (and uv's), from the first run
    lines = [json.loads(line) for line in host.file("/var/log/dlstack/python-envs.log").content_string.splitlines()]
    assert sorted((e["env"], e["result"]) for e in lines) == sorted((n, "built") for n in [*expected_envs(host), "uv"])


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
