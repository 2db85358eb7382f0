#!/usr/bin/env python3
"""Kill site.yml at seeded random points on the demo fleet and prove that the next run repairs it.

    bench/interrupt.py [--kills 10] [--seed 1] [--at TASK [--spread 2]] [--out docs/interrupted-runs.md]

Needs the demo fleet (``scripts/demo`` converged it once; ``--fresh`` runs ``scripts/demo``
first), or a second fleet named by ``DLSTACK_DEMO_PREFIX`` and ``DLSTACK_DEMO_INVENTORY`` (as
for ``scripts/demo``). Each of the ``--kills`` cycles:

1. makes ``site.yml`` do real work: every cycle flips two inventory settings through extra
   vars (``python_envs_jupyter_kernels``, which changes both envs' requirements: a priming run
   builds the envs of the other setting once, python_envs keeps the previous build, so each
   flip switches every env's link to the other complete build; and
   ``dl_user_config_all_settings`` epsilon, which rewrites every user's ``keras.json``);
2. starts a watcher in every node that, every 0.2 s until told to stop, reads every user's
   ``~/.keras/keras.json`` (must parse as JSON) and ``~/.theanorc`` (must parse as INI) and
   checks that each env link under /opt/dlstack/envs points at a complete build (its stamp
   names its own hash): what a user or a job starting at that moment would load;
3. runs ``site.yml`` in a process group of its own and SIGKILLs the group and every process
   of its tree (Ansible's workers run in sessions of their own) after a delay
   drawn from ``random.Random(seed + cycle)`` (uniform over the calibrated length of such a
   run), noting the task that was running; with ``--at TASK``, instead a delay drawn from the
   same generator (uniform over 0 to ``--spread`` seconds) after the run's log first starts a
   task whose name holds TASK (given more than once, the cycles take the tasks in turn): a
   short task that random points rarely hit (the users' file writes, the env link switch) is
   then killed in its work on purpose;
4. checks the nodes right after the kill (the same checks as the watcher), then runs
   ``site.yml`` again with the same vars: it must succeed, and ``scripts/demo check`` must
   find every user/node verification passed.

Prints and writes a Markdown table (seed, second and task at the kill, torn files seen during
or after, re-run result, verification). Not part of CI: about 5 minutes a cycle here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import DEMO_INVENTORY as INVENTORY
from benchlib import DEMO_PREFIX as PREFIX
from benchlib import ROOT, TOOLS_PATH, heading, last_task, publish, started_tasks

# Runs inside a node (python3 of the distribution): one pass of the checks, or a loop that
# appends each problem to a log until the stop file appears.
NODE_CHECK = r"""
import configparser, json, os, pwd, sys, time
ENVS = "/opt/dlstack/envs"
def problems():
    out = []
    for user in pwd.getpwall():
        if user.pw_uid < 1000 or not os.path.isdir(user.pw_dir):
            continue
        path = os.path.join(user.pw_dir, ".keras", "keras.json")
        try:
            with open(path) as f:
                json.load(f)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:
            out.append(f"{path}: {e}")
        path = os.path.join(user.pw_dir, ".theanorc")
        if os.path.exists(path):
            try:
                configparser.ConfigParser().read(path)
            except (OSError, configparser.Error) as e:
                out.append(f"{path}: {e}")
    if os.path.isdir(ENVS):
        for name in os.listdir(ENVS):
            link = os.path.join(ENVS, name)
            if name.startswith(".") or not os.path.islink(link):
                continue
            target = os.path.realpath(link)
            try:
                with open(os.path.join(target, ".dlstack-env.json")) as f:
                    stamp = json.load(f)
                ok = (str(stamp.get("hash", "")).startswith(target.rsplit("-", 1)[-1])
                      and os.path.exists(os.path.join(target, "bin", "python")))
            except (OSError, ValueError, AttributeError):
                ok = False
            if not ok:
                out.append(f"{link} -> {target}: not a complete build")
    return out
if sys.argv[1:] == ["once"]:
    print(json.dumps(problems()))
else:
    log, stop = sys.argv[1], sys.argv[2]
    seen = set()
    while not os.path.exists(stop):
        for p in problems():
            if p not in seen:
                seen.add(p)
                with open(log, "a") as f:
                    f.write(p + "\n")
        time.sleep(0.2)
"""


# the task column of a cycle whose run ended (or never reached --at's task) before the kill
NOT_KILLED = "(not killed"


def commit() -> str:
    """The checkout's commit, with '+changes' when its tracked files differ from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT, check=False).returncode
    return head + ("+changes" if dirty else "")


