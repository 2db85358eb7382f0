"""Unit tests for roles/dl_user_config/filter_plugins/dl_user_config.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from plugin_loader import load_by_path

ROLE = Path(__file__).resolve().parents[2] / "roles" / "dl_user_config"
duc = load_by_path("dl_user_config_filters", ROLE / "filter_plugins" / "dl_user_config.py")

DEFAULTS: dict[str, Any] = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["dl_user_config_defaults"]


def effective(users: list[dict[str, Any]], *layers: dict[str, Any], create: bool = False) -> list[dict[str, Any]]:
    return duc.effective_users(duc.merge_users(users), duc.merge_settings(DEFAULTS, *layers), create)


def one(user: dict[str, Any], *layers: dict[str, Any]) -> dict[str, Any]:
    return effective([user], *layers)[0]


# --- merging ---------------------------------------------------------------------------

def test_users_combine_by_name_across_levels() -> None:
    all_level = [{"name": "alice", "keras": {"backend": "theano"}, "theano": {"device": "cuda0"}},
                 {"name": "bob", "keras": {"backend": "tensorflow", "floatx": "float16"}}]
    group = [{"name": "carol"}]
    host = [{"name": "alice", "theano": {"device": "cuda1"}}]
    merged = duc.merge_users(all_level, group, host)
    assert [u["name"] for u in merged] == ["alice", "bob", "carol"]
    assert merged[0] == {"name": "alice", "keras": {"backend": "theano"}, "theano": {"device": "cuda1"}}
    assert merged[1]["keras"] == {"backend": "tensorflow", "floatx": "float16"}


def test_merge_users_skips_empty_levels_and_does_not_mutate_input() -> None:
    level = [{"name": "alice", "keras": {"backend": "theano"}}]
    merged = duc.merge_users(None, level, [], [{"name": "alice", "keras": {"floatx": "float64"}}])
    assert merged[0]["keras"] == {"backend": "theano", "floatx": "float64"}
    assert level == [{"name": "alice", "keras": {"backend": "theano"}}]


@pytest.mark.parametrize("bad", [{"name": "alice"}, "alice", [{"keras": {}}], [{"name": ""}], ["alice"]])
def test_merge_users_rejects_malformed_levels(bad: Any) -> None:
    with pytest.raises(AnsibleFilterError):
        duc.merge_users(bad)


def test_settings_layers_deep_merge_in_order() -> None:
    merged = duc.merge_settings(
        DEFAULTS,
        {"keras": {"epsilon": 1e-6}},
        {"theano": {"optimizer": "fast_compile", "extra_sections": {"nvcc": {"fastmath": "True"}}}},
        {"theano": {"optimizer": "merge"}},
    )
    assert merged["keras"] == {**DEFAULTS["keras"], "epsilon": 1e-6}
    assert merged["theano"]["optimizer"] == "merge"
    assert merged["theano"]["extra_sections"] == {"nvcc": {"fastmath": "True"}}
    assert merged["theano"]["device"] == "cpu"
    assert DEFAULTS["theano"]["optimizer"] == "fast_run"  # defaults untouched


def test_settings_layer_must_be_a_dict() -> None:
    with pytest.raises(AnsibleFilterError):
        duc.merge_settings(DEFAULTS, ["keras"])


def test_effective_user_puts_user_over_settings_and_fills_compiledir() -> None:
    user = one({"name": "bob", "keras": {"floatx": "float16"}}, {"keras": {"floatx": "float64", "epsilon": 1e-5}})
    assert user["keras"]["floatx"] == "float16"
    assert user["keras"]["epsilon"] == 1e-5
    assert user["theano"]["base_compiledir"] == "/var/tmp/theano-bob"
    assert user["create"] is False and user["state"] == "present"


def test_effective_create_default_and_override() -> None:
    users = effective([{"name": "a"}, {"name": "b", "create": False}], create=True)
    assert [u["create"] for u in users] == [True, False]


def test_defaults_are_valid() -> None:
    assert duc.user_errors(effective([{"name": "carol"}]), ["tensorflow"], 0) == []


def test_seed_example_is_valid() -> None:
    users = effective(
        duc.merge_users([{"name": "alice", "keras": {"backend": "theano"}, "theano": {"device": "cuda0"}},
                         {"name": "bob", "keras": {"backend": "tensorflow", "floatx": "float16"}, "theano": {"device": "cuda0"}},
                         {"name": "carol"}],
                        [{"name": "alice", "theano": {"device": "cuda1"}}]))
    assert duc.user_errors(users, ["theano", "tensorflow"], 2) == []


# --- validation: every bad input of the issue ---------------------------------------------

def errors_for(user: dict[str, Any], served: list[str] | None = ("tensorflow", "theano"), gpus: int = 2) -> list[str]:
    return duc.user_errors([one(user)], list(served) if served else served, gpus)


def test_unknown_backend() -> None:
    assert errors_for({"name": "alice", "keras": {"backend": "theanoo"}}) == [
        "user alice: keras.backend = 'theanoo' is invalid; allowed: the backends the envs on this host serve: tensorflow, theano"]


def test_unknown_backend_without_envs_lists_known_backends() -> None:
    assert errors_for({"name": "alice", "keras": {"backend": "theanoo"}}, served=None) == [
        "user alice: keras.backend = 'theanoo' is invalid; allowed: tensorflow, theano, cntk, jax, torch, numpy, openvino"]


def test_backend_no_env_serves() -> None:
    assert errors_for({"name": "bob", "keras": {"backend": "jax"}}, served=["tensorflow"]) == [
        "user bob: keras.backend = 'jax' is invalid; allowed: the backends the envs on this host serve: tensorflow"]


@pytest.mark.parametrize("device", ["gpu", "gpu0", "GPU"])
def test_old_gpu_device_values(device: str) -> None:
    (message,) = errors_for({"name": "bob", "theano": {"device": device}})
    assert message.startswith(f"user bob: theano.device = '{device}' is invalid; allowed: cpu, cuda, cudaN")
    assert ("removed in Theano 1.0" in message) == device.startswith("gpu")


@pytest.mark.parametrize("device", ["cuda-1", "cuda 0", "cud0", "", "opencl0"])
def test_malformed_devices(device: str) -> None:
    (message,) = errors_for({"name": "carol", "theano": {"device": device}})
    assert f"theano.device = '{device}' is invalid" in message


@pytest.mark.parametrize(("device", "gpus", "ok"), [
    ("cuda0", 1, True), ("cuda1", 1, False), ("cuda1", 2, True), ("cuda", 1, True), ("cuda", 0, False),
    ("cuda0", 0, False), ("cpu", 0, True), ("opencl0:1", 0, True), ("cuda15", 16, True), ("cuda16", 16, False),
])
def test_cuda_index_against_gpu_count(device: str, gpus: int, ok: bool) -> None:
    errors = errors_for({"name": "alice", "theano": {"device": device}}, gpus=gpus)
    assert (errors == []) is ok, errors
    if not ok:
        assert f"(this host has {gpus} NVIDIA GPU" in errors[0]


def test_cuda_message_lists_the_valid_devices() -> None:
    assert errors_for({"name": "alice", "theano": {"device": "cuda5"}}, gpus=2) == [
        "user alice: theano.device = 'cuda5' is invalid; allowed: cpu, cuda, cuda0..cuda1 (this host has 2 NVIDIA GPUs)"]
    assert errors_for({"name": "alice", "theano": {"device": "cuda0"}}, gpus=0) == [
        "user alice: theano.device = 'cuda0' is invalid; allowed: cpu (this host has 0 NVIDIA GPUs)"]


@pytest.mark.parametrize("field", ["keras.floatx", "theano.floatX"])
@pytest.mark.parametrize("value", ["float8", "float", "int32", 32])
def test_bad_float_types(field: str, value: Any) -> None:
    section, key = field.split(".")
    assert errors_for({"name": "carol", section: {key: value}}) == [
        f"user carol: {field} = {value!r} is invalid; allowed: float16, float32, float64"]


@pytest.mark.parametrize("value", [0, -1e-7, 1, "1e-7", True, None])
def test_bad_epsilon(value: Any) -> None:
    (message,) = errors_for({"name": "carol", "keras": {"epsilon": value}})
    assert message.startswith(f"user carol: keras.epsilon = {value!r} is invalid")


@pytest.mark.parametrize(("field", "value"), [
    ("keras.image_data_format", "channels_middle"), ("theano.optimizer", "fastest"), ("theano.dnn_enabled", "maybe"),
])
def test_other_choices(field: str, value: str) -> None:
    section, key = field.split(".")
    (message,) = errors_for({"name": "carol", section: {key: value}})
    assert message.startswith(f"user carol: {field} = {value!r} is invalid; allowed: ")


def test_dnn_enabled_accepts_yaml_booleans() -> None:
    assert errors_for({"name": "carol", "theano": {"dnn_enabled": False}}) == []


@pytest.mark.parametrize("path", ["tmp/theano", "/var/tmp/../etc", "", None, "~/theano"])
def test_compiledir_must_be_absolute_without_dotdot(path: Any) -> None:
    (message,) = errors_for({"name": "carol", "theano": {"base_compiledir": path}})
    assert message.startswith(f"user carol: theano.base_compiledir = {path!r} is invalid")


@pytest.mark.parametrize("key", ["cuda_root", "dnn_include_path", "dnn_library_path"])
def test_toolkit_paths_absolute_or_empty(key: str) -> None:
    assert errors_for({"name": "carol", "theano": {key: "/usr/local/cuda-12.5"}}) == []
    (message,) = errors_for({"name": "carol", "theano": {key: "usr/local/cuda"}})
    assert f"theano.{key} = 'usr/local/cuda' is invalid; allowed: an absolute path" in message


def test_unknown_fields_are_errors() -> None:
    errors = errors_for({"name": "carol", "keras": {"backnd": "theano"}, "theano": {"devce": "cpu"}, "shell": "/bin/zsh"})
    assert len(errors) == 3
    assert any("keras.backnd" in e for e in errors)
    assert any("theano.devce" in e for e in errors)
    assert any("user carol: shell = '/bin/zsh' is invalid; allowed: fields name" in e for e in errors)


@pytest.mark.parametrize("name", ["Alice", "al ice", "1abc", "a" * 40, "../root"])
def test_bad_user_names(name: str) -> None:
    assert any(e.startswith(f"user {name}: name = ") for e in errors_for({"name": name}))


@pytest.mark.parametrize("sections", [{"global": {"device": "cpu"}}, {"nvcc": "fastmath"}, ["nvcc"], {"bad section": {}}])
def test_bad_extra_sections(sections: Any) -> None:
    errors = errors_for({"name": "carol", "theano": {"extra_sections": sections}})
    assert errors and all("theano.extra_sections" in e for e in errors)


def test_bad_gpu_count() -> None:
    assert duc.user_errors([], [], "two") == [
        "dl_user_config_gpu_count = 'two' is invalid; allowed: a whole number >= 0"]


def test_all_problems_are_reported_together() -> None:
    users = effective([
        {"name": "alice", "keras": {"backend": "theanoo"}, "theano": {"device": "cuda5"}},
        {"name": "bob", "keras": {"backend": "jax"}, "theano": {"device": "gpu"}},
        {"name": "carol", "keras": {"floatx": "float8"}, "theano": {"device": "cuda-1"}},
    ])
    errors = duc.user_errors(users, ["tensorflow", "theano"], 2)
    assert [e.split(" = ")[0] for e in errors] == [
        "user alice: keras.backend", "user alice: theano.device", "user bob: keras.backend",
        "user bob: theano.device", "user carol: keras.floatx", "user carol: theano.device"]


# --- keras.json, paths, cuDNN header -----------------------------------------------------

@pytest.mark.parametrize(("text", "parsed"), [
    (None, {}), ("", {}), ("  \n", {}), ('{"backend": "theano", "x": 1}', {"backend": "theano", "x": 1}),
    ("{not json", None), ("[1, 2]", None), ('"theano"', None),
])
def test_json_dict(text: str | None, parsed: dict[str, Any] | None) -> None:
    assert duc.json_dict(text) == parsed


def stat_result(user: str, rel: str, **st: Any) -> dict[str, Any]:
    return {"user": user, "path": rel, "stat": {"path": f"/home/{user}/{rel}".rstrip("/"), **st}}


def test_path_errors_accept_a_normal_home() -> None:
    results = [stat_result("alice", "", exists=True, isdir=True, islnk=False),
               stat_result("alice", ".keras", exists=True, isdir=True, islnk=False),
               stat_result("alice", ".keras/keras.json", exists=False),
               stat_result("alice", ".theanorc", exists=True, isdir=False, islnk=False)]
    assert duc.path_errors(results) == []


def test_path_errors_refuse_links_missing_homes_and_failures() -> None:
    results = [stat_result("mallory", ".keras", exists=True, islnk=True, lnk_target="/etc"),
               stat_result("mallory", ".theanorc", exists=True, islnk=True, lnk_target="/etc/shadow"),
               stat_result("nohome", "", exists=False),
               stat_result("dave", ".keras", exists=True, isdir=False, islnk=False),
               {"user": "erin", "path": ".keras", "failed": True, "msg": "Permission denied"}]
    assert duc.path_errors(results) == [
        "user mallory: ~/.keras = a symbolic link to '/etc'; allowed: a real file or directory inside the home "
        "(dlstack does not follow links the user controls)",
        "user mallory: ~/.theanorc = a symbolic link to '/etc/shadow'; allowed: a real file or directory inside the home "
        "(dlstack does not follow links the user controls)",
        "user nohome: home /home/nohome = missing or not a directory; allowed: an existing home directory",
        "user dave: ~/.keras = not a directory; allowed: a directory",
        "user erin: cannot inspect ~/.keras as the user: Permission denied",
    ]


def test_unusable_keras_json_warns_per_user_whose_file_is_not_an_object() -> None:
    paths = [stat_result("alice", ".keras/keras.json", exists=True, content='{"backend": "theano"}'),
             stat_result("bob", ".keras/keras.json", exists=True, content="[1, 2]"),
             stat_result("carol", ".keras/keras.json", exists=True, content="{not json"),
             stat_result("dave", ".keras/keras.json", exists=False),
             stat_result("erin", ".keras/keras.json", exists=True, content=""),
             stat_result("bob", ".theanorc", exists=True, content="[1, 2]")]
    assert duc.unusable_keras_json(paths) == [
        "/home/bob/.keras/keras.json of bob is not a JSON object; it is backed up and replaced by the managed settings",
        "/home/carol/.keras/keras.json of carol is not a JSON object; it is backed up and replaced by the managed settings",
    ]


def test_path_errors_refuse_directories_of_another_uid() -> None:
    """A compile directory left by a deleted account of the same name keeps mode 0700 but
    is not the user's: Theano could not write there (found by the fleet benchmark)."""
    passwd = {"dave": ["x", "1004", "1004", "", "/home/dave", "/bin/bash"]}
    paths = [stat_result("dave", "", exists=True, isdir=True, islnk=False, uid=1004),
             stat_result("dave", ".keras", exists=True, isdir=True, islnk=False, uid=0)]
    dirs = [{"user": "dave", "path": "/var/tmp/theano-dave",
             "stat": {"path": "/var/tmp/theano-dave", "exists": True, "isdir": True, "islnk": False, "uid": 1003}},
            {"user": "dave", "path": "/var/tmp/theano-x",
             "stat": {"path": "/var/tmp/theano-x", "exists": True, "islnk": True, "lnk_target": "/etc"}},
            {"user": "dave", "path": "/var/tmp/theano-y", "stat": {"path": "/var/tmp/theano-y", "exists": False}}]
    assert duc.path_errors(paths, dirs, passwd) == [
        "user dave: ~/.keras = a directory of uid 0, not of dave (uid 1004); allowed: the user's own directory "
        "(remove that one)",
        "user dave: /var/tmp/theano-dave = a directory of uid 1003, not of dave (uid 1004); allowed: the user's own "
        "directory (remove that one, or set another theano.base_compiledir)",
        "user dave: /var/tmp/theano-x = a symbolic link to '/etc'; allowed: a real directory "
        "(dlstack does not follow links the user controls)",
    ]
    dirs[0]["stat"]["uid"] = 1004
    paths[1]["stat"]["uid"] = 1004
    assert duc.path_errors(paths, dirs[:1], passwd) == []


