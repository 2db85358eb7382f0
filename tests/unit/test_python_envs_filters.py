"""Unit tests for roles/python_envs/filter_plugins/python_envs.py (preflight rules, locks, wheels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from plugin_loader import load_by_path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "roles" / "python_envs" / "filter_plugins" / "python_envs.py"
LOCKS = REPO / "roles" / "python_envs" / "files" / "locks"


f = load_by_path("python_envs_filters", PLUGIN)

PY311 = {"rc": 0, "executable": "/usr/bin/python3.11", "version": "3.11", "implementation": "cpython",
         "machine": "x86_64", "libc": ["glibc", "2.36"]}


def env(**kw: Any) -> dict[str, Any]:
    base = {"name": "keras3-tensorflow", "python": "python3.11", "requirements": "locks/keras3-tensorflow-cpu.txt",
            "backends": ["tensorflow"]}
    base.update(kw)
    return base


def normalized(*envs: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    return f.normalize(list(envs), "/opt/dlstack/envs", **kw)


def req(env_name: str, text: str, file: str = "lock.txt", path: str = "/x/lock.txt") -> dict[str, Any]:
    return {"env": env_name, "file": file, "role": "main", "path": path, "text": text}


# --- definitions ----------------------------------------------------------------------------


def test_good_definitions_have_no_problem() -> None:
    envs = [env(), env(name="keras2-theano", backends=["theano"], system_site_packages=True,
                       collections_compat=True, jupyter_kernel=True, environment_module=False),
            env(name="alice-tf", owner="alice", root="~/envs")]
    assert f.definition_problems(envs, "/opt/dlstack/envs") == []


@pytest.mark.parametrize(("bad", "expected"), [
    ({"name": "a/b"}, "invalid name 'a/b'"),
    ({"name": "a..b"}, "invalid name 'a..b'"),
    ({"name": ".."}, "invalid name '..'"),
    ({"name": "Keras"}, "invalid name 'Keras'"),
    ({"name": ""}, "'name' is required"),
    ({"python": ""}, "'python' must name an interpreter"),
    ({"python": "python3 -I"}, "'python' must name an interpreter"),
    ({"requirements": ""}, "'requirements' must be the path"),
    ({"requirements_gpu": None}, "'requirements_gpu' must be the path"),
    ({"backends": []}, "'backends' must be a non-empty list"),
    ({"backends": ["theano", "mxnet"]}, "unknown backend(s) mxnet"),
    ({"backends": ["theano", "theano"]}, "lists a backend twice"),
    ({"system_site_packages": "yes"}, "'system_site_packages' must be true or false"),
    ({"owner": "Bad User"}, "'owner' must be an account name"),
    ({"state": "latest"}, "'state' must be present or absent"),
    ({"root": "relative/dir"}, "'root' must be an absolute path"),
    ({"root": "/opt/../etc"}, "'root' must be an absolute path"),
    ({"root": "~/envs"}, "'root' must be an absolute path"),  # ~ only for per-user envs
    ({"colour": "blue"}, "unknown field(s) colour"),
])
def test_bad_definitions_are_named(bad: dict[str, Any], expected: str) -> None:
    problems = f.definition_problems([env(**bad)], "/opt/dlstack/envs")
    assert any(expected in p for p in problems), problems
    label = f"env '{bad['name']}'" if bad.get("name") else ("env #0" if "name" in bad else "env 'keras3-tensorflow'")
    assert all(p.startswith(label) for p in problems), problems


def test_duplicate_names_and_bad_root() -> None:
    problems = f.definition_problems([env(), env()], "opt/envs")
    assert any("python_envs_root must be an absolute path" in p for p in problems)
    assert any("duplicate env name" in p for p in problems)
    assert f.definition_problems("not a list") == ["python_envs_envs must be a list of envs, not str"]
    assert f.definition_problems([42]) == ["env #0: each env must be a mapping, not int"]


def test_normalize_fills_defaults_and_per_user_root() -> None:
    shared, mine = f.normalize([env(), env(name="mine", owner="alice")], "/opt/dlstack/envs/", "~/.envs",
                               jupyter_kernels=True, environment_modules=False)
    assert shared["root"] == "/opt/dlstack/envs" and shared["owner"] == "root" and shared["state"] == "present"
    assert shared["jupyter_kernel"] is True and shared["environment_module"] is False
    assert shared["system_site_packages"] is False and shared["requirements_gpu"] == ""
    assert mine["root"] == "~/.envs" and mine["owner"] == "alice"
    explicit = f.normalize([env(jupyter_kernel=False)], "/r", jupyter_kernels=True)[0]
    assert explicit["jupyter_kernel"] is False


def test_requirement_sources_pick_the_variant_and_add_jupyter() -> None:
    envs = normalized(env(requirements_gpu="locks/gpu.txt", jupyter_kernel=True),
                      env(name="old", backends=["theano"]), env(name="gone", state="absent"))
    assert f.requirement_sources(envs, False, "locks/jk.txt") == [
        {"env": "keras3-tensorflow", "file": "locks/keras3-tensorflow-cpu.txt", "role": "main"},
        {"env": "keras3-tensorflow", "file": "locks/jk.txt", "role": "jupyter"},
        {"env": "old", "file": "locks/keras3-tensorflow-cpu.txt", "role": "main"},
    ]
    gpu = f.requirement_sources(envs, True, "locks/jk.txt")
    assert gpu[0] == {"env": "keras3-tensorflow", "file": "locks/gpu.txt", "role": "gpu"}
    assert gpu[2]["file"] == "locks/keras3-tensorflow-cpu.txt"  # no GPU lock: the only lock


# --- locks ----------------------------------------------------------------------------------

H1, H2 = "a" * 64, "b" * 64


def pinned(*pins: str) -> str:
    """Lock text of ``pins``, each with a (made-up) hash."""
    return "".join(f"{p} --hash=sha256:{H1}\n" for p in pins)


def test_parse_requirements_accepts_exact_pins_with_hashes_and_comments() -> None:
    text = (f"# header\n\nNumPy == 1.23.5 \\\n    --hash=sha256:{H1} \\\n    --hash=sha256:{H2}  # why\n"
            f"Keras_Applications==1.0.8 --hash=sha256:{H2}\ntensorflow-cpu==2.21.0 \\\n  --hash=sha256:{H1}\n"
            f"torch==2.3.0+cpu --hash=sha256:{H1}\nfoo==1.0rc1 --hash=sha256:{H1} --hash=sha256:{H1}\n")
    parsed = f.parse_requirements(text, "x.txt")
    assert parsed["problems"] == []
    assert [(p["key"], p["version"], p["line"], p["hashes"]) for p in parsed["pins"]] == [
        ("numpy", "1.23.5", 3, [H1, H2]), ("keras-applications", "1.0.8", 6, [H2]), ("tensorflow-cpu", "2.21.0", 7, [H1]),
        ("torch", "2.3.0+cpu", 9, [H1]), ("foo", "1.0rc1", 10, [H1])]


@pytest.mark.parametrize(("line", "why"), [
    ("numpy>=1.23", "not an exact pin"),
    ("numpy", "not an exact pin"),
    ("numpy~=1.23.0", "not an exact pin"),
    ("numpy==1.*", "not an exact version"),
    ("numpy===1.23.5", "not an exact version"),
    ("tensorflow[and-cuda]==2.21.0", "extras are not allowed"),
    ("numpy==1.23.5; python_version<'3.12'", "environment markers are not supported"),
    ("pkg @ https://example.org/pkg.whl", "direct URLs are not allowed"),
    ("-r other.txt", "pip options and includes are not allowed"),
    ("--index-url https://example.org/simple", "pip options and includes are not allowed"),
    ("numpy==latest!", "not an exact pin"),
    ("numpy==1.23.5", "numpy==1.23.5 has no --hash=sha256: (installs require the hash of every file)"),
    ("numpy==1.23.5 --hash=md5:0123", "numpy==1.23.5: only --hash=sha256:<64 hex digits> may follow a pin"),
    (f"numpy==1.23.5 --hash=sha256:{H1[:63]}", "numpy==1.23.5: only --hash=sha256:<64 hex digits>"),
    (f"numpy==1.23.5 --hash=sha256:{H1} --no-binary :all:", "numpy==1.23.5: only --hash=sha256:<64 hex digits>"),
])
def test_parse_requirements_rejects_anything_but_exact_hashed_pins(line: str, why: str) -> None:
    parsed = f.parse_requirements(f"six==1.17.0 --hash=sha256:{H1}\n{line}\n", "lock.txt")
    assert len(parsed["problems"]) == 1 and parsed["problems"][0].startswith(f"lock.txt:2: {why}"), parsed
    assert [p["key"] for p in parsed["pins"]] == ["six"]


def test_merge_pins_collapses_duplicates_and_reports_conflicts() -> None:
    a = f.parse_requirements(f"six==1.17.0 --hash=sha256:{H1}\nnumpy==1.23.5 --hash=sha256:{H1}\n", "a.txt")["pins"]
    b = f.parse_requirements(f"Six==1.17.0 --hash=sha256:{H2}\nNumPy==2.2.6 --hash=sha256:{H1}\n", "b.txt")["pins"]
    merged = f.merge_pins(a + b)
    assert [p["key"] for p in merged["pins"]] == ["numpy", "six"]
    assert merged["problems"] == ["conflicting pins for numpy: numpy==1.23.5 (a.txt:2) and NumPy==2.2.6 (b.txt:2)"]
    # the same pin from two locks: both files allowed
    assert f.requirements_text(merged["pins"]) == (f"numpy==1.23.5 --hash=sha256:{H1}\n"
                                                   f"six==1.17.0 --hash=sha256:{H1} --hash=sha256:{H2}\n")


def test_lock_on_its_own() -> None:
    assert f.lock(f"# uv\nuv==0.13.9 \\\n  --hash=sha256:{H1}\n", "uv.txt") == {
        "pins": ["uv==0.13.9"], "requirements_text": f"uv==0.13.9 --hash=sha256:{H1}\n", "problems": []}
    assert f.lock("# nothing\n", "uv.txt")["problems"] == ["uv.txt pins nothing"]
    assert f.lock("uv==0.13.9\n", "uv.txt")["problems"][0].startswith("uv.txt:1: uv==0.13.9 has no --hash")


@pytest.mark.parametrize("lock", sorted(LOCKS.glob("*.txt")), ids=lambda p: p.name)
def test_shipped_locks_are_exact_hashed_and_consistent(lock: Path) -> None:
    parsed = f.parse_requirements(lock.read_text(), lock.name)
    assert parsed["problems"] == [] and parsed["pins"]
    assert f.merge_pins(parsed["pins"])["problems"] == []
    assert all(p["hashes"] for p in parsed["pins"])
    # reviewed header: every lock says what it is and how relock makes it
    text = lock.read_text()
    assert text.startswith("# ") and "\n# relock: --python " in text and " -- " in text


def test_shipped_locks_fit_together() -> None:
    text = {p.name: p.read_text() for p in LOCKS.glob("*.txt")}
    pins = {name: {p["key"]: p["version"] for p in f.parse_requirements(t)["pins"]} for name, t in text.items()}
    theano = pins["keras2-theano-py311.txt"]
    assert theano["keras"] == "2.3.1" and theano["theano"] == "1.0.5" and theano["numpy"] < "1.24"
    assert theano["pygpu"] == "0.7.6" and {"mako", "markupsafe", "six"} <= set(theano)
    # Theano's sdist is built with the build tools' setuptools, the one the env has too (pkg_resources)
    assert pins["build-tools.txt"] == {"setuptools": theano["setuptools"]} and int(theano["setuptools"].split(".")[0]) < 81
    assert pins["keras3-tensorflow-cpu.txt"]["tensorflow-cpu"] == pins["keras3-tensorflow-cuda.txt"]["tensorflow"]
    cpu = {k: v for k, v in pins["keras3-tensorflow-cpu.txt"].items() if k != "tensorflow-cpu"}
    cuda = {k: v for k, v in pins["keras3-tensorflow-cuda.txt"].items()
            if k != "tensorflow" and not k.startswith("nvidia-")}
    assert cpu == cuda
    assert {k for k in pins["keras3-tensorflow-cuda.txt"] if k.startswith("nvidia-cudnn")} == {"nvidia-cudnn-cu12"}
    assert pins["uv.txt"] == {"uv": "0.13.9"}
    # the Jupyter lock merges into every env without a conflicting pin
    for name in ("keras2-theano-py311.txt", "keras3-tensorflow-cpu.txt", "keras3-tensorflow-cuda.txt"):
        both = f.parse_requirements(text[name], name)["pins"] + f.parse_requirements(text["jupyter-kernel.txt"])["pins"]
        assert f.merge_pins(both)["problems"] == [], name


def test_pygpu_pin_is_the_wheel_the_role_assembles() -> None:
    """The Theano lock's pygpu hash is the sha256 of the wheel module_utils builds from the debs."""
    lock = f.parse_requirements((LOCKS / "keras2-theano-py311.txt").read_text())["pins"]
    pygpu = next(p for p in lock if p["key"] == "pygpu")
    assert len(pygpu["hashes"]) == 1  # one wheel: cp311, x86_64, from Debian 12's packages
    defaults = yaml.safe_load((REPO / "roles/python_envs/defaults/main.yml").read_text())
    assert [d["url"].rsplit("/", 1)[1] for d in defaults["python_envs_pygpu_debs"]] == [
        "python3-pygpu_0.7.6-13+b1_amd64.deb", "libgpuarray3_0.7.6-13+b1_amd64.deb"]


