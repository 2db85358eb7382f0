"""dlstack: let the env's own ``etc/theanorc`` give Theano defaults the user can override.

Installed by the python_envs role into envs that serve the Theano backend and run at every
interpreter start by ``dlstack_theanorc.pth``. Theano reads the files listed in
``THEANORC`` (colon-separated, default ``~/.theanorc``), later files overriding earlier
ones. This puts ``<env>/etc/theanorc`` first, so the env's defaults apply (``[blas]
ldflags``: Theano 1.0.5 fails at import with NumPy >= 1.22 unless it is set) while the
user's ``~/.theanorc`` (or their own ``THEANORC`` list) and ``THEANO_FLAGS`` still win.
It also silences the one deprecation warning Theano's own code triggers at every import
once pygpu is installed (``theano/gpuarray/linalg.py`` imports ``pkg_resources``, which
setuptools < 81 keeps but warns about); every other warning is left alone.
It never raises: a startup hook must not break Python.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable


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


# a startup hook must never break the interpreter
with contextlib.suppress(Exception):
    prepend()
    quiet_pkg_resources()
