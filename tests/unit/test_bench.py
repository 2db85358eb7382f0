"""Unit tests for bench/benchlib.py, what the benchmarks share, and that they share it (no
script keeps its own runner or report heading)."""

from __future__ import annotations

import ast
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from plugin_loader import load_by_path

BENCH = Path(__file__).resolve().parents[2] / "bench"
lib = load_by_path("benchlib", BENCH / "benchlib.py")
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "benchlib.py")


def test_heading_names_the_machine_and_the_time() -> None:
    assert re.fullmatch(r"Fleet benchmark on \S+ \(\d+ cores, \d+ GiB\), \d{4}-\d\d-\d\d \d\d:\d\d UTC",
                        lib.heading("Fleet benchmark"))


def test_publish_prints_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs" / "report.md"
    lib.publish("| a |\n", out)
    assert capsys.readouterr().out == "| a |\n\n" and out.read_text() == "| a |\n"
    lib.publish("| b |\n", None)
    assert out.read_text() == "| a |\n"


def test_publish_into_a_section_keeps_what_stands_before_it(tmp_path: Path) -> None:
    out = tmp_path / "users-benchmark.md"
    out.write_text("# Users\nhow it is run\n\n## Results\n\nold table\n")
    lib.publish("new table\n", out, section="## Results")
    assert out.read_text() == "# Users\nhow it is run\n\n## Results\n\nnew table\n"
    other = tmp_path / "new.md"
    lib.publish("new table\n", other, section="## Results")
    assert other.read_text() == "new table\n"


def test_sh_stops_the_benchmark_with_the_output(tmp_path: Path) -> None:
    assert lib.sh(["sh", "-c", "echo hi"]).stdout == "hi\n"
    with pytest.raises(SystemExit, match=r"bench: sh -c echo out; exit 3 failed \(3\):\nout"):
        lib.sh(["sh", "-c", "echo out; exit 3"])


def test_run_logged_times_and_logs(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    seconds, out = lib.run_logged(["sh", "-c", "echo run; echo err >&2"], {"PATH": "/usr/bin:/bin"}, log)
    assert seconds >= 0 and out == log.read_text() == "run\nerr\n"
    with pytest.raises(SystemExit, match=r"see .*y\.log"):
        lib.run_logged(["false"], {"PATH": "/usr/bin:/bin"}, tmp_path / "y.log")


def test_du_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"12345")
    (tmp_path / "g").write_bytes(b"12")
    assert lib.du_bytes(tmp_path) == 7 and lib.du_bytes(tmp_path / "none") == 0


def test_project_env_names_every_plugin_folder() -> None:
    env = lib.project_env(EXTRA="1")
    for key in ("ANSIBLE_ROLES_PATH", "ANSIBLE_FILTER_PLUGINS", "ANSIBLE_LIBRARY", "ANSIBLE_MODULE_UTILS"):
        assert Path(env[key]).is_dir(), key
    assert env["EXTRA"] == "1"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_benchmark_uses_the_shared_helpers(script: Path) -> None:
    tree = ast.parse(script.read_text())
    own = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    shared = {node.name for node in ast.parse((BENCH / "benchlib.py").read_text()).body if isinstance(node, ast.FunctionDef)}
    assert own & shared == set()
    assert not own & {"run", "du"}  # the names they had
    text = script.read_text()
    assert "platform.node()" not in text and "strftime" not in text and '"podman", "rm"' not in text
    assert any(isinstance(node, ast.ImportFrom) and node.module == "benchlib" for node in tree.body)


def test_whole_numbers() -> None:
    sizes = lib.whole_numbers(1, 50)
    assert sizes("1,2,4,8") == [1, 2, 4, 8] and sizes("3, 1") == [3, 1]
    counts = lib.whole_numbers(1, 100, increasing=True)
    assert counts("1,5,20") == [1, 5, 20]
    for bad, parse in [("", sizes), ("0,2", sizes), ("51", sizes), ("x", sizes), ("5,1", counts), ("1,1", counts)]:
        with pytest.raises(lib.argparse.ArgumentTypeError, match="whole numbers from"):
            parse(bad)


def test_recap_is_scripts_check_recap() -> None:
    assert lib.recap("PLAY RECAP ***\ngpu02 : ok=10 changed=3 unreachable=1 failed=0 skipped=2\n") == {"gpu02": (3, 1, 0)}