# --- plan -----------------------------------------------------------------------------------

PROBE_311 = ('{"executable": "/usr/bin/python3.11", "version": "3.11", "implementation": "cpython", '
             '"machine": "x86_64", "libc": ["glibc", "2.36"]}')
TOOLS = {"python": "/usr/bin/python3", "uv": f.lock(f"uv==0.13.9 --hash=sha256:{H1}\n"),
         "build": f.lock(f"setuptools==80.10.2 --hash=sha256:{H2}\n")}


def test_plan_resolves_a_good_env() -> None:
    envs = normalized(env(jupyter_kernel=True))
    requirements = [req("keras3-tensorflow", pinned("six==1.17.0", "keras==3.12.4")),
                    req("keras3-tensorflow", pinned("ipykernel==7.3.0", "six==1.17.0"), file="jk.txt")]
    probes = [{"item": "python3.11", "rc": 0, "stdout": PROBE_311},
              {"item": "/usr/bin/python3", "rc": 0, "stdout": PROBE_311.replace("3.11", "3.13")}]
    result = f.plan(envs, requirements, probes, False, ["root"], ["root"], None, TOOLS)
    assert result["problems"] == [] and result["provided_python"] is False
    planned = result["envs"][0]
    assert planned["path"] == "/opt/dlstack/envs/keras3-tensorflow" and planned["variant"] == "cpu"
    assert planned["requirements_text"] == pinned("ipykernel==7.3.0", "keras==3.12.4", "six==1.17.0")
    assert planned["pins"] == ["ipykernel==7.3.0", "keras==3.12.4", "six==1.17.0"]
    assert planned["sources"] == ["lock.txt", "jk.txt"] and planned["python_version"] == "3.11"
    assert planned["target"]["tag"] == "cp311-x86_64-glibc2.36" and planned["theano"] is False
    # what a wheelhouse must hold for this node: the env's lock and the build tools for its
    # target, uv's for the system interpreter's
    assert [(d["name"], d["kind"], d["target"]["tag"], d["pins"]) for d in result["downloads"]] == [
        ("keras3-tensorflow", "env", "cp311-x86_64-glibc2.36", planned["pins"]),
        ("keras3-tensorflow", "build", "cp311-x86_64-glibc2.36", ["setuptools==80.10.2"]),
        ("uv", "tool", "cp313-x86_64-glibc2.36", ["uv==0.13.9"])]


