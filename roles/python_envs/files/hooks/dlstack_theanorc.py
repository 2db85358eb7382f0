"""dlstack: let the env's own ``etc/theanorc`` give Theano defaults the user can override.

Installed by the python_envs role into envs that serve the Theano backend and run at every
interpreter start by ``dlstack_theanorc.pth``. Theano reads the files listed in
``THEANORC`` (colon-separated, default ``~/.theanorc``), later files overriding earlier
ones. This puts ``<env>/etc/theanorc`` first, so the env's defaults apply (``[blas]
ldflags``: Theano 1.0.5 fails at import with NumPy >= 1.22 unless it is set) while the
user's ``~/.theanorc`` (or their own ``THEANORC`` list) and ``THEANO_FLAGS`` still win.
On Python >= 3.11 it also turns Theano's scan (the loop behind every recurrent layer) to its
Python implementation: scan's C version is Cython output of 2017 shipped in Theano's sdist
(``scan_module/c_code/scan_perform.c``), which no longer compiles against 3.11's headers
(``longintrepr.h`` moved, ``PyCode_New`` and the frame and thread-state structs changed), so
an LSTM failed with "Compilation failed" (found by Keras 2.3.1's own integration tests).
Theano falls back to Python when that module cannot be imported, which this arranges.
It also silences the one deprecation warning Theano's own code triggers at every import
once pygpu is installed (``theano/gpuarray/linalg.py`` imports ``pkg_resources``, which
setuptools < 81 keeps but warns about); every other warning is left alone.
It never raises: a startup hook must not break Python.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

SCAN_C = "theano.scan_module.scan_perform_ext"


def prepend(environ: os._Environ[str] | dict[str, str] = os.environ, prefix: str = sys.prefix) -> str:
    """Put ``<prefix>/etc/theanorc`` first in ``environ['THEANORC']``; return the new value."""
    path = os.path.join(prefix, "etc", "theanorc")
    current = environ.get("THEANORC", "~/.theanorc")
    if not os.path.isfile(path):
        return current
    parts = [p for p in current.split(os.pathsep) if p]
    if path not in parts:
        environ["THEANORC"] = os.pathsep.join([path, *parts])
    return environ.get("THEANORC", current)


def quiet_pkg_resources(add_filter: Callable[..., None] = warnings.filterwarnings) -> None:
    """Ignore setuptools' "pkg_resources is deprecated" warning when theano.gpuarray raises it."""
    add_filter("ignore", message="pkg_resources is deprecated", category=UserWarning,
               module=r"theano\.gpuarray\.linalg")


class ScanInPython(importlib.abc.MetaPathFinder):
    """Refuse ``theano.scan_module.scan_perform_ext``, so scan runs its Python implementation."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname == SCAN_C:
            raise ImportError(f"dlstack: {SCAN_C} (Cython C of 2017) does not build on Python >= 3.11; "
                              "scan runs in Python")
        return None


def scan_in_python(meta_path: list[object] = sys.meta_path, version: tuple[int, ...] = sys.version_info) -> bool:
    """Install :class:`ScanInPython` first on ``meta_path`` on Python >= 3.11, once; True when it is there."""
    if version[:2] < (3, 11):
        return False
    if not any(isinstance(finder, ScanInPython) for finder in meta_path):
        meta_path.insert(0, ScanInPython())
    return True


# a startup hook must never break the interpreter
with contextlib.suppress(Exception):
    prepend()
    quiet_pkg_resources()
    scan_in_python()
