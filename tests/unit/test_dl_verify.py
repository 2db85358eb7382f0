"""Unit tests for roles/dl_verify/files/dl-verify (loaded by path: the script has no .py suffix)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from plugin_loader import load_by_path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "roles" / "dl_verify" / "files" / "dl-verify"
PROBE = SCRIPT.with_name("dl_verify_probe.py")
PROBE_SOURCE = PROBE.read_text()
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dl_verify"
CUDNN_HEADERS = FIXTURES.parent / "cudnn"  # the shared parser's (tests/unit/test_dlstack_cudnn.py)
SHARED = [REPO / "plugins" / "module_utils" / name for name in ("dlstack_as_user.py", "dlstack_cudnn.py")]


dv = load_by_path("dl_verify", SCRIPT)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def cudnn_header(name: str) -> str:
    return (CUDNN_HEADERS / name).read_text()


def write_exe(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def fake_smi(tmp_path: Path, name: str, rc: int = 0) -> str:
    return str(write_exe(tmp_path / "bin" / "nvidia-smi", f"cat '{FIXTURES / name}'\nexit {rc}\n"))


def canned_python(tmp_path: Path, name: str, payload: str | dict[str, Any]) -> str:
    """A fake env interpreter that ignores its arguments and prints the canned probe answer."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    data = tmp_path / "canned" / f"{name}.json"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(text)
    return str(write_exe(tmp_path / "envs" / name / "bin" / "python", f"echo noise >&2\ncat '{data}'\n"))


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A node with nothing on it: no driver, no PCI GPU, no nvidia-smi, empty home and includes."""
    monkeypatch.setattr(dv, "PROC_DRIVER_VERSION", tmp_path / "proc" / "version")
    (tmp_path / "pci").mkdir()
    monkeypatch.setattr(dv, "PCI_DEVICES", tmp_path / "pci")
    monkeypatch.setattr(dv, "NVIDIA_SMI", str(tmp_path / "bin" / "nvidia-smi"))
    monkeypatch.setattr(dv, "SYSTEM_INCLUDE_DIRS", [tmp_path / "usr" / "include"])
    (tmp_path / "home").mkdir()
    (tmp_path / "local").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("KERAS_HOME", "KERAS_BACKEND", "THEANORC", "THEANO_FLAGS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def make_ctx(root: Path, expect: dict[str, Any] | None = None, smi: str | None = None,
             quick: bool = True, timeout: float = 20.0, config_only: bool = False) -> Any:
    return dv.Context(cuda_root=root / "local", timeout=timeout, quick=quick, user=dv.resolve_user(None),
                      expect=dv.load_expectations(None, json.dumps(expect or {})), nvidia_smi=smi,
                      environ=dict(os.environ), config_only=config_only)


def pci_gpu(root: Path, address: str = "0000:3b:00.0") -> None:
    dev = root / "pci" / address
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x10de\n")
    (dev / "class").write_text("0x030200\n")


# --- parsing -------------------------------------------------------------------------------


def test_parse_one_gpu() -> None:
    assert dv.parse_gpu_csv(fixture("nvidia-smi-1gpu.csv")) == [
        {"index": 0, "name": "NVIDIA RTX A6000", "memory_mib": 49140, "compute_cap": "8.6",
         "driver_version": "550.54.14"}]


def test_parse_eight_h100() -> None:
    gpus = dv.parse_gpu_csv(fixture("nvidia-smi-8xh100.csv"))
    assert [g["index"] for g in gpus] == list(range(8))
    assert {g["name"] for g in gpus} == {"NVIDIA H100 80GB HBM3"}
    assert {g["memory_mib"] for g in gpus} == {81559}
    assert {g["compute_cap"] for g in gpus} == {"9.0"}


def test_parse_na_fields_become_none() -> None:
    first, second = dv.parse_gpu_csv(fixture("nvidia-smi-na.csv"))
    assert first["compute_cap"] is None and first["memory_mib"] == 15360
    assert second["memory_mib"] is None and second["compute_cap"] == "7.5"


def test_parse_name_with_comma_and_bad_line() -> None:
    assert dv.parse_gpu_csv("3, Odd, Name GPU, 1024, 7.0, 470.256.02\n")[0]["name"] == "Odd, Name GPU"
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        dv.parse_gpu_csv(fixture("nvidia-smi-rc9.txt"))


@pytest.mark.parametrize(("name", "version"), [("proc-version-550.txt", "550.54.14"),
                                               ("proc-version-580-open.txt", "580.65.06")])
def test_parse_proc_driver_version(name: str, version: str) -> None:
    assert dv.parse_proc_driver_version(fixture(name)) == version


def test_parse_proc_driver_version_garbage() -> None:
    assert dv.parse_proc_driver_version("GCC version:  gcc version 12.2.0\n") is None


@pytest.mark.parametrize(("found", "expected", "ok"), [("12.5.1", "12.5", True), ("12.5.1", "12", True),
                                                       ("12.50.1", "12.5", False), ("11.8.0", "12.5", False),
                                                       (None, "12.5", False)])
def test_version_matches(found: str | None, expected: str, ok: bool) -> None:
    assert dv.version_matches(found, expected) is ok


# --- driver and GPUs -------------------------------------------------------------------------


def test_driver_from_proc_with_branch_expectations(node: Path) -> None:
    dv.PROC_DRIVER_VERSION.parent.mkdir()
    dv.PROC_DRIVER_VERSION.write_text(fixture("proc-version-550.txt"))
    ok = dv.check_driver(make_ctx(node, {"driver_branch": 550}))
    assert (ok.status, ok.required, ok.data["version"]) == ("pass", True, "550.54.14")
    bad = dv.check_driver(make_ctx(node, {"driver_branch": "580"}))
    assert bad.status == "fail"
    assert bad.reason == "expected driver branch 580, found 550 (550.54.14)"


def test_driver_falls_back_to_nvidia_smi(node: Path) -> None:
    res = dv.check_driver(make_ctx(node, smi=fake_smi(node, "nvidia-smi-8xh100.csv")))
    assert (res.status, res.data["version"], res.data["source"]) == ("pass", "580.65.06", "nvidia-smi")


def test_no_driver_no_gpu_is_a_skip(node: Path) -> None:
    res = dv.check_driver(make_ctx(node))
    assert (res.status, res.required) == ("skip", False)
    assert "no NVIDIA GPU" in res.reason and "nvidia-smi not found" in res.reason


def test_no_driver_with_pci_gpu_fails(node: Path) -> None:
    pci_gpu(node)
    res = dv.check_driver(make_ctx(node, smi=fake_smi(node, "nvidia-smi-rc9.txt", rc=9)))
    assert res.status == "fail" and "0000:3b:00.0" in res.reason and "couldn't communicate" in res.reason


def test_gpus_count_expectation(node: Path) -> None:
    smi = fake_smi(node, "nvidia-smi-8xh100.csv")
    ok = dv.check_gpus(make_ctx(node, {"gpu_count": 8}, smi=smi))
    assert (ok.status, ok.required, ok.data["count"]) == ("pass", True, 8)
    assert "8 x NVIDIA H100 80GB HBM3 (81559 MiB, cc 9.0)" in ok.reason
    bad = dv.check_gpus(make_ctx(node, {"gpu_count": 2}, smi=smi))
    assert (bad.status, bad.reason) == ("fail", "expected 2 GPUs, found 8")


def test_gpus_rc9_fails_when_expected_and_skips_otherwise(node: Path) -> None:
    smi = fake_smi(node, "nvidia-smi-rc9.txt", rc=9)
    expected = dv.check_gpus(make_ctx(node, {"gpu_count": 1}, smi=smi))
    assert (expected.status, expected.required, expected.data["exit_code"]) == ("fail", True, 9)
    assert expected.reason.startswith("nvidia-smi exit 9: NVIDIA-SMI has failed because it couldn't communicate")
    plain = dv.check_gpus(make_ctx(node, smi=smi))
    assert (plain.status, plain.required) == ("skip", False)


def test_gpus_without_nvidia_smi(node: Path) -> None:
    assert dv.check_gpus(make_ctx(node)).status == "skip"
    assert dv.check_gpus(make_ctx(node, {"gpu_count": 0})).status == "pass"
    assert dv.check_gpus(make_ctx(node, {"gpu_count": 2})).reason == "nvidia-smi not found"


# --- NVSwitch fabric (recorded `nvidia-smi -q` of an HGX H100 node) ----------------------------


def pci_nvswitch(root: Path, address: str) -> None:
    dev = root / "pci" / address
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x10de\n")
    (dev / "class").write_text("0x068000\n")


@pytest.fixture
def hgx(node: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The node as an HGX H100: 8 GPUs and 4 NVSwitches on the PCI bus, Fabric Manager active."""
    for bus in ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db"):
        pci_gpu(node, f"0000:{bus}:00.0")
    for bus in ("05", "06", "07", "08"):
        pci_nvswitch(node, f"0000:{bus}:00.0")
    systemctl = write_exe(node / "bin" / "systemctl", 'echo "$(cat ' + str(node / "fm-state") + ')"\n')
    (node / "fm-state").write_text("active\n")
    monkeypatch.setattr(dv, "SYSTEMCTL", str(systemctl))
    return node