def test_plan_uses_the_provided_interpreter_before_it_is_installed() -> None:
    provided = {"python": "/opt/dlstack/python/3.11/bin/python3.11", "version": "3.11", "system": "/usr/bin/python3"}
    envs = normalized(env(name="keras2-theano", python=provided["python"], backends=["theano"]))
    system = PROBE_311.replace("3.11", "3.13").replace("2.36", "2.41")
    probes = [{"item": provided["python"], "rc": 2, "msg": "Error executing command."},
              {"item": "/usr/bin/python3", "rc": 0, "stdout": system}]
    result = f.plan(envs, [req("keras2-theano", pinned("six==1.17.0"))], probes, False, None, None, provided, TOOLS)
    assert result["problems"] == [] and result["provided_python"] is True
    planned = result["envs"][0]
    assert planned["provided_python"] and planned["python_version"] == "3.11"
    assert planned["target"]["tag"] == "cp311-x86_64-glibc2.41"  # the node's glibc, the recipe's version
    # installed: its own probe
    probes[0] = {"item": provided["python"], "rc": 0, "stdout": PROBE_311.replace("2.36", "2.41")}
    assert f.plan(envs, [req("keras2-theano", pinned("six==1.17.0"))], probes, False, None, None, provided,
                  TOOLS)["envs"][0]["python_executable"] == "/usr/bin/python3.11"
    # another missing interpreter is still an error
    other = normalized(env(name="k2", python="/opt/other/python3.11"))
    assert f.plan(other, [req("k2", pinned("six==1.17.0"))], probes, False, None, None, provided,
                  TOOLS)["problems"][0].startswith("env 'k2': python '/opt/other/python3.11' is not usable")


