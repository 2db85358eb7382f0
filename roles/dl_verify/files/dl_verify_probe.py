"""dl-verify's probe: what Keras and its backend do in one Python environment, as one user.

dl-verify runs this file's text with each env's own interpreter (``python -c SOURCE
[options]``), as the user being checked, and reads the one JSON object it prints on its
standard output (library chatter goes to standard error). Options:

  (none)           import Keras, report versions, backend, floatx, image_data_format, the
                   frameworks and devices, then train the seeds' Dense model (20 inputs, 64
                   relu, 1 sigmoid) and Conv2D model (28x28x1) for one epoch
  --dense-only     train the Dense model only (dl-verify's short per-user training run)
  --quick          import and report, no training
  --config-only    import nothing: what Keras and Theano will read in this env as this user
  --compiledir DIR with --config-only: Theano's base_compiledir, checked writable

Under Theano the training is watched through Theano's own module cache: how many compiled
modules the compile directory held (its cache listing), how many were loaded from it and
how many Theano had to compile (``theano_cache``): ``compiled_versioned`` counts the modules
Theano would have found in a complete cache; the others are compiled in every process by
Theano's design (``compiled_unversioned``: ops without a cache version;
``compiled_per_process``: ops whose cache key Theano 1.0 salts per process). A compile
directory seeded for this env and these settings compiles no versioned module.

Python 3.10+ (the env's interpreter: the oldest a dlstack env has, Ubuntu 22.04's), any Keras,
standard library only.
"""

import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

ARGS = sys.argv[1:]
QUICK = "--quick" in ARGS
CONFIG = "--config-only" in ARGS
DENSE_ONLY = "--dense-only" in ARGS
R: dict[str, Any] = {"probe": 2, "python": platform.python_version(), "executable": sys.executable,
     "quick": QUICK, "config_only": CONFIG, "dense_only": DENSE_ONLY, "keras": None, "backend": None,
     "floatx": None, "image_data_format": None, "frameworks": {}, "devices": {}, "training": {},
     "warnings": [], "error": None}
STAGE = ["import keras"]


def note(what: str, exc: BaseException) -> None:
    R["warnings"].append(f"{what}: {type(exc).__name__}: {exc}")


def kcall(keras: Any, K: Any, name: str) -> Any:
    for holder in (K, getattr(keras, "config", None)):
        fn = getattr(holder, name, None)
        if callable(fn):
            return fn()
    return None


def frameworks(backend: str | None) -> None:
    import importlib
    import importlib.util
    names = ["numpy", "theano", "tensorflow"] + ([backend] if backend in ("jax", "torch") else [])
    for name in names:
        try:
            if name not in sys.modules and importlib.util.find_spec(name) is None:
                continue
            R["frameworks"][name] = str(getattr(importlib.import_module(name), "__version__", "?"))
        except Exception as exc:
            note(name, exc)
    try:
        from importlib import metadata
        R["nvidia_wheels"] = dict(sorted((d.metadata["Name"], d.version) for d in metadata.distributions()
                                         if str(d.metadata["Name"]).lower().startswith("nvidia-")))
    except Exception as exc:
        note("nvidia wheels", exc)


def devices() -> None:
    d = R["devices"]
    try:
        if "theano" in sys.modules:
            th = sys.modules["theano"]
            d["theano_device"] = str(th.config.device)
            d["theano_floatX"] = str(th.config.floatX)
            d["theano_compiledir"] = str(th.config.compiledir)
            # Theano imports its GPU backend itself for a cuda/opencl device; importing it
            # here for a cpu device would register more C code and change the cache keys of
            # the very modules the training below must find in the user's cache
            ga = sys.modules.get("theano.gpuarray")
            d["pygpu_activated"] = bool(getattr(ga, "pygpu_activated", False))
        if "tensorflow" in sys.modules:
            cfg = sys.modules["tensorflow"].config
            lister = getattr(cfg, "list_physical_devices", None) or cfg.experimental.list_physical_devices
            d["tensorflow_gpus"] = [x.name for x in lister("GPU")]
        if "torch" in sys.modules:
            d["torch_cuda_devices"] = int(sys.modules["torch"].cuda.device_count())
        if "jax" in sys.modules:
            d["jax_devices"] = [str(x) for x in sys.modules["jax"].devices()]
    except Exception as exc:
        note("devices", exc)


