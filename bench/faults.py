#!/usr/bin/env python3
"""Two faults on real containers, and what the roles do about them (results in docs/faults.md).

    bench/faults.py [--only node-death|disk-full] [--out docs/faults.md]

node-death: on a fresh demo fleet (``scripts/demo down``, ``up``, the wheelhouse), starts
  ``site.yml`` and, once the run has reached the python_envs role, stops the container of
  one node (``podman stop -t 0``: the node dies, as on a power cut). The run must end
  non-zero with the other nodes converged (failed=0, unreachable=0), the dead node
  unreachable, and the cluster report must list that node as not verified, unreachable
  (not as passed, not missing). Then the node is started again and ``site.yml`` re-run: it
  must converge every node and ``scripts/demo check`` must pass.

disk-full: one Debian 12 node of its own whose /opt/dlstack is a 5 GB tmpfs (room for both envs
  twice: the rebuild keeps the previous builds), set up as the
  demo's GPU nodes are (offline envs from the controller's wheelhouse). The wheelhouse (with
  the Jupyter kernel's wheels too), then site.yml's base and python_envs plays build the envs;
  then a ballast file leaves about 60 MB free and the envs are rebuilt
  (python_envs_jupyter_kernels flips their requirements). The build must fail with a message
  naming the env and the full disk, the env link must still point at the previous complete
  build, and that env must still import Keras. Without the ballast the same run converges.

Not part of CI (each takes minutes: a whole demo converge, or building both envs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DEMO_INVENTORY as DEMO
from benchlib import DEMO_PREFIX as PREFIX
from benchlib import ROOT, TOOLS_PATH, cache_dir, heading, last_task, publish, recap, remove_containers


def attempt(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command in the repository; its result, failed or not (the faults make commands fail)."""
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def failures(output: str) -> list[str]:
    """The one-line messages of the tasks that failed (Ansible's "[ERROR]: Task failed: ..." lines)."""
    return [m.strip() for m in re.findall(r"^\[ERROR\]: Task failed: (?:Module failed: )?(.+)$", output, re.M)]


