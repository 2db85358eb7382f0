#!/usr/bin/env python3
"""Users benchmark: one node with 1, 5 and 20 users; what verification and a first fit cost.

One demo node (Debian 12 with sshd and systemd, both envs, no GPU: as ``scripts/demo``) is
converged with ``site.yml`` for 1 user, then ``playbooks/user_config.yml`` adds users up to 5
and 20 (all with the site's default Keras and Theano settings, half of them on the Theano
backend: one Theano seed profile, as on most sites). For each user count it measures the
verification stage, ``playbooks/verify.yml -e dl_verify_reuse_max_age=0`` (every check run,
nothing reused): wall time, CPU seconds inside the node (its cgroup) and on the controller.
Per-user cost is the growth of the node's CPU per added user. Then a new user is added with
``playbooks/add_user.yml`` (seeded from the template), and as that user, in a new process on
the warm node, the seeds' Dense model is fitted in the Theano env, timed (wall and CPU,
Theano's own cache counters); twice, for two new users; and once more in an empty compile
directory, for comparison (what every user's first fit cost before the seeds).

It prints a Markdown report (and writes it with ``--out``). Usage::

    bench/users.py [--users 1,5,20] [--out docs/users-benchmark.md] [--keep]

Run it as root on a machine prepared by ``scripts/setup``. The node uses the package caches
under ``$DLSTACK_CACHE_DIR`` (warm caches: the converge is not what is measured) and its own
container (``dlstack-demo-unode01``); the demo's apt cache container is started if missing
and then removed again.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import ROOT, TOOLS_PATH, children_cpu, heading, node_cpu, podman_exec, publish, remove_containers, run_logged, whole_numbers

WORK = ROOT / ".cache" / "bench-users"
NODE = "unode01"
CONTAINER = f"dlstack-demo-{NODE}"
APTCACHE = "dlstack-demo-aptcache"
PORT = 2401
IMAGE = "localhost/dlstack/debian:12-sshd"
THEANO = "/opt/dlstack/envs/keras2-theano/bin/python"
NEW_USERS = ("newuser1", "newuser2")
# the seeds' Dense model (20 inputs, 64 relu, 1 sigmoid), fitted once, with Theano's counters
FIRST_FIT = """
import json, os, time
t0 = time.time()
import numpy as np
from keras.layers import Dense
from keras.models import Sequential
from theano.gof import cc
t1 = time.time()
m = Sequential([Dense(64, activation="relu", input_shape=(20,)), Dense(1, activation="sigmoid")])
m.compile(optimizer="adam", loss="binary_crossentropy")
m.fit(np.random.rand(64, 20).astype("float32"), np.random.randint(0, 2, (64, 1)).astype("float32"), epochs=1,
      batch_size=32, verbose=0)
t2 = time.time()
stats = cc.get_module_cache().stats
print(json.dumps({"import_s": t1 - t0, "fit_s": t2 - t1, "cpu_s": sum(os.times()[:4]), "loaded": stats[1],
                  "compiled": stats[2]}))