def test_account_errors() -> None:
    users = effective([{"name": "alice"}, {"name": "dave"}, {"name": "erin", "create": True}])
    assert duc.account_errors(users, {"alice": ["x", "1000"]}) == [
        "user dave: account = missing; allowed: an existing account, or create: true"]


def test_only_errors() -> None:
    users = effective([{"name": "alice"}, {"name": "bob"}])
    assert duc.only_errors(["alice"], users) == []
    assert duc.only_errors(["zed", "bob"], users) == [
        "dl_user_config_only = 'zed' is invalid; allowed: the declared users alice, bob"]


def test_file_is_and_dir_is_say_when_a_write_would_change_nothing() -> None:
    same = {"exists": True, "islnk": False, "isdir": False, "mode": "0644", "uid": 0, "gid": 0, "content": "x\n"}
    assert duc.file_is(same, "x\n", "0644") and duc.file_is(same, "x\n", "0644", 0, 0)
    assert not duc.file_is(same, "y\n", "0644")                       # other content
    assert not duc.file_is(same, "x\n", "0600")                       # other mode
    assert not duc.file_is(same, "x\n", "0644", 1000)                 # other owner
    assert not duc.file_is(dict(same, gid=1000), "x\n", "0644", 0, 0)  # other group
    assert not duc.file_is(dict(same, islnk=True), "x\n", "0644")     # a link is replaced, never followed
    assert not duc.file_is({"exists": False}, "", "0644") and not duc.file_is(None, "", "0644")
    assert not duc.file_is(dict(same, content=None), "x\n", "0644")   # too big or not read
    directory = {"exists": True, "isdir": True, "islnk": False, "mode": "0700"}
    assert duc.dir_is(directory, "0700") and not duc.dir_is(directory, "0755")
    assert not duc.dir_is(dict(directory, islnk=True, isdir=False), "0700") and not duc.dir_is({}, "0700")


