"""Unit tests for the startup hooks the python_envs role installs into envs (files/hooks/)."""

from __future__ import annotations

import collections.abc
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

HOOKS = Path(__file__).resolve().parents[2] / "roles" / "python_envs" / "files" / "hooks"


def load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"test_{name}", HOOKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