@pytest.mark.parametrize("name, states", [
    ("nvidia-smi-q-hgx-h100-completed.txt", [("Completed", "Success")] * 8),
    ("nvidia-smi-q-hgx-h100-in-progress.txt", [("In Progress", None)] * 8),
    ("nvidia-smi-q-hgx-h100-failed.txt", [("Completed", "Success")] * 5 + [("Completed", "Insufficient Resources")]
     + [("Completed", "Success")] * 2),
])
def test_parse_fabric(name: str, states: list[tuple[str, str | None]]) -> None:
    gpus = dv.parse_fabric(fixture(name))
    assert [(g["state"], g["status"]) for g in gpus] == states
    assert gpus[0]["gpu"] == "00000000:18:00.0" and gpus[-1]["gpu"] == "00000000:DB:00.0"


def test_parse_fabric_ignores_health_and_other_sections() -> None:
    text = ("GPU 00000000:01:00.0\n    Fabric\n        State : N/A\n        Status : N/A\n"
            "        Health\n            Status : Degraded\n    Temperature\n        Status : Hot\n")
    assert dv.parse_fabric(text) == [{"gpu": "00000000:01:00.0", "state": None, "status": None}]
    assert dv.parse_fabric("No devices were found\n") == []


def test_fabric_passes_when_every_gpu_completed(hgx: Path) -> None:
    res = dv.check_fabric(make_ctx(hgx, smi=fake_smi(hgx, "nvidia-smi-q-hgx-h100-completed.txt")))
    assert (res.status, res.required) == ("pass", True), res.reason
    assert res.reason == "8 GPU(s) fabric Completed/Success; nvidia-fabricmanager active; 4 NVSwitch(es)"


def test_fabric_in_progress_fails_naming_each_gpu(hgx: Path) -> None:
    res = dv.check_fabric(make_ctx(hgx, smi=fake_smi(hgx, "nvidia-smi-q-hgx-h100-in-progress.txt")))
    assert res.status == "fail" and res.required
    assert res.reason.startswith("GPU 00000000:18:00.0: fabric In Progress; GPU 00000000:2A:00.0: fabric In Progress")


def test_fabric_error_status_fails(hgx: Path) -> None:
    res = dv.check_fabric(make_ctx(hgx, smi=fake_smi(hgx, "nvidia-smi-q-hgx-h100-failed.txt")))
    assert res.status == "fail"
    assert res.reason == "GPU 00000000:AB:00.0: fabric Completed with status Insufficient Resources"


def test_fabric_fails_when_fabric_manager_does_not_run(hgx: Path) -> None:
    (hgx / "fm-state").write_text("failed\n")
    res = dv.check_fabric(make_ctx(hgx, smi=fake_smi(hgx, "nvidia-smi-q-hgx-h100-completed.txt")))
    assert res.status == "fail"
    assert res.reason == "nvidia-fabricmanager is failed: without it CUDA fails with error 802 on these GPUs"


def test_fabric_without_nvidia_smi_fails_on_an_nvswitch_node(hgx: Path) -> None:
    res = dv.check_fabric(make_ctx(hgx))
    assert res.status == "fail" and res.reason == "cannot read the fabric state: nvidia-smi not found"


def test_fabric_is_skipped_with_a_reason_without_nvswitches(node: Path) -> None:
    pci_gpu(node)
    res = dv.check_fabric(make_ctx(node, smi=fake_smi(node, "nvidia-smi-q-hgx-h100-in-progress.txt")))
    assert (res.status, res.required) == ("skip", False)
    assert res.reason == "no NVSwitch on this node: Fabric Manager is for NVSwitch systems"


# --- CUDA and cuDNN ----------------------------------------------------------------------------


def cuda_tree(root: Path) -> Path:
    local = root / "local"
    (local / "cuda-11.8").mkdir(parents=True)
    (local / "cuda-11.8" / "version.txt").write_text("CUDA Version 11.8.89\n")
    (local / "cuda-12.5" / "include").mkdir(parents=True)
    (local / "cuda-12.5" / "version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.5.1"}}))
    (local / "cuda").symlink_to(local / "cuda-12.5")
    return local


def test_cuda_versions_and_default(node: Path) -> None:
    cuda_tree(node)
    res = dv.check_cuda(make_ctx(node, {"cuda_default": "12.5"}))
    assert res.status == "pass", res.reason
    assert [(t["dir_version"], t["version"], t["source"]) for t in res.data["toolkits"]] == [
        ("11.8", "11.8.89", "version.txt"), ("12.5", "12.5.1", "version.json")]
    assert res.data["default"]["version"] == "12.5.1"
    assert res.reason.startswith("default 12.5.1 (") and res.reason.endswith("also 11.8.89")


def test_cuda_default_mismatch(node: Path) -> None:
    cuda_tree(node)
    res = dv.check_cuda(make_ctx(node, {"cuda_default": 11.8}))
    assert (res.status, res.required, res.reason) == ("fail", True, "expected default CUDA 11.8, found 12.5.1")


def test_cuda_header_fallback_and_mislabelled_dir(node: Path) -> None:
    local = node / "local"
    (local / "cuda-13.0" / "include").mkdir(parents=True)
    (local / "cuda-13.0" / "include" / "cuda.h").write_text("#define CUDA_VERSION 13000\n")
    (local / "cuda-12.4").mkdir()
    (local / "cuda-12.4" / "version.json").write_text('{"cuda": {"version": "12.5.1"}}')
    res = dv.check_cuda(make_ctx(node))
    assert ("13.0", "include/cuda.h") in [(t["version"], t["source"]) for t in res.data["toolkits"]]
    assert res.status == "fail" and "cuda-12.4 holds CUDA 12.5.1" in res.reason