def test_passwd_entry_from_a_user_result() -> None:
    created = {"name": "dave", "uid": 1003, "group": 1003, "home": "/home/dave", "shell": "/bin/bash", "changed": True}
    assert duc.passwd_entry(created) == ["x", "1003", "1003", "", "/home/dave", "/bin/bash"]
    with pytest.raises(AnsibleFilterError, match="no 'home'"):
        duc.passwd_entry({"name": "dave", "uid": 1003, "group": 1003})


def test_public_envs_keep_the_existing_envs_name_python_backends() -> None:
    envs = [{"name": "k2", "python": "/opt/k2/bin/python", "backends": ["theano"], "exists": True, "purelib": "/x",
             "files": {"dlstack_keras_backend.pth": {"content": "import dlstack_keras_backend\n"}}},
            {"name": "gone", "python": "/opt/gone/bin/python", "backends": ["tensorflow"], "exists": False}]
    assert duc.public_envs(envs) == [{"name": "k2", "python": "/opt/k2/bin/python", "backends": ["theano"]}]


def test_filters_are_registered() -> None:
    names = set(duc.FilterModule().filters())
    assert names == {"dl_user_config_merge_users", "dl_user_config_merge_settings", "dl_user_config_effective",
                     "dl_user_config_errors", "dl_user_config_account_errors", "dl_user_config_only_errors",
                     "dl_user_config_json_dict", "dl_user_config_path_errors", "dl_user_config_unusable_keras_json",
                     "dl_user_config_file_is", "dl_user_config_dir_is", "dl_user_config_passwd_entry", "dl_user_config_public_envs",
                     "dl_user_config_cudnn_from_header", "dl_user_config_theano_profile",
                     "dl_user_config_theano_seed_plan", "dl_user_config_theano_seed_errors", "dl_user_config_check_mode_unpredictable",
                     "dl_user_config_theano_seed_jobs", "dl_user_config_theano_seed_stored",
                     "dl_user_config_theano_seed_builders", "dl_user_config_theano_seed_mine",
                     "dl_user_config_theano_seed_imports", "dl_user_config_theano_seed_store_errors",
                     "dl_user_config_theano_seed_said"}


