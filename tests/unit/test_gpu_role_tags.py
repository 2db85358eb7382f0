"""Every sub-tag of the GPU stack's roles runs alone: the first import of tasks/main.yml
(preflight, which loads the platform variables and checks the input) carries every tag that
any other task of the file uses, and nvidia_driver's APT state read does too (its later steps
read what it found)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def main_tasks(role: str) -> list[dict]:
    return yaml.safe_load((ROOT / "roles" / role / "tasks" / "main.yml").read_text())


@pytest.mark.parametrize("role", ["nvidia_driver", "cuda_toolkit", "cudnn"])
def test_preflight_carries_every_tag(role: str) -> None:
    tasks = main_tasks(role)
    first = tasks[0]
    assert str(first.get("ansible.builtin.import_tasks")) == "preflight.yml", first
    used = {tag for task in tasks for tag in task.get("tags", [])}
    assert set(first["tags"]) == used, sorted(used - set(first["tags"]))


def test_nvidia_driver_state_read_carries_every_tag() -> None:
    tasks = main_tasks("nvidia_driver")
    read = [t for t in tasks if t.get("ansible.builtin.import_tasks") == "versions.yml"]
    assert read and set(read[0]["tags"]) == set(tasks[0]["tags"])
    # and it runs before anything that changes packages or the pin
    order = [t.get("ansible.builtin.import_tasks") for t in tasks]
    assert order.index("versions.yml") < min(order.index(name) for name in ("pin.yml", "install.yml", "kernel.yml"))