def test_cuda_dangling_link_and_empty_root(node: Path) -> None:
    assert dv.check_cuda(make_ctx(node)).status == "skip"
    assert dv.check_cuda(make_ctx(node, {"cuda_default": "12.5"})).status == "fail"
    (node / "local" / "cuda").symlink_to("cuda-12.9")
    res = dv.check_cuda(make_ctx(node))
    assert res.status == "fail" and "dangling" in res.reason


def test_cudnn_found_in_toolkit_and_system(node: Path) -> None:
    local = cuda_tree(node)
    (local / "cuda-12.5" / "include" / "cudnn_version.h").write_text(cudnn_header("cudnn_version-8.9.7.h"))
    (local / "cuda-12.5" / "include" / "cudnn.h").write_text(cudnn_header("cudnn-8-umbrella.h"))
    system = dv.SYSTEM_INCLUDE_DIRS[0]
    system.mkdir(parents=True)
    (system / "cudnn_version.h").write_text(cudnn_header("cudnn_version-9.3.0.h"))
    res = dv.check_cudnn(make_ctx(node, {"cudnn_major": 9}))
    assert [f["version"] for f in res.data["found"]] == ["8.9.7", "9.3.0"]  # toolkit link seen once
    assert res.status == "pass"
    bad = dv.check_cudnn(make_ctx(node, {"cudnn_major": 7}))
    assert (bad.status, bad.reason) == ("fail", "expected cuDNN major 7, found 8.9.7, 9.3.0")


def test_cudnn_old_header_and_none(node: Path) -> None:
    assert dv.check_cudnn(make_ctx(node)).status == "skip"
    assert dv.check_cudnn(make_ctx(node, {"cudnn_major": 9})).status == "fail"
    system = dv.SYSTEM_INCLUDE_DIRS[0]
    system.mkdir(parents=True)
    (system / "cudnn.h").write_text(cudnn_header("cudnn-7.6.5.h"))
    res = dv.check_cudnn(make_ctx(node))
    assert res.status == "pass" and res.data["found"] == [{"path": str(system / "cudnn.h"), "version": "7.6.5"}]


# --- expectations and user config ------------------------------------------------------------


def test_load_expectations_coerces_and_validates(tmp_path: Path) -> None:
    path = tmp_path / "expect.json"
    path.write_text('{"driver_branch": 580, "cuda_default": "12.5", "gpu_count": 2, '
                    '"envs": {"keras3-tf": {"backend": "tensorflow"}}}')
    expect = dv.load_expectations(str(path), None)
    assert expect["driver_branch"] == "580" and expect["envs"]["keras3-tf"] == {"backend": "tensorflow"}
    for bad, message in [('{"gpu_cout": 2}', "unknown expectation"), ('{"gpu_count": "2"}', "wrong type"),
                         ('{"gpu_count": true}', "wrong type"), ("[1]", "JSON object"), ("{", "not valid JSON"),
                         ('{"envs": {"x": {"colour": 1}}}', "env 'x'"), ('{"theano_seeded": 1}', "wrong type"),
                         ('{"users": {"alice": {"gpu_count": 1}}}', "unknown expectation 'gpu_count' of user"),
                         ('{"users": {"alice": {"envs": {"x": {"colour": 1}}}}}', "env 'x' of user 'alice'"),
                         ('{"users": {"alice": []}}', "user 'alice' must be an object")]:
        with pytest.raises(dv.UsageError, match=message):
            dv.load_expectations(None, bad)
    with pytest.raises(dv.UsageError, match="cannot read"):
        dv.load_expectations(str(tmp_path / "missing.json"), None)


