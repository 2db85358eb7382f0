"""Unit tests for roles/dl_verify/filter_plugins/dl_verify.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from plugin_loader import load_by_path

dv = load_by_path("dl_verify_filters", Path(__file__).resolve().parents[2] / "roles" / "dl_verify" / "filter_plugins" / "dl_verify.py")

ENVS = [{"name": "keras2-theano", "backends": ["theano"]}, {"name": "keras3-tf", "backends": ["tensorflow", "jax"]}]
ALICE = {"name": "alice", "keras": {"backend": "theano", "floatx": "float32", "epsilon": 1e-7,
                                    "image_data_format": "channels_last"},
         "theano": {"device": "cuda1", "floatX": "float32"}}


def test_expectations_for_users() -> None:
    bob = {"name": "bob", "keras": {"backend": "jax"}}
    assert dv.expectations([ALICE, bob], ENVS, {"gpu_count": 2}, True) == {
        "gpu_count": 2, "theano_seeded": True,
        "users": {
            "alice": {"backend": "theano", "floatx": "float32", "image_data_format": "channels_last", "device": "cuda1",
                      "envs": {"keras2-theano": {"backend": "theano"}, "keras3-tf": {"backend": "tensorflow"}}},
            # the backend each env serves: jax where it is, the env's first elsewhere
            "bob": {"backend": "jax", "envs": {"keras2-theano": {"backend": "theano"}, "keras3-tf": {"backend": "jax"}}},
        },
    }


def test_node_level_expectations_have_no_user_parts() -> None:
    assert dv.expectations([], ENVS, {"driver_branch": "580"}) == {"driver_branch": "580"}
    assert dv.expectations(None, ENVS, None) == {}


@pytest.mark.parametrize("env", [{"name": "x"}, {"backends": ["theano"]}, {"name": "x", "backends": []}])
def test_expectations_reject_bad_envs(env: dict[str, Any]) -> None:
    with pytest.raises(AnsibleFilterError):
        dv.expectations([ALICE], [env])


def part(ok: bool, checks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"ok": ok, "checks": checks, "time": "2026-11-21T10:00:00+00:00", **extra}


def run(stdout: Any, rc: int, stderr: str = "") -> dict[str, Any]:
    return {"rc": rc, "stdout": stdout if isinstance(stdout, str) else json.dumps(stdout), "stderr": stderr}


NODE = [{"id": "driver", "status": "skip", "reason": "no GPU", "required": False},
        {"id": "env:keras3-tf", "status": "pass", "reason": "ok", "required": True,
         "data": {"probe": {"keras": "3.15.1", "backend": "tensorflow"}}}]
USER = [{"id": "keras_config", "status": "fail", "reason": "expected theano, found tensorflow", "required": False},
        {"id": "user-env:keras2-theano", "status": "fail", "reason": "import keras failed: X", "required": True,
         "data": {"probe": {"keras": "2.3.1", "backend": "theano",
                            "theano_cache": {"loaded": 30, "compiled_versioned": 0}}}}]


def test_result_parses_the_report_and_keeps_errors() -> None:
    report = {"host": "h", "node": part(True, NODE), "users": [{"user": "alice", **part(True, [])}], "ok": True}
    got = dv.result(run(report, 0), ["alice"])
    assert got == {"rc": 0, "error": "", "node": report["node"], "host": "h",
                   "users": [{"user": "alice", "report": report["users"][0]}]}
    bad = dv.result(run("Traceback ...", 1, stderr="a\nb\nc\nd: boom"), ["alice", "bob"])
    assert bad == {"rc": 1, "error": "b c d: boom", "node": None,
                   "users": [{"user": "alice", "report": None}, {"user": "bob", "report": None}]}
    assert dv.result(run("[1, 2]", 0), [])["users"] == []


def test_report_rows_show_every_user_with_the_nodes_checks() -> None:
    hosts = {"n2": {"rc": 0, "error": "", "node": part(True, NODE), "users": [{"user": "bob", "report": part(True, [])}]},
             "n1": {"rc": 1, "error": "", "node": part(True, NODE),
                    "users": [{"user": "alice", "report": part(False, USER)}, {"user": "carol", "report": None}]},
             "n3": {}}
    rows = dv.report_rows(hosts)
    assert [(r["host"], r["user"], r["ok"]) for r in rows] == [("n1", "alice", False), ("n1", "carol", False),
                                                               ("n2", "bob", True)]
    assert rows[0]["checks"]["env:keras3-tf"]["summary"] == "keras 3.15.1 / tensorflow"
    assert rows[0]["checks"]["user-env:keras2-theano"]["summary"] == ("keras 2.3.1 / theano, Theano cache: "
                                                                      "30 loaded, 0 compiled")
    assert rows[0]["checks"]["driver"] == {"status": "skip", "reason": "no GPU", "summary": "no GPU", "required": False}
    assert rows[1]["error"] == "no report (exit 1)" and set(rows[1]["checks"]) == {"driver", "env:keras3-tf"}
    assert rows[2]["checks"]["driver"] == rows[0]["checks"]["driver"]
    assert dv.report_columns(rows) == ["driver", "env:keras3-tf", "keras_config", "user-env:keras2-theano"]


def test_a_failing_node_fails_every_users_row_and_rc_nonzero_is_never_ok() -> None:
    node = part(False, [{**NODE[1], "status": "fail"}])
    (row,) = dv.report_rows({"n": {"rc": 1, "node": node, "users": [{"user": "a", "report": part(True, [])}]}})
    assert row["ok"] is False
    (row,) = dv.report_rows({"n": {"rc": 1, "node": part(True, []), "users": [{"user": "a", "report": part(True, [])}]}})
    assert row["ok"] is False
    (row,) = dv.report_rows({"n": {"rc": 0, "node": None, "users": [{"user": "a", "report": part(True, [])}]}})
    assert row["ok"] is True  # no node checks (add_user.yml): the user's alone
    (row,) = dv.report_rows({"n": {"rc": 0, "node": part(True, NODE), "users": []}})
    assert (row["user"], row["ok"], sorted(row["checks"])) == ("", True, ["driver", "env:keras3-tf"])  # no users


def test_failures_list_the_nodes_once_then_each_users() -> None:
    outcome = {"rc": 1, "error": "", "node": part(False, [{**NODE[1], "status": "fail", "reason": "boom"}]),
               "users": [{"user": "alice", "report": part(False, USER)}, {"user": "carol", "report": None},
                         {"user": "bob", "report": part(True, NODE[:1])}]}
    assert dv.failures(outcome) == ["node: env:keras3-tf: boom",
                                    "alice: user-env:keras2-theano: import keras failed: X",
                                    "carol: dl-verify gave no report for this user"]
    assert dv.failures({"rc": 2, "error": "usage", "node": None, "users": []}) == [
        "dl-verify gave no report (exit 2): usage"]
    assert dv.failures({"rc": 1, "error": "", "node": part(True, []), "users": [{"user": "a", "report": part(True, [])}]}) == [
        "dl-verify exited 1"]
    assert dv.failures({}) == []


def test_command() -> None:
    options = {"envs_config": "/etc/dlstack/envs.json", "timeout": "900", "script_sha256": "ab", "expect": {"gpu_count": 0},
               "level": "full", "node_checks": True, "jobs": "0", "reuse": "86400", "state_dir": "/var/lib/x"}
    assert dv.command("/usr/local/bin/dl-verify", [ALICE, {"name": "bob"}], options) == [
        "/usr/local/bin/dl-verify", "--json", "--envs-config", "/etc/dlstack/envs.json", "--timeout", "900",
        "--script-sha256", "ab", "--expect-json", '{"gpu_count": 0}', "--user=alice", "--user=bob",
        "--reuse", "86400", "--state-dir", "/var/lib/x"]
    tail = dv.command("/d", [ALICE], {**options, "level": "config", "node_checks": False, "jobs": 4, "reuse": 0})[10:]
    assert tail == ["--user=alice", "--config-only", "--no-node-checks", "--jobs", "4"]
    assert dv.command("/d", [], options)[10] == "--node-only"  # no managed user: the node alone
    with pytest.raises(AnsibleFilterError, match="level 'deep'"):
        dv.command("/d", [], {**options, "level": "deep"})


def test_filters_are_registered() -> None:
    assert set(dv.FilterModule().filters()) == {
        "dl_verify_command", "dl_verify_expectations", "dl_verify_result", "dl_verify_report_rows",
        "dl_verify_report_columns", "dl_verify_failures", "dl_verify_unverified"}


def test_report_rows_say_when_and_whether_reused() -> None:
    fresh = part(True, NODE[:1])
    reused = {**fresh, "reused": {"from": fresh["time"], "age_s": 60}}
    rows = dv.report_rows({"a": {"rc": 0, "node": fresh, "users": [{"user": "u", "report": reused}]},
                           "b": {"rc": 0, "node": reused, "users": [{"user": "u", "report": reused}]}})
    assert [(r["verified"], r["reused"]) for r in rows] == [("2026-11-21T10:00:00+00:00", False),
                                                            ("2026-11-21T10:00:00+00:00", True)]


def test_nodes_that_left_the_run_are_listed_not_passed() -> None:
    probes = [{"item": "gpu02", "unreachable": True, "msg": "Failed to connect to the host via ssh: Connection refused"},
              {"item": "gpu03", "ping": "pong", "changed": False}]
    left = dv.unverified(probes)
    assert left == {
        "gpu02": {"rc": None, "unverified": "unreachable",
                  "error": "not verified: gpu02 is unreachable (Failed to connect to the host via ssh: Connection refused)"},
        "gpu03": {"rc": None, "unverified": "failed",
                  "error": "not verified: gpu03 failed earlier in this run (its error is in the run's output)"}}
    assert dv.unverified([]) == {}
    assert dv.unverified([{"item": "n", "unreachable": True, "msg": "ssh: connect to host 127.0.0.1 port 22\n22: refused"}])[
        "n"]["error"] == "not verified: n is unreachable (ssh: connect to host 127.0.0.1 port 22 22: refused)"
    rows = dv.report_rows({"gpu01": {"rc": 0, "node": {"ok": True, "checks": []},
                                     "users": [{"user": "alice", "report": {"ok": True, "checks": []}}]}, **left})
    assert [(r["host"], r["user"], r["ok"], r.get("unverified")) for r in rows] == [
        ("gpu01", "alice", True, None), ("gpu02", "", False, "unreachable"), ("gpu03", "", False, "failed")]
    assert rows[1]["error"].startswith("not verified: gpu02 is unreachable") and rows[1]["checks"] == {}
    # a node without a result of this run (a report-only run) still gets no row
    assert dv.report_rows({"gpu01": {}}) == []