def test_plan_names_env_and_problem() -> None:
    envs = normalized(env(name="missing-python", python="python3.9"),
                      env(name="no-lock"),
                      env(name="conflict", jupyter_kernel=True),
                      env(name="theirs", owner="nobody-here"),
                      env(name="unhashed"),
                      env(name="gone", python="python2", state="absent"))
    requirements = [req("no-lock", "", path=""), req("conflict", pinned("numpy==1.23.5")),
                    req("conflict", pinned("numpy==2.2.6"), file="jk.txt"), req("missing-python", pinned("six==1.17.0")),
                    req("theirs", pinned("six==1.17.0")), req("unhashed", "six==1.17.0\n", file="old.txt")]
    probes = {"python3.11": PY311, "python3.9": {"rc": 2, "error": "[Errno 2] No such file or directory"}}
    problems = f.plan(envs, requirements, probes, False, ["root"], None)["problems"]
    assert ("env 'missing-python': python 'python3.9' is not usable on this host "
            "([Errno 2] No such file or directory); install it or declare another interpreter") in problems
    assert any(p.startswith("env 'no-lock': requirements file 'lock.txt' not found") for p in problems)
    assert any(p.startswith("env 'conflict': conflicting pins for numpy") for p in problems)
    assert "env 'conflict': jupyter_kernel needs ipykernel pinned in its requirements" in problems
    assert "env 'theirs': owner 'nobody-here' does not exist on this host" in problems
    assert any(p.startswith("env 'unhashed': old.txt:1: six==1.17.0 has no --hash=sha256:") for p in problems)
    assert not any("gone" in p for p in problems)  # absent envs need no interpreter or lock
    # uv needs the system interpreter
    assert "the uv tool: python '/usr/bin/python3' is not usable on this host (not found); uv is installed with " \
           "the system interpreter" in f.plan(envs[3:4], requirements, probes, False, None, None, None, TOOLS)["problems"]


