"""Unit tests for roles/dl_verify/filter_plugins/dl_verify.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError

_path = Path(__file__).resolve().parents[2] / "roles" / "dl_verify" / "filter_plugins" / "dl_verify.py"
_spec = importlib.util.spec_from_file_location("dl_verify_filters", _path)
assert _spec and _spec.loader
dv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dv)

ENVS = [{"name": "keras2-theano", "backends": ["theano"]}, {"name": "keras3-tf", "backends": ["tensorflow", "jax"]}]
ALICE = {"name": "alice", "keras": {"backend": "theano", "floatx": "float32", "epsilon": 1e-7,
                                    "image_data_format": "channels_last"},
         "theano": {"device": "cuda1", "floatX": "float32"}}


def test_expectations_for_a_user() -> None:
    assert dv.expectations(ALICE, ENVS, {"gpu_count": 2}) == {
        "gpu_count": 2, "backend": "theano", "floatx": "float32", "image_data_format": "channels_last",
        "device": "cuda1",
        "envs": {"keras2-theano": {"backend": "theano"}, "keras3-tf": {"backend": "tensorflow"}},
    }


def test_expectations_follow_the_served_backend() -> None:
    bob = {"name": "bob", "keras": {"backend": "jax"}}
    assert dv.expectations(bob, ENVS)["envs"] == {"keras2-theano": {"backend": "theano"}, "keras3-tf": {"backend": "jax"}}


def test_node_level_expectations_have_no_user_parts() -> None:
    assert dv.expectations({}, ENVS, {"driver_branch": "580"}) == {"driver_branch": "580"}
    assert dv.expectations(None, ENVS, None) == {}


@pytest.mark.parametrize("env", [{"name": "x"}, {"backends": ["theano"]}, {"name": "x", "backends": []}])
def test_expectations_reject_bad_envs(env: dict[str, Any]) -> None:
    with pytest.raises(AnsibleFilterError):
        dv.expectations(ALICE, [env])


def report(ok: bool, checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"host": "h", "user": "alice", "ok": ok, "checks": checks}


def run(stdout: str, rc: int, user: str = "alice", stderr: str = "") -> dict[str, Any]:
    return {"item": {"name": user}, "rc": rc, "stdout": stdout, "stderr": stderr}


def test_result_parses_json_and_keeps_errors() -> None:
    good = report(True, [])
    assert dv.result(run(json.dumps(good), 0)) == {"user": "alice", "rc": 0, "report": good, "error": ""}
    bad = dv.result(run("Traceback ...", 1, stderr="a\nb\nc\nd: boom"))
    assert bad == {"user": "alice", "rc": 1, "report": None, "error": "b c d: boom"}
    assert dv.result({"item": {}, "rc": 0, "stdout": json.dumps({"user": "root", "ok": True})})["user"] == "root"
    assert dv.result(run("[1, 2]", 0))["report"] is None


CHECKS = [
    {"id": "driver", "status": "skip", "reason": "no GPU", "required": False},
    {"id": "env:keras3-tf", "status": "pass", "reason": "ok", "required": True,
     "data": {"probe": {"keras": "3.15.1", "backend": "tensorflow"}}},
    {"id": "env:keras2-theano", "status": "fail", "reason": "import keras failed: X", "required": True},
    {"id": "keras_config", "status": "fail", "reason": "expected theano, found tensorflow", "required": False},
]


def test_report_rows_and_columns() -> None:
    hosts = {"n2": [{"user": "bob", "rc": 0, "report": report(True, CHECKS[:2])}],
             "n1": [{"user": "alice", "rc": 1, "report": report(False, CHECKS)},
                    {"user": "carol", "rc": 1, "report": None, "error": "runuser: failed"}]}
    rows = dv.report_rows(hosts)
    assert [(r["host"], r["user"], r["ok"]) for r in rows] == [("n1", "alice", False), ("n1", "carol", False), ("n2", "bob", True)]
    assert rows[0]["checks"]["env:keras3-tf"]["summary"] == "keras 3.15.1 / tensorflow"
    assert rows[0]["checks"]["driver"] == {"status": "skip", "reason": "no GPU", "summary": "no GPU", "required": False}
    assert rows[1]["error"] == "runuser: failed" and rows[1]["checks"] == {}
    assert dv.report_columns(rows) == ["driver", "keras_config", "env:keras2-theano", "env:keras3-tf"]


def test_rc_nonzero_is_never_ok() -> None:
    (row,) = dv.report_rows({"n": [{"user": "a", "rc": 1, "report": report(True, [])}]})
    assert row["ok"] is False


def test_failures_list_required_failed_checks_only() -> None:
    results = [{"user": "alice", "rc": 1, "report": report(False, CHECKS)},
               {"user": "carol", "rc": 1, "report": None, "error": "runuser: failed"},
               {"user": "bob", "rc": 0, "report": report(True, CHECKS[:2])},
               {"user": "dave", "rc": 1, "report": report(False, CHECKS[:2])}]
    assert dv.failures(results) == [
        "alice: env:keras2-theano: import keras failed: X",
        "carol: dl-verify gave no report (exit 1): runuser: failed",
        "dave: dl-verify exited 1",
    ]


def test_filters_are_registered() -> None:
    assert set(dv.FilterModule().filters()) == {
        "dl_verify_expectations", "dl_verify_result", "dl_verify_report_rows", "dl_verify_report_columns", "dl_verify_failures"}


def test_report_rows_say_when_and_whether_reused() -> None:
    fresh = {**report(True, CHECKS[:2]), "time": "2026-11-21T10:00:00+00:00"}
    reused = {**fresh, "reused": {"from": fresh["time"], "age_s": 60}}
    rows = dv.report_rows({"a": [{"user": "u", "rc": 0, "report": fresh}], "b": [{"user": "u", "rc": 0, "report": reused}]})
    assert [(r["verified"], r["reused"]) for r in rows] == [("2026-11-21T10:00:00+00:00", False),
                                                            ("2026-11-21T10:00:00+00:00", True)]
    (missing,) = dv.report_rows({"c": [{"user": "u", "rc": 1, "report": None, "error": "boom"}]})
    assert missing["verified"] == "" and missing["reused"] is False