def test_user_errors_refuse_float16_where_theano_runs_on_the_cpu() -> None:
    """Every user gets the Theano env's backend on a host that has one, and Theano's CPU
    convolution has no float16: Conv2D would fail there for bob (found on the demo fleet)."""
    settings = duc.merge_settings(DEFAULTS)
    bob = duc.effective_users([{"name": "bob", "keras": {"backend": "tensorflow", "floatx": "float16"}}], settings)
    assert duc.user_errors(bob, ["theano", "tensorflow"]) == [
        "user bob: keras.floatx = 'float16' is invalid; allowed: float32 or float64 with theano.device cpu on a host "
        "with a Theano env (Theano's CPU convolution has no float16), or a cuda device"]
    assert duc.user_errors(bob, ["tensorflow"]) == []
    on_gpu = duc.effective_users([{"name": "bob", "keras": {"floatx": "float16"}, "theano": {"device": "cuda0"}}], settings)
    assert duc.user_errors(on_gpu, ["theano", "tensorflow"], 1) == []


# --- the Theano seed plan -------------------------------------------------------------------

NODE = {"openblas": True, "cuda_root": "", "cudnn": "", "dnn": {"enabled": False, "reason": "no cuDNN"}}
THEANO_ENV = {"name": "keras2-theano", "python": "/opt/dlstack/envs/keras2-theano/bin/python", "exists": True,
              "backends": ["theano"], "build": "b1", "real": "/opt/dlstack/envs/.keras2-theano-1"}
