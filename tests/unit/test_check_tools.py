"""Unit tests for the suite's checking tools: scripts/check-recap, scripts/check-mode-compare,
scripts/tags-alone (role tags), the dlstack_changes callback and the dlstack_apt_preview module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import plugin_loader
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
recap = plugin_loader.load_by_path("check_recap", REPO / "scripts" / "check-recap")
compare = plugin_loader.load_by_path("check_mode_compare", REPO / "scripts" / "check-mode-compare")
tags_alone = plugin_loader.load_by_path("tags_alone", REPO / "scripts" / "tags-alone")

RECAP = """
PLAY RECAP *********************************************************************
gpu01                      : ok=52   changed=0    unreachable=0    failed=0    skipped=20   rescued=0    ignored=0
ws01                       : ok=48   changed={ws}    unreachable=0    failed={failed}    skipped=22   rescued=0    ignored=0
"""


def test_recap_all_unchanged() -> None:
    assert recap.problems(RECAP.format(ws=0, failed=0), 0, ["gpu01", "ws01"]) == []


def test_recap_names_each_host_that_differs() -> None:
    assert recap.problems(RECAP.format(ws=2, failed=1), 0, None) == ["ws01: changed=2 unreachable=0 failed=1"]
    assert recap.problems(RECAP.format(ws=0, failed=0), 0, ["gpu01", "gpu02", "ws01"]) == [
        "the recap names ['gpu01', 'ws01'], expected ['gpu01', 'gpu02', 'ws01']"]
    assert recap.problems("no recap at all", 0, None) == ["no PLAY RECAP in the output"]


def write(path: Path, entries: list[dict]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return str(path)


def entry(task: str, status: str, host: str = "gpu01", handler: bool = False) -> dict:
    return {"host": host, "task": task, "path": "roles/x/tasks/main.yml:1", "status": status, "handler": handler}


def test_compare_every_change_predicted(tmp_path: Path) -> None:
    check = write(tmp_path / "c", [entry("common : Install the base packages", "changed"),
                                   entry("common : Update the CA trust store", "skipped", handler=True),
                                   entry("common : Check the URLs", "ok")])
    real = write(tmp_path / "r", [entry("common : Install the base packages", "changed"),
                                  entry("common : Update the CA trust store", "changed", handler=True)])
    lines, problems = compare.compare(compare.load(check), compare.load(real), {})
    assert problems == []
    assert lines == ["gpu01: check mode predicted 1 changed task(s), the real run changed 2, 2 of them predicted"]


def test_compare_names_what_was_not_predicted_and_check_failures(tmp_path: Path) -> None:
    check = write(tmp_path / "c", [entry("python_envs : Build each env", "ok"),
                                   entry("dl_verify : Run dl-verify", "failed", host="ws01")])
    real = write(tmp_path / "r", [entry("python_envs : Build each env", "changed"),
                                  entry("dl_user_config : Write files", "changed"),
                                  entry("dl_verify : Run dl-verify", "ok", host="ws01")])
    _lines, problems = compare.compare(compare.load(check), compare.load(real),
                                       {"dl_user_config : Write files": {"why": "accounts made by the real run"}})
    assert problems == ["gpu01: the real run changed, check mode did not predict: python_envs : Build each env",
                        "ws01: check mode failed: dl_verify : Run dl-verify"]


def test_compare_excuses_through_a_stand_in_only_where_it_spoke(tmp_path: Path) -> None:
    say = "dl_user_config : Say what check mode cannot predict before the accounts and envs exist"
    exceptions = {"dl_user_config : Write files": {"why": "accounts made by the real run", "stand_in": say}}
    check = write(tmp_path / "c", [entry(say, "changed"), entry(say, "skipped", host="ws01")])
    real = write(tmp_path / "r", [entry("dl_user_config : Write files", "changed"),
                                  entry("dl_user_config : Write files", "changed", host="ws01")])
    lines, problems = compare.compare(compare.load(check), compare.load(real), exceptions)
    assert problems == ["ws01: the real run changed, check mode did not predict: dl_user_config : Write files"]
    assert lines[0].endswith("excepted: dl_user_config : Write files (accounts made by the real run)")


def test_the_exceptions_file_names_real_tasks_and_stand_ins() -> None:
    """Every exception names a task that exists in a role (by its role-qualified name), says
    why, and its stand-in, when named, exists too: a renamed task cannot leave a stale excuse."""
    names = set()
    for path in REPO.glob("roles/*/tasks/*.yml"):
        role = path.parts[-3]
        for task in yaml.safe_load(path.read_text()) or []:
            for t in [task, *task.get("block", [])]:
                if t.get("name"):
                    names.add(f"{role} : {t['name']}")
    listed = yaml.safe_load((REPO / "tests" / "check_mode_exceptions.yml").read_text())
    assert listed, "tests/check_mode_exceptions.yml is empty"
    for item in listed:
        assert item["task"] in names and item["why"].strip(), item
        assert "stand_in" not in item or item["stand_in"] in names, item


def test_role_tags_come_from_the_table_of_contents() -> None:
    tags = tags_alone.role_tags("common")
    assert tags[0] == "common" and "common_packages" in tags and len(tags) == len(set(tags))
    roles = {p.name for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").is_file()}
    assert set(tags_alone.PLAYBOOKS) == roles - tags_alone.INTERNAL
    for playbook in set(tags_alone.PLAYBOOKS.values()):
        assert (REPO / playbook).is_file()


def test_the_tag_lanes_hold_every_role_once_in_site_order() -> None:
    lanes = [role for lane in tags_alone.LANES for role in lane]
    assert sorted(lanes) == sorted(tags_alone.PLAYBOOKS) and len(lanes) == len(set(lanes))
    # site.yml's order within each lane: the order of PLAYBOOKS (site.yml's imports)
    order = list(tags_alone.PLAYBOOKS)
    for lane in tags_alone.LANES:
        assert list(lane) == sorted(lane, key=order.index), lane


INCLUDES = ("import_tasks", "include_tasks")


def inner_tags(tasks_dir: Path, tasks: list[dict], seen: set[Path]) -> set[str]:
    """Every tag given inside these tasks (blocks, include's apply, the files they import)."""
    found: set[str] = set()
    for task in tasks or []:
        found |= set(task.get("tags") or [])
        for key in ("block", "rescue", "always"):
            found |= inner_tags(tasks_dir, task.get(key) or [], seen)
        for key, value in task.items():
            if key.rsplit(".", 1)[-1] not in INCLUDES and key.rsplit(".", 1)[-1] != "include_role":
                continue
            if isinstance(value, dict):
                found |= set((value.get("apply") or {}).get("tags") or [])
                value = value.get("file")
            if key.rsplit(".", 1)[-1] in INCLUDES and isinstance(value, str) and "{{" not in value:
                path = tasks_dir / value
                assert path.is_file(), path
                if path not in seen:
                    seen.add(path)
                    found |= inner_tags(tasks_dir, yaml.safe_load(path.read_text()), seen)
    return found


@pytest.mark.parametrize("role", sorted(tags_alone.PLAYBOOKS))
def test_a_tag_selects_whole_parts_of_the_table_of_contents(role: str) -> None:
    """tags-alone's covered_by holds only if no task inside a part carries a tag its part lacks."""
    tasks_dir = REPO / "roles" / role / "tasks"
    for part in yaml.safe_load((tasks_dir / "main.yml").read_text()):
        own = set(part.get("tags") or [])
        inner = inner_tags(tasks_dir, [{k: v for k, v in part.items() if k != "tags"}], set())
        assert inner <= own and not inner & {"always", "never"}, (part.get("name"), sorted(inner - own))


def test_a_tag_whose_parts_begin_another_tags_parts_is_covered_by_it() -> None:
    parts = [{"r", "r_pre", "r_a", "r_b", "r_c"}, {"r", "r_a"}, {"r", "r_b", "r_c"}, {"r", "r_c"}, {"r", "r_d"}]
    tags = ["r_pre", "r_a", "r_b", "r_c", "r_d"]
    # r_pre's parts ([0]) begin every other tag's; r_b's ([0, 2]) begin r_c's ([0, 2, 3]); r_a and
    # r_d run: r_a's [0, 1] begins no other, r_c's [0, 2, 3] neither, r_d's [0, 4] neither
    assert tags_alone.covered_by(parts, tags) == {"r_pre": "r_c", "r_b": "r_c"}
    # the same parts: the first tag runs, the second is covered
    assert tags_alone.covered_by([{"x", "y"}, {"z"}], ["x", "y"]) == {"y": "x"}
    # a tag whose own parts run after a part it skips is not covered: there they run after other tasks
    assert tags_alone.covered_by([{"a"}, {"a", "b"}], ["a", "b"]) == {}
    assert tags_alone.covered_by([{"a", "b"}, {"a"}, {"b"}], ["a", "b"]) == {}


def test_tags_alone_refuses_an_unknown_role(capsys: pytest.CaptureFixture[str]) -> None:
    assert tags_alone.main(["inventory/demo", "no_such_role"]) == 2
    assert "unknown role(s) no_such_role" in capsys.readouterr().err


def test_the_callback_records_each_result(tmp_path: Path) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text("""
- hosts: localhost
  gather_facts: false
  tasks:
    - {name: one, ansible.builtin.command: "true", notify: h}
    - {name: two, ansible.builtin.debug: {msg: x}}
    - {name: three, ansible.builtin.command: "true", when: false}
  handlers:
    - {name: h, ansible.builtin.debug: {msg: y}}
""")
    log = tmp_path / "changes.jsonl"
    env = dict(os.environ, DLSTACK_CHANGES_LOG=str(log), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    done = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)],
                          cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    got = [(e["task"], e["status"], e["handler"]) for e in map(json.loads, log.read_text().splitlines())]
    assert got == [("one", "changed", False), ("two", "ok", False), ("three", "skipped", False), ("h", "ok", True)]


