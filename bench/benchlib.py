"""What the benchmarks under bench/ share: running commands (failing loudly), the project's
plugin paths for ansible-playbook runs outside the repository, the containers, CPU and disk
counters, and the report's heading and output.

The benchmark scripts import it by name: Python puts a script's own folder (bench/) first on
``sys.path``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# PATH with the project's toolchain (.venv: ansible-playbook, molecule) first
TOOLS_PATH = f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"
# the demo's fleet, or a second one beside it named by scripts/demo's overrides
DEMO_INVENTORY = os.environ.get("DLSTACK_DEMO_INVENTORY", "inventory/demo")
DEMO_PREFIX = os.environ.get("DLSTACK_DEMO_PREFIX", "dlstack-demo-")


def sh(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; stop the benchmark, with the output's tail, when it fails."""
    done = subprocess.run(cmd, text=True, capture_output=True, check=False, **kwargs)
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def run_logged(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, str]:
    """Run a command in the repository, its output (stderr too) written to ``log``; stop the
    benchmark when it fails. Returns (seconds, output)."""
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    seconds = time.monotonic() - start
    log.write_text(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return seconds, proc.stdout


def project_env(**extra: str) -> dict[str, str]:
    """The environment for ansible-playbook run outside the repository (no ansible.cfg): the
    project's roles, filters, modules and module_utils, plus ``extra``."""
    return dict(os.environ, ANSIBLE_ROLES_PATH=str(ROOT / "roles"), ANSIBLE_FILTER_PLUGINS=str(ROOT / "plugins" / "filter"),
                ANSIBLE_LIBRARY=str(ROOT / "plugins" / "modules"), ANSIBLE_ACTION_PLUGINS=str(ROOT / "plugins" / "action"),
                ANSIBLE_MODULE_UTILS=str(ROOT / "plugins" / "module_utils"), **extra)


def podman_exec(container: str, *cmd: str) -> str:
    """Run a command in a container; its output."""
    return sh(["podman", "exec", container, *cmd]).stdout


def remove_containers(*names: str) -> None:
    """Remove containers, running or not, quietly (absent ones too)."""
    for name in names:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)


def children_cpu() -> float:
    """CPU seconds this process's finished children have used."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def node_cpu(names: list[str]) -> float:
    """CPU seconds the named containers have used, from their cgroups."""
    total = 0.0
    for name in names:
        path = subprocess.run(["podman", "inspect", "--format", "{{.State.CgroupPath}}", name],
                              text=True, capture_output=True, check=True).stdout.strip()
        for candidate in (Path("/sys/fs/cgroup/cpuacct") / path.lstrip("/") / "cpuacct.usage",
                          Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.stat"):
            if candidate.name == "cpuacct.usage" and candidate.exists():
                total += int(candidate.read_text()) / 1e9
                break
            if candidate.name == "cpu.stat" and candidate.exists():
                stat = dict(line.split() for line in candidate.read_text().splitlines())
                total += int(stat["usage_usec"]) / 1e6
                break
    return total


def du_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def whole_numbers(low: int, high: int, increasing: bool = False) -> Callable[[str], list[int]]:
    """An argparse ``type`` for a comma-separated list of whole numbers from ``low`` to
    ``high`` (strictly increasing when ``increasing``): '1,2,4' -> [1, 2, 4]."""
    rule = f"{'increasing ' if increasing else ''}whole numbers from {low} to {high}, comma-separated"

    def parse(text: str) -> list[int]:
        try:
            numbers = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {rule}") from None
        if not numbers or min(numbers) < low or max(numbers) > high or (
                increasing and numbers != sorted(set(numbers))):
            raise argparse.ArgumentTypeError(f"{text!r}: {rule}")
        return numbers

    return parse


@functools.cache
def _check_recap() -> ModuleType:
    """scripts/check-recap (a script, loaded by its path once)."""
    spec = importlib.util.spec_from_loader("check_recap", SourceFileLoader("check_recap", str(ROOT / "scripts" / "check-recap")))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recap(output: str) -> dict[str, tuple[int, int, int]]:
    """(changed, unreachable, failed) per host of ansible-playbook's last PLAY RECAP, by
    scripts/check-recap's parser."""
    return _check_recap().recap(output)


def started_tasks(text: str) -> list[str]:
    """The names of the tasks an ansible-playbook log text starts (its ``TASK [name]`` lines), in order."""
    return re.findall(r"^TASK \[(.*)\]", text, re.M)


def last_task(log: Path) -> str:
    """The name of the last task an ansible-playbook log started (what ran when it stopped)."""
    tasks = started_tasks(log.read_text(errors="replace"))
    return tasks[-1] if tasks else "(before the first task)"


def cache_dir() -> Path:
    """The machine's cache directory (``DLSTACK_CACHE_DIR``, as scripts/demo and the scenarios read it)."""
    return Path(os.environ.get("DLSTACK_CACHE_DIR") or "/var/cache/dlstack")


def heading(title: str) -> str:
    """'TITLE on HOST (N cores, M GiB), YYYY-MM-DD HH:MM UTC': the first line of every report."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{title} on {platform.node()} ({os.cpu_count()} cores, {memory:.0f} GiB), "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def publish(text: str, out: Path | None, section: str | None = None) -> None:
    """Print the report, and write it to ``out`` when given (its folder made). With
    ``section`` (a heading line such as '## Results'), a file that has that heading keeps what
    stands before it and gets the heading and the report after it."""
    print(text)
    if not out:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text() if out.exists() else ""
    if section and section in old:
        text = old.split(section)[0] + section + "\n\n" + text
    out.write_text(text)
