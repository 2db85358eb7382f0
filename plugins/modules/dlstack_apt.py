#!/usr/bin/python
"""Documentation of the dlstack_apt action (plugins/action/dlstack_apt.py); the action runs
ansible.builtin.apt and, in check mode on a node without package lists, dlstack_apt_preview."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dlstack_apt
short_description: ansible.builtin.apt, with a check mode that completes on a fresh node
description:
  - Runs M(ansible.builtin.apt) with the task's arguments, unchanged - every option of
    M(ansible.builtin.apt) is accepted, and the result is apt's.
  - One difference, in check mode on a node that has no APT package lists yet (a freshly
    installed machine; the real run downloads them first, check mode does not) - there apt
    cannot resolve any package and fails with C(No package matching ...). This action then
    asks M(dlstack_apt_preview) instead, which says in one line which packages the real run
    installs (those dpkg does not list as installed now) and that their versions cannot be
    predicted, and reports C(changed) when any is missing. A task that installs nothing
    (only C(update_cache), C(state=absent), C(upgrade)) goes to apt as it is.
  - Every role installs packages through this action, so the behaviour has one owner.
author: dlstack
"""

EXAMPLES = r"""
- name: Install the base packages
  dlstack_apt:
    name: [curl, gnupg]
    state: present
    update_cache: true
"""

RETURN = r"""
blind:
  description: In check mode, whether the node had no package lists (the preview was made instead of apt's check).
  returned: in check mode, for a task that installs
  type: bool
missing:
  description: With O(blind), the packages the real run installs.
  returned: with blind
  type: list
  elements: str
"""