TF_ENV = {"name": "keras3-tf", "python": "/opt/dlstack/envs/keras3-tf/bin/python", "exists": True,
          "backends": ["tensorflow"], "build": "b2", "real": "/opt/dlstack/envs/.keras3-tf-1"}


def seed_users() -> list[dict[str, Any]]:
    return effective([{"name": "alice", "keras": {"backend": "theano"}},
                      {"name": "bob", "keras": {"backend": "tensorflow"}},
                      {"name": "carol", "keras": {"backend": "theano", "floatx": "float64"}}])


def read(envs: list[dict[str, Any]], seeds: list[dict[str, Any]], files: list[dict[str, Any]]) -> dict[str, Any]:
    """What dl_user_config_info returns that the plan reads."""
    return {"envs": envs, "theano_seeds": seeds, "user_files": files}


def marker(user: str, ids: dict[str, str]) -> dict[str, Any]:
    import json
    return {"user": user, "name": ".dlstack-seed.json",
            "stat": {"exists": True, "content": json.dumps({env: {"id": tid} for env, tid in ids.items()})}}


def test_theano_profile_leaves_out_the_user_and_the_compile_directory() -> None:
    alice, bob, carol = seed_users()
    assert duc.theano_profile(alice, NODE) == duc.theano_profile(bob, NODE)  # the backend is not part of it
    assert duc.theano_profile(alice, NODE) != duc.theano_profile(carol, NODE)  # float64 is
    assert "base_compiledir" not in duc.theano_profile(alice, NODE)["theano"]
    assert duc.theano_profile(alice, NODE) != duc.theano_profile(alice, {**NODE, "openblas": False})


