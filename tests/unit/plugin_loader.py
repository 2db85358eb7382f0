"""Load a plugin, module or script of the project by its path (they are not packages),
or run a module as Ansible runs it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

# the project's shared module_utils (ansible.cfg's module_utils): stdlib-only code that the
# roles' modules import as ansible.module_utils.NAME, filters load by path, and dl-verify
# imports on the node
SHARED_MODULE_UTILS = Path(__file__).resolve().parents[2] / "plugins" / "module_utils"


def load_by_path(name: str, path: Path) -> ModuleType:
    """Import the file at ``path`` as a module called ``name`` (a script without the .py
    suffix too)."""
    spec = importlib.util.spec_from_file_location(name, path, loader=SourceFileLoader(name, str(path)))
    assert spec and spec.loader, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def load_module_utils(*paths: Path) -> None:
    """Make module_utils files (a role's, or SHARED_MODULE_UTILS') importable as ``ansible.module_utils.NAME``, as Ansible
    does for the modules of a role (call before loading such a module)."""
    for path in paths:
        name = f"ansible.module_utils.{path.stem}"
        if name not in sys.modules:
            load_by_path(name, path)


# run a module file as __main__ after making the given module_utils files importable
_RUNNER = """
import runpy, sys
from pathlib import Path
here, module, args, *utils = sys.argv[1:]
sys.path.insert(0, here)
import plugin_loader
plugin_loader.load_module_utils(*map(Path, utils))
sys.argv = [module, args]
runpy.run_path(module, run_name="__main__")
"""


def run_module(path: Path, cwd: Path, args: dict[str, Any],
               module_utils: tuple[Path, ...] = ()) -> tuple[int, dict[str, Any]]:
    """Run the module file at ``path`` with ``args`` (ANSIBLE_MODULE_ARGS, internal ``_ansible_*``
    keys included) in a subprocess, its role's ``module_utils`` files importable; (exit status,
    the JSON it printed)."""
    args_file = cwd / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, "-c", _RUNNER, str(Path(__file__).parent), str(path), str(args_file),
                           *map(str, module_utils)],
                          capture_output=True, text=True, cwd=cwd, timeout=60, check=False)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)
