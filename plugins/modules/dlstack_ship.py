#!/usr/bin/python
"""Documentation of the dlstack_ship action (plugins/action/dlstack_ship.py); the action sends
one archive and runs dlstack_unpack on the node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dlstack_ship
short_description: Send files from the controller into a node's directory in one transfer
description:
  - Sends the named files to O(dest) on the node as one uncompressed tar archive, which
    M(dlstack_unpack) unpacks there, each file written beside its name and renamed into place
    (never seen half written, a leftover of an interrupted run removed by the next). One
    transfer instead of one per file - M(ansible.builtin.copy) in a loop pays a round of
    remote calls for each file.
  - It sends every file it is given and compares nothing - the caller passes only the files
    the node lacks (the python_envs role compares by name, which fixes a wheel's content).
  - In check mode it sends nothing and reports C(changed) when it was given any file.
  - Fails with one line per problem, before sending anything, when a name is not a plain file
    name or a path is not a file on the controller.
options:
  files:
    description: The files to send - each file's name on the node, mapped to its path on the controller.
    type: dict
    required: true
  dest:
    description: The directory on the node; it must exist.
    type: path
    required: true
  owner:
    description: The owner of the files on the node.
    type: str
    required: true
  group:
    description: The group of the files on the node.
    type: str
    required: true
  mode:
    description: The mode of the files on the node, in octal (quoted).
    type: str
    required: true
author: dlstack
"""

EXAMPLES = r"""
- name: Copy the files the node lacks
  dlstack_ship:
    files:
      six-1.17.0-py2.py3-none-any.whl: /var/cache/dlstack/wheelhouse/wheels/cp311-x86_64-glibc2.36/six-1.17.0-py2.py3-none-any.whl
    dest: /var/lib/dlstack/wheelhouse
    owner: root
    group: root
    mode: "0644"
"""

RETURN = r"""
files:
  description: The names of the files sent (in check mode, those it would send), sorted.
  returned: always
  type: list
  elements: str
"""
