#!/usr/bin/env python3
"""Env build benchmark: python_env_build with uv against the previous commit's pip build.

On ONE node (a Debian 12 container, as the demo's GPU nodes), builds each env of the role
from its lock, paired: for every env and source, a uv build and a pip build one after the
other (the order alternating between repetitions), each into a fresh root with a fresh,
empty cache of its own, so both download (or read) and install everything:

* ``uv``: this tree's ``roles/python_envs/library/python_env_build.py`` (``uv venv``, ``uv pip
  install --require-hashes --compile-bytecode``, ``uv pip check``), uv 0.13.9 from locks/uv.txt;
* ``pip``: the same module as of ``--base`` (default ``main``; ``git show``), ``python -m venv``,
  ``pip install --no-deps`` (the lock's pins, no hashes, as that commit installed them), ``pip check``;

from two sources: ``online`` (PyPI through this machine's proxy) and ``offline`` (the node's
wheelhouse, ``--no-index --find-links``, filled from the lock with ``pip download``
beforehand). Both get the wheelhouse as ``--find-links`` online too (pygpu is not on PyPI).
The time is the module's own ``seconds`` (venv, install, check), the wall time of each
ansible-playbook run beside it.

Usage (as root, on a machine prepared by scripts/setup; several GB of disk)::

    bench/envs.py [--reps 2] [--base main] [--envs keras2-theano,keras3-tensorflow] [--out docs/envs-benchmark.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, cache_dir, heading, podman_exec, publish, remove_containers, sh

ROLE = ROOT / "roles" / "python_envs"
NODE = "envs-bench-node"
IMAGE = "localhost/dlstack/debian:12"
WHEELHOUSE = "/var/lib/dlstack/wheelhouse"
UV = "/opt/dlstack/tools/uv/bin/uv"
ENVS = {"keras2-theano": ["keras2-theano-py311.txt"], "keras3-tensorflow": ["keras3-tensorflow-cpu.txt"]}
PLAY = """
- name: One env build
  hosts: all
  gather_facts: false
  tasks:
    - name: Build
      python_env_build: "{{ args }}"
      environment: "{{ env }}"
      register: built
    - name: Report
      ansible.builtin.copy:
        content: "{{ built | to_json }}"
        dest: "{{ out }}"
      delegate_to: localhost
"""


def node(*cmd: str) -> str:
    """Run a command on the node."""
    return podman_exec(NODE, *cmd)


def lock_text(names: list[str]) -> str:
    """The merged lock of an env, as the role hands it to the module (pins with hashes)."""
    sys.path.insert(0, str(ROLE / "filter_plugins"))
    import python_envs as filters  # the role's own parser, found on the path set above

    pins = []
    for name in names:
        parsed = filters.parse_requirements((ROLE / "files" / "locks" / name).read_text(), name)
        assert not parsed["problems"], parsed["problems"]
        pins += parsed["pins"]
    return filters.requirements_text(filters.merge_pins(pins)["pins"])


def prepare(work: Path, base: str) -> None:
    """Start the node, give it the wheelhouse and uv, and the base commit's module."""
    remove_containers(NODE)
    sh(["podman", "run", "-d", "--name", NODE, IMAGE, "sleep", "infinity"])
    node("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv "
         "ca-certificates > /dev/null")
    sh(["podman", "cp", "/etc/ssl/certs/ca-certificates.crt", f"{NODE}:/usr/local/share/ca-certificates/host.crt"])
    node("update-ca-certificates")
    node("sh", "-c", "printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf")
    wheels = work / "wheelhouse"
    wheels.mkdir(exist_ok=True)
    pygpu = sorted((cache_dir() / "wheelhouse" / "local")
                   .glob("pygpu-*.whl"))
    if not pygpu:
        sys.exit("bench: no pygpu wheel in the cache's store (run the python_envs scenario or the role once)")
    shutil.copy(pygpu[-1], wheels)  # not on PyPI: found by --find-links below
    for lock in ["uv.txt", "build-tools.txt"] + [n for names in ENVS.values() for n in names]:
        text = lock_text([lock])
        req = work / f"req-{lock}"
        req.write_text(text)
        sh([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "--dest", str(wheels),
            "--find-links", str(wheels), "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            "--abi", "abi3", "--abi", "none", *[f"--platform=manylinux_2_{m}_x86_64" for m in range(36, 4, -1)],
            "--platform=manylinux2014_x86_64", "--platform=linux_x86_64", "-r", str(req)])
    node("mkdir", "-p", WHEELHOUSE)
    for wheel in wheels.iterdir():
        sh(["podman", "cp", str(wheel), f"{NODE}:{WHEELHOUSE}/{wheel.name}"])
    node("sh", "-c", f"python3 -m venv /opt/dlstack/tools/.uv && /opt/dlstack/tools/.uv/bin/pip install -q --no-index "
         f"--find-links {WHEELHOUSE} --require-hashes --no-deps -r /dev/stdin <<'EOF'\n{lock_text(['uv.txt'])}EOF\n"
         "mkdir -p /opt/dlstack/tools/uv && ln -sfn /opt/dlstack/tools/.uv/bin /opt/dlstack/tools/uv/bin")
    old = work / "pip" / "python_env_build.py"
    old.parent.mkdir(exist_ok=True)
    old.write_text(sh(["git", "-C", str(ROOT), "show", f"{base}:roles/python_envs/library/python_env_build.py"]).stdout)
    new = work / "uv" / "python_env_build.py"
    new.parent.mkdir(exist_ok=True)
    shutil.copy(ROLE / "library" / "python_env_build.py", new)
    (work / "inventory.yml").write_text(f"all:\n  hosts:\n    {NODE}:\n      ansible_connection: containers.podman.podman\n"
                                        "      ansible_python_interpreter: /usr/bin/python3\n")
    (work / "play.yml").write_text(PLAY)