"""


@dataclass
class Stage:
    """The verification stage for one user count."""

    users: int
    wall: float
    node_cpu: float
    controller_cpu: float
    passed: str
    load: float


def user_names(count: int) -> list[str]:
    return [f"user{i:02d}" for i in range(1, count + 1)]


def write_inventory(inv: Path, users: list[str], new_users: tuple[str, ...] = ()) -> None:
    """One demo node with exactly these users (the demo's alice, bob and carol replaced), half
    of them on the Theano backend, and the new users to add with add_user.yml."""
    inv.mkdir(parents=True, exist_ok=True)
    entries = ", ".join(f"{{name: {u}, keras: {{backend: {'theano' if i % 2 else 'tensorflow'}}}}}"
                        for i, u in enumerate(users))
    new = ", ".join(f"{{name: {u}, create: true}}" for u in new_users)
    (inv / "hosts.yml").write_text(
        "---\nall:\n  children:\n    gpu_nodes:\n      hosts:\n"
        f"        {NODE}: {{ansible_port: {PORT}, dlstack_demo_image: \"{IMAGE}\", "
        f"dl_user_config_users: [{entries}], dl_user_config_group_users: [], "
        f"dl_user_config_host_users: [{new}]}}\n"
        "    workstations:\n      hosts: {}\n")
    group_vars = inv / "group_vars"
    if not group_vars.is_symlink():
        group_vars.symlink_to(ROOT / "inventory" / "demo" / "group_vars")


def node_exec(command: str) -> str:
    """Run a bash command line in the node; its output."""
    return podman_exec(CONTAINER, "bash", "-c", command)


def verify(inv: Path, env: dict[str, str], log: Path, count: int) -> Stage:
    """playbooks/verify.yml with every check run afresh: wall, node CPU, controller CPU."""
    cpu0, node0 = children_cpu(), node_cpu([CONTAINER])
    wall, out = run_logged(["ansible-playbook", "-i", str(inv), "playbooks/verify.yml", "-e", "dl_verify_reuse_max_age=0",
                            "-e", f"dl_verify_report_dir={WORK / 'reports'}"], env, log)
    passed = next((line.split("dl_verify: ", 1)[1].split(" user/node")[0] for line in out.splitlines()
                   if "user/node runs passed" in line), "?")
    return Stage(count, wall, node_cpu([CONTAINER]) - node0, children_cpu() - cpu0, passed, os.getloadavg()[0])


def first_fit(user: str, compiledir: str | None = None) -> dict[str, float]:
    """The Dense fit as the user in a new process; in their own compile directory, or another."""
    flags = f"THEANO_FLAGS=base_compiledir={compiledir} " if compiledir else ""
    start = time.monotonic()
    out = node_exec(f"cd / && runuser -u {user} -- env {flags}{THEANO} -c {shlex.quote(FIRST_FIT)} 2>/dev/null")
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_s"] = time.monotonic() - start
    result["load"] = os.getloadavg()[0]
    return result


def report(stages: list[Stage], fits: list[dict[str, float]], cold: dict[str, float], template: dict,
           adds: list[tuple[float, float]]) -> str:
    one, most = stages[0], stages[-1]
    per_user = (most.node_cpu - one.node_cpu) / max(most.users - one.users, 1)
    best = min(fits, key=lambda f: f["wall_s"])
    lines = [
        f"{heading('Users benchmark')}, one Debian 12 demo node (keras2-theano and keras3-tensorflow, no GPU); the machine's load average "
        "(other tenants included) in the last column",
        "",
        "| users | verification wall (s) | node CPU (s) | controller CPU (s) | runs passed | node CPU per user over 1 user (s) | load |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in stages:
        extra = f"{(s.node_cpu - one.node_cpu) / (s.users - one.users):.1f}" if s.users > one.users else "-"
        lines.append(f"| {s.users} | {s.wall:.0f} | {s.node_cpu:.1f} | {s.controller_cpu:.1f} | {s.passed} | {extra} | "
                     f"{s.load:.1f} |")
    workloads = template.get("workloads") or {}
    lines += [
        "",
        "| a new user's first Dense fit (Theano env, new process, warm node) | wall (s) | CPU (s) | modules loaded "
        "| modules compiled | load |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for number, fit in enumerate(fits, start=1):
        lines.append(f"| new user {number}, seeded by add_user.yml (their own compile directory) | {fit['wall_s']:.1f} | "
                     f"{fit['cpu_s']:.1f} | {fit['loaded']} | {fit['compiled']} | {fit['load']:.1f} |")
    lines += [
        f"| new user 1 again, in an empty compile directory (what a first fit cost before the seeds) | "
        f"{cold['wall_s']:.1f} | {cold['cpu_s']:.1f} | {cold['loaded']} | {cold['compiled']} | {cold['load']:.1f} |",
        "",
        f"- one more user: {per_user:.1f} s of node CPU in verification (goal <= 5 s)",
        f"- {most.users} users vs {one.users}: {most.wall / one.wall:.2f}x the verification wall time (goal <= 2x); "
        f"node CPU {most.node_cpu / one.node_cpu:.2f}x",
        f"- first fit, seeded: {best['wall_s']:.1f} s wall at best, {best['cpu_s']:.1f} s CPU (goal <= 10 s); "
        f"in an empty compile directory {cold['wall_s']:.1f} s wall, {cold['cpu_s']:.1f} s CPU",
        "- add_user.yml for each new user (account, files, seed copied, config-level check): "
        + ", ".join(f"{wall:.0f} s wall, {cpu:.1f} s node CPU" for wall, cpu in adds),
        f"- the seed template (built once by site.yml for this profile): {template.get('seconds')} s, "
        f"{len(template.get('modules') or [])} modules; warm-up workloads (s): "
        + ", ".join(f"{k} {v.get('seconds')}" for k, v in workloads.items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1,5,20", type=whole_numbers(1, 100, increasing=True),
                        help="user counts, increasing, comma-separated (default 1,5,20)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--keep", action="store_true", help="leave the node running")
    args = parser.parse_args()
    counts = args.users
    inv = WORK / "inventory" / "demo"
    env = dict(os.environ, DLSTACK_DEMO_INVENTORY=str(inv), PATH=TOOLS_PATH,
               ANSIBLE_NOCOLOR="1", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(WORK / "facts"))
    WORK.mkdir(parents=True, exist_ok=True)
    had_aptcache = subprocess.run(["podman", "container", "exists", APTCACHE], check=False).returncode == 0
    write_inventory(inv, user_names(counts[0]))
    run_logged(["scripts/demo", "up"], env, WORK / "up.log")
    stages: list[Stage] = []
    try:
        print(f"bench: converging {NODE} with {counts[0]} user(s) ...", flush=True)
        run_logged(["ansible-playbook", "-i", str(inv), "playbooks/wheelhouse.yml"], env, WORK / "wheelhouse.log")
        run_logged(["ansible-playbook", "-i", str(inv), "site.yml", "-e", f"dl_verify_report_dir={WORK / 'reports'}"], env,
                   WORK / "site.log")
        for count in counts:
            if stages:
                write_inventory(inv, user_names(count))
                run_logged(["ansible-playbook", "-i", str(inv), "playbooks/user_config.yml"], env, WORK / f"user_config-{count}.log")
            stages.append(verify(inv, env, WORK / f"verify-{count}.log", count))
            print(f"bench: {count} user(s): verification {stages[-1].wall:.0f} s, node CPU {stages[-1].node_cpu:.1f} s",
                  flush=True)
        # new users, each added with add_user.yml, then their first fit in a new process
        write_inventory(inv, user_names(counts[-1]), NEW_USERS)
        adds, fits = [], []
        for user in NEW_USERS:
            node0 = node_cpu([CONTAINER])
            wall, _ = run_logged(["ansible-playbook", "-i", str(inv), "playbooks/add_user.yml", "-e", f"user={user}",
                                  "-e", f"dl_verify_report_dir={WORK / 'reports-add'}"], env, WORK / f"add_user-{user}.log")
            adds.append((wall, node_cpu([CONTAINER]) - node0))
            fits.append(first_fit(user))
        cold_dir = f"/var/tmp/bench-unseeded-{NEW_USERS[0]}"
        node_exec(f"rm -rf {cold_dir} && install -d -m 0700 -o {NEW_USERS[0]} {cold_dir}")
        cold = first_fit(NEW_USERS[0], cold_dir)
        template = json.loads(node_exec("cat /var/lib/dlstack/theano-seeds/keras2-theano/*/seed.json"))
    finally:
        if not args.keep:
            remove_containers(CONTAINER, *([] if had_aptcache else [APTCACHE]))
    publish(report(stages, fits, cold, template, adds), args.out, section="## Results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
