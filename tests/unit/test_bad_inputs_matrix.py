"""The bad-input matrix (tests/bad_inputs.yml) and the parsing of scripts/bad-inputs.

The matrix itself runs against a converged node (scripts/test's demo stage); these checks are
fast: the file's shape (enough cases, every role covered, each case naming a variable of its
role's argument spec and expecting a message), and how the script reads ansible-playbook's
JSON (a loop's failed items, a role's argument-spec task, the files of a preflight).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import plugin_loader
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = yaml.safe_load((ROOT / "tests" / "bad_inputs.yml").read_text(encoding="utf-8"))["cases"]
SCRIPT = plugin_loader.load_by_path("bad_inputs", ROOT / "scripts" / "bad-inputs")
INTERNAL = plugin_loader.load_by_path("tags_alone", ROOT / "scripts" / "tags-alone").INTERNAL
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())


def spec_variables(role: str) -> set[str]:
    """The variables of every entry point of the role's argument spec."""
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    return {name for spec in specs["argument_specs"].values() for name in spec.get("options") or {}}


def test_enough_cases_with_unique_ids() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 40
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_every_role_but_the_internal_ones_has_three_cases() -> None:
    counts = {role: sum(case["role"] == role for case in CASES) for role in ROLES if role not in INTERNAL}
    assert set(SCRIPT.ROLES) == set(counts), "scripts/bad-inputs runs the preflights of every role with a playbook"
    assert {role: n for role, n in counts.items() if n < 3} == {}


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case_names_a_variable_of_its_role_and_expects_a_message(case: dict[str, Any]) -> None:
    assert set(case) == {"id", "role", "vars", "expect"}
    assert case["id"].startswith(case["role"] + "_")
    assert isinstance(case["vars"], dict) and case["vars"]
    known = spec_variables(case["role"])
    assert set(case["vars"]) <= known, f"not in {case['role']}'s argument spec: {set(case['vars']) - known}"
    assert isinstance(case["expect"], list) and case["expect"]
    assert all(isinstance(line, str) and line.strip() for line in case["expect"])


def test_the_duplicate_user_case_covers_every_level() -> None:
    levels = {"dl_user_config_users", "dl_user_config_group_users", "dl_user_config_host_users"}
    named = {line.split(" lists user ")[0] for case in CASES for line in case["expect"] if " lists user " in line}
    assert named == levels


def test_results_hold_the_messages_of_a_loops_failed_items() -> None:
    report = {"plays": [{"tasks": [{
        "task": {"name": "common : Check the numbers", "path": "/r/roles/common/tasks/preflight.yml:50"},
        "hosts": {"bad_a": {"failed": True, "msg": "One or more items failed",
                            "results": [{"failed": False, "msg": "All assertions passed"},
                                        {"failed": True, "msg": "common_apt_cache_valid_time must be 0 or more seconds, not '-5'."}]},
                  "bad_b": {"changed": False, "msg": "All assertions passed"}}}]}]}
    got = SCRIPT.results("a line before the report\n" + json.dumps(report))
    assert got["bad_a"][0]["failed"] is True
    assert "common_apt_cache_valid_time must be 0 or more seconds, not '-5'." in got["bad_a"][0]["msg"]
    assert "All assertions passed" not in got["bad_a"][0]["msg"]
    assert got["bad_b"][0]["failed"] is False


@pytest.mark.parametrize("task, path, inside", [
    ("common : Validating arguments against arg spec 'main' - Base system", "/r/playbooks/base.yml:2", True),
    ("python_envs : Check the role's settings", "/r/roles/python_envs/tasks/plan.yml:24", True),
    ("dl_user_config : Stop every host", "/r/roles/dl_user_config/tasks/preflight.yml:90", True),
    ("nvidia_driver : Stop when the sources cannot give the driver", "/r/roles/nvidia_driver/tasks/versions.yml:70", False),
    ("python_envs : Build", "/r/roles/python_envs/tasks/envs.yml:3", False),
])
def test_a_failure_counts_as_preflight_in_the_preflight_files_or_the_argument_spec(task: str, path: str, inside: bool) -> None:
    assert SCRIPT.in_preflight({"task": task, "path": path}) is inside


CASE = {"id": "x_case", "role": "common", "vars": {"common_apt_mirror": "ftp://m"}, "expect": ["common_apt_mirror must be", "'ftp://m'"]}
PREFLIGHT_TASK = {"task": "common : Check the APT mirror URLs", "path": "/r/roles/common/tasks/preflight.yml:40", "failed": True,
                  "msg": "One or more items failed common_apt_mirror must be an http(s):// or file:// URL,\n not 'ftp://m'."}


def test_judge_a_case_refused_in_preflight_with_every_line() -> None:
    assert SCRIPT.judge(CASE, [PREFLIGHT_TASK], "gpu01")[0] == "refused"


@pytest.mark.parametrize("results, why", [
    ([], "was not refused"),
    ([{**PREFLIGHT_TASK, "msg": "common_apt_mirror must be something"}], "message lacks \"'ftp://m'\""),
    ([{**PREFLIGHT_TASK, "path": "/r/roles/common/tasks/apt_sources.yml:3"}], "failed outside preflight"),
])
def test_judge_a_miss(results: list[dict[str, Any]], why: str) -> None:
    verdict, line = SCRIPT.judge(CASE, results, "gpu01")
    assert verdict == "miss" and why in line


def test_judge_a_gpu_stack_case_on_a_node_without_gpu_as_not_run() -> None:
    said = {"task": "nvidia_driver : Say why nothing is installed", "path": "/r/roles/nvidia_driver/tasks/preflight.yml:93",
            "failed": False, "msg": "nvidia_driver: no NVIDIA GPU found on bad_cuda_toolkit_x (0 other display adapter(s))"}
    cuda = {**CASE, "id": "cuda_toolkit_x", "role": "cuda_toolkit"}
    assert SCRIPT.judge(cuda, [said], "gpu01")[0] == "not run"
    # a case of another role is not excused by the same message
    assert SCRIPT.judge(CASE, [said], "gpu01")[0] == "miss"


def test_every_role_of_the_matrix_has_one_run_in_site_order() -> None:
    """Each role's cases run in exactly one group (one ansible-playbook run limited to the
    group's preflight tags), the groups in site.yml's order; the GPU stack's roles after the
    driver's detection, in its group; dl_user_config, which stops its whole play, alone."""
    flat = [role for group in SCRIPT.RUNS for role in group]
    assert flat == SCRIPT.ROLES
    assert ("dl_user_config",) in SCRIPT.RUNS
    gpu_group = next(group for group in SCRIPT.RUNS if "cuda_toolkit" in group)
    assert gpu_group[0] == "nvidia_driver" and set(SCRIPT.GPU_ROLES) <= set(gpu_group)