@dataclass
class Cycle:
    seed: int
    kill_at: float
    task: str
    during: list[str]
    after: list[str]
    rerun_rc: int
    rerun_seconds: float
    verified: str


def hosts() -> list[str]:
    out = subprocess.run(["ansible-inventory", "-i", INVENTORY, "--list"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return sorted(json.loads(out)["_meta"]["hostvars"])


def node(host: str, *args: str, detach: bool = False) -> str:
    cmd = ["podman", "exec", *(["-d"] if detach else []), PREFIX + host, *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def cycle_vars(index: int) -> list[str]:
    """Extra vars that make this cycle's site.yml rebuild the envs and rewrite keras.json."""
    flip = index % 2 == 1
    settings = {"keras": {"image_data_format": "channels_last", "epsilon": 1e-06 if flip else 1e-07}}
    return ["-e", json.dumps({"python_envs_jupyter_kernels": flip, "dl_user_config_all_settings": settings})]


def site(extra: list[str], log: Path, ship: bool = False) -> subprocess.Popen[str]:
    """site.yml in a process group of its own; with ``ship``, the demo's wheelhouse first (not
    killed; the priming run ships the wheels of both settings' envs)."""
    with log.open("w") as handle:
        if ship:
            subprocess.run(["ansible-playbook", "-i", INVENTORY, "playbooks/wheelhouse.yml", *extra], cwd=ROOT,
                           stdout=handle, stderr=subprocess.STDOUT, text=True, check=True)
    handle = log.open("a")
    return subprocess.Popen(["ansible-playbook", "-i", INVENTORY, "site.yml", *extra], cwd=ROOT, stdout=handle,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc), parents first. ansible-playbook's workers
    call setsid(), so killing the playbook's process group alone leaves them running their
    task: the kill must take the whole tree."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo += sorted(children.get(current, []))
    return tree


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid``'s process group and every process of its tree (workers in sessions of their own)."""
    tree = process_tree(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def wait_for_task(log: Path, task: str, proc: subprocess.Popen[str], timeout: float) -> float | None:
    """Seconds until ``log`` first starts a task whose name holds ``task`` (``TASK [role : name]``),
    or None when ``proc`` ended or ``timeout`` passed first. Reads only what the log gained since
    the last look, complete lines only."""
    start = time.monotonic()
    pending = b""
    with log.open("rb") as handle:
        while time.monotonic() - start < timeout:
            lines, _, pending = (pending + handle.read()).rpartition(b"\n")
            if any(task in name for name in started_tasks(lines.decode(errors="replace"))):
                return time.monotonic() - start
            if proc.poll() is not None:
                return None
            time.sleep(0.05)
    return None


def kill_point(proc: subprocess.Popen[str], log: Path, rng: random.Random, length: float,
               at: str | None, spread: float) -> tuple[float, str]:
    """Kill ``proc``'s tree at this cycle's point; (seconds into the run, task running then)."""
    start = time.monotonic()
    if at:
        seen = wait_for_task(log, at, proc, timeout=4 * length)
        if seen is None:
            proc.wait()
            return round(time.monotonic() - start, 1), f"{NOT_KILLED}: no task matching '{at}' started)"
        delay = rng.uniform(0, spread)
    else:
        delay = rng.uniform(5, length)
    try:
        proc.wait(timeout=delay)
        return round(time.monotonic() - start, 1), f"{NOT_KILLED}: the run ended first)"
    except subprocess.TimeoutExpired:
        task = last_task(log)
        kill_tree(proc.pid)
        proc.wait()
        return round(time.monotonic() - start, 1), task


def run_cycle(index: int, seed: int, length: float, work: Path, at: str | None = None, spread: float = 2.0) -> Cycle:
    names = hosts()
    extra = cycle_vars(index)  # the calibration left the fleet at cycle_vars(0): each cycle flips
    rng = random.Random(seed)
    for host in names:
        node(host, "rm", "-f", "/var/tmp/interrupt.log", "/var/tmp/interrupt.stop")
        node(host, "python3", "-c", NODE_CHECK, "/var/tmp/interrupt.log", "/var/tmp/interrupt.stop", detach=True)
    log = work / f"cycle{index}-killed.log"
    proc = site(extra, log)
    kill_at, task = kill_point(proc, log, rng, length, at, spread)
    after = [f"{h}: {p}" for h in names for p in json.loads(node(h, "python3", "-c", NODE_CHECK, "once") or "[]")]
    for host in names:
        node(host, "touch", "/var/tmp/interrupt.stop")
    time.sleep(0.5)
    during = [f"{h}: {p}" for h in names for p in node(h, "cat", "/var/tmp/interrupt.log").splitlines()]
    start = time.monotonic()
    rerun = site(extra, work / f"cycle{index}-rerun.log")
    rerun_rc = rerun.wait()
    seconds = time.monotonic() - start
    check = subprocess.run(["scripts/demo", "check"], cwd=ROOT, capture_output=True, text=True, check=False)
    return Cycle(seed, kill_at, task, during, after, rerun_rc, seconds, (check.stdout + check.stderr).strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="run scripts/demo first")
    parser.add_argument("--at", metavar="TASK", action="append", help="kill each run within --spread seconds "
                        "after a task whose name holds TASK starts; given more than once, the cycles take the "
                        "tasks in turn (default: at a random point of the whole run)")
    parser.add_argument("--spread", type=float, default=2.0, help="with --at: the kill's delay is uniform "
                        "over 0 to this many seconds (default 2)")
    parser.add_argument("--out", help="the report (default docs/interrupted-runs.md, with --at "
                        "docs/interrupted-runs-at-tasks.md, under its '## Results' heading when it has one)")
    args = parser.parse_args()
    os.environ["PATH"] = TOOLS_PATH
    work = ROOT / ".cache" / "interrupt"
    work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        subprocess.run(["scripts/demo"], cwd=ROOT, check=True)
    # priming: the envs of both settings built (python_envs keeps the previous build, so from
    # then on every flip switches each env's link to a complete build and rewrites every
    # user's keras.json); then the calibration: how long one cycle's run takes uninterrupted
    # (the kills land within it)
    if site(cycle_vars(1), work / "priming.log", ship=True).wait() != 0:
        print("interrupt: the priming run of site.yml failed; see .cache/interrupt/priming.log")
        return 1
    start = time.monotonic()
    if site(cycle_vars(0), work / "calibration.log").wait() != 0:
        print("interrupt: the calibration run of site.yml failed; see .cache/interrupt/calibration.log")
        return 1
    length = time.monotonic() - start
    print(f"interrupt: one run with rebuilt envs and rewritten files takes {length:.0f} s", flush=True)
    cycles = []
    for index in range(1, args.kills + 1):
        at = args.at[(index - 1) % len(args.at)] if args.at else None
        result = run_cycle(index, args.seed + index, length, work, at, args.spread)
        cycles.append(result)
        print(f"interrupt: cycle {index}: seed {result.seed}, killed at {result.kill_at} s in '{result.task}', "
              f"torn during {len(result.during)}, after {len(result.after)}, re-run rc {result.rerun_rc} "
              f"in {result.rerun_seconds:.0f} s; {result.verified}", flush=True)
    command = f"bench/interrupt.py --kills {args.kills} --seed {args.seed}"
    command += "".join(f" --at '{at}'" for at in args.at or []) + (f" --spread {args.spread:g}" if args.at else "")
    lines = [heading(f"`{command}`") + f" (commit {commit()}); one uninterrupted run of a cycle: {length:.0f} s.", "",
             "| cycle | seed | killed at (s) | task running at the kill | torn files/envs seen during | after the kill "
             "| re-run | re-run (s) | verification after the re-run |",
             "|---:|---:|---:|---|---:|---:|---|---:|---|"]
    for i, c in enumerate(cycles, 1):
        lines.append(f"| {i} | {c.seed} | {c.kill_at} | {c.task} | {len(c.during)} | {len(c.after)} | "
                     f"{'converged' if c.rerun_rc == 0 else f'FAILED (rc {c.rerun_rc})'} | {c.rerun_seconds:.0f} | "
                     f"{c.verified.replace('|', '/')} |")
    torn = [p for c in cycles for p in c.during + c.after]
    lines += ["", "Torn files or envs seen: " + ("none." if not torn else "; ".join(torn))]
    landed = [c for c in cycles if not c.task.startswith(NOT_KILLED)]
    ok = all(c.rerun_rc == 0 and "passed" in c.verified and not c.during and not c.after for c in cycles)
    lines += ["", f"Kills that landed in a running site.yml: {len(landed)} of {len(cycles)}.",
              "", f"Result: {'every kill recovered' if ok else 'NOT every kill recovered'}."]
    out = args.out or ("docs/interrupted-runs-at-tasks.md" if args.at else "docs/interrupted-runs.md")
    publish("\n".join(lines) + "\n", ROOT / out, section="## Results")
    return 0 if ok and len(landed) == len(cycles) else 1


if __name__ == "__main__":
    sys.exit(main())