def test_plan_builds_one_template_per_profile_and_seeds_every_theano_user() -> None:
    users = seed_users()
    plan = duc.theano_seed_plan(read([THEANO_ENV, TF_ENV], [], []), users, users, NODE)
    assert [(b["env"], b["user"]) for b in plan["builds"]] == [("keras2-theano", "alice"), ("keras2-theano", "carol")]
    assert plan["builds"][0]["keras"] == {"floatx": "float32", "epsilon": 1e-07, "image_data_format": "channels_last"}
    # bob's tensorflow is not served by the Theano env: the hook gives him Theano there
    assert [(s["user"], s["compiledir"]) for s in plan["seeds"]] == [
        ("alice", "/var/tmp/theano-alice"), ("bob", "/var/tmp/theano-bob"), ("carol", "/var/tmp/theano-carol")]
    wanted = plan["wanted"]
    assert wanted["alice"]["keras2-theano"] == wanted["bob"]["keras2-theano"] != wanted["carol"]["keras2-theano"]
    assert plan["prune"] == []
    # all built and seeded: nothing to do
    seeds = [{"env": "keras2-theano", "id": tid, "ok": True} for tid in {wanted[u]["keras2-theano"] for u in wanted}]
    files = [marker(u, wanted[u]) for u in wanted]
    assert duc.theano_seed_plan(read([THEANO_ENV, TF_ENV], seeds, files), users, users, NODE) == {
        "builds": [], "seeds": [], "prune": [], "wanted": wanted}


def test_a_new_build_gets_new_templates_reseeds_and_drops_the_old() -> None:
    users = seed_users()
    old = duc.theano_seed_plan(read([THEANO_ENV], [], []), users, users, NODE)["wanted"]
    rebuilt = {**THEANO_ENV, "build": "b9", "real": "/opt/dlstack/envs/.keras2-theano-2"}
    seeds = [{"env": "keras2-theano", "id": tid, "ok": True} for tid in {old[u]["keras2-theano"] for u in old}]
    plan = duc.theano_seed_plan(read([rebuilt], seeds, [marker(u, old[u]) for u in old]), users, users, NODE)
    assert len(plan["builds"]) == 2 and len(plan["seeds"]) == 3
    assert not {b["id"] for b in plan["builds"]} & {s["id"] for s in seeds}
    assert plan["prune"] == [{"env": "keras2-theano", "keep": sorted({b["id"] for b in plan["builds"]})}]
    # a one-user run (add_user.yml) seeds that user and drops nothing
    one_user = duc.theano_seed_plan(read([rebuilt], seeds, []), users[:1], users, NODE, False)
    assert [s["user"] for s in one_user["seeds"]] == ["alice"] and one_user["prune"] == []


