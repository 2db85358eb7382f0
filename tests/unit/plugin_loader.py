"""Load a plugin, module or script of the project by its path (they are not packages),
or run a module as Ansible runs it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def load_by_path(name: str, path: Path) -> ModuleType:
    """Import the file at ``path`` as a module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_module(path: Path, cwd: Path, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Run the module file at ``path`` with ``args`` (ANSIBLE_MODULE_ARGS, internal ``_ansible_*``
    keys included) in a subprocess; (exit status, the JSON it printed)."""
    args_file = cwd / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, str(path), str(args_file)], capture_output=True, text=True,
                          cwd=cwd, timeout=60, check=False)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)