def test_interrupt_kills_the_whole_tree_workers_in_own_sessions_too() -> None:
    interrupt = load_by_path("interrupt", BENCH / "interrupt.py")
    # a parent in its own group with a child that calls setsid(), as ansible-playbook's workers do
    script = ("import os, subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(60)'])\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    # wait until the child exists and has called setsid() (on a loaded machine the child is
    # seen in the tree before it gets there)
    for _ in range(200):
        tree = interrupt.process_tree(parent.pid)
        if len(tree) == 2 and os.getsid(tree[1]) != os.getpgid(parent.pid):
            break
        time.sleep(0.05)
    assert tree[0] == parent.pid and len(tree) == 2
    child = tree[1]
    assert os.getsid(child) != os.getpgid(parent.pid)   # the group kill alone would miss it
    interrupt.kill_tree(parent.pid)
    parent.wait(timeout=5)
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as stat:  # killed but not yet reaped by init: a zombie
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the worker in its own session survived")


def test_last_task_and_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "run.log"
    log.write_text("PLAY [x] ***\nTASK [common : Install the base packages] ***\nok: [gpu01]\n"
                   "TASK [python_envs : List the wheelhouse] ***\n")
    assert lib.last_task(log) == "python_envs : List the wheelhouse"
    log.write_text("PLAY [x] ***\n")
    assert lib.last_task(log) == "(before the first task)"
    monkeypatch.setenv("DLSTACK_CACHE_DIR", str(tmp_path))
    assert lib.cache_dir() == tmp_path
    monkeypatch.setenv("DLSTACK_CACHE_DIR", "")  # empty means unset, as in scripts/demo's ${VAR:-default}
    assert lib.cache_dir() == Path("/var/cache/dlstack")
    assert lib.TOOLS_PATH.startswith(f"{lib.ROOT / '.venv' / 'bin'}:")


def _logging_run(log: Path, lines: list[str], then_sleep: float) -> subprocess.Popen[str]:
    """A stand-in for site.yml: prints ``lines`` into ``log`` a little apart, then sleeps."""
    script = ("import sys, time\n"
              f"for line in {lines!r}:\n"
              "    print(line, flush=True); time.sleep(0.1)\n"
              f"time.sleep({then_sleep})\n")
    handle = log.open("w")
    return subprocess.Popen([sys.executable, "-c", script], stdout=handle, text=True, start_new_session=True)


def test_interrupt_kills_within_the_spread_after_the_named_task_starts(tmp_path: Path) -> None:
    interrupt = load_by_path("interrupt", BENCH / "interrupt.py")
    log = tmp_path / "run.log"
    proc = _logging_run(log, ["TASK [python_envs : Build each env] ***", "ok: [gpu01]",
                              "TASK [dl_user_config : Write ~/.keras/keras.json, as each user] ***"], 60)
    seconds, task = interrupt.kill_point(proc, log, random.Random(3), 100.0, "Write ~/.keras", 0.3)
    assert task == "dl_user_config : Write ~/.keras/keras.json, as each user"
    assert proc.returncode == -signal.SIGKILL and 0.1 <= seconds < 10


def test_interrupt_reports_a_run_that_never_reached_the_task_or_ended_first(tmp_path: Path) -> None:
    interrupt = load_by_path("interrupt", BENCH / "interrupt.py")
    log = tmp_path / "run.log"
    proc = _logging_run(log, ["TASK [common : Install the base packages] ***"], 0)
    seconds, task = interrupt.kill_point(proc, log, random.Random(3), 100.0, "Write ~/.keras", 2.0)
    assert task == f"{interrupt.NOT_KILLED}: no task matching 'Write ~/.keras' started)" and proc.returncode == 0
    proc = _logging_run(log, ["TASK [common : Install the base packages] ***"], 0)
    seconds, task = interrupt.kill_point(proc, log, random.Random(3), 100.0, None, 2.0)
    assert task == f"{interrupt.NOT_KILLED}: the run ended first)" and seconds < 50


def test_interrupt_wait_for_task_matches_task_lines_only(tmp_path: Path) -> None:
    interrupt = load_by_path("interrupt", BENCH / "interrupt.py")
    log = tmp_path / "run.log"
    proc = _logging_run(log, ["ok: [gpu01] => Write ~/.keras in a message", "TASK [x : Other] ***"], 0.5)
    assert interrupt.wait_for_task(log, "Write ~/.keras", proc, timeout=10) is None
    assert proc.wait() == 0 and "Write ~/.keras" in log.read_text()
