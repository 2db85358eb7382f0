"""Unit test for molecule/conftest.py: the verifier's tests grouped by node for pytest-xdist."""

from __future__ import annotations

from pathlib import Path

import plugin_loader
import pytest
import testinfra

REPO = Path(__file__).resolve().parents[2]
conftest = plugin_loader.load_by_path("molecule_conftest", REPO / "molecule" / "conftest.py")


def test_verifier_groups_the_tests_by_node() -> None:
    class Item:
        def __init__(self, host: object) -> None:
            self.callspec = type("CallSpec", (), {"params": {"_testinfra_host": host}})() if host else None
            self.markers: list[pytest.MarkDecorator] = []

        def add_marker(self, marker: pytest.MarkDecorator) -> None:
            self.markers.append(marker)

    a, b = testinfra.get_host("podman://scn-debian12"), testinfra.get_host("podman://scn-debian13")
    items = [Item(a), Item(b), Item(a), Item(None)]
    conftest.pytest_collection_modifyitems(items)
    assert [i.markers[0].kwargs["name"] for i in items] == [a.backend.get_pytest_id(), b.backend.get_pytest_id(),
                                                           a.backend.get_pytest_id(), "controller"]
    assert all(i.markers[0].name == "xdist_group" for i in items)