def test_probes_from_a_failed_command() -> None:
    probes = f.probes_by_python([{"item": "python3.9", "rc": 2, "msg": "Error executing command.", "stderr": ""},
                                 {"item": "python3", "rc": 0, "stdout": "garbage"},
                                 {"item": "/opt/py/bin/python", "rc": 1, "stderr": "Traceback...\nImportError: x\n"},
                                 {"item": "python3.12", "rc": 3, "msg": "non-zero return code"}])
    assert probes["python3.9"] == {"rc": 2, "error": "not found"}
    assert probes["python3"]["rc"] == 1 and probes["python3"]["error"] == "unreadable probe output"
    assert probes["/opt/py/bin/python"]["error"] == "ImportError: x"
    assert probes["python3.12"]["error"] == "non-zero return code"


def test_gpu_variant_only_where_a_gpu_lock_exists() -> None:
    envs = normalized(env(requirements_gpu="gpu.txt"), env(name="plain"))
    planned = f.plan(envs, [req("keras3-tensorflow", "six==1.17.0\n"), req("plain", "six==1.17.0\n")],
                     {"python3.11": PY311}, True)["envs"]
    assert [e["variant"] for e in planned] == ["gpu", "cpu"]


def test_installed_and_config_from_build_results() -> None:
    results = [
        {"item": {"name": "a", "state": "present", "backends": ["theano"]}, "path": "/r/a", "python": "/r/a/bin/python"},
        {"item": {"name": "b", "state": "absent", "backends": ["tensorflow"]}, "path": "/r/b", "python": "/r/b/bin/python"},
        {"item": {"name": "c", "state": "present", "backends": ["tensorflow", "jax"]}, "skipped": True},
    ]
    installed = f.installed(results)
    assert installed == [{"name": "a", "path": "/r/a", "python": "/r/a/bin/python", "backends": ["theano"]}]
    assert f.envs_config(installed) == {"envs": [{"name": "a", "python": "/r/a/bin/python", "backends": ["theano"]}]}


# --- wheels ---------------------------------------------------------------------------------


def test_wheel_target_for_bookworm() -> None:
    target = f.wheel_target(PY311)
    assert target["tag"] == "cp311-x86_64-glibc2.36" and target["abi"] == "cp311"
    assert target["platforms"][0] == "manylinux_2_36_x86_64" and target["platforms"][-1] == "linux_x86_64"
    assert "manylinux_2_5_x86_64" in target["platforms"] and "manylinux2014_x86_64" in target["platforms"]
    assert "manylinux_2_37_x86_64" not in target["platforms"]


