"""dlstack: restore the ``collections`` ABC aliases that Python 3.10 removed.

Installed by the python_envs role into envs with ``collections_compat: true`` (the
Keras 2.3.1 + Theano env) and run at every interpreter start by
``dlstack_collections_compat.pth`` (site.py executes ``import`` lines of .pth files).
Keras 2.3.1 does ``from collections import Iterable`` (and Mapping, ...), which fails on
Python >= 3.10: this puts each name of ``collections.abc.__all__`` that ``collections``
lacks back on ``collections`` as an alias of the same object. Nothing else changes; no
file of any package is patched. It never raises: a startup hook must not break Python.
"""

from __future__ import annotations

import collections
import collections.abc
import contextlib


def restore(module: object = collections) -> list[str]:
    """Alias every missing ``collections.abc`` name on ``module``; return the names added."""
    added: list[str] = []
    for name in collections.abc.__all__:
        if not hasattr(module, name):
            setattr(module, name, getattr(collections.abc, name))
            added.append(name)
    return added


# a startup hook must never break the interpreter
with contextlib.suppress(Exception):
    restore()