def watch_theano_cache() -> None:
    """Count, through Theano's module cache, what the training loads and compiles."""
    try:
        from theano.gof import cc, cmodule
        cache = cc.get_module_cache()  # reads the compile directory's cache listing
    except Exception as exc:
        note("theano module cache", exc)
        return
    watch = {"compiledir": str(cache.dirname),
             "cached_before": len(set(e for k, e in cache.entry_from_key.items() if k and k[0])),
             "compiled_versioned": 0, "compiled_per_process": 0, "stats_before": list(cache.stats)}
    R["theano_cache"] = watch
    original = cmodule.ModuleCache.module_from_key

    def module_from_key(self: Any, key: Any, lnk: Any = None, keep_lock: bool = False) -> Any:
        compiled = self.stats[2]
        module = original(self, key, lnk, keep_lock)
        if self.stats[2] > compiled and key and key[0]:
            # Theano 1.0's COp versions itself with hash(tuple(func_codes)): Python 3 salts
            # string hashes per process, so a module with a COp (DimShuffle on the CPU) gets a
            # new key in every process and is compiled whatever the cache holds
            watch["compiled_per_process" if has_cop(lnk) else "compiled_versioned"] += 1
        return module

    cmodule.ModuleCache.module_from_key = module_from_key


def has_cop(lnk: Any) -> bool:
    try:
        from theano.gof.op import COp
        return any(isinstance(node.op, COp) for node in lnk.fgraph.apply_nodes)
    except Exception:
        return False


def close_theano_cache() -> None:
    watch = R.get("theano_cache")
    if not watch:
        return
    from theano.gof import cc
    stats = cc.get_module_cache().stats
    before = watch.pop("stats_before")
    watch["hits"] = stats[0] - before[0]
    watch["loaded"] = stats[1] - before[1]
    watch["compiled"] = stats[2] - before[2]
    watch["compiled_unversioned"] = watch["compiled"] - watch["compiled_versioned"] - watch["compiled_per_process"]


def fit(model: Any, x: Any, y: Any, loss: str) -> dict[str, Any]:
    t0 = time.time()
    model.compile(optimizer="adam", loss=loss)
    hist = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    value = float(hist.history["loss"][-1])
    return {"seconds": round(time.time() - t0, 3), "loss": value if math.isfinite(value) else None,
            "loss_text": repr(value)}


def train(keras: Any) -> None:
    STAGE[0] = "train dense"
    import numpy as np
    from keras import layers as L
    from keras.models import Sequential
    k3 = int(str(keras.__version__).split(".")[0]) >= 3

    def model(shape: tuple[int, ...], first: Callable[[dict[str, Any]], Any], rest: list[Any]) -> Any:
        if k3:
            return Sequential([L.Input(shape=shape), first({}), *rest])
        return Sequential([first({"input_shape": shape}), *rest])
    if R["backend"] == "theano":
        watch_theano_cache()
    fx = R["floatx"] or "float32"
    rng = np.random.RandomState(0)
    x = rng.rand(64, 20).astype(fx)
    y = rng.randint(0, 2, size=(64, 1)).astype(fx)
    m = model((20,), lambda kw: L.Dense(64, activation="relu", **kw), [L.Dense(1, activation="sigmoid")])
    R["training"]["dense"] = fit(m, x, y, "binary_crossentropy")
    if not DENSE_ONLY:
        STAGE[0] = "train conv"
        shape = (1, 28, 28) if R["image_data_format"] == "channels_first" else (28, 28, 1)
        x = rng.rand(32, *shape).astype(fx)
        y = np.eye(10, dtype=fx)[rng.randint(0, 10, size=32)]
        m = model(shape, lambda kw: L.Conv2D(32, (3, 3), activation="relu", **kw),
                  [L.Flatten(), L.Dense(10, activation="softmax")])
        R["training"]["conv"] = fit(m, x, y, "categorical_crossentropy")
    close_theano_cache()


