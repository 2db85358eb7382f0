"""scripts/test's order of stages, with the demo stage beside the others.

scripts/test is copied into a scratch tree whose every tool is a fake that writes what it
was asked to a shared log: scripts/setup, scripts/demo-stage and scripts/demo, and on the
virtualenv's PATH yamllint, ansible-lint, ruff, shellcheck, ansible-playbook, pytest and
molecule. Each fake's behaviour comes from the environment (FAKE_*), so each test says what
goes wrong and when.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("alpha", "beta", "gamma")

# every fake appends "<name> <args>" to $FAKE_LOG
LOGGING = '#!/usr/bin/env bash\necho "$(basename "$0") $*" >>"$FAKE_LOG"\n'
FAKES = {
    "scripts/setup": LOGGING,
    "scripts/demo": LOGGING,
    # FAKE_DEMO: ok (writes its seconds and a step, exits 0), fail (at once, exits 1), hang (a
    # child that sleeps, its pid in $FAKE_LOG.child, waited for)
    "scripts/demo-stage": LOGGING + """mkdir -p "$(dirname "$1")"
case $FAKE_DEMO in
  ok) sleep "${FAKE_DEMO_SLEEP:-0}"; printf '42\\n  fleet up                 1s  ok\\n' >"$1"; echo "demo-stage done" >>"$FAKE_LOG" ;;
  fail) printf '3\\n  fleet up                 3s  FAILED\\n' >"$1"; exit 1 ;;
  hang) sleep 300 & echo $! >"$FAKE_LOG.child"; wait ;;
esac
""",
    # FAKE_FAIL: the scenario whose `molecule test` fails; each takes FAKE_SCENARIO_SLEEP s
    ".venv/bin/molecule": LOGGING + 'sleep "${FAKE_SCENARIO_SLEEP:-0}"\n[[ $3 != "${FAKE_FAIL:-}" ]]\n',
    **{f".venv/bin/{tool}": LOGGING for tool in ("yamllint", "ansible-lint", "ruff", "shellcheck", "ansible-playbook",
                                                  "pytest")},
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A scratch tree with scripts/test, fakes for everything it runs, and three scenarios."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "test", tmp_path / "scripts" / "test")
    for rel, text in FAKES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    for name in SCENARIOS:
        (tmp_path / "molecule" / name).mkdir(parents=True)
        (tmp_path / "molecule" / name / "molecule.yml").write_text("---\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def run_suite(tree: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run scripts/test in the tree; its result and the fakes' log lines."""
    log = tree / "fake.log"
    # the suite's own settings (DLSTACK_DEMO_BESIDE, DLSTACK_SLOW) from the run that runs this test stay out
    outer = {k: v for k, v in os.environ.items() if not k.startswith("DLSTACK_")}
    done = subprocess.run([str(tree / "scripts" / "test")], cwd=tree, capture_output=True, text=True, timeout=60,
                          check=False, env={**outer, "FAKE_LOG": str(log), "FAKE_DEMO": "ok", **env})
    return done, log.read_text().splitlines()


def ran(lines: list[str]) -> list[str]:
    """The scenarios molecule tested, in order."""
    return [line.split()[-1] for line in lines if line.startswith("molecule test")]


def test_demo_stage_runs_beside_and_reports_its_own_seconds(tree: Path) -> None:
    done, lines = run_suite(tree, FAKE_SCENARIO_SLEEP="1", FAKE_DEMO_SLEEP="1.5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran(lines) == list(SCENARIOS)
    # started after setup, it ended while the scenarios ran (they take 3 s, it 1.5 s)
    assert lines.index("setup ") < lines.index("demo-stage .cache/demo-stage.steps")
    assert lines.index("demo-stage done") < lines.index("molecule test -s gamma")
    summary = done.stdout.split("===== summary", 1)[1]
    assert "demo (beside the other stages)      42s  ok" in summary
    assert "  fleet up                 1s  ok" in summary


def test_failed_demo_stage_stops_the_suite_before_the_next_scenario(tree: Path) -> None:
    done, lines = run_suite(tree, FAKE_DEMO="fail", FAKE_SCENARIO_SLEEP="1")
    assert done.returncode == 1
    assert "gamma" not in ran(lines)
    assert "demo (beside the other stages)       3s  FAILED" in done.stdout.split("===== summary", 1)[1]


def test_failed_scenario_stops_the_demo_tree_and_removes_its_fleet(tree: Path) -> None:
    done, lines = run_suite(tree, FAKE_DEMO="hang", FAKE_FAIL="beta")
    assert done.returncode == 1
    assert ran(lines) == ["alpha", "beta"]
    assert "test: stopping the demo stage" in done.stdout
    assert "demo down" in lines
    child = int((tree / "fake.log.child").read_text())
    for _ in range(50):  # the signal is delivered, the process reaped by init
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the demo stage's child {child} still runs")


def test_serial_order_on_request(tree: Path) -> None:
    done, lines = run_suite(tree, DLSTACK_DEMO_BESIDE="0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines.index("molecule test -s gamma") < lines.index("demo-stage .cache/demo-stage.steps")
    assert "demo                                42s  ok" in done.stdout.split("===== summary", 1)[1]
