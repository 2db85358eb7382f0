"""Verify dl_user_config on the two nodes: files, ownership, merges, and the real consumers."""

from __future__ import annotations

import json

import pytest

ENVS = "/opt/dlstack/envs"
GPU_NODE = "dl_user_config-debian12"

# What the layered inventory (molecule.yml) must produce, per node and user.
EXPECTED = {
    GPU_NODE: {
        "alice": {"backend": "theano", "floatx": "float32", "device": "cuda1"},
        "bob": {"backend": "tensorflow", "floatx": "float16", "device": "cuda0"},
        "carol": {"backend": "tensorflow", "floatx": "float32", "device": "cpu"},
    },
    "dl_user_config-debian13": {
        "alice": {"backend": "tensorflow", "floatx": "float32", "device": "cpu"},
        "bob": {"backend": "tensorflow", "floatx": "float16", "device": "cpu"},
        "carol": {"backend": "tensorflow", "floatx": "float32", "device": "cpu"},
    },
}
USERS = ["alice", "bob", "carol"]


def expected(host, user: str) -> dict[str, str]:
    return EXPECTED[host.backend.get_hostname()][user]


def as_user(host, user: str, command: str):  # noqa: ANN201 - testinfra's CommandResult has no importable type
    return host.run(f"runuser -u {user} -- bash -c {command!r}")


@pytest.mark.parametrize("user", USERS)
def test_keras_json(host, user: str) -> None:
    path = f"/home/{user}/.keras/keras.json"
    f = host.file(path)
    assert f.user == user and f.group == user and f.mode == 0o644
    d = host.file(f"/home/{user}/.keras")
    assert d.is_directory and not d.is_symlink and d.user == user and d.mode == 0o755
    data = json.loads(f.content_string)
    want = expected(host, user)
    assert data["backend"] == want["backend"]
    assert data["floatx"] == want["floatx"]
    assert data["epsilon"] == pytest.approx(1e-06)      # the all-level override
    assert data["image_data_format"] == "channels_last"  # the role default


def test_bobs_own_key_kept_and_old_file_backed_up(host) -> None:
    data = json.loads(host.file("/home/bob/.keras/keras.json").content_string)
    assert data["my_own_key"] == "keep me"
    backups = host.run("ls /home/bob/.keras/ | grep -E '^keras\\.json\\..*~$'").stdout.split()
    assert len(backups) == 1, backups
    old = json.loads(host.file(f"/home/bob/.keras/{backups[0]}").content_string)
    assert old == {"backend": "theano", "floatx": "float64", "my_own_key": "keep me"}


@pytest.mark.parametrize("user", USERS)
def test_theanorc(host, user: str) -> None:
    f = host.file(f"/home/{user}/.theanorc")
    assert f.user == user and f.mode == 0o644
    text = f.content_string
    assert text.startswith("#") and "Ansible managed" in text
    want = expected(host, user)
    assert f"device = {want['device']}\n" in text
    assert "floatX = float32\n" in text
    assert f"base_compiledir = /var/tmp/theano-{user}\n" in text
    assert "[blas]\nldflags = -lopenblas\n" in text   # OpenBLAS is installed by prepare
    assert "[cuda]" not in text and "[dnn]" not in text  # no CUDA toolkit, no cuDNN here
    if host.backend.get_hostname() == GPU_NODE:
        assert "optimizer = fast_compile\n" in text      # group level
        assert "[nvcc]\nfastmath = True\n" in text       # host level extra section
    else:
        assert "optimizer = fast_run\n" in text


@pytest.mark.parametrize("user", USERS)
def test_compile_dir_private_and_node_local(host, user: str) -> None:
    d = host.file(f"/var/tmp/theano-{user}")
    assert d.is_directory and d.user == user and d.mode == 0o700


def test_carol_was_created(host) -> None:
    assert host.user("carol").exists and host.user("carol").home == "/home/carol"


def test_mallory_untouched_and_etc_clean(host) -> None:
    assert host.file("/home/mallory/.keras").is_symlink
    assert not host.file("/etc/keras.json").exists


def test_users_cannot_write_the_hook(host) -> None:
    for hook in host.run(f"ls {ENVS}/*/lib/python3*/site-packages/dlstack_keras_backend.p*").stdout.split():
        f = host.file(hook)
        assert f.user == "root" and f.mode == 0o644


@pytest.mark.parametrize("user", USERS)
def test_keras3_env_loads_for_every_user(host, user: str) -> None:
    # Keras 3 has no Theano: the hook falls back to TensorFlow for alice; the others get theirs.
    cmd = as_user(host, user, f"{ENVS}/keras3-tf/bin/python -c 'import keras; print(keras.backend.backend(), keras.config.floatx())'")
    assert cmd.rc == 0, cmd.stderr
    backend, floatx = cmd.stdout.split()[-2:]
    want = expected(host, user)
    assert backend == "tensorflow"
    assert floatx == want["floatx"]


@pytest.mark.parametrize("user", USERS)
def test_theano_env_loads_for_every_user(host, user: str) -> None:
    if host.backend.get_hostname() != GPU_NODE:
        pytest.skip("no Theano env on the workstation (Debian 13 has no Python for it)")
    cmd = as_user(host, user, f"{ENVS}/keras2-theano/bin/python -c 'import keras; print(keras.backend.backend(), keras.backend.floatx())'")
    assert cmd.rc == 0, cmd.stderr
    backend, floatx = cmd.stdout.split()[-2:]
    # alice is served her own backend; bob and carol (tensorflow) fall back to the env's theano
    assert backend == "theano"
    assert floatx == expected(host, user)["floatx"]


@pytest.mark.parametrize("user", USERS)
def test_theano_reads_the_users_device_and_floatx(host, user: str) -> None:
    if host.backend.get_hostname() != GPU_NODE:
        pytest.skip("no Theano env on the workstation")
    cmd = as_user(host, user, f"{ENVS}/keras2-theano/bin/python -c 'import theano; "
                              "print(theano.config.device, theano.config.floatX, theano.config.base_compiledir)'")
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.split()[-3:] == [expected(host, user)["device"], "float32", f"/var/tmp/theano-{user}"]


def test_explicit_keras_backend_is_left_alone(host) -> None:
    # The hook only fills in an unset KERAS_BACKEND: an explicit one is honoured, even a bad one.
    cmd = as_user(host, "alice", f"KERAS_BACKEND=theano {ENVS}/keras3-tf/bin/python -c 'import keras'")
    assert cmd.rc != 0
    assert "Unable to import backend : theano" in cmd.stderr
