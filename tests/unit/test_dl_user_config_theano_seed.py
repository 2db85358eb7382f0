"""Unit tests for roles/dl_user_config/library/dl_user_config_theano_seed.py.

A stand-in warm-up (the real one needs an env with Theano: the dl_verify and site scenarios
run it) writes what Theano would into the staging compile directory and answers as the real
one does; the module's own work -- switching to the seed account and to each user, copying,
owners and modes, markers, stale seeds, refusals -- is real. Needs root (it switches users).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import plugin_loader
import pytest
from plugin_loader import load_by_path

ROLE = Path(__file__).resolve().parents[2] / "roles" / "dl_user_config"
AS_USER = plugin_loader.SHARED_MODULE_UTILS / "dlstack_as_user.py"
MODULE_PATH = ROLE / "library" / "dl_user_config_theano_seed.py"
plugin_loader.load_module_utils(AS_USER)
seed = load_by_path("dl_user_config_theano_seed", MODULE_PATH)

# an interpreter the seed account can run (the test's own may live in root's home)
PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the module switches to the seed account and users: root")

NAME = "compiledir_Linux-6.1--x86_64-with-glibc2.36--3.11.2-64"
# What the warm-up does to a compile directory, in miniature: keeps the modules it finds (an
# older template's, whose keys still match), compiles two more, a helper, and one module
# compiled per process that it leaves out of its answer.
WARMUP = """
import json, os, sys
base = os.environ["THEANO_FLAGS"].split("=", 1)[1]
compiled = os.path.join(base, NAME)
os.makedirs(compiled, exist_ok=True)
found = sorted(d for d in os.listdir(compiled) if os.path.isfile(os.path.join(compiled, d, "key.pkl")))
for name in ("tmpnew1", "tmpnew2", "tmpperproc"):
    os.makedirs(os.path.join(compiled, name), exist_ok=True)
    with open(os.path.join(compiled, name, "key.pkl"), "w") as fh:
        fh.write(name)
    with open(os.path.join(compiled, name, "m.so"), "w") as fh:
        fh.write("so")
os.makedirs(os.path.join(compiled, "cutils_ext"), exist_ok=True)
with open(os.path.join(compiled, "cutils_ext", "cutils_ext.so"), "w") as fh:
    fh.write("so")
rc = open(os.path.join(os.environ["HOME"], ".theanorc")).read()
kj = json.load(open(os.path.join(os.environ["KERAS_HOME"], "keras.json")))
print(json.dumps({"error": None, "compiledir": compiled, "compiledir_name": NAME, "theano": "1.0.5", "found": found,
                  "modules": sorted(set(found) | {"tmpnew1", "tmpnew2"}), "helpers": ["cutils_ext"],
                  "workloads": {"dense": {"ok": True, "seconds": 1.0},
                                "conv": {"ok": False, "seconds": 1.0, "error": "boom"}},
                  "stats": [0, 0, 3], "seen": {"theanorc": rc, "keras": kj, "uid": os.getuid()}}))
""".replace("NAME", repr(NAME))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A seed dir, a user (nobody's uid, a home and compile directory of its own) and the seed
    account (nobody too: its uid is all the module switches to)."""
    nobody = pwd.getpwnam("nobody")
    with tempfile.TemporaryDirectory(dir="/tmp") as top:  # pytest's tmp_path is private to root
        os.chmod(top, 0o755)
        root = Path(top)
        home, compiledir = root / "home", root / "theano-u"
        home.mkdir()
        compiledir.mkdir(mode=0o700)
        (home / ".theanorc").write_text("# managed\n[global]\ndevice = cpu\nbase_compiledir = /var/tmp/theano-u\n"
                                        "floatX = float32\n")
        for path in (home, home / ".theanorc", compiledir):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        user = SimpleNamespace(pw_name="nobody", pw_uid=nobody.pw_uid, pw_gid=nobody.pw_gid, pw_dir=str(home))
        monkeypatch.setattr(seed.pwd, "getpwnam", lambda name: user)
        yield SimpleNamespace(root=root, seeds=root / "seeds", home=home, compiledir=compiledir, uid=nobody.pw_uid)