def build(work: Path, installer: str, env: str, source: str, run: int) -> dict[str, Any]:
    """One build of ``env`` with ``installer`` from ``source``; the module's result and the wall time."""
    root = f"/opt/bench/{installer}-{source}-{env}-{run}"
    cache = f"/var/tmp/bench-cache-{installer}-{source}-{env}-{run}"
    sources = (["--no-index"] if source == "offline" else []) + ["--find-links", WHEELHOUSE]
    args: dict[str, Any] = {"name": env, "root": root, "python": "python3.11", "requirements": lock_text(ENVS[env])}
    if installer == "uv":
        args.update(sources=sources, uv=UV, build_constraints=lock_text(["build-tools.txt"]))
        environ = {"UV_CACHE_DIR": cache}
    else:  # the previous commit's locks had no hashes: the pins only
        pins = [line.split(" ", 1)[0] for line in args["requirements"].splitlines()]
        args.update(pip_args=sources, requirements="".join(f"{pin}\n" for pin in pins))
        environ = {"PIP_CACHE_DIR": cache}
    out = work / f"result-{installer}-{source}-{env}-{run}.json"
    extra = json.dumps({"args": args, "env": environ, "out": str(out)})
    started = time.monotonic()
    sh(["ansible-playbook", "-i", str(work / "inventory.yml"), str(work / "play.yml"), "-e", extra],
       env=dict(os.environ, ANSIBLE_LIBRARY=str(work / installer), ANSIBLE_MODULE_UTILS=str(ROLE / "module_utils"),
                ANSIBLE_HOST_KEY_CHECKING="False"))
    wall = time.monotonic() - started
    result = json.loads(out.read_text())
    node("rm", "-rf", root, cache)
    return {"installer": installer, "env": env, "source": source, "run": run, "seconds": result["seconds"],
            "wall": round(wall, 1), "changed": result["changed"]}


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: per env and source, each paired run and the median ratio uv/pip."""
    lines = ["| env | source | pip (s) | uv (s) | uv / pip |", "|---|---|---|---|---|"]
    for env in ENVS:
        for source in ("online", "offline"):
            pip = [r["seconds"] for r in results if (r["env"], r["source"], r["installer"]) == (env, source, "pip")]
            uv = [r["seconds"] for r in results if (r["env"], r["source"], r["installer"]) == (env, source, "uv")]
            if not pip or not uv:
                continue
            ratios = [u / p for u, p in zip(uv, pip, strict=False)]  # an interrupted bench: pair the runs both have
            lines.append(f"| {env} | {source} | {', '.join(f'{p:.0f}' for p in pip)} | {', '.join(f'{u:.0f}' for u in uv)}"
                         f" | {statistics.median(ratios):.2f} |")
    return "\n".join(lines)


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--base", default="main", help="the commit whose pip build to compare with")
    parser.add_argument("--envs", default=",".join(ENVS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="leave the node running")
    options = parser.parse_args()
    for name in set(ENVS) - set(options.envs.split(",")):
        del ENVS[name]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="envs-bench-") as tmp:
        work = Path(tmp)
        prepare(work, options.base)
        try:
            for run in range(options.reps):
                for env in ENVS:
                    for source in ("online", "offline"):
                        order = ("uv", "pip") if run % 2 == 0 else ("pip", "uv")
                        for installer in order:
                            results.append(build(work, installer, env, source, run))
                            print(json.dumps(results[-1]), flush=True)
        finally:
            if not options.keep:
                remove_containers(NODE)
    publish(f"{heading('Env build benchmark')}, {options.reps} paired runs, base {options.base}\n\n{table(results)}\n",
            options.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
