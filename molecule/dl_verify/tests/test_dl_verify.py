"""Verify dl_verify: the script on the nodes, and the cluster report of the converge run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPORTS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "reports"


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((REPORTS / "dl-verify-results.json").read_text())


def test_script_installed(host) -> None:
    f = host.file("/usr/local/bin/dl-verify")
    assert f.user == "root" and f.mode == 0o755


def test_every_user_on_every_node_passed(results: dict) -> None:
    assert sorted(results) == ["dl_verify-debian12", "dl_verify-debian13"]
    for node, runs in results.items():
        assert sorted(r["user"] for r in runs) == ["alice", "bob"], node
        for run in runs:
            assert run["rc"] == 0 and run["report"]["ok"], (node, run["user"], run["report"])


def test_env_checks_pass_and_trained(results: dict) -> None:
    for node, runs in results.items():
        for run in runs:
            envs = {c["id"]: c for c in run["report"]["checks"] if c["id"].startswith("env:")}
            assert envs, (node, run["user"])
            assert "env:keras3-tensorflow" in envs
            assert ("env:keras2-theano" in envs) == (node == "dl_verify-debian12")
            for cid, check in envs.items():
                assert check["status"] == "pass", (node, run["user"], cid, check["reason"])
                probe = check["data"]["probe"]
                assert set(probe["training"]) >= {"dense", "conv"}, probe["training"]
                for model in ("dense", "conv"):
                    assert probe["training"][model]["loss"] >= 0


def test_each_user_gets_their_backend(results: dict) -> None:
    for node, runs in results.items():
        for run in runs:
            envs = {c["id"]: c["data"]["probe"] for c in run["report"]["checks"] if c["id"].startswith("env:")}
            # keras3-tensorflow serves tensorflow only: alice's theano falls back to it there
            assert envs["env:keras3-tensorflow"]["backend"] == "tensorflow"
            if "env:keras2-theano" in envs:
                assert envs["env:keras2-theano"]["backend"] == "theano"
            want_floatx = "float64" if run["user"] == "bob" else "float32"
            assert all(p["floatx"] == want_floatx for p in envs.values()), (node, run["user"])


def test_gpu_checks_skip_with_reasons(results: dict) -> None:
    # no GPU, driver, toolkit or cuDNN in the containers: those checks skip, saying why; the
    # inventory expects 0 GPUs (dl_verify_node_expect), so the GPU count check passes
    for runs in results.values():
        for run in runs:
            checks = {c["id"]: c for c in run["report"]["checks"]}
            for cid in ("driver", "cuda", "cudnn"):
                assert checks[cid]["status"] == "skip" and checks[cid]["reason"], checks[cid]
            assert checks["gpus"]["status"] == "pass" and "no GPUs, as expected" in checks["gpus"]["reason"]


def test_idempotence_run_reused_the_passing_results(results: dict) -> None:
    # the report is the idempotence run's: nothing changed since converge, so each user's
    # passing result was reused (dl-verify --reuse), with the converge run's time
    for node, runs in results.items():
        for run in runs:
            reused = run["report"].get("reused")
            assert reused and reused["from"] == run["report"]["time"], (node, run["user"])


def test_reports_written() -> None:
    md = (REPORTS / "dl-verify-report.md").read_text()
    html = (REPORTS / "dl-verify-report.html").read_text()
    assert "4 of 4 user/node runs passed" in md
    assert md.count("| PASS |") == 4 and md.count("(reused)") == 4
    assert html.startswith("<!DOCTYPE html>") and 'class="pass"' in html and "<script" not in html
    assert "dl_verify-debian12" in html and "env:keras3-tensorflow" in html
