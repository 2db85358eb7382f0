"""Shared pytest setup for the testinfra verifiers of every Molecule scenario.

Molecule runs each scenario's ``tests/`` with ``MOLECULE_INVENTORY_FILE`` set. This hook
turns that inventory into testinfra hosts on the ``podman://`` backend, which talks to the
containers with ``podman exec`` directly (measured 10x faster than the ansible backend).

The base config runs the verifier with pytest-xdist, two workers, ``--dist loadgroup``: every
test of one node goes to one worker, in the file's order, so the nodes are tested side by side
(their tests run commands inside the node: the CPU work is there) while each node's own tests
keep their order.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Point testinfra at the scenario's containers unless --hosts was given."""
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inventory or getattr(config.option, "hosts", None):
        return
    from testinfra.utils.ansible_runner import AnsibleRunner

    hosts = AnsibleRunner(inventory).get_hosts("all")
    config.option.hosts = ",".join(f"podman://{name}" for name in hosts)
    config.option.connection = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """One xdist group per node (tests without a node: the group "controller")."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        host = callspec.params.get("_testinfra_host") if callspec else None
        group = host.backend.get_pytest_id() if host is not None else "controller"
        item.add_marker(pytest.mark.xdist_group(name=group))
