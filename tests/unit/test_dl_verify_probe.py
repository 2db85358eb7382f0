"""Unit tests for roles/dl_verify/files/dl_verify_probe.py, dl-verify's probe program.

dl-verify runs its text with each env's interpreter; here it is imported as a module (its
work starts only under ``__main__``) and run as a program against stand-in packages. The
Theano cache accounting is checked against a stand-in of Theano's ModuleCache that counts
hits, loads and compiles as Theano 1.0.5's does (``stats``: hits, loads, compiles) and keys
modules as it does (``key[0]`` is the version; empty means unversioned).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from plugin_loader import load_by_path

PROBE = Path(__file__).resolve().parents[2] / "roles" / "dl_verify" / "files" / "dl_verify_probe.py"


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(sys, "argv", ["-c", "--dense-only"])
    return load_by_path("dl_verify_probe", PROBE)


def test_the_probe_parses_for_the_oldest_env_interpreter() -> None:
    """Env interpreters go back to Python 3.10 (Ubuntu 22.04's): nothing newer in the probe."""
    ast.parse(PROBE.read_text(), feature_version=(3, 10))


class Cop:
    """Stands for theano.gof.op.COp."""


def fake_theano(monkeypatch: pytest.MonkeyPatch, cached: dict[Any, str]) -> Any:
    """theano.gof.{cc,cmodule,op} with a ModuleCache that compiles what it does not hold."""
    class ModuleCache:
        def __init__(self) -> None:
            self.dirname = "/var/tmp/theano-alice/compiledir_X"
            self.entry_from_key = dict(cached)
            self.stats = [0, 0, 0]

        def module_from_key(self, key: Any, lnk: Any = None, keep_lock: bool = False) -> str:
            if key in self.entry_from_key:
                self.stats[1] += 1
            else:
                self.stats[2] += 1
                self.entry_from_key[key] = f"/new/{len(self.entry_from_key)}.so"
            return self.entry_from_key[key]

    cache = ModuleCache()
    cmodule = types.SimpleNamespace(ModuleCache=ModuleCache)
    cc = types.SimpleNamespace(get_module_cache=lambda: cache)
    op = types.SimpleNamespace(COp=Cop)
    gof = types.SimpleNamespace(cc=cc, cmodule=cmodule, op=op)
    for name, module in {"theano": types.SimpleNamespace(gof=gof), "theano.gof": gof, "theano.gof.cc": cc,
                         "theano.gof.cmodule": cmodule, "theano.gof.op": op}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return cache


def linker(*ops: Any) -> Any:
    return types.SimpleNamespace(fgraph=types.SimpleNamespace(apply_nodes=[types.SimpleNamespace(op=o) for o in ops]))


def test_theano_cache_watch_counts_what_the_cache_could_not_give(probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = fake_theano(monkeypatch, {((1,), "dense"): "/seed/a.so", ((1,), "adam"): "/seed/b.so",
                                      ((), "unversioned-from-another-process"): "/old/u.so"})
    probe.watch_theano_cache()
    assert probe.R["theano_cache"]["cached_before"] == 2  # Theano's own listing, versioned keys only
    cache.module_from_key(((1,), "dense"), linker(object()))        # found: loaded
    cache.module_from_key(((1,), "adam"), linker(object()))         # found
    cache.module_from_key(((), "DotModulo"), linker(object()))      # unversioned: compiled in every process
    cache.module_from_key(((7,), "DimShuffle"), linker(Cop()))      # a COp: its key is salted per process
    cache.module_from_key(((1,), "new-conv"), linker(object()))     # a real miss
    probe.close_theano_cache()
    assert probe.R["theano_cache"] == {"compiledir": "/var/tmp/theano-alice/compiledir_X", "cached_before": 2,
                                       "compiled_versioned": 1, "compiled_per_process": 1, "compiled_unversioned": 1,
                                       "hits": 0, "loaded": 2, "compiled": 3}


def test_no_theano_no_watch(probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "theano", None)  # import fails
    monkeypatch.setitem(sys.modules, "theano.gof", None)
    probe.watch_theano_cache()
    probe.close_theano_cache()
    assert "theano_cache" not in probe.R and probe.R["warnings"][0].startswith("theano module cache: ")


def test_devices_never_import_theanos_gpu_backend(probe: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing theano.gpuarray on a cpu device registers more C code and changes the cache
    keys of the very modules the user's training must find: the probe only looks."""
    config = types.SimpleNamespace(device="cpu", floatX="float32", compiledir="/c")
    monkeypatch.setitem(sys.modules, "theano", types.SimpleNamespace(config=config))
    monkeypatch.delitem(sys.modules, "theano.gpuarray", raising=False)
    probe.devices()
    assert probe.R["devices"] == {"theano_device": "cpu", "theano_floatX": "float32", "theano_compiledir": "/c",
                                  "pygpu_activated": False}
    assert "theano.gpuarray" not in sys.modules


def run_probe(tmp_path: Path, site: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROBE.read_text(), *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=False)
    assert done.returncode == 0 and done.stdout.count("\n") == 1, done.stderr
    return json.loads(done.stdout)


def test_the_program_prints_one_json_object_and_sends_chatter_to_stderr(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "keras").mkdir(parents=True)
    (site / "keras" / "__init__.py").write_text("print('Using Theano backend.')\n__version__ = '2.3.1'\n")
    (site / "keras" / "backend.py").write_text("def backend():\n    return 'theano'\n\ndef floatx():\n    return 'float32'\n\n"
                                               "def image_data_format():\n    return 'channels_last'\n")
    out = run_probe(tmp_path, site, "--quick")
    assert (out["probe"], out["keras"], out["backend"], out["quick"], out["dense_only"], out["error"]) == (
        2, "2.3.1", "theano", True, False, None)
    broken = run_probe(tmp_path, tmp_path / "nothing")
    assert broken["error"]["stage"] == "import keras" and broken["error"]["type"] == "ModuleNotFoundError"