@pytest.mark.parametrize(("filename", "ok"), [
    ("numpy-1.23.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
    ("numpy-1.23.5-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", False),
    ("numpy-1.23.5-cp311-cp311-manylinux_2_38_x86_64.whl", False),  # newer glibc than the node
    ("numpy-1.23.5-cp311-cp311-musllinux_1_1_x86_64.whl", False),
    ("numpy-1.23.5-cp311-cp311-manylinux_2_17_aarch64.whl", False),
    ("six-1.17.0-py2.py3-none-any.whl", True),
    ("optree-0.20.0-cp39-abi3-manylinux_2_17_x86_64.whl", True),
    ("optree-0.20.0-cp312-abi3-manylinux_2_17_x86_64.whl", False),  # abi3 from a newer Python
    ("theano-1.0.5-py3-none-any.whl", True),
    ("Theano-1.0.5.tar.gz", True),
])
def test_file_matches_the_interpreter(filename: str, ok: bool) -> None:
    info = f.parse_distribution_file(filename)
    assert info is not None
    assert f.file_matches(info, f.wheel_target(PY311)) is ok


def test_wheelhouse_problems_name_env_and_missing_pins() -> None:
    envs = [{"name": "k2", "state": "present", "pins": ["numpy==1.23.5", "six==1.17.0", "keras-applications==1.0.8",
                                                         "theano==1.0.5"], "target": f.wheel_target(PY311)},
            {"name": "built", "state": "present", "pins": ["absent==1.0"], "target": f.wheel_target(PY311)}]
    files = ["/w/numpy-1.23.5-cp310-cp310-manylinux2014_x86_64.whl", "/w/six-1.17.0-py2.py3-none-any.whl",
             "/w/Keras_Applications-1.0.8-py3-none-any.whl", "/w/theano-1.0.5-py3-none-any.whl",
             "/w/requirements.txt"]
    problems = f.wheelhouse_problems(envs, files, "/w", ["k2"])
    assert problems == ["env 'k2': the wheelhouse /w has no file for numpy==1.23.5 usable by cp311 on x86_64 "
                        "(glibc 2.36); rebuild it with playbooks/wheelhouse.yml"]
    assert len(f.wheelhouse_problems(envs, files, "/w")) == 2  # None: check every env


def test_wheelhouse_jobs_download_once_per_target_and_lock() -> None:
    one = {"name": "k3", "state": "present", "target": f.wheel_target(PY311), "requirements_text": "six==1.17.0\n"}
    other = dict(one, target=f.wheel_target(dict(PY311, version="3.13", libc=["glibc", "2.41"])))
    jobs = f.wheelhouse_jobs([[one], [dict(one)], [one, other], [{"name": "x", "state": "absent"}]])
    assert [(j["tag"], j["envs"]) for j in jobs] == [("cp311-x86_64-glibc2.36", ["k3"]),
                                                     ("cp313-x86_64-glibc2.41", ["k3"])]
    assert len(jobs[0]["id"]) == 12


def test_wheelhouse_missing_skips_a_download_only_when_every_pin_has_a_usable_file() -> None:
    env = {"name": "k2", "state": "present", "target": f.wheel_target(PY311),
           "requirements_text": "numpy==1.23.5\ntheano==1.0.5\n", "pins": ["numpy==1.23.5", "theano==1.0.5"]}
    job = f.wheelhouse_jobs([[env]])[0]
    assert job["pins"] == ["numpy==1.23.5", "theano==1.0.5"]
    assert f.wheelhouse_missing(job, []) == ["numpy==1.23.5", "theano==1.0.5"]
    numpy_wheel = "numpy-1.23.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    # an sdist counts (uv builds it on the node, with the build tools), as does a wheel of it
    assert f.wheelhouse_missing(job, [numpy_wheel, "Theano-1.0.5.tar.gz"]) == []
    assert f.wheelhouse_missing(job, ["/w/" + numpy_wheel, "/w/theano-1.0.5-py3-none-any.whl"]) == []
    # another version, or a wheel for another interpreter, does not
    assert f.wheelhouse_missing(job, ["numpy-1.24.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                                      "numpy-1.23.5-cp313-cp313-manylinux_2_17_x86_64.whl",
                                      "theano-1.0.5-py3-none-any.whl"]) == ["numpy==1.23.5"]


def test_wheelhouse_problems_name_the_tool_and_the_build_tools() -> None:
    target = f.wheel_target(PY311)
    downloads = [{"name": "uv", "label": "the uv tool", "target": target, "pins": ["uv==0.13.9"]},
                 {"name": "k2", "label": "env 'k2' (build tools)", "target": target, "pins": ["setuptools==80.10.2"]}]
    assert f.wheelhouse_problems(downloads, [], "/w", ["uv"]) == [
        "the uv tool: the wheelhouse /w has no file for uv==0.13.9 usable by cp311 on x86_64 (glibc 2.36); "
        "rebuild it with playbooks/wheelhouse.yml"]
    assert f.wheelhouse_problems(downloads, ["/w/setuptools-80.10.2-py3-none-any.whl"], "/w", ["k2"]) == []


RECIPE = {"package": "dlstack-python3.11", "version": "3.11.2", "sha256": "2411c74b" + "0" * 56,
          "configure": ["--prefix=/opt/dlstack/python/3.11", "--enable-shared"]}
TRIXIE = {"distribution": "Debian", "distribution_major_version": "13", "architecture": "x86_64"}


def test_interpreter_job_names_the_package_of_the_platform_and_recipe() -> None:
    job = f.interpreter_job(RECIPE, TRIXIE)
    assert job["platform"] == "debian13-x86_64" and job["install"] is True
    assert job["version"] == f"3.11.2+dlstack.{job['recipe'][:12]}"
    assert job["deb"] == f"dlstack-python3.11_{job['version']}_amd64.deb"
    # installed at that version: nothing to do; another recipe or platform: another package
    assert f.interpreter_job(RECIPE, TRIXIE, job["version"])["install"] is False
    assert f.interpreter_job(RECIPE, TRIXIE, "3.11.2+dlstack.000000000000")["install"] is True
    assert f.interpreter_job(dict(RECIPE, configure=["--prefix=/opt/x"]), TRIXIE)["version"] != job["version"]
    noble_arm = f.interpreter_job(RECIPE, {"distribution": "Ubuntu", "distribution_major_version": "24",
                                           "architecture": "aarch64"})
    assert noble_arm["platform"] == "ubuntu24-aarch64" and noble_arm["deb"].endswith("_arm64.deb")
    assert noble_arm["recipe"] != job["recipe"]


def test_one_builder_per_platform_that_needs_a_build() -> None:
    jobs = {"d12": {}, "ws1": {"platform": "debian13-x86_64", "install": True, "stored": False},
            "ws2": {"platform": "debian13-x86_64", "install": True, "stored": False},
            "ws3": {"platform": "debian13-x86_64", "install": False},
            "u24": {"platform": "ubuntu24-x86_64", "install": True, "stored": True}}
    assert f.interpreter_builders(jobs) == {"debian13-x86_64": "ws1"}
    assert f.interpreter_builders({"ws3": jobs["ws3"], "ws2": jobs["ws2"]}) == {"debian13-x86_64": "ws2"}


def test_pins_any() -> None:
    downloads = [[{"pins": ["six==1.17.0"]}], [], None, [{"pins": ["PyGPU==0.7.6"]}]]
    assert f.pins_any(downloads, "pygpu") and not f.pins_any(downloads[:3], "pygpu")


def test_filters_are_registered_and_wrap_errors() -> None:
    filters = f.FilterModule().filters()
    assert {"python_envs_definition_problems", "python_envs_normalize", "python_envs_requirement_sources",
            "python_envs_plan", "python_envs_wheelhouse_problems", "python_envs_wheelhouse_jobs",
            "python_envs_wheelhouse_pending", "python_envs_wheelhouse_unchecked",
            "python_envs_installed", "python_envs_config", "python_envs_wheel_target",
            "python_envs_parse_requirements", "python_envs_lock", "python_envs_interpreter_job",
            "python_envs_interpreter_builders", "python_envs_pins_any", "python_envs_requirement_candidates",
            "python_envs_use_gpu", "python_envs_to_build", "python_envs_download_argv",
            "python_envs_apt_packages"} <= set(filters)
    with pytest.raises(AnsibleFilterError, match="python_envs filter wheel_target"):
        filters["python_envs_wheel_target"]({"version": "three"})


def test_requirement_candidates_in_lookup_order() -> None:
    assert f.requirement_candidates("locks/numpy-cpu.txt", "/p/roles/python_envs", "/p/playbooks") == [
        "/p/roles/python_envs/files/locks/numpy-cpu.txt", "/p/playbooks/files/locks/numpy-cpu.txt",
        "/p/playbooks/files/python_envs/locks/numpy-cpu.txt", "/p/playbooks/../files/python_envs/locks/numpy-cpu.txt",
        "locks/numpy-cpu.txt"]


@pytest.mark.parametrize("setting, gpu, probe, wanted", [
    (True, {"present": False}, {}, True),
    (False, {"present": True}, {"stdout": "yes"}, False),
    # auto: the nvidia_gpu fact where gathered, its answer final
    ("auto", {"present": True}, {}, True),
    ("auto", {"present": False}, {"stdout": "yes"}, False),
    # auto without the fact: the PCI probe, "no" when it did not run
    ("auto", None, {"stdout": "yes"}, True),
    ("auto", None, {"stdout": "no"}, False),
    ("auto", None, {"skipped": True}, False),
    ("auto", None, {}, False),
])
def test_use_gpu(setting: Any, gpu: dict[str, Any] | None, probe: dict[str, Any], wanted: bool) -> None:
    assert f.use_gpu(setting, gpu, probe) is wanted


def test_to_build_names_the_envs_and_uv_that_need_a_build() -> None:
    results = [{"item": {"name": "keras3-tensorflow"}, "needs_build": True},
               {"item": {"name": "theano"}, "needs_build": False},
               {"item": {"name": "absent-env"}, "skipped": True}]
    assert f.to_build(results, {"needs_build": True}) == ["keras3-tensorflow", "uv"]
    assert f.to_build(results, {"skipped": True}) == ["keras3-tensorflow"]
    assert f.to_build([], {"needs_build": False}) == []


def test_download_argv() -> None:
    job = {"id": "0123456789ab", "target": f.wheel_target(PY311)}
    argv = f.download_argv(job, "/venv/bin/python", "/w/cp311-x86_64-glibc2.36")
    assert argv[:11] == ["/venv/bin/python", "-m", "pip", "download", "--no-deps", "--require-hashes",
                         "--disable-pip-version-check", "--dest", "/w/cp311-x86_64-glibc2.36",
                         "--find-links", "/w/cp311-x86_64-glibc2.36"]
    assert argv[11:21] == ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                           "--abi", "abi3", "--abi", "none"]
    assert argv[21:-2] == [f"--platform={p}" for p in job["target"]["platforms"]]
    assert "--platform=manylinux_2_36_x86_64" in argv and "--index-url" not in argv
    assert argv[-2:] == ["--requirement", "/w/cp311-x86_64-glibc2.36/requirements-0123456789ab.txt"]
    with_index = f.download_argv(job, "/venv/bin/python", "/w/x", "https://mirror.example/simple")
    assert with_index[-4:-2] == ["--index-url", "https://mirror.example/simple"]