@pytest.fixture
def fake_dpkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A dpkg-query on PATH that knows curl as installed and gnupg as removed."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dpkg-query").write_text("#!/bin/sh\necho 'curl installed'\necho 'gnupg not-installed'\nexit 1\n")
    (bindir / "dpkg-query").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return bindir


def test_apt_preview_names_what_is_not_installed(tmp_path: Path, fake_dpkg: Path) -> None:
    rc, out = plugin_loader.run_module(REPO / "plugins" / "modules" / "dlstack_apt_preview.py", tmp_path,
                                       {"names": ["curl", "gnupg", "pciutils=1:3.9.0-4"], "who": "common on gpu01",
                                        "_ansible_check_mode": True})
    assert rc == 0 and out["changed"]
    assert out["missing"] == ["gnupg", "pciutils=1:3.9.0-4"]
    assert out["msg"] == ("common on gpu01: no APT package lists yet, so check mode cannot resolve packages or predict "
                          "their versions; the real run downloads the lists first and installs gnupg, pciutils=1:3.9.0-4 "
                          "(not installed now)")
    # 2.19 hands warnings over as summaries of events
    assert [w["event"]["msg"] for w in out["warnings"]] == [out["msg"]]


def test_apt_preview_is_quiet_when_all_is_installed(tmp_path: Path, fake_dpkg: Path) -> None:
    rc, out = plugin_loader.run_module(REPO / "plugins" / "modules" / "dlstack_apt_preview.py", tmp_path,
                                       {"names": ["curl"], "_ansible_check_mode": True})
    assert rc == 0 and not out["changed"] and out["missing"] == [] and "warnings" not in out


