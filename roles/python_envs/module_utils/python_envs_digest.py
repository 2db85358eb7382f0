# -*- coding: utf-8 -*-
"""The sha256 of a file, read in blocks: one helper for the python_envs modules
(``python_env_build`` finds wheelhouse files by their pinned hash, ``python_envs_python_build``
checks the CPython source and reports its package's)."""

from __future__ import annotations

import hashlib


def sha256_of(path: str) -> str:
    """The sha256 of the file at ``path`` (hex), read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