def test_apt_packages() -> None:
    theano = {"state": "present", "theano": True}
    plan = {"envs": [{"state": "present", "theano": False}, dict(theano, state="absent")], "provided_python": False}
    args = (["python3-venv"], ["g++", "libopenblas-dev"], ["libssl3"], ["htop"])
    assert f.apt_packages(plan, *args) == ["python3-venv", "htop"]
    assert f.apt_packages(dict(plan, envs=[theano]), *args) == ["python3-venv", "g++", "libopenblas-dev", "htop"]
    assert f.apt_packages(dict(plan, provided_python=True), *args) == ["python3-venv", "libssl3", "htop"]


def test_check_mode_leaves_unchecked_only_the_envs_whose_download_did_not_run() -> None:
    """On a fresh controller check mode downloads nothing: the jobs whose directory lacks a pin
    are pending, the offline check skips their envs and names them; the others are checked."""
    k2 = {"name": "k2", "state": "present", "target": f.wheel_target(PY311),
          "requirements_text": "six==1.17.0\n", "pins": ["six==1.17.0"]}
    k3 = {"name": "k3", "state": "present", "target": f.wheel_target(PY311),
          "requirements_text": "numpy==2.2.6\n", "pins": ["numpy==2.2.6"]}
    uv = {"name": "uv", "label": "uv (the installer)", "state": "present", "target": f.wheel_target(PY311),
          "requirements_text": "uv==0.9.0\n", "pins": ["uv==0.9.0"]}
    jobs = f.wheelhouse_jobs([[k2, k3, uv]])
    tag = "cp311-x86_64-glibc2.36"
    store = [f"/s/{tag}/six-1.17.0-py2.py3-none-any.whl", f"/s/{tag}/requirements-x.txt",
             "/s/cp313-x86_64-glibc2.41/numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl"]
    pending = f.wheelhouse_pending(jobs, store, "/s")
    assert sorted(j["envs"][0] for j in pending) == ["k3", "uv"]  # numpy's file is in another directory
    assert f.wheelhouse_unchecked([k2, k3, uv], pending) == [f"env 'k3' ({tag})", f"uv (the installer) ({tag})"]
    shipped = ["/w/six-1.17.0-py2.py3-none-any.whl"]
    assert f.wheelhouse_problems([k2, k3, uv], shipped, "/w", pending=pending) == []
    # without the pending jobs (a real run, or no wheelhouse.yml in this run) every env is checked
    assert len(f.wheelhouse_problems([k2, k3, uv], shipped, "/w")) == 2
    # a complete store: nothing pending, nothing left unchecked
    full = [*store, f"/s/{tag}/numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl", f"/s/{tag}/uv-0.9.0-py3-none-manylinux_2_17_x86_64.whl"]
    assert f.wheelhouse_pending(jobs, full, "/s") == []
    assert f.wheelhouse_unchecked([k2, k3, uv], []) == []
