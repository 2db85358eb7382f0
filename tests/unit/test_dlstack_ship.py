"""The dlstack_ship action (controller side: checks, packing) and the dlstack_unpack module (node
side: every file whole under its name, nothing written for a bad archive, leftovers removed)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import plugin_loader
import pytest

REPO = Path(__file__).resolve().parents[2]
SHIP = plugin_loader.load_by_path("dlstack_ship_action", REPO / "plugins" / "action" / "dlstack_ship.py")
UNPACK_PATH = REPO / "plugins" / "modules" / "dlstack_unpack.py"
UNPACK = plugin_loader.load_by_path("dlstack_unpack_module", UNPACK_PATH)


def wheels(tmp_path: Path, **contents: bytes) -> dict[str, str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    files = {}
    for name, data in contents.items():
        (src / name).write_bytes(data)
        files[name] = str(src / name)
    return files


def test_ship_refuses_names_with_a_directory_hidden_names_and_missing_files(tmp_path: Path) -> None:
    files = wheels(tmp_path, **{"a.whl": b"a"})
    lines = SHIP.problems({**files, "../b.whl": files["a.whl"], ".c.whl": files["a.whl"],
                           "d.whl": str(tmp_path / "absent.whl"), "e.whl": str(tmp_path)})
    assert lines == ["'../b.whl' is not a plain file name (no directory part, not hidden)",
                     "'.c.whl' is not a plain file name (no directory part, not hidden)",
                     f"d.whl: '{tmp_path / 'absent.whl'}' is not a file on the controller",
                     f"e.whl: '{tmp_path}' is not a file on the controller"]
    assert SHIP.problems(files) == []
    assert SHIP.problems(["a.whl"]) == ["files must be a mapping of file name to the controller's path, not list"]


def test_pack_stores_each_file_under_its_plain_name_in_name_order(tmp_path: Path) -> None:
    files = wheels(tmp_path, **{"z.whl": b"zz", "a.whl": b"a" * 70000})
    SHIP.pack(files, str(tmp_path / "ship.tar"))
    with tarfile.open(tmp_path / "ship.tar") as archive:
        assert [(m.name, m.size, m.isreg()) for m in archive.getmembers()] == [("a.whl", 70000, True), ("z.whl", 2, True)]
        member = archive.extractfile("a.whl")
        assert member is not None and member.read() == b"a" * 70000


def run_unpack(tmp_path: Path, archive: Path, dest: Path, **extra: object) -> tuple[int, dict[str, object]]:
    args = {"archive": str(archive), "dest": str(dest), "owner": str(os.getuid()), "group": str(os.getgid()),
            "mode": "0640", **extra}
    return plugin_loader.run_module(UNPACK_PATH, tmp_path, args)


def test_unpack_puts_every_file_in_place_with_its_mode_and_removes_leftovers(tmp_path: Path) -> None:
    files = wheels(tmp_path, **{"a.whl": b"new a", "b.whl": b"b"})
    SHIP.pack(files, str(tmp_path / "ship.tar"))
    dest = tmp_path / "wheelhouse"
    dest.mkdir()
    (dest / "a.whl").write_bytes(b"old a")  # replaced whole
    (dest / ".dlstack-unpack-x1y2").write_bytes(b"torn")  # an interrupted run's leftover
    (dest / "kept.whl").write_bytes(b"k")
    rc, out = run_unpack(tmp_path, tmp_path / "ship.tar", dest)
    assert rc == 0, out
    assert out["changed"] is True and out["files"] == ["a.whl", "b.whl"]
    assert sorted(p.name for p in dest.iterdir()) == ["a.whl", "b.whl", "kept.whl"]
    assert (dest / "a.whl").read_bytes() == b"new a"
    assert {oct((dest / n).stat().st_mode & 0o7777) for n in ("a.whl", "b.whl")} == {"0o640"}


def test_unpack_writes_nothing_when_a_member_is_not_a_plain_file(tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w:") as out:
        for name in ("good.whl", "../evil.whl"):
            info = tarfile.TarInfo(name)
            info.size = 1
            out.addfile(info, io.BytesIO(b"x"))
        link = tarfile.TarInfo("link.whl")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(link)
    dest = tmp_path / "wheelhouse"
    dest.mkdir()
    rc, out = run_unpack(tmp_path, archive, dest)
    assert rc == 1
    assert out["msg"] == (f"dlstack_unpack: {archive}: '../evil.whl' is not a plain file name; "
                          "'link.whl' is not a regular file")
    assert list(dest.iterdir()) == []


def test_unpack_leaves_no_partial_file_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = wheels(tmp_path, **{"a.whl": b"a", "b.whl": b"b"})
    SHIP.pack(files, str(tmp_path / "ship.tar"))
    dest = tmp_path / "wheelhouse"
    dest.mkdir()
    calls = []

    def failing_replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        os.rename(src, dst)

    monkeypatch.setattr(UNPACK.os, "replace", failing_replace)
    with pytest.raises(OSError):
        UNPACK.unpack(str(tmp_path / "ship.tar"), str(dest), os.getuid(), os.getgid(), 0o644)
    assert sorted(p.name for p in dest.iterdir()) == ["a.whl"]


def test_unpack_in_check_mode_lists_and_writes_nothing(tmp_path: Path) -> None:
    files = wheels(tmp_path, **{"a.whl": b"a"})
    SHIP.pack(files, str(tmp_path / "ship.tar"))
    dest = tmp_path / "wheelhouse"
    dest.mkdir()
    rc, out = run_unpack(tmp_path, tmp_path / "ship.tar", dest, _ansible_check_mode=True)
    assert rc == 0 and out["changed"] is True and out["files"] == ["a.whl"]
    assert list(dest.iterdir()) == []


def test_unpack_refuses_a_bad_mode_and_an_unknown_owner(tmp_path: Path) -> None:
    files = wheels(tmp_path, **{"a.whl": b"a"})
    SHIP.pack(files, str(tmp_path / "ship.tar"))
    dest = tmp_path / "wheelhouse"
    dest.mkdir()
    rc, out = run_unpack(tmp_path, tmp_path / "ship.tar", dest, mode="rw-r--r--")
    assert rc == 1 and out["msg"] == "dlstack_unpack: mode 'rw-r--r--' is not an octal number"
    rc, out = run_unpack(tmp_path, tmp_path / "ship.tar", dest, owner="no-such-user-dlstack")
    assert rc == 1 and out["msg"] == "dlstack_unpack: no user 'no-such-user-dlstack'"
    assert list(dest.iterdir()) == []