def write_keras_json(directory: Path, **config: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    base = {"backend": "theano", "floatx": "float32", "epsilon": 1e-07, "image_data_format": "channels_last"}
    (directory / "keras.json").write_text(json.dumps({**base, **config}))


def test_keras_config_missing(node: Path) -> None:
    res = dv.check_keras_config(make_ctx(node, {"backend": "theano"}))
    assert (res.status, res.required) == ("fail", True)
    assert res.reason == f"{node}/home/.keras/keras.json not found (expected backend theano)"
    assert dv.check_keras_config(make_ctx(node)).status == "skip"


def test_keras_config_mismatch_and_match(node: Path) -> None:
    write_keras_json(node / "home" / ".keras", backend="tensorflow")
    bad = dv.check_keras_config(make_ctx(node, {"backend": "theano", "floatx": "float32"}))
    assert (bad.status, bad.reason) == ("fail", "expected backend theano, found tensorflow")
    ok = dv.check_keras_config(make_ctx(node, {"backend": "tensorflow"}))
    assert ok.status == "pass" and ok.reason.startswith("backend tensorflow, floatx float32, channels_last")


def test_keras_config_respects_keras_home_and_backend_override(node: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    write_keras_json(node / "home" / ".keras", backend="tensorflow")
    write_keras_json(node / "kh", backend="theano", floatx="float16")
    monkeypatch.setenv("KERAS_HOME", str(node / "kh"))
    res = dv.check_keras_config(make_ctx(node, {"backend": "theano", "floatx": "float16"}))
    assert res.status == "pass" and res.data["path"] == str(node / "kh" / "keras.json")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    res = dv.check_keras_config(make_ctx(node, {"backend": "theano"}))
    assert (res.status, res.reason) == ("fail", "expected backend theano, found jax")


def test_keras_config_invalid_json(node: Path) -> None:
    (node / "home" / ".keras").mkdir()
    (node / "home" / ".keras" / "keras.json").write_text("{backend: theano")
    res = dv.check_keras_config(make_ctx(node))
    assert res.status == "fail" and res.reason.startswith("cannot read")


def test_theano_config(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dv.check_theano_config(make_ctx(node)).status == "skip"
    rc = node / "home" / ".theanorc"
    rc.write_text("[global]\ndevice = cuda0\nfloatX = float32\n\n[blas]\nldflags =\n")
    ok = dv.check_theano_config(make_ctx(node, {"device": "cuda0"}))
    assert ok.status == "pass" and ok.reason.startswith("device cuda0, floatX float32")
    bad = dv.check_theano_config(make_ctx(node, {"device": "cuda1"}))
    assert (bad.status, bad.required, bad.reason) == ("fail", True, "expected device cuda1, found cuda0")
    monkeypatch.setenv("THEANO_FLAGS", "device=cuda1,dnn.enabled=False")
    assert dv.check_theano_config(make_ctx(node, {"device": "cuda1"})).status == "pass"


def test_theanorc_path_list_and_old_gpu_device(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (node / "a.rc").write_text("[global]\ndevice = cuda0\n")
    (node / "b.rc").write_text("[global]\ndevice = gpu1\n")
    monkeypatch.setenv("THEANORC", f"{node}/a.rc:{node}/b.rc")
    res = dv.check_theano_config(make_ctx(node))
    assert res.status == "fail" and "device=gpu1 is the removed old CUDA backend" in res.reason


# --- environments, end to end with fake interpreters --------------------------------------------


def env_spec(python: str, name: str = "keras2-theano", backends: tuple[str, ...] = ("theano",)) -> Any:
    return dv.EnvSpec(name, python, list(backends))


def check_env(ctx: Any, spec: Any) -> Any:
    """One user's check of one env, as a run does it: the job, the probe, the verdict."""
    dv.check_keras_config(ctx)
    job = dv.user_job(ctx, spec, dv.level_of(ctx))
    dv.run_jobs([job], PROBE_SOURCE, ctx.timeout, 1)
    return dv.finish_user_env(job, ctx.timeout)


def test_env_canned_probe_passes(node: Path) -> None:
    py = canned_python(node, "keras2-theano", fixture("probe-keras2-theano.json"))
    ctx = make_ctx(node, {"device": "cuda0", "envs": {"keras2-theano": {"backend": "theano", "keras": "2.3"}}})
    res = check_env(ctx, env_spec(py))
    assert (res.id, res.status, res.required) == ("user-env:keras2-theano", "pass", True), res.reason
    assert res.data["probe"]["frameworks"]["theano"] == "1.0.5"
    assert "backend theano 1.0.5" in res.reason and "conv 77.9s loss 2.339" in res.reason


def test_env_expectation_mismatches(node: Path) -> None:
    py = canned_python(node, "keras2-theano", fixture("probe-keras2-theano.json"))
    ctx = make_ctx(node, {"device": "cuda1", "envs": {"keras2-theano": {"backend": "tensorflow"}}})
    res = check_env(ctx, env_spec(py))
    assert res.status == "fail"
    assert res.reason == "expected backend tensorflow, found theano; expected device cuda1, found cuda0"
    wrong_list = check_env(make_ctx(node), env_spec(py, backends=("tensorflow",)))
    assert wrong_list.reason == "backend theano is not one of the env's backends (tensorflow)"


def test_env_tensorflow_gpu_count_and_pygpu(node: Path) -> None:
    tf = canned_python(node, "keras3-tf", fixture("probe-keras3-tf.json"))
    res = check_env(make_ctx(node, {"gpu_count": 8}), env_spec(tf, "keras3-tf", ("tensorflow",)))
    assert (res.status, res.reason) == ("fail", "expected 8 GPUs visible to TensorFlow, found 2")
    info = json.loads(fixture("probe-keras2-theano.json"))
    info["devices"]["pygpu_activated"] = False
    info["training"]["dense"].update(loss=None, loss_text="nan")
    th = canned_python(node, "no-pygpu", info)
    res = check_env(make_ctx(node), env_spec(th))
    assert res.reason == ("Theano device cuda0 but pygpu not activated (no GPU in use); "
                          "dense training loss is not finite (nan)")


def test_env_probe_error_is_reported(node: Path) -> None:
    py = canned_python(node, "broken", fixture("probe-import-error.json"))
    res = check_env(make_ctx(node), env_spec(py))
    assert res.status == "fail"
    assert res.reason == ("import keras failed: ImportError: cannot import name 'Iterable' from 'collections' "
                          "(/usr/lib/python3.11/collections/__init__.py)")


def test_env_timeout(node: Path) -> None:
    py = write_exe(node / "slow" / "python", "sleep 30\n")
    start = time.monotonic()
    res = check_env(make_ctx(node, timeout=1), env_spec(str(py)))
    assert time.monotonic() - start < 10
    assert res.status == "fail" and res.reason.startswith("probe timed out after 1 s")


def test_env_garbage_and_silent_crash(node: Path) -> None:
    py = write_exe(node / "garbage" / "python", "echo 'Segmentation fault (core dumped)'\nexit 139\n")
    res = check_env(make_ctx(node), env_spec(str(py)))
    assert (res.status, res.reason) == ("fail", "probe output is not JSON (exit 139): Segmentation fault (core dumped)")
    py = write_exe(node / "silent" / "python", "echo 'SyntaxError: invalid syntax' >&2\nexit 1\n")
    res = check_env(make_ctx(node), env_spec(str(py)))
    assert (res.status, res.reason) == ("fail", "probe printed no JSON (exit 1): SyntaxError: invalid syntax")


def test_env_missing_and_non_executable_python(node: Path) -> None:
    res = check_env(make_ctx(node), env_spec(str(node / "envs" / "gone" / "bin" / "python")))
    assert (res.status, res.reason) == ("fail", f"python not found: {node}/envs/gone/bin/python (env not installed?)")
    plain = node / "plain-file"
    plain.write_text("")
    assert check_env(make_ctx(node), env_spec(str(plain))).reason == f"python is not executable: {plain}"


def test_env_gets_keras_home_and_user_environment(node: Path) -> None:
    record = node / "seen.txt"
    py = write_exe(node / "envs" / "k" / "bin" / "python",
                   f"echo \"$KERAS_HOME|$HOME|$1|$3\" > '{record}'\ncat '{FIXTURES / 'probe-keras3-tf.json'}'\n")
    spec = dv.EnvSpec("keras3-tf", str(py), ["tensorflow"], "~/.keras-k3")
    res = check_env(make_ctx(node, quick=False), spec)
    assert res.status == "pass", res.reason
    # python -c SOURCE --config-only ...: a TensorFlow env is read per user, nothing imported
    assert record.read_text().strip() == f"{node}/home/.keras-k3|{node}/home|-c|--config-only"
    assert res.data["keras_json"] == f"{node}/home/.keras-k3/keras.json"


def test_user_job_levels(node: Path) -> None:
    write_keras_json(node / "home" / ".keras", backend="tensorflow")
    theano, tf = env_spec("/x/python"), env_spec("/y/python", "keras3-tf", ("tensorflow",))
    full = make_ctx(node, quick=False)
    dv.check_keras_config(full)
    # the user's tensorflow is not served by the Theano env: the hook falls back to theano there
    assert dv.user_job(full, theano, "full").options == ["--dense-only"]
    assert dv.user_job(full, theano, "quick").options == ["--quick"]
    assert dv.user_job(full, theano, "config").options[0] == "--config-only"
    assert dv.user_job(full, tf, "full").options[0] == "--config-only"
    both = env_spec("/z/python", "mixed", ("theano", "tensorflow"))
    assert dv.user_backend(full, both) == "tensorflow" and dv.user_job(full, both, "full").options[0] == "--config-only"


def fake_keras(site: Path, init_extra: str = "") -> Path:
    pkg = site / "keras"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("print('Using Theano backend.')\n__version__ = '2.3.1'\n" + init_extra)
    (pkg / "backend.py").write_text("def backend():\n    return 'theano'\n\ndef floatx():\n    return 'float16'\n\n"
                                    "def image_data_format():\n    return 'channels_first'\n")
    return site


def test_real_probe_with_fake_keras(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(fake_keras(node / "site")))
    res = check_env(make_ctx(node), env_spec(sys.executable))
    assert res.status == "pass", res.reason
    probe = res.data["probe"]
    assert (probe["keras"], probe["backend"], probe["floatx"], probe["image_data_format"]) == (
        "2.3.1", "theano", "float16", "channels_first")
    assert probe["python"] == platform.python_version() and probe["quick"] is True and probe["error"] is None
    assert "training skipped (--quick)" in res.reason


def test_real_probe_reports_exceptions(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(fake_keras(node / "site")))
    res = check_env(make_ctx(node, quick=False), env_spec(sys.executable))
    assert res.status == "fail" and res.data["probe"]["error"]["stage"] == "train dense"
    assert res.reason.startswith("train dense failed: ") and "Error" in res.reason
    monkeypatch.setenv("PYTHONPATH", str(fake_keras(node / "site2", "raise RuntimeError('boom')\n")))
    res = check_env(make_ctx(node), env_spec(sys.executable))
    assert res.reason == "import keras failed: RuntimeError: boom"


def fake_dists(site: Path, **versions: str) -> Path:
    """Installed-looking packages (metadata) that fail if anything imports them."""
    for name, version in versions.items():
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("raise RuntimeError('imported in --config-only')\n")
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return site


def config_ctx(node: Path, expect: dict[str, Any] | None = None) -> Any:
    ctx = make_ctx(node, expect, config_only=True)
    dv.check_theano_config(ctx)  # a run reads .theanorc before the envs
    return ctx


def test_config_only_probe_reads_the_config_and_imports_nothing(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(fake_dists(node / "site", keras="2.3.1", theano="1.0.5")))
    write_keras_json(node / "home" / ".keras", backend="theano", floatx="float16")
    (node / "home" / ".theanorc").write_text(f"[global]\ndevice = cuda1\nbase_compiledir = {node}/compile\n")
    expect = {"device": "cuda1", "floatx": "float16", "envs": {"keras2-theano": {"backend": "theano", "keras": "2.3"}}}
    res = check_env(config_ctx(node, expect), env_spec(sys.executable))
    assert res.status == "pass", res.reason
    probe = res.data["probe"]
    assert (probe["config_only"], probe["keras"], probe["backend"], probe["floatx"], probe["image_data_format"]) == (
        True, "2.3.1", "theano", "float16", "channels_last")
    assert probe["frameworks"] == {"theano": "1.0.5"} and probe["devices"]["theano_device"] == "cuda1"
    assert probe["devices"]["theano_compiledir"] == f"{node}/compile" and probe["training"] == {}
    assert "configuration only (--config-only" in res.reason
    # what the env's startup hook does when keras.json names a backend the env lacks
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    res = check_env(config_ctx(node), env_spec(sys.executable, backends=("theano", "tensorflow")))
    assert res.reason == "frameworks failed: RuntimeError: backend tensorflow is not installed in this environment"


def test_config_only_probe_failures(node: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(fake_dists(node / "site", theano="1.0.5")))
    res = check_env(config_ctx(node), env_spec(sys.executable))
    assert res.reason == "keras package failed: RuntimeError: keras is not installed in this environment"
    monkeypatch.setenv("PYTHONPATH", str(fake_dists(node / "site2", keras="2.3.1", theano="1.0.5")))
    write_keras_json(node / "home" / ".keras", backend="theano")
    (node / "home" / ".theanorc").write_text("[global]\nbase_compiledir = /nonexistent/dlstack/theano\n")
    res = check_env(config_ctx(node), env_spec(sys.executable))
    assert res.reason == ("theano compiledir failed: PermissionError: /nonexistent/dlstack is not writable by this "
                          "user (Theano compiles there)")
    # no GPU is visible without importing TensorFlow: the count is not checked
    monkeypatch.setenv("PYTHONPATH", str(fake_dists(node / "site3", keras="3.11.3", tensorflow="2.20.0")))
    write_keras_json(node / "home" / ".keras", backend="tensorflow")
    res = check_env(config_ctx(node, {"gpu_count": 2}), env_spec(sys.executable, "k3", ("tensorflow",)))
    assert res.status == "pass", res.reason


# --- Theano seeds: per-user cache hits, node-level runs from a seed ---------------------------


def seed_template_dir(root: Path, env: Path, tid: str = "0123456789abcdef", real: str | None = None) -> Path:
    """A template as dl_user_config builds it (root's, read-only to others)."""
    template = root / "seeds" / "keras2-theano" / tid
    module = template / "compiledir" / "tmpabc123"
    module.mkdir(parents=True)
    (module / "key.pkl").write_bytes(b"key")
    (template / "keras.json").write_text('{"backend": "theano", "floatx": "float32", "epsilon": 1e-07, '
                                         '"image_data_format": "channels_last"}')
    (template / "theanorc").write_text("[global]\ndevice = cpu\nfloatX = float32\n")
    (template / "seed.json").write_text(json.dumps({"id": tid, "real": real or os.path.realpath(env),
                                                    "compiledir_name": "compiledir_Linux-x86_64-3.11.2-64"}))
    for top, dirs, files in os.walk(root / "seeds"):
        for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
            os.chmod(name, 0o755 if os.path.isdir(name) else 0o644)
    return template


def seeded_user(root: Path, template: Path | None) -> Path:
    compiledir = root / "compile"
    compiledir.mkdir(exist_ok=True)
    (root / "home" / ".theanorc").write_text(f"[global]\nbase_compiledir = {compiledir}\n")
    marker = {"keras2-theano": {"id": template.name, "template": str(template)}} if template else {}
    (compiledir / dv.SEED_MARKER).write_text(json.dumps(marker))
    return compiledir


def cache_probe(root: Path, compiled_versioned: int) -> str:
    info = json.loads(fixture("probe-keras2-theano.json"))
    info["devices"]["theano_device"] = "cpu"
    info["training"] = {"dense": info["training"]["dense"]}
    info["theano_cache"] = {"compiledir": str(root), "cached_before": 73, "loaded": 30, "hits": 57,
                            "compiled": 3 + compiled_versioned, "compiled_versioned": compiled_versioned,
                            "compiled_per_process": 1, "compiled_unversioned": 2}
    return canned_python(root, "keras2-theano", info)


def test_user_training_must_hit_the_seed(node: Path) -> None:
    py = cache_probe(node, 0)
    template = seed_template_dir(node, Path(py).parent.parent)
    seeded_user(node, template)
    expect = {"theano_seeded": True}
    ctx = make_ctx(node, expect, quick=False)
    dv.check_theano_config(ctx)
    res = check_env(ctx, env_spec(py))
    assert res.status == "pass", res.reason
    assert "seeded from 0123456789abcdef" in res.reason and "30 modules loaded, 0 compiled that it caches" in res.reason
    missed = cache_probe(node / "other", 5)
    seed_template_dir(node / "other", Path(missed).parent.parent)
    res = check_env(ctx, env_spec(missed))
    assert res.status == "fail" and "the training compiled 5 modules Theano caches" in res.reason
    # without the expectation, the same is only reported
    plain = make_ctx(node, quick=False)
    dv.check_theano_config(plain)
    assert check_env(plain, env_spec(missed)).status == "pass"


def test_user_seed_of_another_build_or_missing_fails(node: Path) -> None:
    py = cache_probe(node, 0)
    stale = seed_template_dir(node, Path(py).parent.parent, real="/opt/dlstack/envs/.keras2-theano-old")
    seeded_user(node, stale)
    ctx = make_ctx(node, {"theano_seeded": True}, quick=False)
    dv.check_theano_config(ctx)
    res = check_env(ctx, env_spec(py))
    assert res.status == "fail" and "is of another build of keras2-theano (/opt/dlstack/envs/.keras2-theano-old" in res.reason
    seeded_user(node, None)
    res = check_env(ctx, env_spec(py))
    assert res.status == "fail" and res.reason.endswith(f"compile directory {node}/compile: no seed of env keras2-theano")


def test_a_template_others_can_write_is_not_used(node: Path) -> None:
    py = cache_probe(node, 0)
    template = seed_template_dir(node, Path(py).parent.parent)
    seeded_user(node, template)
    ctx = make_ctx(node, {"theano_seeded": True}, quick=False)
    dv.check_theano_config(ctx)
    if os.geteuid() == 0:  # root owns everything it writes: a template root owns, others can write
        (template / "compiledir" / "tmpabc123").chmod(0o777)
        res = check_env(ctx, env_spec(py))
        assert res.status == "fail" and "is not safe to use" in res.reason and "tmpabc123 is not root's alone" in res.reason
        assert dv.node_profiles(env_spec(py), [ctx], "full") == [{"label": "defaults, no seed"}]
    else:
        assert "is not root's alone" in (dv.root_only_problem(template) or "")


def test_node_profiles(node: Path) -> None:
    py = cache_probe(node, 0)
    theano = env_spec(py)
    alice = make_ctx(node, quick=False)
    dv.check_keras_config(alice)
    dv.check_theano_config(alice)
    assert dv.node_profiles(theano, [alice], "full") == [{"label": "defaults, no seed"}]
    assert dv.node_profiles(theano, [alice], "quick") == [{"label": "defaults"}]
    if os.geteuid() == 0:
        template = seed_template_dir(node, Path(py).parent.parent)
        seeded_user(node, template)
        dv.check_theano_config(alice)
        (profile,) = dv.node_profiles(theano, [alice, alice], "full")
        assert profile["label"] == f"seed {template.name}" and profile["template"] == template
        home = dv.private_home(dv.resolve_user(None), theano, profile)
        try:
            assert (home / "theano" / "compiledir_Linux-x86_64-3.11.2-64" / "tmpabc123" / "key.pkl").read_bytes() == b"key"
            assert json.loads((home / ".keras" / "keras.json").read_text())["floatx"] == "float32"
            assert (home / ".theanorc").read_text() == "[global]\ndevice = cpu\nfloatX = float32\n"
        finally:
            import shutil
            shutil.rmtree(home)
    write_keras_json(node / "home" / ".keras", backend="tensorflow", floatx="float64")
    dv.check_keras_config(alice)
    tf = env_spec("/y/python", "keras3-tf", ("tensorflow",))
    assert dv.node_profiles(tf, [alice, alice], "full") == [
        {"label": "epsilon 1e-07, floatx float64, image_data_format channels_last",
         "keras": {"floatx": "float64", "image_data_format": "channels_last", "epsilon": 1e-07}}]


def test_user_expectations_merge() -> None:
    expect = {"gpu_count": 2, "floatx": "float32", "envs": {"a": {"backend": "theano"}},
              "users": {"bob": {"floatx": "float64", "envs": {"a": {"device": "cuda0"}}}}}
    assert dv.node_expectations(expect) == {"gpu_count": 2}
    assert dv.user_expectations(expect, "bob") == {"gpu_count": 2, "floatx": "float64",
                                                   "envs": {"a": {"backend": "theano", "device": "cuda0"}}}
    assert dv.user_expectations(expect, "carol")["floatx"] == "float32"


def test_script_sha256_covers_script_probe_and_shared_modules(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib
    mine = hashlib.sha256(b"".join(p.read_bytes() for p in [SCRIPT, PROBE, *SHARED])).hexdigest()
    (node / "envs.json").write_text('{"envs": []}')
    base = ["--envs-config", str(node / "envs.json"), "--json"]
    assert dv.main([*base, "--script-sha256", hashlib.sha256(SCRIPT.read_bytes() + PROBE.read_bytes()).hexdigest()]) == 3
    assert "are not the dl-verify the playbook ships" in capsys.readouterr().err
    assert dv.main([*base, "--script-sha256", mine.upper()]) == 0
    capsys.readouterr()
    other = node / "probe.py"
    other.write_text(PROBE_SOURCE + "\n")
    assert dv.main([*base, "--probe", str(other), "--script-sha256", mine]) == 3


def test_the_role_installs_and_hashes_what_dl_verify_reads() -> None:
    """The role's __dl_verify_files: the script, the probe and the shared modules in
    dl-verify's order (its --script-sha256 is their sha256 one after the other), each where
    dl-verify looks for it."""
    import yaml
    files = yaml.safe_load((REPO / "roles" / "dl_verify" / "vars" / "main.yml").read_text())["__dl_verify_files"]
    assert [Path(f["src"]).name for f in files] == ["dl-verify", "dl_verify_probe.py", *dv.SHARED_MODULES]
    assert [f["dest"].rsplit("/", 1)[-1] for f in files[1:]] == ["dl_verify_probe.py", *dv.SHARED_MODULES]
    assert all(f["dest"].startswith("{{ __dl_verify_lib_dir }}/") for f in files[1:])
    assert [p.name for p in SHARED] == list(dv.SHARED_MODULES) and dv.shared_dir() == SHARED[0].parent


def test_quick_and_config_only_exclude_each_other(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert dv.main(["--quick", "--config-only"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_probe_path_prefers_the_installed_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dv.probe_path(None) == PROBE  # a checkout: beside the script
    assert dv.probe_path("/x/probe.py") == Path("/x/probe.py")
    (tmp_path / "bin").mkdir()
    (tmp_path / "lib" / "dl-verify").mkdir(parents=True)
    (tmp_path / "lib" / "dl-verify" / "dl_verify_probe.py").write_text("")
    monkeypatch.setattr(dv, "__file__", str(tmp_path / "bin" / "dl-verify"))
    assert dv.probe_path(None) == tmp_path / "lib" / "dl-verify" / "dl_verify_probe.py"
    # the shared modules likewise: beside the probe once the role has put them there
    assert dv.shared_dir() != tmp_path / "lib" / "dl-verify"
    (tmp_path / "lib" / "dl-verify" / "dlstack_as_user.py").write_text("")
    assert dv.shared_dir() == tmp_path / "lib" / "dl-verify"


# --- users -------------------------------------------------------------------------------------


def test_resolve_user(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(dv.UsageError, match="no such user"):
        dv.resolve_user("no-such-user-dlverify")
    monkeypatch.setattr(dv.os, "geteuid", lambda: 0)
    nobody = dv.resolve_user("nobody")
    assert (nobody.name, nobody.home, nobody.switch) == ("nobody", Path("/nonexistent"), True)
    monkeypatch.setattr(dv.os, "geteuid", lambda: 65534)
    assert dv.resolve_user("nobody").switch is False
    with pytest.raises(dv.UsageError, match="only root"):
        dv.resolve_user("root")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_run_cmd_switches_to_the_user() -> None:
    nobody = dv.resolve_user("nobody")
    proc = dv.run_cmd(["id"], 10, env={"PATH": "/usr/bin:/bin"}, cwd="/", user=nobody)
    assert proc.rc == 0 and proc.out.startswith(f"uid={nobody.uid}(nobody) gid={nobody.gid}")
    assert "groups=" in proc.out and "(root)" not in proc.out


# --- whole runs: output formats and exit codes ---------------------------------------------------


def healthy_node(root: Path) -> list[str]:
    """A node where everything checks out; returns the CLI arguments that point at it."""
    fake_smi(root, "nvidia-smi-8xh100.csv")
    dv.PROC_DRIVER_VERSION.parent.mkdir()
    dv.PROC_DRIVER_VERSION.write_text(fixture("proc-version-580-open.txt"))
    (cuda_tree(root) / "cuda-12.5" / "include" / "cudnn_version.h").write_text(cudnn_header("cudnn_version-9.3.0.h"))
    write_keras_json(root / "home" / ".keras")
    (root / "home" / ".theanorc").write_text("[global]\ndevice = cuda0\nfloatX = float32\n")
    envs = [{"name": "keras2-theano", "backends": ["theano"],
             "python": canned_python(root, "keras2-theano", fixture("probe-keras2-theano.json"))},
            {"name": "keras3-tf", "backends": ["tensorflow"], "keras_home_env": "~/.keras3",
             "python": canned_python(root, "keras3-tf", fixture("probe-keras3-tf.json"))}]
    (root / "envs.json").write_text(json.dumps({"envs": envs}))
    return ["--cuda-root", str(root / "local"), "--envs-config", str(root / "envs.json")]


EXPECT_ALL = {"backend": "theano", "floatx": "float32", "device": "cuda0", "gpu_count": 8, "driver_branch": "580",
              "cuda_default": "12.5", "cudnn_major": 9,
              "envs": {"keras2-theano": {"backend": "theano"}, "keras3-tf": {"backend": "tensorflow"}}}
NODE_CHECKS = ["driver", "gpus", "fabric", "cuda", "cudnn", "env:keras2-theano", "env:keras3-tf"]
USER_CHECKS = ["keras_config", "theano_config", "user-env:keras2-theano", "user-env:keras3-tf"]


def test_table_lists_every_check(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = {**EXPECT_ALL, "gpu_count": 2}  # keras3-tf's canned probe sees two GPUs
    assert dv.main([*healthy_node(node), "--quick", "--expect-json", json.dumps(expect)]) == 1
    out = capsys.readouterr().out
    rows = [line.split()[:2] for line in out.splitlines() if line.split()[:1] in (["PASS"], ["FAIL"], ["SKIP"])]
    assert [cid for _, cid in rows] == NODE_CHECKS + USER_CHECKS
    assert dict((cid, status) for status, cid in rows)["gpus"] == "FAIL"
    assert "expected 2 GPUs, found 8" in out and "\nnode checks\n" in out and f"\nas {dv.resolve_user(None).name}\n" in out
    assert "7 checks: 5 pass, 1 fail, 1 skip -- FAILED (required: gpus)" in out
    assert out.rstrip().endswith("FAILED")


def test_json_output(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect = {k: v for k, v in EXPECT_ALL.items() if k != "gpu_count"}
    assert dv.main([*healthy_node(node), "--json", "--expect-json", json.dumps(expect)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"host", "time", "node", "users", "ok"} and report["ok"] is True
    assert [c["id"] for c in report["node"]["checks"]] == NODE_CHECKS
    (user,) = report["users"]
    assert user["user"] == dv.resolve_user(None).name and [c["id"] for c in user["checks"]] == USER_CHECKS
    assert user["summary"] == {"pass": 4, "fail": 0, "skip": 0} and user["ok"] is True
    assert all(set(c) == {"id", "title", "status", "reason", "data", "required"} for c in user["checks"])
    # the node's env checks trained (full level); the user's TensorFlow env was read, not imported
    assert report["node"]["checks"][5]["data"]["runs"][0]["label"] == "defaults, no seed"


def test_several_users_and_no_node_checks(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    me = dv.resolve_user(None).name
    args = healthy_node(node)
    assert dv.main([*args, "--json", "--quick", "--user", me, "--user", me, "--no-node-checks"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["node"] is None and [u["user"] for u in report["users"]] == [me]  # named twice, checked once
    expect = {"users": {me: {"floatx": "float64"}}}
    assert dv.main([*args, "--json", "--quick", "--user", me, "--expect-json", json.dumps(expect)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["node"]["ok"] and not report["users"][0]["ok"]


def test_node_only(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = healthy_node(node)
    assert dv.main([*args, "--json", "--quick", "--node-only"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["users"] == [] and [c["id"] for c in report["node"]["checks"]] == NODE_CHECKS
    assert dv.main([*args, "--node-only", "--user", dv.resolve_user(None).name]) == 2
    assert dv.main([*args, "--node-only", "--no-node-checks"]) == 2
    capsys.readouterr()


def test_probes_run_at_once(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = node / "canned.json"
    data.write_text(fixture("probe-keras3-tf.json"))
    envs = [{"name": f"e{i}", "backends": ["tensorflow"],
             "python": str(write_exe(node / f"e{i}" / "bin" / "python", f"sleep 1\ncat '{data}'\n"))} for i in range(4)]
    (node / "envs.json").write_text(json.dumps({"envs": envs}))
    args = ["--envs-config", str(node / "envs.json"), "--cuda-root", str(node / "local"), "--quick", "--json"]
    start = time.monotonic()
    assert dv.main([*args, "--jobs", "8"]) == 0  # 4 node runs + 4 user runs
    assert time.monotonic() - start < 4
    capsys.readouterr()
    start = time.monotonic()
    assert dv.main([*args, "--jobs", "2"]) == 0
    assert time.monotonic() - start >= 4
    capsys.readouterr()


def test_env_filter_and_missing_expected_env(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = healthy_node(node)
    assert dv.main([*args, "--json", "--quick", "--env", "keras3-tf"]) == 0
    ids = [c["id"] for c in json.loads(capsys.readouterr().out)["node"]["checks"]]
    assert "env:keras3-tf" in ids and "env:keras2-theano" not in ids
    assert dv.main([*args, "--json", "--quick", "--expect-json", '{"envs": {"keras4-jax": {"backend": "jax"}}}']) == 1
    checks = {c["id"]: c for c in json.loads(capsys.readouterr().out)["node"]["checks"]}
    assert checks["env:keras4-jax"]["status"] == "fail" and checks["env:keras4-jax"]["required"] is True


def test_exit_code_ignores_failures_of_checks_not_required(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pci_gpu(node)  # a GPU without a driver: shown as a failure, but nothing requires GPUs
    (node / "envs.json").write_text('{"envs": []}')
    assert dv.main(["--cuda-root", str(node / "local"), "--envs-config", str(node / "envs.json")]) == 0
    out = capsys.readouterr().out
    assert "(not required) NVIDIA GPU at 0000:3b:00.0 but no driver loaded" in out and "-- OK" in out
    assert dv.main(["--cuda-root", str(node / "local"), "--envs-config", str(node / "envs.json"),
                    "--expect-json", '{"gpu_count": 1}']) == 1


def test_exit_code_when_an_env_fails(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    py = write_exe(node / "garbage" / "python", "echo garbage\n")
    (node / "envs.json").write_text(json.dumps({"envs": [{"name": "bad", "python": str(py)}]}))
    assert dv.main(["--envs-config", str(node / "envs.json"), "--cuda-root", str(node / "local")]) == 1
    out = capsys.readouterr().out
    assert "FAILED (required: env:bad)" in out and "FAILED (required: user-env:bad)" in out


@pytest.mark.parametrize("args", [["--expect-json", "{"], ["--timeout", "0"], ["--env", "nope"], ["--jobs", "0"],
                                  ["--expect", "/nonexistent/expect.json"], ["--expect", "a", "--expect-json", "{}"],
                                  ["--user", "no-such-user-dlverify"], ["--bogus"], ["--probe", "/nonexistent.py"]])
def test_usage_errors_exit_2(node: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (node / "envs.json").write_text('{"envs": []}')
    assert dv.main(["--envs-config", str(node / "envs.json"), *args]) == 2
    assert "error" in capsys.readouterr().err


def test_invalid_envs_config_fails(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (node / "envs.json").write_text('{"envs": [{"python": "/usr/bin/python3"}]}')
    assert dv.main(["--json", "--envs-config", str(node / "envs.json"), "--cuda-root", str(node / "local")]) == 1
    checks = {c["id"]: c for c in json.loads(capsys.readouterr().out)["node"]["checks"]}
    assert checks["envs_config"]["status"] == "fail" and "KeyError" in checks["envs_config"]["reason"]


def test_script_runs_as_a_program(tmp_path: Path) -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    help_run = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=False)
    assert help_run.returncode == 0 and help_run.stdout.startswith("usage: dl-verify")
    bad = subprocess.run([sys.executable, str(SCRIPT), "--expect-json", "{"], capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("dl-verify: error: expectations are not valid JSON")
    assert "Traceback" not in bad.stderr


# --- --reuse: a passing result printed again while nothing it depends on changed -------------


def counting_node(root: Path) -> tuple[list[str], Path, Path]:
    """A healthy node whose one env counts its probe runs (the node's and the user's); returns
    (args, counter, site-packages)."""
    data = root / "canned" / "probe.json"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(fixture("probe-keras2-theano.json"))
    counter = root / "probe-runs"
    env = root / "envs" / "keras2-theano"
    site = env / "lib" / "python3.11" / "site-packages"
    (site / "keras").mkdir(parents=True)
    py = write_exe(env / "bin" / "python", f"echo \"$HOME\" >> '{counter}'\ncat '{data}'\n")
    write_keras_json(root / "home" / ".keras")
    (root / "envs.json").write_text(json.dumps({"envs": [{"name": "keras2-theano", "backends": ["theano"],
                                                          "python": str(py)}]}))
    args = ["--json", "--cuda-root", str(root / "local"), "--envs-config", str(root / "envs.json"),
            "--state-dir", str(root / "state"), "--reuse", "3600"]
    return args, counter, site


def probe_runs(counter: Path, root: Path | None = None) -> int:
    """Probe runs so far: all, or only the user's (those with the user's home) when root is given."""
    lines = counter.read_text().splitlines() if counter.exists() else []
    return len([line for line in lines if root is None or line == str(root / "home")])


def test_reuse_prints_the_stored_result_until_something_changes(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, counter, site = counting_node(node)
    me = dv.resolve_user(None).name
    assert dv.main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert probe_runs(counter) == 2 and probe_runs(counter, node) == 1  # the node's run and the user's
    assert "reused" not in first["node"] and "reused" not in first["users"][0]
    state = node / "state" / f"{me}.json"
    assert state.stat().st_mode & 0o777 == 0o600 and (node / "state").stat().st_mode & 0o777 == 0o700
    assert (node / "state" / ".node.json").is_file()

    assert dv.main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert probe_runs(counter) == 2, "nothing changed: no probe"
    assert again["users"][0]["reused"]["from"] == first["users"][0]["time"]
    assert again["node"]["reused"]["from"] == first["node"]["time"]
    assert again["users"][0]["checks"] == first["users"][0]["checks"]

    # a bytecode cache written by a root interpreter is no change
    (site / "__pycache__").mkdir()
    (site / "__pycache__" / "hook.cpython-311.pyc").write_bytes(b"\0")
    assert dv.main(args) == 0
    assert json.loads(capsys.readouterr().out)["users"][0]["reused"] and probe_runs(counter) == 2

    # the user's files: the user's checks run again, the node's result is reused
    for change, part in [(lambda: write_keras_json(node / "home" / ".keras", floatx="float64"), ".keras/keras.json"),
                         (lambda: (node / "home" / ".theanorc").write_text("[global]\ndevice = cuda0\n"), ".theanorc")]:
        runs, user_runs = probe_runs(counter), probe_runs(counter, node)
        change()
        assert dv.main(args) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["node"]["reused"] and "reused" not in out["users"][0]
        assert out["users"][0]["not_reused"] == f"changed since the last passing run: files:{node / 'home' / part}"
        assert probe_runs(counter) == runs + 1 and probe_runs(counter, node) == user_runs + 1
    # the env and the node: both run again
    (site / "numpy-1.23.5.dist-info").mkdir()
    assert dv.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert "envs:keras2-theano" in out["node"]["not_reused"] and "envs:keras2-theano" in out["users"][0]["not_reused"]
    (node / "local" / "cuda-12.8").mkdir()
    assert dv.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["node"]["not_reused"] == "changed since the last passing run: cuda, cudnn" and out["users"][0]["reused"]


def test_reuse_depends_on_options_expectations_and_age(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, counter, _ = counting_node(node)
    assert dv.main(args) == 0 and probe_runs(counter) == 2
    assert dv.main([*args, "--quick"]) == 0 and probe_runs(counter) == 4           # other options: both again
    # back to the full level (both again, the results kept are the quick ones), with a user expectation
    assert dv.main([*args, "--expect-json", '{"floatx": "float32"}']) == 0 and probe_runs(counter) == 6
    assert dv.main([*args, "--expect-json", '{"floatx": "float32"}']) == 0 and probe_runs(counter) == 6
    state = node / "state" / f"{dv.resolve_user(None).name}.json"
    stored = json.loads(state.read_text())
    stored["epoch"] -= 7200  # older than --reuse 3600
    state.write_text(json.dumps(stored))
    assert dv.main([*args, "--expect-json", '{"floatx": "float32"}']) == 0  # the user's result only was too old
    assert probe_runs(counter) == 7 and probe_runs(counter, node) == 4
    capsys.readouterr()


def test_reuse_never_keeps_a_failing_result(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, counter, _ = counting_node(node)
    assert dv.main(args) == 0
    failing = [*args, "--expect-json", '{"floatx": "float16"}']
    assert dv.main(failing) == 1 and dv.main(failing) == 1
    assert probe_runs(counter, node) == 3
    assert not (node / "state" / f"{dv.resolve_user(None).name}.json").exists()
    capsys.readouterr()


def test_reuse_in_the_table_and_without_a_writable_state_dir(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args, counter, _ = counting_node(node)
    table_args = [a for a in args if a != "--json"]
    assert dv.main(table_args) == 0 and dv.main(table_args) == 0
    out = capsys.readouterr().out
    assert out.count("(reused: the result of ") == 2 and probe_runs(counter) == 2
    blocked = node / "blocked"
    blocked.write_text("a file where the state directory should be")
    nowhere = [*table_args[:-4], "--state-dir", str(blocked / "state"), "--reuse", "60"]
    assert dv.main(nowhere) == 0
    captured = capsys.readouterr()
    assert "cannot keep the result for --reuse" in captured.err and "-- OK" in captured.out


def test_reuse_must_not_be_negative(node: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (node / "envs.json").write_text('{"envs": []}')
    assert dv.main(["--envs-config", str(node / "envs.json"), "--reuse", "-1"]) == 2
    assert "--reuse must be 0 or more seconds" in capsys.readouterr().err


def test_without_its_shared_modules_it_says_where_they_belong(tmp_path: Path) -> None:
    """An installed dl-verify whose PREFIX/lib/dl-verify lacks the shared modules: exit 3 and
    what to do, no traceback."""
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "dl-verify"
    script.write_bytes(SCRIPT.read_bytes())
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("dl-verify: error: No module named 'dlstack_as_user': its modules dlstack_as_user.py, "
                                  f"dlstack_cudnn.py belong in {tmp_path / 'lib' / 'dl-verify'} (plugins/module_utils/ in "
                                  "a checkout); install it again")