def arg_after(flag: str) -> str | None:
    return ARGS[ARGS.index(flag) + 1] if flag in ARGS[:-1] else None


def dist_version(*names: str) -> str | None:
    try:
        from importlib import metadata
    except ImportError:
        return None
    for name in names:
        try:
            return metadata.version(name)
        except Exception:
            pass
    return None


def config_only() -> None:
    # What Keras and Theano will read in this env, as this user, without importing them:
    # the backend hook (.pth) has run at startup, so KERAS_BACKEND is what Keras would see.
    import importlib.util
    STAGE[0] = "keras package"
    R["keras"] = dist_version("keras", "Keras")
    if R["keras"] is None:
        raise RuntimeError("keras is not installed in this environment")
    STAGE[0] = "keras config"
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    path = os.path.join(home, "keras.json")
    cfg = {}
    if os.path.isfile(path):
        with open(path) as fh:
            cfg = json.load(fh)
        if not isinstance(cfg, dict):
            raise ValueError(f"{path} is not a JSON object")
    R["backend"] = os.environ.get("KERAS_BACKEND") or cfg.get("backend") or "tensorflow"
    R["floatx"] = cfg.get("floatx", "float32")
    R["image_data_format"] = cfg.get("image_data_format", "channels_last")
    STAGE[0] = "frameworks"
    for name, dists in (("numpy", ("numpy",)), ("theano", ("theano", "Theano")),
                        ("tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-gpu")),
                        ("jax", ("jax",)), ("torch", ("torch",))):
        if importlib.util.find_spec(name) is not None:
            R["frameworks"][name] = dist_version(*dists) or "?"
    if R["backend"] not in R["frameworks"]:
        raise RuntimeError("backend {} is not installed in this environment".format(R["backend"]))
    compiledir = arg_after("--compiledir")
    if R["backend"] == "theano" and compiledir:
        STAGE[0] = "theano compiledir"
        target = compiledir if os.path.exists(compiledir) else os.path.dirname(compiledir.rstrip("/"))
        if not os.access(target, os.W_OK | os.X_OK):
            raise PermissionError(f"{target} is not writable by this user (Theano compiles there)")
        R["devices"]["theano_compiledir"] = compiledir


def full() -> None:
    import keras
    STAGE[0] = "keras config"
    K = getattr(keras, "backend", None)
    if K is None:
        import importlib
        K = importlib.import_module("keras.backend")
    R["keras"] = str(getattr(keras, "__version__", "?"))
    R["backend"] = kcall(keras, K, "backend")
    R["floatx"] = kcall(keras, K, "floatx")
    R["image_data_format"] = kcall(keras, K, "image_data_format")
    STAGE[0] = "frameworks"
    frameworks(R["backend"])
    devices()
    if not QUICK:
        train(keras)


def main() -> None:
    out = os.dup(1)
    os.dup2(2, 1)  # library chatter goes to stderr; the saved descriptor carries the answer
    try:
        if CONFIG:
            config_only()
        else:
            full()
    except BaseException as exc:
        lines = traceback.format_exc().strip().splitlines()
        R["error"] = {"stage": STAGE[0], "type": type(exc).__name__, "message": str(exc),
                      "last_line": lines[-1] if lines else repr(exc)}
    with os.fdopen(out, "w") as fh:
        fh.write(json.dumps(R, default=str) + "\n")


if __name__ == "__main__":
    main()
