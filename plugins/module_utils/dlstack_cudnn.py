# -*- coding: utf-8 -*-
"""cuDNN's version from its header: the one parser of the project.

Read by the cudnn role's filters (the archive check, ``cudnn_installed``), dl_user_config's
filters (the cuDNN that users' .theanorc names) and dl-verify on the node (its cuDNN check),
so it uses the standard library only and runs on Python 3.9: the roles' filter plugins load it
from this folder, and the dl_verify role installs it beside dl-verify (PREFIX/lib/dl-verify/).

The version lives in ``#define CUDNN_MAJOR``, ``CUDNN_MINOR`` and ``CUDNN_PATCHLEVEL``:
in ``cudnn_version.h`` from cuDNN 8 on (``cudnn.h`` only includes it there), in ``cudnn.h``
up to cuDNN 7. ``CUDNN_VERSION`` is derived from them (x 1000 for the major up to cuDNN 8,
x 10000 from 9) and is not read.
"""

from __future__ import annotations

import re
from typing import Any

_DEFINE_RE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+CUDNN_(MAJOR|MINOR|PATCHLEVEL)[ \t]+(\d+)\b", re.MULTILINE)
# a header without a patch level (none is known) is X.Y.0; major and minor are required
_REQUIRED = ("MAJOR", "MINOR")


class CudnnHeaderError(ValueError):
    """The text holds no cuDNN version: the message names the defines it lacks."""


def parse_cudnn_header(text: str) -> tuple[int, int, int]:
    """(major, minor, patch level) from the text of cudnn_version.h (or cuDNN 7's cudnn.h).

    The first define of each name counts. Raises CudnnHeaderError naming the missing defines
    when CUDNN_MAJOR or CUDNN_MINOR is not there (cuDNN 8's and 9's cudnn.h, which only
    include cudnn_version.h, or a file that is not cuDNN's).
    """
    found: dict[str, int] = {}
    for name, value in _DEFINE_RE.findall(text):
        found.setdefault(name, int(value))
    missing = [f"CUDNN_{name}" for name in _REQUIRED if name not in found]
    if missing:
        raise CudnnHeaderError(f"no #define {' or '.join(missing)}: not a cuDNN version header "
                               "(cudnn_version.h from cuDNN 8 on, cudnn.h before)")
    return found["MAJOR"], found["MINOR"], found.get("PATCHLEVEL", 0)


def cudnn_header_version(text: Any) -> str:
    """'X.Y.Z' from the text of a cuDNN version header; '' when it holds no version (or is not
    text: a header that could not be read). The filters' and dl-verify's form."""
    if not isinstance(text, str):
        return ""
    try:
        return ".".join(map(str, parse_cudnn_header(text)))
    except CudnnHeaderError:
        return ""