def test_apt_preview_names_the_package_of_a_deb_not_copied_yet(tmp_path: Path, fake_dpkg: Path) -> None:
    rc, out = plugin_loader.run_module(REPO / "plugins" / "modules" / "dlstack_apt_preview.py", tmp_path,
                                       {"names": [], "debs": ["/var/lib/dlstack/python/dlstack-python3.11_3.11.2-1_amd64.deb"],
                                        "lists_dir": str(tmp_path / "none"), "_ansible_check_mode": True})
    assert rc == 0 and out["changed"] and out["blind"]
    assert out["missing"] == ["dlstack-python3.11"]


def test_apt_preview_steps_aside_where_the_node_has_lists(tmp_path: Path, fake_dpkg: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4").write_text("")
    args = {"names": ["gnupg"], "only_without_lists": True, "lists_dir": str(lists), "_ansible_check_mode": True}
    rc, out = plugin_loader.run_module(REPO / "plugins" / "modules" / "dlstack_apt_preview.py", tmp_path, args)
    assert rc == 0 and out["blind"] is False and not out["changed"] and out["missing"] == []
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4").unlink()
    rc, out = plugin_loader.run_module(REPO / "plugins" / "modules" / "dlstack_apt_preview.py", tmp_path, args)
    assert rc == 0 and out["blind"] is True and out["missing"] == ["gnupg"]


ACTION = plugin_loader.load_by_path("dlstack_apt_action", REPO / "plugins" / "action" / "dlstack_apt.py")


@pytest.mark.parametrize(("args", "expected"), [
    ({"name": ["curl", "gnupg"], "state": "present"}, {"names": ["curl", "gnupg"], "debs": []}),
    ({"name": "curl, gnupg"}, {"names": ["curl", "gnupg"], "debs": []}),
    ({"pkg": "xz-utils", "install_recommends": False}, {"names": ["xz-utils"], "debs": []}),
    ({"deb": "/tmp/x_1_amd64.deb"}, {"names": [], "debs": ["/tmp/x_1_amd64.deb"]}),
    ({"name": ["nvidia-driver"], "state": "latest"}, {"names": ["nvidia-driver"], "debs": []}),
])
def test_apt_action_previews_tasks_that_install(args: dict[str, object], expected: dict[str, object]) -> None:
    assert ACTION.preview_request(args) == expected


@pytest.mark.parametrize("args", [{"update_cache": True}, {"name": "old-tool", "state": "absent"}, {"upgrade": "dist"},
                                  {"autoremove": True}, {"name": []}])
def test_apt_action_leaves_to_apt_what_installs_nothing(args: dict[str, object]) -> None:
    assert ACTION.preview_request(args) is None


def test_every_role_installs_packages_through_the_action() -> None:
    """One owner for installing packages in check mode: no role calls ansible.builtin.apt to install."""
    offenders = []
    for path in sorted(REPO.glob("roles/*/tasks/*.yml")):
        for task in yaml.safe_load(path.read_text()) or []:
            for t in [task, *task.get("block", [])]:
                args = t.get("ansible.builtin.apt") or t.get("apt")
                if isinstance(args, dict) and ACTION.preview_request(args) is not None:
                    offenders.append(f"{path.relative_to(REPO)}: {t.get('name')}")
    assert not offenders, offenders


def test_apt_preview_previews_a_deb_that_check_mode_did_not_copy_even_with_lists(tmp_path: Path, fake_dpkg: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "x_Packages").write_text("")
    deb = tmp_path / "dlstack-python3.11_3.11.2-1_amd64.deb"
    args = {"names": [], "debs": [str(deb)], "only_without_lists": True, "lists_dir": str(lists), "who": "python_envs on ws01",
            "_ansible_check_mode": True}
    rc, out = plugin_loader.run_module(REPO / "plugins" / "modules" / "dlstack_apt_preview.py", tmp_path, args)
    assert rc == 0 and out["blind"] is True and out["changed"] and out["missing"] == ["dlstack-python3.11"]
    assert out["msg"] == ("python_envs on ws01: the package file dlstack-python3.11_3.11.2-1_amd64.deb is not on the node yet, "
                          "so check mode cannot ask APT about it; the real run copies it first and installs "
                          "dlstack-python3.11 (not installed now)")


def test_recap_parser_is_the_one_check_fresh_uses() -> None:
    assert recap.recap(RECAP.format(ws=2, failed=1)) == {"gpu01": (0, 0, 0), "ws01": (2, 0, 1)}
    assert recap.recap("PLAY RECAP\nfirst : ok=1 changed=1 unreachable=0 failed=0\n"
                       "PLAY RECAP\nlast : ok=1 changed=0 unreachable=1 failed=0\n") == {"last": (0, 1, 0)}
    assert recap.recap("no recap") == {}
    fresh = plugin_loader.load_by_path("check_fresh", REPO / "scripts" / "check-fresh")
    assert fresh.check_recap.recap is not None and not hasattr(fresh, "RECAP")