def item(env: str = "keras2-theano", tid: str = "0123456789abcdef", build: str = "b1") -> dict[str, Any]:
    return {"env": env, "id": tid, "python": PYTHON, "build": build, "real": "/opt/dlstack/envs/.k2-1",
            "profile": {"keras": {"floatx": "float32"}}, "user": "nobody",
            "keras": {"floatx": "float32", "epsilon": 1e-07, "image_data_format": "channels_last"}}


def build(world: SimpleNamespace, **kw: Any) -> dict[str, Any]:
    os.makedirs(world.seeds, mode=0o755, exist_ok=True)
    return seed.build_template(item(**kw), str(world.seeds), "nobody", WARMUP, 60)


def tree(path: Path) -> list[tuple[str, int, str]]:
    return sorted((str(p.relative_to(path)), p.stat().st_uid, oct(p.stat().st_mode & 0o777)) for p in path.rglob("*"))


def test_build_makes_a_root_owned_template_of_the_modules_the_warmup_used(world: SimpleNamespace) -> None:
    built = build(world)
    template = world.seeds / "keras2-theano" / "0123456789abcdef"
    assert built["modules"] == 2 and built["warnings"] == [
        "keras2-theano: workload conv failed during the seed build: boom"]
    assert sorted(p.name for p in (template / "compiledir").iterdir()) == ["cutils_ext", "tmpnew1", "tmpnew2"]
    assert all(uid == 0 and (mode in ("0o755", "0o644")) for _, uid, mode in tree(template))
    meta = json.loads((template / "seed.json").read_text())
    assert (meta["compiledir_name"], meta["modules"], meta["helpers"]) == (NAME, ["tmpnew1", "tmpnew2"], ["cutils_ext"])
    assert meta["real"] == "/opt/dlstack/envs/.k2-1" and meta["from_previous"] is None
    # the profile's files: the user's .theanorc without its compile directory, the profile's keras.json
    assert (template / "theanorc").read_text() == "# managed\n[global]\ndevice = cpu\nfloatX = float32\n"
    assert json.loads((template / "keras.json").read_text()) == {
        "backend": "theano", "floatx": "float32", "epsilon": 1e-07, "image_data_format": "channels_last"}
    assert [p.name for p in world.seeds.iterdir()] == ["keras2-theano"]  # no staging left
    assert build(world) == {"env": "keras2-theano", "id": "0123456789abcdef", "existed": True}