def counters(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP's counters per host, by name."""
    return {host: {"changed": c, "unreachable": u, "failed": f} for host, (c, u, f) in recap(output).items()}


def node_death(victim: str = "gpu02") -> list[str]:
    lines = [f"## A node that dies mid-run ({victim} of the demo fleet)", ""]
    attempt(["scripts/demo", "down"])
    if attempt(["scripts/demo", "up"]).returncode or attempt(["ansible-playbook", "-i", DEMO, "playbooks/wheelhouse.yml"]).returncode:
        return [*lines, "The demo fleet did not come up; nothing was tried."]
    log = ROOT / ".cache" / "faults-node-death.log"
    start = time.monotonic()
    with log.open("w") as out:
        run = subprocess.Popen(["ansible-playbook", "-i", DEMO, "site.yml"], cwd=ROOT, stdout=out,
                               stderr=subprocess.STDOUT, text=True)
        while run.poll() is None and "TASK [python_envs :" not in log.read_text(errors="replace"):
            time.sleep(1)
        killed_at = time.monotonic() - start
        task = last_task(log)
        attempt(["podman", "stop", "-t", "0", f"{PREFIX}{victim}"])
        rc = run.wait()
    output = log.read_text(errors="replace")
    hosts = counters(output)
    report = json.loads((ROOT / "reports" / "dl-verify-results.json").read_text()) if rc != 0 else {}
    rows = (ROOT / "reports" / "dl-verify-report.md").read_text() if (ROOT / "reports" / "dl-verify-report.md").exists() else ""
    # its table row and its line under "Failures" (which says why)
    victim_rows = [line for line in rows.splitlines() if line.startswith((f"| {victim} ", f"- **{victim} /"))]
    others_ok = all(v["failed"] == 0 and v["unreachable"] == 0 for h, v in hosts.items() if h != victim)
    lines += [f"- {victim} stopped {killed_at:.0f} s into site.yml, during `{task}`.",
              f"- site.yml ended with rc {rc}; recap: "
              + ", ".join(f"{h} changed={v['changed']} unreachable={v['unreachable']} failed={v['failed']}"
                          for h, v in sorted(hosts.items())),
              f"- the other nodes converged: {'yes' if others_ok else 'NO'}",
              f"- the report's rows for {victim}: " + (" / ".join(victim_rows) or "NONE")
              + f" (raw results: {json.dumps(report.get(victim))})"]
    attempt(["podman", "start", f"{PREFIX}{victim}"])
    time.sleep(5)
    rerun = attempt(["ansible-playbook", "-i", DEMO, "site.yml"])
    check = attempt(["scripts/demo", "check"])
    lines += [f"- after `podman start`, site.yml again: rc {rerun.returncode}; "
              + ", ".join(f"{h} failed={v['failed']} unreachable={v['unreachable']}" for h, v in sorted(counters(rerun.stdout).items())),
              f"- {(check.stdout + check.stderr).strip()}", ""]
    ok = rc != 0 and others_ok and hosts.get(victim, {}).get("unreachable") == 1 and victim_rows \
        and "unreachable" in " ".join(victim_rows) and rerun.returncode == 0 and check.returncode == 0
    lines += [f"Result: {'as expected' if ok else 'NOT as expected'}.", ""]
    attempt(["scripts/demo", "down"])
    return lines


def disk_full() -> list[str]:
    lines = ["## A full disk during an env build", ""]
    name = "dlstack-faults-disk"
    key = ROOT / ".cache" / "molecule-ssh" / "id_ed25519"
    remove_containers(name)
    archive = cache_dir() / "apt" / "debian12-faults"
    archive.mkdir(parents=True, exist_ok=True)
    started = attempt(["podman", "run", "-d", "--name", name, "--hostname", name, "--systemd", "always",
                  "--tmpfs", "/opt/dlstack:rw,size=5000m,mode=0755", "-v", f"{key}.pub:/root/.ssh/authorized_keys:ro",
                  # an APT archive of its own: the suite's nodes share the machine's (and its lock)
                  "-v", f"{archive}:/var/cache/apt/archives:rw",
                  "localhost/dlstack/debian:12-sshd"])
    if started.returncode:
        return [*lines, f"The node did not start: {started.stderr.strip()}"]
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "hosts.yml"
        inventory.write_text(json.dumps({"all": {"children": {"gpu_nodes": {"hosts": {name: {
            "ansible_user": "root", "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": f'-o ProxyCommand="{ROOT}/scripts/images/container-ssh %h" '
                                       "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "common_extra_ca_certificates": [{"name": "host-bundle", "src": "/etc/ssl/certs/ca-certificates.crt"}],
            "python_envs_offline": True,
            "python_envs_wheelhouse_build_dir": str(cache_dir() / "wheelhouse"),
        }}}}}}))
        base = ["ansible-playbook", "-i", str(inventory)]
        shipped = attempt([*base, "playbooks/wheelhouse.yml", "-e", "python_envs_jupyter_kernels=true"])
        first = attempt([*base, "playbooks/base.yml", "playbooks/python_envs.yml"]) if shipped.returncode == 0 else shipped
        if first.returncode:
            remove_containers(name)
            (ROOT / ".cache" / "faults-disk-first.log").write_text(first.stdout + first.stderr)
            return [*lines, f"The first build failed (rc {first.returncode}); nothing was tried "
                    "(.cache/faults-disk-first.log): " + (" / ".join(failures(first.stdout + first.stderr)) or "no task failed")]
        link_before = attempt(["podman", "exec", name, "readlink", "/opt/dlstack/envs/keras3-tensorflow"]).stdout.strip()
        free = int(attempt(["podman", "exec", name, "sh", "-c", "df -k --output=avail /opt/dlstack | tail -1"]).stdout.strip())
        ballast = max(0, free - 60 * 1024)
        attempt(["podman", "exec", name, "fallocate", "-l", f"{ballast}k", "/opt/dlstack/ballast"])
        full = attempt([*base, "playbooks/python_envs.yml", "-e", "python_envs_jupyter_kernels=true"])
        link_after = attempt(["podman", "exec", name, "readlink", "/opt/dlstack/envs/keras3-tensorflow"]).stdout.strip()
        usable = attempt(["podman", "exec", name, "/opt/dlstack/envs/keras3-tensorflow/bin/python", "-c",
                     "import keras; print(keras.__version__)"])
        said = failures(full.stdout + full.stderr)
        attempt(["podman", "exec", name, "rm", "-f", "/opt/dlstack/ballast"])
        again = attempt([*base, "playbooks/python_envs.yml", "-e", "python_envs_jupyter_kernels=true"])
    remove_containers(name)
    lines += [f"- first build: both envs; {free // 1024} MB left free on the 5 GB /opt/dlstack, then a ballast "
              f"leaving about 60 MB",
              f"- the rebuild with the disk full: rc {full.returncode}; what it said: " + (" / ".join(said[:4]) or "NOTHING"),
              f"- the env link before and after: {link_before} -> {link_after} "
              f"({'unchanged' if link_before == link_after else 'MOVED'})",
              f"- the previous env still imports Keras: {'yes, ' + usable.stdout.strip() if usable.returncode == 0 else 'NO'}",
              f"- with the ballast removed, the same run: rc {again.returncode}"
              + "".join(f"; {line}" for line in failures(again.stdout + again.stderr)[:2]), ""]
    ok = full.returncode != 0 and link_before == link_after and usable.returncode == 0 and again.returncode == 0 \
        and any("space" in s.lower() for s in said)
    return [*lines, f"Result: {'as expected' if ok else 'NOT as expected'}.", ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["node-death", "disk-full"])
    parser.add_argument("--out", default="docs/faults.md")
    args = parser.parse_args()
    os.environ["PATH"] = TOOLS_PATH
    lines = ["# Faults on real containers", "", heading("`bench/faults.py`") + ".", ""]
    if args.only in (None, "node-death"):
        lines += node_death()
    if args.only in (None, "disk-full"):
        lines += disk_full()
    publish("\n".join(lines) + "\n", ROOT / args.out)
    return 0 if "NOT as expected" not in "\n".join(lines) else 1


if __name__ == "__main__":
    sys.exit(main())
