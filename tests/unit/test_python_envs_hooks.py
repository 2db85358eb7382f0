"""Unit tests for the startup hooks the python_envs role installs into envs (files/hooks/)."""

from __future__ import annotations

import collections.abc
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from plugin_loader import load_by_path

HOOKS = Path(__file__).resolve().parents[2] / "roles" / "python_envs" / "files" / "hooks"


def load(name: str) -> types.ModuleType:
    return load_by_path(f"test_{name}", HOOKS / f"{name}.py")


def test_collections_compat_adds_only_missing_aliases() -> None:
    compat = load("dlstack_collections_compat")
    fake = types.ModuleType("collections")
    fake.Mapping = "keep me"  # type: ignore[attr-defined]
    added = compat.restore(fake)
    assert "Mapping" not in added and fake.Mapping == "keep me"  # type: ignore[attr-defined]
    assert set(added) == set(collections.abc.__all__) - {"Mapping"}
    assert fake.Iterable is collections.abc.Iterable  # type: ignore[attr-defined]
    assert compat.restore(fake) == []


def test_collections_compat_makes_keras_2_imports_work_in_a_fresh_interpreter(tmp_path: Path) -> None:
    (tmp_path / "dlstack_collections_compat.py").write_text((HOOKS / "dlstack_collections_compat.py").read_text())
    code = "from collections import Iterable, Mapping, Callable; print(Iterable.__module__)"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert plain.returncode != 0 and "ImportError" in plain.stderr
    hooked = subprocess.run([sys.executable, "-c", "import dlstack_collections_compat\n" + code],
                            capture_output=True, text=True, check=False, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert hooked.returncode == 0, hooked.stderr
    assert hooked.stdout.strip() == "collections.abc"


@pytest.mark.parametrize(("before", "after"), [
    (None, "{rc}:~/.theanorc"),
    ("/shared/theanorc:~/.theanorc", "{rc}:/shared/theanorc:~/.theanorc"),
    ("{rc}:~/.theanorc", "{rc}:~/.theanorc"),  # idempotent (nested interpreters)
])
def test_theanorc_goes_first_so_the_users_files_win(tmp_path: Path, before: str | None, after: str) -> None:
    hook = load("dlstack_theanorc")
    (tmp_path / "etc").mkdir()
    rc = tmp_path / "etc" / "theanorc"
    rc.write_text("[blas]\nldflags = -lopenblas\n")
    environ = {} if before is None else {"THEANORC": before.format(rc=rc)}
    assert hook.prepend(environ, str(tmp_path)) == after.format(rc=rc)
    assert environ["THEANORC"] == after.format(rc=rc)


def test_theanorc_is_left_alone_without_the_env_file(tmp_path: Path) -> None:
    hook = load("dlstack_theanorc")
    environ: dict[str, str] = {}
    assert hook.prepend(environ, str(tmp_path)) == "~/.theanorc" and environ == {}


def test_hooks_never_raise_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: str) -> bool:
        raise RuntimeError(path)

    monkeypatch.setattr(os.path, "isfile", boom)  # the hook's first file check now fails
    load("dlstack_theanorc")
    monkeypatch.setattr(collections.abc, "__all__", [42])
    load("dlstack_collections_compat")


def test_theanorc_hook_silences_only_theanos_pkg_resources_warning() -> None:
    hook = load("dlstack_theanorc")
    added: list[tuple[Any, ...]] = []
    hook.quiet_pkg_resources(lambda *args, **kw: added.append((args, kw)))
    assert added == [(("ignore",), {"message": "pkg_resources is deprecated", "category": UserWarning,
                                    "module": r"theano\.gpuarray\.linalg"})]
    import warnings
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        hook.quiet_pkg_resources()
        for module in ("theano.gpuarray.linalg", "mine"):
            warnings.warn_explicit("pkg_resources is deprecated as an API.", UserWarning, "x.py", 1, module=module)
    assert [w.filename for w in seen] == ["x.py"] and len(seen) == 1  # mine only


def test_theanorc_hook_sends_scan_to_python_on_311_and_later() -> None:
    """Keras 2.3.1's LSTM tests failed on 3.11: scan's Cython C of 2017 does not compile there."""
    hook = load("dlstack_theanorc")
    meta_path: list[object] = []
    assert hook.scan_in_python(meta_path, (3, 10, 12)) is False and meta_path == []
    assert hook.scan_in_python(meta_path, (3, 11, 2)) is True
    assert hook.scan_in_python(meta_path, (3, 11, 2)) is True and len(meta_path) == 1  # once
    finder = meta_path[0]
    assert finder.find_spec("theano.scan_module.scan_op", None) is None
    with pytest.raises(ImportError, match=r"scan_perform_ext .* does not build on Python >= 3\.11"):
        finder.find_spec("theano.scan_module.scan_perform_ext", None)


def test_the_refusal_reaches_an_import_statement(tmp_path: Path) -> None:
    """scan_op catches ImportError from ``from . import scan_perform_ext``: what a finder raises arrives there."""
    hook = load("dlstack_theanorc")
    package = tmp_path / "theano" / "scan_module"
    package.mkdir(parents=True)
    (tmp_path / "theano" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "scan_perform_ext.py").write_text("BUILT = True\n")
    meta_path: list[object] = []
    hook.scan_in_python(meta_path, (3, 11, 0))
    sys.path.insert(0, str(tmp_path))
    sys.meta_path.insert(0, meta_path[0])
    try:
        with pytest.raises(ImportError, match="scan runs in Python"):
            import theano.scan_module.scan_perform_ext  # noqa: F401
    finally:
        sys.meta_path.remove(meta_path[0])
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "theano" or m.startswith("theano.")]:
            del sys.modules[name]
