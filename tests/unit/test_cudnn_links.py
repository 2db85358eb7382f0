"""Unit tests for roles/cudnn/library/cudnn_links.py (planning and applying the links of an
unpacked cuDNN archive into a CUDA release), on temporary directory trees."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from plugin_loader import load_by_path

ROOT = Path(__file__).resolve().parents[2]


cl = load_by_path("cudnn_links", ROOT / "roles" / "cudnn" / "library" / "cudnn_links.py")
LIBS = ["libcudnn*"]


def archive(root: Path, version: str = "9.3.0", names: tuple[str, ...] = ("libcudnn", "libcudnn_ops")) -> Path:
    """An unpacked archive's lib directory like NVIDIA's: real file, soname link, dev link."""
    lib = root / "opt" / f"cudnn-{version}" / "lib"
    lib.mkdir(parents=True)
    for name in names:
        (lib / f"{name}.so.{version}").write_text(f"{name} {version}")
        os.symlink(f"{name}.so.{version}", lib / f"{name}.so.9")
        os.symlink(f"{name}.so.9", lib / f"{name}.so")
    (lib / "README").write_text("not linked")
    return lib


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    dest = tmp_path / "cuda-12.5" / "targets" / "lib"
    dest.mkdir(parents=True)
    (dest / "libcudart.so.12").write_text("cudart")
    return {"root": tmp_path, "src": archive(tmp_path), "dest": dest, "owned": tmp_path / "opt"}


def run(tree: dict[str, Path], src: Path | None = None) -> dict:
    todo = cl.plan(str(src or tree["src"]), str(tree["dest"]), LIBS, str(tree["owned"]))
    assert not todo["conflicts"], todo["conflicts"]
    cl.apply(str(tree["dest"]), todo)
    return todo


def test_first_run_links_files_absolutely_and_soname_links_relatively(tree: dict[str, Path]) -> None:
    todo = run(tree)
    assert sorted(todo["create"]) == ["libcudnn.so", "libcudnn.so.9", "libcudnn.so.9.3.0",
                                      "libcudnn_ops.so", "libcudnn_ops.so.9", "libcudnn_ops.so.9.3.0"]
    dest = tree["dest"]
    assert os.readlink(dest / "libcudnn.so.9.3.0") == str(tree["src"] / "libcudnn.so.9.3.0")
    assert os.readlink(dest / "libcudnn.so.9") == "libcudnn.so.9.3.0"
    assert os.readlink(dest / "libcudnn.so") == "libcudnn.so.9"
    assert (dest / "libcudnn.so").read_text() == "libcudnn 9.3.0"
    assert not (dest / "README").exists()
    assert (dest / "libcudart.so.12").read_text() == "cudart"


def test_second_run_changes_nothing(tree: dict[str, Path]) -> None:
    run(tree)
    todo = cl.plan(str(tree["src"]), str(tree["dest"]), LIBS, str(tree["owned"]))
    assert todo == {"create": {}, "update": {}, "remove": [], "conflicts": []}


def test_what_ldconfig_writes_is_what_the_module_wants(tree: dict[str, Path]) -> None:
    run(tree)
    # ldconfig (re)creates soname links as relative links to the real name: the same thing
    os.unlink(tree["dest"] / "libcudnn.so.9")
    os.symlink("libcudnn.so.9.3.0", tree["dest"] / "libcudnn.so.9")
    assert cl.plan(str(tree["src"]), str(tree["dest"]), LIBS, str(tree["owned"]))["update"] == {}


def test_new_archive_replaces_the_old_links_and_removes_stale_ones(tree: dict[str, Path]) -> None:
    run(tree)
    newer = archive(tree["root"], "9.8.0", names=("libcudnn",))   # libcudnn_ops dropped
    todo = run(tree, newer)
    assert sorted(todo["create"]) == ["libcudnn.so.9.8.0"]
    assert sorted(todo["update"]) == ["libcudnn.so.9"]
    assert sorted(todo["remove"]) == ["libcudnn.so.9.3.0", "libcudnn_ops.so", "libcudnn_ops.so.9",
                                      "libcudnn_ops.so.9.3.0"]
    assert (tree["dest"] / "libcudnn.so").read_text() == "libcudnn 9.8.0"
    assert sorted(p.name for p in tree["dest"].iterdir()) == ["libcudart.so.12", "libcudnn.so", "libcudnn.so.9",
                                                              "libcudnn.so.9.8.0"]


def test_foreign_files_and_links_are_conflicts(tree: dict[str, Path]) -> None:
    dest = tree["dest"]
    (dest / "libcudnn.so.9.3.0").write_text("copied by hand")
    os.symlink("/usr/lib/x86_64-linux-gnu/libcudnn_ops.so.9.3.0", dest / "libcudnn_ops.so.9.3.0")
    todo = cl.plan(str(tree["src"]), str(dest), LIBS, str(tree["owned"]))
    assert todo["conflicts"] == [f"{dest}/libcudnn.so.9.3.0 (a file)",
                                 f"{dest}/libcudnn_ops.so.9.3.0 -> /usr/lib/x86_64-linux-gnu/libcudnn_ops.so.9.3.0"]


def test_headers(tmp_path: Path) -> None:
    src = tmp_path / "opt" / "a" / "include"
    src.mkdir(parents=True)
    for name in ("cudnn.h", "cudnn_version.h", "cudnn_v9.h"):
        (src / name).write_text(name)
    dest = tmp_path / "include"
    dest.mkdir()
    (dest / "cuda.h").write_text("cuda")
    todo = cl.plan(str(src), str(dest), ["cudnn*.h"], str(tmp_path / "opt"))
    cl.apply(str(dest), todo)
    assert sorted(todo["create"]) == ["cudnn.h", "cudnn_v9.h", "cudnn_version.h"]
    assert (dest / "cudnn_version.h").read_text() == "cudnn_version.h"


def module_run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: dict) -> tuple[int, dict]:
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes

    monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": args})))
    monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
    monkeypatch.setattr(sys, "argv", ["cudnn_links"])
    with pytest.raises(SystemExit) as exc:
        cl.main()
    return int(exc.value.code or 0), json.loads(capsys.readouterr().out)


def test_module_check_mode_changes_nothing(tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = {"src": str(tree["src"]), "dest": str(tree["dest"]), "patterns": LIBS, "owned_prefix": str(tree["owned"]),
            "_ansible_check_mode": True}
    rc, out = module_run(monkeypatch, capsys, args)
    assert rc == 0 and out["changed"] is True and len(out["created"]) == 6
    assert sorted(p.name for p in tree["dest"].iterdir()) == ["libcudart.so.12"]


def test_module_applies_then_reports_no_change(tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = {"src": str(tree["src"]), "dest": str(tree["dest"]), "patterns": LIBS, "owned_prefix": str(tree["owned"])}
    assert module_run(monkeypatch, capsys, args)[1]["changed"] is True
    rc, out = module_run(monkeypatch, capsys, args)
    assert rc == 0 and out["changed"] is False


def test_module_fails_on_conflicts_and_missing_directories(tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tree["dest"] / "libcudnn.so.9.3.0").write_text("copied by hand")
    args = {"src": str(tree["src"]), "dest": str(tree["dest"]), "patterns": LIBS, "owned_prefix": str(tree["owned"])}
    rc, out = module_run(monkeypatch, capsys, args)
    assert rc == 1 and out["failed"] and "already has cuDNN files that dlstack did not install" in out["msg"]
    args["dest"] = str(tree["root"] / "cuda-13.0" / "lib64")
    rc, out = module_run(monkeypatch, capsys, args)
    assert rc == 1 and "is not a directory (is the CUDA release installed?)" in out["msg"]
