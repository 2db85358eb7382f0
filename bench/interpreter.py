#!/usr/bin/env python3
"""Interpreter and pygpu benchmark: what python_envs' CPython 3.11 and pygpu wheel cost a fleet.

For each fleet size N (default 1 and 3) it starts N Debian 13 nodes (containers, each with
COLD apt caches of its own) and an EMPTY controller store, and runs the role's interpreter
and pygpu steps as a first converge does (``--tags python_envs_interpreter``: preflight and
the interpreter; then the role's local-wheel step, pygpu, alone), then measures:

* wall time of the interpreter step (one node of the platform builds, every node installs);
* which nodes built (the build log of the module: one builder per platform);
* bytes from outside: the CPython source tarball and the Debian .deb files pygpu is made from
  (the controller's store ``sources/``), and what APT fetched on each node (its archive cache);
* bytes shipped from the controller: the interpreter package to each node, the pygpu wheel;
* a second run: wall time with everything in place (one dpkg query per node).

Usage (as root, on a machine prepared by scripts/setup)::

    bench/interpreter.py [--sizes 1,3] [--out docs/interpreter-benchmark.md]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import du_bytes, heading, podman_exec, project_env, publish, remove_containers, sh, whole_numbers

IMAGE = "localhost/dlstack/debian:13"
PREFIX = "envs-ibench"
SOURCE_URL = "http://deb.debian.org/debian/pool/main/p/python3.11/python3.11_3.11.2.orig.tar.gz"
PLAY = """
- name: The interpreter step of python_envs, as a first converge runs it
  hosts: all
  gather_facts: true
  roles:
    - role: python_envs
"""


def node_apt_bytes(name: str) -> int:
    """Bytes of the .deb files APT fetched on a node."""
    return int(podman_exec(name, "sh", "-c", "du -sb /var/cache/apt/archives | cut -f1").strip() or 0)


def playbook(work: Path, extra: list[str]) -> tuple[float, str]:
    """ansible-playbook on the fleet; (seconds, output)."""
    env = project_env(ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks")
    started = time.monotonic()
    done = sh(["ansible-playbook", "-i", str(work / "inventory.yml"), str(work / "play.yml"), *extra], env=env)
    return time.monotonic() - started, done.stdout


def fleet(size: int, work: Path) -> dict[str, Any]:
    """Measure one fleet size from cold."""
    names = [f"{PREFIX}-{i}" for i in range(1, size + 1)]
    remove_containers(*names)
    for name in names:
        sh(["podman", "run", "-d", "--name", name, IMAGE, "sleep", "infinity"])
        sh(["podman", "exec", name, "rm", "-f", "/etc/apt/apt.conf.d/docker-clean"])
    store = work / f"store-{size}"
    hosts = "".join(f"        {n}: {{}}\n" for n in names)
    (work / "inventory.yml").write_text(
        "all:\n  vars:\n    ansible_connection: containers.podman.podman\n    ansible_python_interpreter: /usr/bin/python3\n"
        f"    python_envs_wheelhouse_build_dir: {store}\n    python_envs_python_source_url: {SOURCE_URL}\n"
        "    common_extra_ca_certificates: [{name: host, src: /etc/ssl/certs/ca-certificates.crt}]\n"
        f"  children:\n    workstations:\n      hosts:\n{hosts}")
    (work / "play.yml").write_text(PLAY)
    # the base system as a first converge has it (CA, APT), not timed
    common = work / "common.yml"
    common.write_text("- hosts: all\n  gather_facts: true\n  roles: [{role: common}]\n")
    sh(["ansible-playbook", "-i", str(work / "inventory.yml"), str(common)], env=project_env())
    apt_before = {n: node_apt_bytes(n) for n in names}
    first, out = playbook(work, ["--tags", "python_envs_interpreter"])
    section = out.split("TASK [python_envs : Build CPython and package it", 1)[-1].split("TASK [", 1)[0]
    builders = re.findall(r"changed: \[([^\]]+)\]", section)
    deb = next((store / "python").glob("*.deb"))
    pygpu_seconds = _pygpu(work)
    second, out2 = playbook(work, ["--tags", "python_envs_interpreter"])
    changed = sum(int(c) for c in re.findall(r"changed=(\d+)", out2))
    result = {
        "nodes": size, "first": round(first, 1), "builders": builders, "second": round(second, 1),
        "second_changed": changed, "deb_bytes": deb.stat().st_size,
        "sources_bytes": du_bytes(store / "sources"), "pygpu_seconds": pygpu_seconds,
        "pygpu_bytes": du_bytes(store / "local"),
        "apt_bytes": {n: node_apt_bytes(n) - apt_before[n] for n in names},
    }
    remove_containers(*names)
    return result


def _pygpu(work: Path) -> float:
    """The pygpu wheel, assembled on the controller from an empty sources cache (download included)."""
    play = work / "pygpu.yml"
    play.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.include_role: {name: python_envs, tasks_from: plan}\n"
        "    - ansible.builtin.include_role: {name: python_envs, tasks_from: local_wheels}\n")
    started = time.monotonic()
    sh(["ansible-playbook", "-i", str(work / "inventory.yml"), str(play)], env=project_env())
    return round(time.monotonic() - started, 1)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,3", type=whole_numbers(1, 20), help="fleet sizes, comma-separated (default 1,3)")
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="envs-ibench-") as tmp:
        for size in options.sizes:
            results.append(fleet(size, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
    mb = 1024 * 1024
    lines = [heading("Interpreter and pygpu benchmark"), "",
             "| nodes | first run (s) | builders | package (MB) | shipped to nodes (MB) | from outside: sources (MB) | "
             "from outside: APT (MB) | pygpu wheel (s) | second run (s) | second run changed |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        shipped = (r["deb_bytes"] * r["nodes"]) / mb
        lines.append(f"| {r['nodes']} | {r['first']:.0f} | {', '.join(r['builders'])} | {r['deb_bytes'] / mb:.1f} | "
                     f"{shipped:.1f} | {r['sources_bytes'] / mb:.1f} | {sum(r['apt_bytes'].values()) / mb:.1f} | "
                     f"{r['pygpu_seconds']:.1f} | {r['second']:.0f} | {r['second_changed']} |")
    publish("\n".join(lines) + "\n", options.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