def test_the_warmup_runs_as_the_seed_account_in_its_staging_directory(world: SimpleNamespace,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    original = seed.run_command

    def spy(argv: list[str], timeout: float, env: dict[str, str], cwd: str, as_user: tuple[str, int, int]) -> Any:
        done = original(argv, timeout, env=env, cwd=cwd, as_user=as_user)
        seen.update(json.loads(done.out)["seen"], env=env, as_user=as_user)
        return done

    monkeypatch.setattr(seed, "run_command", spy)
    build(world)
    assert seen["uid"] == world.uid and seen["as_user"][0] == "nobody"
    assert seen["env"]["THEANO_FLAGS"].startswith(f"base_compiledir={world.seeds}/.build-keras2-theano-")
    assert "base_compiledir" not in seen["theanorc"] and seen["keras"]["backend"] == "theano"
    assert set(seen["env"]) == {"HOME", "KERAS_HOME", "USER", "LOGNAME", "PATH", "LANG", "THEANO_FLAGS"}


def test_a_rebuild_starts_from_the_previous_template_and_keeps_only_what_was_used(world: SimpleNamespace,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    build(world)
    found: list[list[str]] = []
    original = seed.run_command

    def spy(*args: Any, **kwargs: Any) -> Any:
        done = original(*args, **kwargs)
        found.append(json.loads(done.out)["found"])
        return done

    monkeypatch.setattr(seed, "run_command", spy)
    built = build(world, tid="fedcba9876543210", build="b2")
    assert found == [["tmpnew1", "tmpnew2"]]  # the staging compile directory held the old template's modules
    assert built["from_previous"] == "0123456789abcdef"
    new = json.loads((world.seeds / "keras2-theano" / "fedcba9876543210" / "seed.json").read_text())
    assert new["modules"] == ["tmpnew1", "tmpnew2"]  # found in the old template's copy and used again


def test_a_failed_warmup_leaves_no_template(world: SimpleNamespace) -> None:
    os.makedirs(world.seeds, mode=0o755)
    bad = item()
    with pytest.raises(seed.SeedError, match="printed no result"):
        seed.build_template(bad, str(world.seeds), "nobody", "import sys; sys.exit(3)", 60)
    with pytest.raises(seed.SeedError, match="failed: ImportError: no keras"):
        seed.build_template(bad, str(world.seeds), "nobody",
                            'import json; print(json.dumps({"error": "ImportError: no keras"}))', 60)
    with pytest.raises(seed.SeedError, match="timed out after 1 s"):
        seed.build_template(bad, str(world.seeds), "nobody", "import time; time.sleep(30)", 1)
    assert list((world.seeds / "keras2-theano").iterdir()) == [] and [p.name for p in world.seeds.iterdir()] == [
        "keras2-theano"]


def seed_user(world: SimpleNamespace, tid: str = "0123456789abcdef") -> dict[str, Any]:
    return seed.seed_user({"user": "nobody", "compiledir": str(world.compiledir), "env": "keras2-theano", "id": tid},
                          str(world.seeds))


def test_seeding_copies_as_the_user_and_a_new_template_replaces_the_stale_modules(world: SimpleNamespace) -> None:
    build(world)
    assert seed_user(world) == {"user": "nobody", "env": "keras2-theano", "id": "0123456789abcdef",
                                "copied": 3, "removed": 0, "kept": 0}
    target = world.compiledir / NAME
    assert sorted(p.name for p in target.iterdir()) == ["cutils_ext", "tmpnew1", "tmpnew2"]
    assert {uid for _, uid, _ in tree(world.compiledir)} == {world.uid}  # the user's own files
    marker = world.compiledir / ".dlstack-seed.json"
    assert marker.stat().st_mode & 0o777 == 0o600
    assert json.loads(marker.read_text())["keras2-theano"]["modules"] == ["tmpnew1", "tmpnew2"]
    assert seed_user(world)["kept"] == 3  # again: nothing copied
    # the user's own module stays; a module of the old template the new one lacks goes
    own = target / "tmpmine"
    own.mkdir()
    (own / "key.pkl").write_text("mine")
    os.chown(own, world.uid, -1)
    template = world.seeds / "keras2-theano" / "0123456789abcdef"
    new = world.seeds / "keras2-theano" / "fedcba9876543210"
    os.system(f"cp -a {template} {new}")
    meta = json.loads((new / "seed.json").read_text())
    meta["modules"] = ["tmpnew2"]
    (new / "seed.json").write_text(json.dumps(meta))
    assert seed_user(world, "fedcba9876543210") == {"user": "nobody", "env": "keras2-theano", "id": "fedcba9876543210",
                                                    "copied": 0, "removed": 1, "kept": 2}
    assert sorted(p.name for p in target.iterdir()) == ["cutils_ext", "tmpmine", "tmpnew2"]


def test_templates_others_can_write_and_foreign_compile_directories_are_refused(world: SimpleNamespace) -> None:
    build(world)
    template = world.seeds / "keras2-theano" / "0123456789abcdef"
    (template / "compiledir" / "tmpnew1").chmod(0o777)
    with pytest.raises(seed.SeedError, match="tmpnew1 is not root's alone"):
        seed_user(world)
    (template / "compiledir" / "tmpnew1").chmod(0o755)
    os.chown(world.compiledir, 0, 0)  # a directory of another account (root here)
    with pytest.raises(seed.SwitchError, match="is not a directory of this user"):
        seed_user(world)
    os.rmdir(world.compiledir)
    world.compiledir.symlink_to("/etc")
    with pytest.raises(seed.SwitchError, match="is not a directory of this user"):
        seed_user(world)


def test_prune_drops_every_other_template_of_the_env(world: SimpleNamespace) -> None:
    build(world)
    build(world, tid="fedcba9876543210", build="b2")
    (world.seeds / "keras2-theano" / ".tmp-0000000000000000").mkdir()
    removed = seed.prune(str(world.seeds), "keras2-theano", ["fedcba9876543210"])
    assert [Path(p).name for p in removed] == [".tmp-0000000000000000", "0123456789abcdef"]
    assert [p.name for p in (world.seeds / "keras2-theano").iterdir()] == ["fedcba9876543210"]


def test_module_in_check_mode_changes_nothing(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    (seeds / "keras2-theano" / "0123456789abcdef").mkdir(parents=True)
    args = {"seed_dir": str(seeds), "seed_user": "nobody", "warmup": "raise SystemExit(1)", "_ansible_check_mode": True,
            "prune": [{"env": "keras2-theano", "keep": ["0123456789abcdef"]}]}
    rc, out = plugin_loader.run_module(MODULE_PATH, tmp_path, args, (AS_USER,))
    assert rc == 0 and out["changed"] is False
    rc, out = plugin_loader.run_module(MODULE_PATH, tmp_path, {**args, "prune": [{"env": "keras2-theano", "keep": []}]},
                                       (AS_USER,))
    assert rc == 0 and out["changed"] is True and (seeds / "keras2-theano" / "0123456789abcdef").is_dir()
    rc, out = plugin_loader.run_module(MODULE_PATH, tmp_path, {**args, "_ansible_check_mode": False,
                                                               "seed_dir": "relative"}, (AS_USER,))
    assert rc == 1 and "an absolute path is needed" in out["msg"]


# --- the controller's store: a template packed on one node, installed on another -------------


def test_a_packed_template_installs_on_another_node_root_owned_and_seeds_users(world: SimpleNamespace) -> None:
    os.makedirs(world.seeds, mode=0o755)
    built = seed.build_template({**item(), "key": "debian12-x86_64-abc/keras2-theano-0123456789abcdef"},
                                str(world.seeds), "nobody", WARMUP, 60, str(world.root / "export"))
    archive = Path(built["archive"])
    assert archive.name == "keras2-theano-0123456789abcdef.tar.gz" and built["key"].startswith("debian12-x86_64-abc/")
    assert archive.stat().st_mode & 0o777 == 0o600 and archive.stat().st_uid == 0
    template = world.seeds / "keras2-theano" / "0123456789abcdef"
    want = tree(template)
    other = world.root / "other-node"  # a second node's seed directory
    other.mkdir(mode=0o755)
    done = seed.import_template({"env": "keras2-theano", "id": "0123456789abcdef", "archive": str(archive)}, str(other))
    assert done == {"env": "keras2-theano", "id": "0123456789abcdef", "files": 8}
    assert tree(other / "keras2-theano" / "0123456789abcdef") == want  # same names, root's, 0755/0644
    assert not archive.exists()  # the copy from the store is removed once used
    assert [p.name for p in (other / "keras2-theano").iterdir()] == ["0123456789abcdef"]  # no partial left
    assert seed.seed_user({"user": "nobody", "compiledir": str(world.compiledir), "env": "keras2-theano",
                           "id": "0123456789abcdef"}, str(other))["copied"] == 3


def packed(world: SimpleNamespace, members: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    """An archive with the given files (and symbolic links to /etc)."""
    import io
    import tarfile
    path = world.root / "planted.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc"
            tar.addfile(info)
    return path


@pytest.mark.parametrize(("members", "links", "why"), [
    ({"seed.json": b'{"env": "keras2-theano", "id": "0123456789abcdef", "compiledir_name": "c"}'},
     ("compiledir",), "'compiledir' is not a plain relative file or directory"),
    ({"seed.json": b'{"env": "keras2-theano", "id": "0123456789abcdef", "compiledir_name": "c"}',
      "../../etc/cron.d/x": b"* * * * * root id\n"}, (), "is not a plain relative file or directory"),
    ({"seed.json": b'{"env": "keras2-theano", "id": "ffffffffffffffff", "compiledir_name": "c"}'}, (),
     "does not describe template keras2-theano/0123456789abcdef"),
    ({"compiledir/tmpx/m.so": b"so"}, (), "does not describe template"),
])
def test_an_archive_that_is_not_a_safe_template_is_refused_and_nothing_is_installed(
        world: SimpleNamespace, members: dict[str, bytes], links: tuple[str, ...], why: str) -> None:
    os.makedirs(world.seeds, mode=0o755)
    archive = packed(world, members, links)
    done = seed.import_template({"env": "keras2-theano", "id": "0123456789abcdef", "archive": str(archive)},
                                str(world.seeds))
    assert why in done["warning"] and "files" not in done
    assert list((world.seeds / "keras2-theano").iterdir()) == [] and not archive.exists()


def test_a_truncated_archive_is_refused(world: SimpleNamespace) -> None:
    os.makedirs(world.seeds, mode=0o755)
    built = seed.build_template(item(), str(world.seeds), "nobody", WARMUP, 60, str(world.root / "export"))
    archive = Path(built["archive"])
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # a copy cut short
    other = world.root / "other-node"
    other.mkdir(mode=0o755)
    done = seed.import_template({"env": "keras2-theano", "id": "0123456789abcdef", "archive": str(archive)}, str(other))
    assert "the store's archive was not used" in done["warning"]
    assert list((other / "keras2-theano").iterdir()) == []


def test_module_imports_before_it_builds_so_an_imported_template_is_not_compiled(tmp_path: Path,
                                                                                 world: SimpleNamespace) -> None:
    os.makedirs(world.seeds, mode=0o755)
    archive = seed.build_template(item(), str(world.seeds), "nobody", WARMUP, 60, str(world.root / "export"))["archive"]
    other = world.root / "other-node"
    # the warm-up fails if it runs at all: the template must come from the archive
    args = {"seed_dir": str(other), "seed_user": "nobody", "warmup": "raise SystemExit(7)",
            "imports": [{"env": "keras2-theano", "id": "0123456789abcdef", "archive": archive}],
            "builds": [item()]}
    rc, out = plugin_loader.run_module(MODULE_PATH, tmp_path, args, (AS_USER,))
    assert rc == 0 and out["changed"] is True, out
    assert out["imported"] == [{"env": "keras2-theano", "id": "0123456789abcdef", "files": 8}]
    assert out["built"] == [{"env": "keras2-theano", "id": "0123456789abcdef", "existed": True}]
    rc, out = plugin_loader.run_module(MODULE_PATH, tmp_path, {**args, "imports": []}, (AS_USER,))
    assert rc == 0 and out["changed"] is False


def test_module_opens_a_template_directory_users_cannot_read(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    seeds.mkdir(mode=0o700)  # as Ansible's file module leaves a parent it created for a 0700 child
    args = {"seed_dir": str(seeds), "seed_user": "nobody", "warmup": "raise SystemExit(1)"}
    rc, out = plugin_loader.run_module(MODULE_PATH, tmp_path, args, (AS_USER,))
    assert rc == 0 and out["changed"] is True and seeds.stat().st_mode & 0o777 == 0o755
    rc, out = plugin_loader.run_module(MODULE_PATH, tmp_path, args, (AS_USER,))
    assert rc == 0 and out["changed"] is False
