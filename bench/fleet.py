#!/usr/bin/env python3
"""Fleet benchmark: converge the demo fleet with 1, 2, 4 and 8 nodes and report the cost.

For each fleet size N it starts N demo nodes (Debian 12 containers with sshd, as
``scripts/demo up``) with COLD caches of its own, then measures:

* the first converge (``playbooks/wheelhouse.yml`` then ``site.yml``, as ``scripts/demo``): wall time, CPU seconds
  on the controller (this process's children) and inside the nodes (their cgroups' cpuacct usage);
* bytes downloaded from outside: the growth of the fleet's apt cache (apt-cacher-ng) and of
  the controller's wheelhouse, the only ways out for packages in this setup;
* a no-change re-run of both: wall time and the sum of ``changed`` over every host's recap;
* ``playbooks/add_user.yml`` for a user the fleet has never seen (account created, files
  written, verified at add_user's default level, config): wall time; and again for another
  new user with ``-e dl_verify_level=quick`` (the frameworks imported in each env);
* ``bench/module_floor.yml``: four bare module runs per node (add_user's number of node
  round trips, nothing else): the floor under add_user's scaling on this machine.

It prints a Markdown table (and writes it with ``--out``). Usage::

    bench/fleet.py [--sizes 1,2,4,8] [--out docs/fleet-benchmark.md] [--keep]

Run it as root on a machine prepared by ``scripts/setup``; it needs several GB of disk.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from benchlib import ROOT, TOOLS_PATH, children_cpu, du_bytes, heading, node_cpu, publish, run_logged, whole_numbers

WORK = ROOT / ".cache" / "bench"
IMAGE = "localhost/dlstack/debian:12-sshd"
FIRST_PORT = 2301
NEW_USERS = ("dave", "erin")
RECAP = re.compile(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass
class Result:
    """What one fleet size measured."""

    nodes: int
    first_wall: float
    controller_cpu: float
    nodes_cpu: float
    outside_bytes: int
    rerun_wall: float
    rerun_changed: int
    add_user_wall: float
    add_user_quick_wall: float
    floor_wall: float


def converge(inv: Path, extra: list[str], env: dict[str, str], log: Path) -> tuple[float, str]:
    """What `scripts/demo` runs: the wheelhouse, then site.yml; (seconds, both outputs)."""
    first, out1 = run_logged(["ansible-playbook", "-i", str(inv), "playbooks/wheelhouse.yml", *extra], env,
                             log.with_name(log.name + "-wheelhouse.log"))
    second, out2 = run_logged(["ansible-playbook", "-i", str(inv), "site.yml", *extra], env, log.with_name(log.name + "-site.log"))
    return first + second, out1 + out2


def write_inventory(size: int, inv: Path, new_users: tuple[str, ...] = ()) -> None:
    """The demo fleet of `size` nodes; `new_users` declared on every node (created by add_user)."""
    inv.mkdir(parents=True, exist_ok=True)
    users = (", dl_user_config_host_users: [" + ", ".join(f"{{name: {u}, create: true}}" for u in new_users) + "]"
             if new_users else "")
    hosts = "\n".join(f"        node{i:02d}: {{ansible_port: {FIRST_PORT + i}, dlstack_demo_image: \"{IMAGE}\"{users}}}"
                      for i in range(1, size + 1))
    (inv / "hosts.yml").write_text(f"---\nall:\n  children:\n    gpu_nodes:\n      hosts:\n{hosts}\n    workstations:\n      hosts: {{}}\n")
    group_vars = inv / "group_vars"
    if group_vars.exists() or group_vars.is_symlink():
        group_vars.unlink() if group_vars.is_symlink() else shutil.rmtree(group_vars)
    group_vars.symlink_to(ROOT / "inventory" / "demo" / "group_vars")


def bench(size: int, keep: bool) -> Result:
    base = WORK / f"n{size}"
    cache = base / "cache"
    for stale in (cache, base / "facts"):
        if stale.exists():
            shutil.rmtree(stale)  # cold caches for every size
    for sub in ("apt/debian12", "apt/debian13", "pip", "apt-cacher-ng"):
        (cache / sub).mkdir(parents=True, exist_ok=True)
    inv = base / "inventory" / "demo"
    write_inventory(size, inv)
    env = dict(os.environ, DLSTACK_CACHE_DIR=str(cache), DLSTACK_DEMO_INVENTORY=str(inv),
               PATH=TOOLS_PATH, ANSIBLE_NOCOLOR="1",
               # a fact cache of its own (ansible.cfg keeps facts for an hour): the first converge
               # gathers, the re-runs use the cache, as on a real controller
               ANSIBLE_CACHE_PLUGIN_CONNECTION=str(base / "facts"))
    # the demo inventory installs the envs offline from $DLSTACK_CACHE_DIR/wheelhouse
    wheelhouse = cache / "wheelhouse"
    extra = ["-e", f"dl_verify_report_dir={base / 'reports'}"]
    names = [f"dlstack-demo-node{i:02d}" for i in range(1, size + 1)]
    run_logged(["scripts/demo", "down"], env, base / "down0.log")
    run_logged(["scripts/demo", "up"], env, base / "up.log")
    try:
        cpu0, node0, bytes0 = children_cpu(), node_cpu(names), du_bytes(cache / "apt-cacher-ng") + du_bytes(wheelhouse)
        first_wall, _ = converge(inv, extra, env, base / "first")
        controller = children_cpu() - cpu0
        nodes = node_cpu(names) - node0
        outside = du_bytes(cache / "apt-cacher-ng") + du_bytes(wheelhouse) - bytes0
        rerun_wall, out = converge(inv, extra, env, base / "rerun")
        changed = sum(int(m.group(2)) for m in RECAP.finditer(out))
        # two users the fleet has never seen: each add_user run creates the account and writes
        # the files on every node; the first verifies at add_user's default level (config),
        # the second imports the frameworks in each env (dl_verify_level=quick)
        write_inventory(size, inv, NEW_USERS)
        add_wall, _ = run_logged(["ansible-playbook", "-i", str(inv), "playbooks/add_user.yml", "-e", f"user={NEW_USERS[0]}",
                                  *extra], env, base / "add_user.log")
        add_quick_wall, _ = run_logged(["ansible-playbook", "-i", str(inv), "playbooks/add_user.yml", "-e", f"user={NEW_USERS[1]}",
                                        "-e", "dl_verify_level=quick", *extra], env, base / "add_user-quick.log")
        floor_wall, _ = run_logged(["ansible-playbook", "-i", str(inv), "bench/module_floor.yml"], env, base / "module_floor.log")
    finally:
        if not keep:
            subprocess.run(["scripts/demo", "down"], cwd=ROOT, env=env, capture_output=True, check=False)
    return Result(size, first_wall, controller, nodes, outside, rerun_wall, changed, add_wall, add_quick_wall, floor_wall)


def table(results: list[Result]) -> str:
    lines = [
        heading("Fleet benchmark"),
        "",
        "| nodes | first converge (s) | controller CPU (s) | nodes CPU (s) | from outside (MB) | no-change re-run (s) "
        "| re-run changed | add_user (s) | add_user, quick verify (s) | 4 bare module runs (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.nodes} | {r.first_wall:.0f} | {r.controller_cpu:.0f} | {r.nodes_cpu:.0f} | "
                     f"{r.outside_bytes / 1e6:.0f} | {r.rerun_wall:.0f} | {r.rerun_changed} | {r.add_user_wall:.0f} | "
                     f"{r.add_user_quick_wall:.0f} | {r.floor_wall:.1f} |")
    if len(results) > 1:
        one, most = results[0], results[-1]
        lines += ["",
                  f"- bytes from outside, {most.nodes} vs {one.nodes} node(s): "
                  f"{most.outside_bytes / max(one.outside_bytes, 1):.2f}x (target <= 1.1x)",
                  "- no-change re-run vs first converge: " + ", ".join(
                      f"{r.rerun_wall / r.first_wall:.2f} ({r.nodes})" for r in results)
                  + f" (target < 0.1), changed={sum(r.rerun_changed for r in results)}",
                  f"- add_user, {most.nodes} vs {one.nodes} node(s): "
                  f"{most.add_user_wall / max(one.add_user_wall, 1e-9):.2f}x (target <= 2x); with the quick verification "
                  f"(imports): {most.add_user_quick_wall / max(one.add_user_quick_wall, 1e-9):.2f}x; "
                  f"four bare module runs per node (add_user's round trips, nothing else): "
                  f"{most.floor_wall / max(one.floor_wall, 1e-9):.2f}x"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8", type=whole_numbers(1, 50),
                        help="fleet sizes, comma-separated (default 1,2,4,8)")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--keep", action="store_true", help="leave the last fleet running")
    args = parser.parse_args()
    sizes = args.sizes
    results = []
    for size in sizes:
        print(f"bench: {size} node(s) ...", flush=True)
        results.append(bench(size, args.keep and size == sizes[-1]))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    publish(table(results), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
