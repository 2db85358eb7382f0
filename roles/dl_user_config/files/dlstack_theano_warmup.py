"""dlstack: compile Theano's C modules for an env's usual operations, once, for a seed template.

Run by the dl_user_config role (module dl_user_config_theano_seed) with an env's own Python,
as the dedicated seed account, with HOME, KERAS_HOME and THEANORC pointing at a staging
directory that holds one settings profile's keras.json and .theanorc (base_compiledir in
that staging directory). It trains, with Keras on Theano, the models the seeds use and
dl-verify trains -- the Dense model (20 inputs, 64 relu, 1 sigmoid; adam,
binary_crossentropy) and the Conv2D model (28x28x1, 32 3x3 relu, flatten, 10 softmax; adam,
categorical_crossentropy), one epoch with batch 32, each without and with the accuracy
metric, plus predict and evaluate -- so that Theano compiles every module they need.

It prints one JSON object on its standard output: Theano's compile directory, the versioned
module directories Theano loaded or compiled for this work (a template holds exactly those:
modules of an older build that no longer match are not among them), Theano's own cache
counters, and each workload's result. Library chatter goes to standard error.

Python 3.10+ (the env's interpreter), standard library plus the env's packages.
"""

import json
import os
import sys
import time
import traceback
from typing import Any

OUT = os.dup(1)
os.dup2(2, 1)  # library chatter goes to stderr; the saved descriptor carries the answer

# The seeds' models: (name, metrics, extra calls). Each is built, compiled and fitted for one
# epoch; predict and evaluate compile functions of their own.
WORKLOADS = [
    ("dense", None, ("predict", "evaluate")),
    ("dense+accuracy", ["accuracy"], ("evaluate",)),
    ("conv", None, ("predict", "evaluate")),
    ("conv+accuracy", ["accuracy"], ("evaluate",)),
]


def build(kind: str, floatx: str, channels_first: bool, rng: Any) -> tuple[Any, Any, Any, str]:
    """(model, x, y, loss) of one of the seeds' models."""
    import numpy as np
    from keras import layers
    from keras.models import Sequential
    if kind == "dense":
        model = Sequential([layers.Dense(64, activation="relu", input_shape=(20,)),
                            layers.Dense(1, activation="sigmoid")])
        x = rng.rand(64, 20).astype(floatx)
        y = rng.randint(0, 2, size=(64, 1)).astype(floatx)
        return model, x, y, "binary_crossentropy"
    shape = (1, 28, 28) if channels_first else (28, 28, 1)
    model = Sequential([layers.Conv2D(32, (3, 3), activation="relu", input_shape=shape),
                        layers.Flatten(), layers.Dense(10, activation="softmax")])
    x = rng.rand(32, *shape).astype(floatx)
    y = np.eye(10, dtype=floatx)[rng.randint(0, 10, size=32)]
    return model, x, y, "categorical_crossentropy"


PER_PROCESS: set[str] = set()


def skip_per_process_modules() -> None:
    """Theano 1.0's COp versions itself with hash(tuple(func_codes)), which Python 3 salts per
    process: a module with a COp is compiled again in every process, so a template copy of it
    would never be used. Note them to leave them out."""
    from theano.gof import cmodule
    from theano.gof.op import COp
    original = cmodule.ModuleCache.module_from_key

    def module_from_key(self: Any, key: Any, lnk: Any = None, keep_lock: bool = False) -> Any:
        module = original(self, key, lnk, keep_lock)
        try:
            if any(isinstance(node.op, COp) for node in lnk.fgraph.apply_nodes):
                PER_PROCESS.add(os.path.realpath(module.__file__))
        except Exception:
            pass
        return module

    cmodule.ModuleCache.module_from_key = module_from_key


def used_modules(compiledir: str) -> tuple[list[str], list[str], list[int]]:
    """The versioned module directories (with key.pkl) Theano loaded or compiled in this process
    that another process can use, and the helper directories Theano builds at import,
    relative to its compile directory."""
    from theano.gof import cc
    cache = cc.get_module_cache()
    modules = set()
    for name in cache.module_from_name:
        if os.path.realpath(name) in PER_PROCESS:
            continue
        directory = os.path.dirname(os.path.realpath(name))
        if os.path.dirname(directory) == os.path.realpath(compiledir) and os.path.isfile(os.path.join(directory, "key.pkl")):
            modules.add(os.path.basename(directory))
    helpers = [d for d in ("cutils_ext", "lazylinker_ext", "gpuarray_kernels")
               if os.path.isdir(os.path.join(compiledir, d))]
    return sorted(modules), helpers, list(cache.stats)


def main() -> int:
    result: dict[str, Any] = {"workloads": {}, "error": None}
    try:
        import keras
        import numpy as np
        import theano
        backend = keras.backend.backend()
        if backend != "theano":
            raise RuntimeError(f"Keras loaded the {backend} backend, not theano")
        floatx = keras.backend.floatx()
        channels_first = keras.backend.image_data_format() == "channels_first"
        compiledir = os.path.abspath(str(theano.config.compiledir))
        result.update(theano=str(theano.__version__), keras=str(keras.__version__),
                      compiledir=compiledir, compiledir_name=os.path.basename(compiledir),
                      device=str(theano.config.device), floatX=str(theano.config.floatX), floatx=floatx)
        skip_per_process_modules()
        rng = np.random.RandomState(0)
        for name, metrics, calls in WORKLOADS:
            start = time.time()
            try:
                model, x, y, loss = build(name.split("+")[0], floatx, channels_first, rng)
                model.compile(optimizer="adam", loss=loss, metrics=metrics)
                model.fit(x, y, epochs=1, batch_size=32, verbose=0)
                if "predict" in calls:
                    model.predict(x, batch_size=32)
                if "evaluate" in calls:
                    model.evaluate(x, y, batch_size=32, verbose=0)
                result["workloads"][name] = {"ok": True, "seconds": round(time.time() - start, 2)}
            except Exception as exc:
                result["workloads"][name] = {"ok": False, "seconds": round(time.time() - start, 2),
                                             "error": f"{type(exc).__name__}: {exc}"}
        result["modules"], result["helpers"], result["stats"] = used_modules(compiledir)
    except BaseException as exc:
        lines = traceback.format_exc().strip().splitlines()
        result["error"] = "{}: {} ({})".format(type(exc).__name__, exc, lines[-1] if lines else "")
    with os.fdopen(OUT, "w") as out:
        out.write(json.dumps(result) + "\n")
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
