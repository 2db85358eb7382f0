#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Assemble the pygpu wheel (libgpuarray inside) from Debian's binary packages."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: python_envs_pygpu_wheel
short_description: Assemble the pygpu wheel, libgpuarray inside, from Debian's python3-pygpu and libgpuarray3
description:
  - Reads the C(.deb) files named by O(debs) from O(sources) (each checked against its
    sha256), and writes the wheel C(pygpu-VERSION-cpXY-cpXY-manylinux_2_N_ARCH.whl) to O(dest) --
    the pygpu package (its generated C sources left out), libgpuarray's shared library as
    C(pygpu.libs/libgpuarray.so.3) (loaded by C(pygpu/__init__.py) before the extension
    modules need it), the metadata, Debian's copyright files and the sources' sha256 in
    C(DLSTACK_SOURCES).
  - The wheel is reproducible byte for byte from the same packages, so its sha256 can be
    pinned in a lock. Unchanged when O(dest) already holds the same bytes.
  - Runs where the store is (the controller, with C(delegate_to)); Python's standard library
    only (C(data.tar.xz) members; C(.zst) ones need Python 3.14).
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  debs:
    description: The packages, each C(url) (its base name is the file in O(sources)) and C(sha256).
    type: list
    elements: dict
    required: true
  sources:
    description: Directory holding the C(.deb) files.
    type: path
    required: true
  dest:
    description: Directory the wheel is written to (created when missing).
    type: path
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Assemble the pygpu wheel
  python_envs_pygpu_wheel:
    debs:
      - url: http://deb.debian.org/debian/pool/main/libg/libgpuarray/python3-pygpu_0.7.6-13+b1_amd64.deb
        sha256: 8657003207c37659cbb64104305b90ca91ef3b8828bb76ed5fd408f9630cefb0
      - url: http://deb.debian.org/debian/pool/main/libg/libgpuarray/libgpuarray3_0.7.6-13+b1_amd64.deb
        sha256: 1bfa4e635c8ab9139c910beb2d90c9e2614a70ec9edf5afbb0f263331220219b
    sources: /srv/dlstack/wheelhouse/sources
    dest: /srv/dlstack/wheelhouse/local
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: File name of the wheel.
  returned: success
  type: str
  sample: pygpu-0.7.6-cp311-cp311-manylinux_2_34_x86_64.whl
path:
  description: Path of the wheel.
  returned: success
  type: str
sha256:
  description: sha256 of the wheel.
  returned: success
  type: str
size:
  description: Size of the wheel in bytes.
  returned: success
  type: int
blind:
  description:
    - In check mode when a C(.deb) is not in O(sources) yet (the download before this step does
      not run in check mode) - the wheel cannot be predicted, C(changed) is reported and
      O(name), O(path), O(sha256) and O(size) are not returned.
  returned: in check mode, without the packages
  type: bool
"""

import hashlib
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.python_envs_wheel import WheelError, pygpu_wheel


def main() -> None:
    """Module entry point."""
    module = AnsibleModule(
        argument_spec={
            "debs": {"type": "list", "elements": "dict", "required": True},
            "sources": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    paths = [os.path.join(module.params["sources"], str(deb.get("url", "")).rsplit("/", 1)[-1])
             for deb in module.params["debs"]]
    absent = [os.path.basename(path) for path in paths if not os.path.exists(path)]
    if module.check_mode and absent:
        # the download before this step does not run in check mode (a fresh controller's store)
        msg = (f"python_envs on controller: check mode cannot predict the pygpu wheel: Debian's "
               f"{', '.join(absent)} not downloaded yet; the real run downloads them and assembles it")
        module.warn(msg)
        module.exit_json(changed=True, blind=True, msg=msg)
    debs = {}
    for deb, path in zip(module.params["debs"], paths, strict=True):
        url, digest = str(deb.get("url", "")), str(deb.get("sha256", ""))
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            module.fail_json(msg=f"python_envs: pygpu wheel: cannot read {path}: {exc}")
        if hashlib.sha256(data).hexdigest() != digest:
            module.fail_json(msg=f"python_envs: pygpu wheel: {path} does not have the sha256 {digest} of {url}")
        debs[os.path.basename(path)] = data
    sources = [{"url": str(d["url"]), "sha256": str(d["sha256"])} for d in module.params["debs"]]
    try:
        name, data = pygpu_wheel(debs, sources)
    except WheelError as exc:
        module.fail_json(msg=f"python_envs: pygpu wheel: {exc}")
    path = os.path.join(module.params["dest"], name)
    result = {"changed": False, "name": name, "path": path, "sha256": hashlib.sha256(data).hexdigest(),
              "size": len(data)}
    try:
        with open(path, "rb") as handle:
            same = handle.read() == data
    except OSError:
        same = False
    if not same:
        result["changed"] = True
        if not module.check_mode:
            os.makedirs(module.params["dest"], mode=0o755, exist_ok=True)
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