def test_plan_ignores_envs_without_theano_a_build_id_or_existence() -> None:
    users = seed_users()
    for env in (TF_ENV, {**THEANO_ENV, "exists": False}, {k: v for k, v in THEANO_ENV.items() if k != "build"}):
        assert duc.theano_seed_plan(read([env], [], []), users, users, NODE) == {"builds": [], "seeds": [], "prune": [],
                                                                           "wanted": {}}
    # an unsafe template (not root's alone) counts as missing
    tid = duc.theano_seed_plan(read([THEANO_ENV], [], []), users[:1], users, NODE)["builds"][0]["id"]
    plan = duc.theano_seed_plan(read([THEANO_ENV], [{"env": "keras2-theano", "id": tid, "ok": False}], []), users[:1], users, NODE)
    assert [b["id"] for b in plan["builds"]] == [tid]


@pytest.mark.parametrize(("args", "message"), [
    (("/tmp", "dlstack-theano", 1800), "dl_user_config_theano_seed_dir = '/tmp' is invalid"),
    (("seeds", "dlstack-theano", 1800), "dl_user_config_theano_seed_dir = 'seeds' is invalid"),
    (("/var/lib/x/../y", "dlstack-theano", 1800), "is invalid"),
    (("/var/lib/dlstack/theano-seeds", "root", 1800), "dl_user_config_theano_seed_user = 'root' is invalid"),
    (("/var/lib/dlstack/theano-seeds", "Bad Name", 1800), "dl_user_config_theano_seed_user = 'Bad Name' is invalid"),
    (("/var/lib/dlstack/theano-seeds", "dlstack-theano", 0), "dl_user_config_theano_seed_timeout = 0 is invalid"),
    (("/var/lib/dlstack/theano-seeds", "dlstack-theano", True), "dl_user_config_theano_seed_timeout = True is invalid"),
])
def test_theano_seed_errors(args: tuple[Any, ...], message: str) -> None:
    errors = duc.theano_seed_errors(True, *args)
    assert len(errors) == 1 and message in errors[0]
    assert duc.theano_seed_errors(False, *args) == []
    assert duc.theano_seed_errors(True, "/var/lib/dlstack/theano-seeds", "dlstack-theano", 1800) == []


@pytest.mark.parametrize("store", ["relative/seeds", "/var/cache/../etc", 7])
def test_theano_seed_store_must_be_absolute_or_empty(store: Any) -> None:
    assert duc.theano_seed_store_errors(store) == [
        f"dl_user_config_theano_seed_store = {store!r} is invalid; allowed: an absolute path on the "
        "controller, or '' (each node builds its own templates)"]
    assert duc.theano_seed_store_errors(store, False) == []
    assert duc.theano_seed_store_errors("") == [] and duc.theano_seed_store_errors("/srv/seeds") == []


def test_theano_seed_said_names_the_templates_from_the_store_and_the_warnings() -> None:
    seeded = {"imported": [{"env": "k2", "id": "0123456789abcdef", "files": 9},
                           {"env": "k2", "id": "fedcba9876543210", "existed": True},
                           {"env": "k2", "id": "1111111111111111", "warning": "k2/1111111111111111: refused"}],
              "problems": ["k2/1111111111111111: refused"], "warnings": ["taken by Ansible, not read"]}
    assert duc.theano_seed_said(seeded) == ["template from the store: k2/0123456789abcdef",
                                            "WARNING: k2/1111111111111111: refused"]
    assert duc.theano_seed_said(None) == [] and duc.theano_seed_said({}) == []


def stat_loop(keys_found: dict[str, bool]) -> dict[str, Any]:
    """What a registered ``stat`` loop over keyed jobs looks like."""
    return {"results": [{"item": {"key": k}, "stat": {"exists": v}} for k, v in keys_found.items()]}


def test_store_jobs_one_builder_per_template_and_platform_the_others_import() -> None:
    builds = [{"env": "keras2-theano", "id": "0123456789abcdef", "user": "alice"},
              {"env": "keras2-theano", "id": "fedcba9876543210", "user": "bob"}]
    k1, k2 = "debian12-aaa/keras2-theano-0123456789abcdef", "debian12-aaa/keras2-theano-fedcba9876543210"
    jobs = duc.theano_seed_jobs(builds, "debian12-aaa", "/srv/seeds")
    assert [(j["key"], j["stored"], j["user"]) for j in jobs] == [(k1, False, "alice"), (k2, False, "bob")]
    # no store, or a node whose platform is unknown: no key, the node builds its own
    assert {j["key"] for j in duc.theano_seed_jobs(builds, "debian12-aaa", "")} == {""}
    assert {j["key"] for j in duc.theano_seed_jobs(builds, "", "/srv/seeds")} == {""}
    # the store has the first template: nobody builds it; gpu01 (first in play order) builds the second
    gpu01 = duc.theano_seed_stored(jobs, stat_loop({k1: True, k2: False}))
    gpu02 = duc.theano_seed_stored(jobs[1:], stat_loop({k2: False}))
    ws01 = duc.theano_seed_stored(duc.theano_seed_jobs(builds[:1], "debian13-bbb", "/srv/seeds"),
                                  stat_loop({"debian13-bbb/keras2-theano-0123456789abcdef": False}))
    builders = duc.theano_seed_builders({"gpu01": gpu01, "gpu02": gpu02, "ws01": ws01, "gpu03": None})
    assert builders == {k2: "gpu01", "debian13-bbb/keras2-theano-0123456789abcdef": "ws01"}
    assert [j["id"] for j in duc.theano_seed_mine(gpu01, builders, "gpu01")] == ["fedcba9876543210"]
    assert duc.theano_seed_mine(gpu02, builders, "gpu02") == []
    # after the builders' turn, gpu02 installs from the store what is there now
    imports = duc.theano_seed_imports(gpu02, stat_loop({k2: True}), "/var/lib/dlstack/theano-seeds/.import/")
    assert imports == [{"env": "keras2-theano", "id": "fedcba9876543210", "key": k2,
                        "archive": "/var/lib/dlstack/theano-seeds/.import/keras2-theano-fedcba9876543210.tar.gz"}]
    # a builder that failed left nothing: the node builds it itself (the plan's builds still list it)
    assert duc.theano_seed_imports(gpu02, stat_loop({k2: False}), "/x") == []


# --- a user listed twice at one level --------------------------------------------------

@pytest.mark.parametrize("position, variable", [(0, "dl_user_config_users"), (1, "dl_user_config_group_users"),
                                                (2, "dl_user_config_host_users")])
def test_merge_users_refuses_a_user_twice_at_one_level(position: int, variable: str) -> None:
    levels: list[Any] = [[{"name": "alice"}], [], []]
    levels[position] = levels[position] + [{"name": "dup1", "keras": {"floatx": "float16"}},
                                           {"name": "dup1", "keras": {"floatx": "float64"}}]
    with pytest.raises(AnsibleFilterError) as raised:
        duc.merge_users(*levels)
    assert f"{variable} lists user 'dup1' twice" in str(raised.value)
    assert "allowed: each user once per level" in str(raised.value)


def test_merge_users_names_every_duplicate_of_every_level_at_once() -> None:
    with pytest.raises(AnsibleFilterError) as raised:
        duc.merge_users([{"name": "a"}, {"name": "b"}, {"name": "a"}, {"name": "a"}],
                        [{"name": "b"}],
                        [{"name": "c"}, {"name": "c"}])
    text = str(raised.value)
    assert "dl_user_config_users lists user 'a' 3 times (entries #0, #2, #3)" in text
    assert "dl_user_config_host_users lists user 'c' twice (entries #0, #1)" in text
    # the same name at two levels is the layering, not a duplicate
    assert "'b'" not in text


def test_merge_users_names_the_level_that_is_not_a_list() -> None:
    with pytest.raises(AnsibleFilterError, match="dl_user_config_group_users must be a list of dicts, got dict"):
        duc.merge_users([], {"name": "alice"})


def test_check_mode_names_what_it_cannot_predict_on_a_fresh_node() -> None:
    targets = [{"name": "alice", "create": True}, {"name": "bob", "create": True}, {"name": "root", "create": False}]
    envs = [{"name": "keras2-theano", "exists": False}, {"name": "keras3-tensorflow", "exists": True}]
    line = duc.check_mode_unpredictable(targets, {"root": {}}, envs, "gpu01")
    assert line == ("dl_user_config on gpu01: check mode cannot predict the users' files, the envs' backend hooks or the "
                    "Theano seed templates: the accounts alice, bob are not created yet and the env keras2-theano is not "
                    "built yet; the real run creates them first, then writes keras.json and .theanorc for alice, bob, root, "
                    "a backend hook into each env and the templates")
    assert "\n" not in line


def test_check_mode_says_nothing_on_a_node_with_accounts_and_envs() -> None:
    targets = [{"name": "alice", "create": True}]
    assert duc.check_mode_unpredictable(targets, {"alice": {}}, [{"name": "e", "exists": True}], "gpu01") == ""
