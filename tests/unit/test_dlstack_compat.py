"""Unit tests for plugins/filter/dlstack_compat.py.

The plugin is loaded by file path (the repository is not a Python package). The expected
values are read from the tables of docs/compat.md, the project's record of these facts with
their sources, so that a typo in the plugin's tables (or a fact changed on one side only)
fails here instead of being read back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleFilterError
from plugin_loader import load_by_path

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins" / "filter" / "dlstack_compat.py"
COMPAT_MD = REPO / "docs" / "compat.md"


dc = load_by_path("dlstack_compat_under_test", PLUGIN)


def _md_table(heading: str) -> list[list[str]]:
    """The rows (cells, header and separator left out) of the first table under a '## heading'."""
    text = COMPAT_MD.read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


# --- The facts as docs/compat.md records them -------------------------------

COMPAT_MD_CUDA: dict[str, str] = {row[0]: row[1] for row in _md_table("Minimum Linux x86_64 NVIDIA driver")}
COMPAT_MD_ORDER: list[str] = [row[0] for row in _md_table("Minimum Linux x86_64 NVIDIA driver")]
COMPAT_MD_FLOORS: dict[int, str] = {int(row[0]): row[1] for row in _md_table("CUDA minor-version compatibility")}
# TF minor -> (cuDNN, CUDA)
COMPAT_MD_TF: dict[str, tuple[str, str]] = {row[0]: (row[1], row[2]) for row in _md_table("TensorFlow GPU builds")}
COMPAT_MD_THEANO: dict[str, str] = {row[0]: row[1] for row in _md_table("Theano 1.0.5 and cuDNN")}


def _one_patch_below(version: str) -> str:
    parts = [int(p) for p in version.split(".")]
    assert parts[-1] > 0, f"cannot step below {version} without borrowing"
    parts[-1] -= 1
    return ".".join(str(p) for p in parts)


def _one_patch_above(version: str) -> str:
    parts = [int(p) for p in version.split(".")]
    parts[-1] += 1
    return ".".join(str(p) for p in parts)


def _major(version: str) -> int:
    return int(version.split(".")[0])


# --- Tables -----------------------------------------------------------------

def test_cuda_table_equals_compat_md() -> None:
    assert dict(dc.CUDA_MIN_DRIVER) == COMPAT_MD_CUDA


def test_compat_md_tables_are_read_whole() -> None:
    # Guards the reading of docs/compat.md: every row, in release order, each with its source.
    assert sorted(COMPAT_MD_CUDA) == sorted(COMPAT_MD_ORDER) and len(COMPAT_MD_ORDER) == len(set(COMPAT_MD_ORDER))
    assert sorted(COMPAT_MD_ORDER, key=lambda v: tuple(int(p) for p in v.split("."))) == COMPAT_MD_ORDER
    assert len(COMPAT_MD_CUDA) == 25 and COMPAT_MD_ORDER[-1] == "13.3"
    assert all(row[2] for row in _md_table("Minimum Linux x86_64 NVIDIA driver"))
    assert len(COMPAT_MD_TF) == 10 and COMPAT_MD_FLOORS[13] == "580"


def test_theano_range_equals_compat_md() -> None:
    assert int(COMPAT_MD_THEANO["oldest cuDNN major"]) == dc.THEANO_CUDNN_MIN_MAJOR
    assert int(COMPAT_MD_THEANO["newest cuDNN major"]) == dc.THEANO_CUDNN_MAX_MAJOR
    assert ".".join(map(str, dc.THEANO_CUDNN_WARN_FROM)) == COMPAT_MD_THEANO["warns from"]


@pytest.mark.parametrize(("cuda", "driver"), sorted(COMPAT_MD_CUDA.items()))
def test_min_driver_every_compat_md_row(cuda: str, driver: str) -> None:
    assert dc.dlstack_cuda_min_driver(cuda) == driver


@pytest.mark.parametrize(("cuda", "driver"), sorted(dc.CUDA_MIN_DRIVER.items()))
def test_every_plugin_row_is_in_compat_md(cuda: str, driver: str) -> None:
    assert COMPAT_MD_CUDA.get(cuda) == driver
    assert dc.dlstack_cuda_min_driver(cuda) == driver


def test_min_drivers_increase_with_cuda_version() -> None:
    drivers = [dc._parse_version(dc.CUDA_MIN_DRIVER[v]) for v in COMPAT_MD_ORDER]
    assert drivers == sorted(drivers)
    assert len(set(drivers)) == len(drivers)


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        dc.CUDA_MIN_DRIVER["12.7"] = "565.0"  # type: ignore[index]
    with pytest.raises(TypeError):
        dc.TF_BUILDS["2.22"] = ("9.3", "12.5")  # type: ignore[index]
    with pytest.raises(TypeError):
        dc.CUDA_MINOR_COMPAT_FLOOR[14] = "600"  # type: ignore[index]


def test_cuda_12_7_is_absent() -> None:
    assert "12.7" not in dc.CUDA_MIN_DRIVER
    assert "12.7" not in dc.dlstack_cuda_known_versions()
    with pytest.raises(AnsibleFilterError) as err:
        dc.dlstack_cuda_min_driver("12.7")
    assert "there is no CUDA 12.7" in str(err.value)
    assert "12.6, 12.8" in str(err.value)


# --- Known versions -----------------------------------------------------------

def test_known_versions_sorted_by_version() -> None:
    assert dc.dlstack_cuda_known_versions() == COMPAT_MD_ORDER


def test_known_versions_ignores_its_input() -> None:
    assert dc.dlstack_cuda_known_versions("anything") == COMPAT_MD_ORDER
    assert dc.dlstack_cuda_known_versions(None) == COMPAT_MD_ORDER


def test_known_versions_returns_a_fresh_list() -> None:
    first = dc.dlstack_cuda_known_versions()
    first.append("99.9")
    assert "99.9" not in dc.dlstack_cuda_known_versions()


def test_known_versions_sort_is_numeric(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dc, "CUDA_MIN_DRIVER", {"12.10": "600.1", "12.9": "575.51.03", "12.2": "535.54.03"})
    assert dc.dlstack_cuda_known_versions() == ["12.2", "12.9", "12.10"]


# --- Unknown / malformed CUDA versions -----------------------------------------

@pytest.mark.parametrize("cuda", ["9.2", "12.7", "13.4", "14.0", "11.9", "1.0"])
def test_min_driver_unknown_version_lists_known(cuda: str) -> None:
    with pytest.raises(AnsibleFilterError) as err:
        dc.dlstack_cuda_min_driver(cuda)
    message = str(err.value)
    assert repr(cuda) in message
    assert "known versions: " + ", ".join(COMPAT_MD_ORDER) in message


@pytest.mark.parametrize("cuda", ["12", 12, "abc", "", "12..5", 12.5, None])
def test_min_driver_malformed_raises(cuda: Any) -> None:
    with pytest.raises(AnsibleFilterError):
        dc.dlstack_cuda_min_driver(cuda)


@pytest.mark.parametrize(("cuda", "driver"), [
    ("12.5.1", "555.42.02"),
    (" 12.5 ", "555.42.02"),
    ("12.05", "555.42.02"),
    ("13.0.0", "580.65.06"),
])
def test_min_driver_normalises_input(cuda: str, driver: str) -> None:
    assert dc.dlstack_cuda_min_driver(cuda) == driver


# --- Minor-version compatibility floors -----------------------------------------

def test_minor_compat_floor_table() -> None:
    assert dict(dc.CUDA_MINOR_COMPAT_FLOOR) == COMPAT_MD_FLOORS


@pytest.mark.parametrize("cuda", [v for v in COMPAT_MD_ORDER if _major(v) in COMPAT_MD_FLOORS])
def test_minor_compat_floor_filter(cuda: str) -> None:
    floor = dc.dlstack_cuda_minor_compat_floor(cuda)
    assert floor == COMPAT_MD_FLOORS[_major(cuda)]
    # The floor never exceeds a release's own minimum, except for CUDA 11.0:
    # 11.x minor-version compatibility only began with driver 450.80.02,
    # after 11.0 GA shipped with 450.51.05.
    at_or_above = dc._version_ge(dc._parse_version(COMPAT_MD_CUDA[cuda]), dc._parse_version(floor))
    assert at_or_above is (cuda != "11.0")


@pytest.mark.parametrize("cuda", ["10.0", "10.1", "10.2"])
def test_minor_compat_floor_absent_for_cuda_10(cuda: str) -> None:
    with pytest.raises(AnsibleFilterError, match="no minor-version compatibility"):
        dc.dlstack_cuda_minor_compat_floor(cuda)


def test_minor_compat_floor_unknown_version() -> None:
    with pytest.raises(AnsibleFilterError, match="known versions"):
        dc.dlstack_cuda_minor_compat_floor("12.7")


# --- _parse_version -----------------------------------------------------------

@pytest.mark.parametrize(("text", "parsed"), [
    ("580.65.06", (580, 65, 6)),
    ("580", (580,)),
    (580, (580,)),
    ("12.5", (12, 5)),
    (" 12.5\n", (12, 5)),
    ("0", (0,)),
    ("1.2.3.4", (1, 2, 3, 4)),
])
def test_parse_version_valid(text: Any, parsed: tuple[int, ...]) -> None:
    assert dc._parse_version(text) == parsed


@pytest.mark.parametrize("garbage", [
    "abc", "", " ", "1..2", "1.", ".1", "1.2a", "1,2", "v12.5", "-1", "1 2",
    None, True, False, -1, 12.5, ["12.5"], {"v": "12.5"},
])
def test_parse_version_garbage(garbage: Any) -> None:
    with pytest.raises(AnsibleFilterError):
        dc._parse_version(garbage)


def test_parse_version_float_message_says_quote() -> None:
    with pytest.raises(AnsibleFilterError, match="quote"):
        dc._parse_version(12.1)


# --- Driver branch ------------------------------------------------------------

@pytest.mark.parametrize(("driver", "branch"), [
    ("580.65.06", "580"), ("580", "580"), (580, "580"), (" 535.54.03 ", "535"), ("570.26", "570"),
])
def test_driver_branch(driver: Any, branch: str) -> None:
    assert dc.dlstack_driver_branch(driver) == branch


@pytest.mark.parametrize("driver", ["abc", "", "580..65", ".580", None, 580.65])
def test_driver_branch_invalid(driver: Any) -> None:
    with pytest.raises(AnsibleFilterError):
        dc.dlstack_driver_branch(driver)


# --- Driver supports CUDA: boundaries on every row ---------------------------------

@pytest.mark.parametrize(("cuda", "minimum"), sorted(COMPAT_MD_CUDA.items()))
def test_driver_exactly_at_minimum_passes(cuda: str, minimum: str) -> None:
    assert dc.dlstack_driver_supports_cuda(minimum, cuda) is True


@pytest.mark.parametrize(("cuda", "minimum"), sorted(COMPAT_MD_CUDA.items()))
def test_driver_one_patch_below_minimum_fails(cuda: str, minimum: str) -> None:
    assert dc.dlstack_driver_supports_cuda(_one_patch_below(minimum), cuda) is False


@pytest.mark.parametrize(("cuda", "minimum"), sorted(COMPAT_MD_CUDA.items()))
def test_driver_one_patch_above_minimum_passes(cuda: str, minimum: str) -> None:
    assert dc.dlstack_driver_supports_cuda(_one_patch_above(minimum), cuda) is True


@pytest.mark.parametrize(("cuda", "minimum"), sorted(COMPAT_MD_CUDA.items()))
def test_branch_semantics_every_row(cuda: str, minimum: str) -> None:
    major = _major(minimum)
    # A bare branch is the newest release of that branch: satisfies its own major.
    assert dc.dlstack_driver_supports_cuda(str(major), cuda) is True
    assert dc.dlstack_driver_supports_cuda(major, cuda) is True
    assert dc.dlstack_driver_supports_cuda(str(major + 1), cuda) is True
    # The previous branch never does, however new its release.
    assert dc.dlstack_driver_supports_cuda(str(major - 1), cuda) is False
    assert dc.dlstack_driver_supports_cuda(f"{major - 1}.999.99", cuda) is False


@pytest.mark.parametrize(("driver", "cuda", "expected"), [
    ("580", "13.0", True),
    ("580", "12.9", True),
    ("580", "13.1", False),
    ("590", "13.1", True),
    ("590", "13.2", False),
    ("555", "12.5", True),
    ("550", "12.5", False),
    ("570.26.0", "12.8", True),     # trailing zero equals the minimum
    ("570.26", "12.8", True),
    ("570.25.99", "12.8", False),
    ("555.100.1", "12.5", True),    # numeric, not lexicographic ('1' < '4')
    ("555.9.99", "12.5", False),    # numeric, not lexicographic ('9' > '4')
    ("580.65.6", "13.0", True),     # '06' and '6' are the same number
    ("580.65.5", "13.0", False),
    ("580.65.06.1", "13.0", True),
    ("1000.1", "13.2", True),
    ("450.80.02", "11.8", False),   # minor-compat floor is not the table minimum
    ("525.60.13", "12.0", True),
    ("525.60.13", "12.1", False),
])
def test_driver_supports_cuda_cases(driver: str, cuda: str, expected: bool) -> None:
    assert dc.dlstack_driver_supports_cuda(driver, cuda) is expected


@pytest.mark.parametrize(("driver", "cuda"), [("580", "12.7"), ("abc", "12.5"), ("", "12.5"), ("580", "x")])
def test_driver_supports_cuda_invalid(driver: str, cuda: str) -> None:
    with pytest.raises(AnsibleFilterError):
        dc.dlstack_driver_supports_cuda(driver, cuda)


# --- CUDA/driver error messages -------------------------------------------------

def test_driver_errors_empty_when_all_supported() -> None:
    assert dc.dlstack_cuda_driver_errors(["11.8", "12.5", "13.0"], "580.65.06", host="gpu1") == []


def test_driver_errors_empty_input() -> None:
    assert dc.dlstack_cuda_driver_errors([], "580.65.06") == []
    assert dc.dlstack_cuda_driver_errors([], "") == []


def test_driver_errors_message_contents() -> None:
    errors = dc.dlstack_cuda_driver_errors("12.5", "550.54.14", host="gpu07")
    assert len(errors) == 1
    message = errors[0]
    assert message.startswith("gpu07: ")
    assert "CUDA 12.5" in message
    assert "555.42.02" in message          # its minimum driver
    assert "550.54.14" in message          # the given driver
    assert "install driver branch >= 555" in message
    assert "choose CUDA <= 12.4" in message


def test_driver_errors_without_host_has_no_prefix() -> None:
    (message,) = dc.dlstack_cuda_driver_errors("12.5", "550.54.14")
    assert message.startswith("CUDA 12.5 needs")
    assert "None" not in message


def test_driver_errors_mixed_list_reports_everything_in_order() -> None:
    errors = dc.dlstack_cuda_driver_errors(["11.8", "12.5", "13.0", "12.7", "abc"], "535.54.03", host="node1")
    assert len(errors) == 4
    assert all(e.startswith("node1: ") for e in errors)
    assert "CUDA 12.5" in errors[0] and "choose CUDA <= 12.2" in errors[0]
    assert "CUDA 13.0" in errors[1] and "install driver branch >= 580" in errors[1]
    assert "'12.7'" in errors[2] and "there is no CUDA 12.7" in errors[2]
    assert "known versions: " + ", ".join(COMPAT_MD_ORDER) in errors[2]
    assert "'abc'" in errors[3] and "known versions" in errors[3]
    assert not any("CUDA 11.8" in e for e in errors)


def test_driver_errors_accepts_tuple_and_dedupes() -> None:
    errors = dc.dlstack_cuda_driver_errors(("12.5", "12.5.1", "12.5"), "550")
    assert len(errors) == 1


def test_driver_errors_branch_driver_newest_supported() -> None:
    (message,) = dc.dlstack_cuda_driver_errors("12.6", "550")
    assert "choose CUDA <= 12.4" in message
    assert "install driver branch >= 560" in message


@pytest.mark.parametrize("index", range(len(COMPAT_MD_ORDER) - 1))
def test_driver_errors_newest_supported_for_every_row(index: int) -> None:
    have_cuda, want_cuda = COMPAT_MD_ORDER[index], COMPAT_MD_ORDER[index + 1]
    driver = COMPAT_MD_CUDA[have_cuda]
    errors = dc.dlstack_cuda_driver_errors([want_cuda], driver, host="h")
    assert len(errors) == 1
    assert f"choose CUDA <= {have_cuda}" in errors[0]
    assert f"install driver branch >= {_major(COMPAT_MD_CUDA[want_cuda])}" in errors[0]
    assert COMPAT_MD_CUDA[want_cuda] in errors[0]


def test_driver_errors_driver_older_than_everything() -> None:
    (message,) = dc.dlstack_cuda_driver_errors("10.0", "400.1")
    assert "install driver branch >= 410" in message
    assert "no known CUDA release" in message
    assert "choose CUDA <=" not in message


def test_driver_errors_mentions_minor_version_compat_when_applicable() -> None:
    (message,) = dc.dlstack_cuda_driver_errors("12.5", "550.54.14")
    assert "minor-version-compatibility" in message and "525.60.13" in message
    (message,) = dc.dlstack_cuda_driver_errors("12.0", "470.42.01")
    assert "minor-version-compatibility" not in message


@pytest.mark.parametrize("driver", [None, "", "  "])
def test_driver_errors_missing_driver(driver: Any) -> None:
    errors = dc.dlstack_cuda_driver_errors(["12.5", "13.0"], driver, host="gpu2")
    assert len(errors) == 1
    assert errors[0].startswith("gpu2: no NVIDIA driver")
    assert "12.5" in errors[0] and "13.0" in errors[0]


def test_driver_errors_garbage_driver() -> None:
    errors = dc.dlstack_cuda_driver_errors(["12.5"], "not-a-version")
    assert len(errors) == 1
    assert "'not-a-version'" in errors[0] and "not a valid version" in errors[0]


def test_driver_errors_rejects_mapping() -> None:
    with pytest.raises(AnsibleFilterError):
        dc.dlstack_cuda_driver_errors({"cuda": "12.5"}, "580")


# --- TensorFlow -------------------------------------------------------------------

def test_tf_table_equals_compat_md() -> None:
    assert dict(dc.TF_BUILDS) == COMPAT_MD_TF


@pytest.mark.parametrize(("tf", "build"), sorted(COMPAT_MD_TF.items()))
def test_tf_build_every_row(tf: str, build: tuple[str, str]) -> None:
    cudnn, cuda = build
    expected = {"cuda": cuda, "cudnn": cudnn}
    assert dc.dlstack_tf_build(tf) == expected
    assert dc.dlstack_tf_build(f"{tf}.0") == expected
    assert dc.dlstack_tf_build(f"{tf}.3") == expected
    # The build's CUDA is itself a known CUDA release.
    assert cuda in dc.CUDA_MIN_DRIVER


def test_tf_build_returns_a_copy() -> None:
    result = dc.dlstack_tf_build("2.18")
    result["cuda"] = "11.0"
    assert dc.dlstack_tf_build("2.18") == {"cuda": "12.5", "cudnn": "9.3"}


@pytest.mark.parametrize("tf", ["2.11", "2.22", "2.11.1", "3.0", "1.15"])
def test_tf_build_unknown_lists_known(tf: str) -> None:
    with pytest.raises(AnsibleFilterError) as err:
        dc.dlstack_tf_build(tf)
    message = str(err.value)
    assert repr(tf) in message
    assert "2.12, 2.13, 2.14, 2.15, 2.16, 2.17, 2.18, 2.19, 2.20, 2.21" in message


@pytest.mark.parametrize("tf", ["2", "abc", "", "2..18", 2.18, None])
def test_tf_build_malformed(tf: Any) -> None:
    with pytest.raises(AnsibleFilterError):
        dc.dlstack_tf_build(tf)


@pytest.mark.parametrize("flag", [True, "yes", "true", 1])
def test_tf_warnings_pip_wheels_single_note(flag: Any) -> None:
    notes = dc.dlstack_tf_cuda_warnings("2.18.1", "11.8", "8.9.7", flag, host="gpu3")
    assert len(notes) == 1
    note = notes[0]
    assert note.startswith("gpu3: ")
    assert "irrelevant" in note and "driver" in note
    assert "12.5" in note and "9.3" in note
    assert "555.42.02" in note  # the driver minimum for the wheels' CUDA


def test_tf_warnings_pip_wheels_without_host_toolkit() -> None:
    notes = dc.dlstack_tf_cuda_warnings("2.15", None, None, True)
    assert len(notes) == 1
    assert "12.2" in notes[0] and "535.54.03" in notes[0]


@pytest.mark.parametrize(("tf", "host_cuda", "host_cudnn"), [
    ("2.18", "12.2", "9.1.0"),
    ("2.18", "12.8", 90300),
    ("2.21.0", "12.5", "9.3"),
    ("2.15", "12.4", "8.9.7"),
    ("2.12", "11.2", 8600),
    ("2.14", "11.8", "8.7"),
])
def test_tf_warnings_no_warning_when_majors_match(tf: str, host_cuda: str, host_cudnn: Any) -> None:
    assert dc.dlstack_tf_cuda_warnings(tf, host_cuda, host_cudnn, False) == []


def test_tf_warnings_cuda_major_mismatch() -> None:
    warnings = dc.dlstack_tf_cuda_warnings("2.18", "11.8", "9.3", False, host="gpu4")
    assert len(warnings) == 1
    message = warnings[0]
    assert message.startswith("gpu4: ")
    assert "CUDA 12.5" in message and "11.8" in message
    assert "cuDNN" not in message


def test_tf_warnings_cudnn_major_mismatch() -> None:
    warnings = dc.dlstack_tf_cuda_warnings("2.18", "12.5", "8.9.7", False)
    assert len(warnings) == 1
    assert "cuDNN 9.3" in warnings[0] and "8.9.7" in warnings[0]


def test_tf_warnings_cudnn_int_mismatch() -> None:
    warnings = dc.dlstack_tf_cuda_warnings("2.18", "12.5", 8907, False)
    assert len(warnings) == 1
    assert "cuDNN" in warnings[0]


def test_tf_warnings_both_mismatch_old_tf_on_new_host() -> None:
    warnings = dc.dlstack_tf_cuda_warnings("2.12", "12.2", "9.3.0", "no", host="gpu5")
    assert len(warnings) == 2
    assert "CUDA 11.8" in warnings[0]
    assert "cuDNN 8.6" in warnings[1]


def test_tf_warnings_missing_host_toolkit() -> None:
    warnings = dc.dlstack_tf_cuda_warnings("2.17", None, "", False)
    assert len(warnings) == 2
    assert "no CUDA" in warnings[0] and "12.3" in warnings[0]
    assert "no cuDNN" in warnings[1] and "8.9" in warnings[1]


def test_tf_warnings_unparsable_host_version() -> None:
    warnings = dc.dlstack_tf_cuda_warnings("2.18", "n/a", "9.3", False)
    assert len(warnings) == 1
    assert "cannot parse host CUDA" in warnings[0]


def test_tf_warnings_unknown_tf_raises() -> None:
    with pytest.raises(AnsibleFilterError, match="known versions"):
        dc.dlstack_tf_cuda_warnings("2.22", "12.5", "9.3", False)


def test_tf_warnings_bad_flag_raises() -> None:
    with pytest.raises(AnsibleFilterError, match="pip_cuda_wheels"):
        dc.dlstack_tf_cuda_warnings("2.18", "12.5", "9.3", "maybe")


# --- Theano / cuDNN -----------------------------------------------------------

def test_theano_range_constants() -> None:
    assert (dc.THEANO_CUDNN_MIN_MAJOR, dc.THEANO_CUDNN_MAX_MAJOR) == (5, 7)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_theano_dnn_no_cudnn(value: Any) -> None:
    assert dc.dlstack_theano_dnn(value) == {"enabled": False, "reason": "no cuDNN"}


@pytest.mark.parametrize("value", [4, "4", "4.0.7", 4007, "3.0"])
def test_theano_dnn_too_old(value: Any) -> None:
    result = dc.dlstack_theano_dnn(value)
    assert result["enabled"] is False
    assert "rejects cuDNN < v5" in result["reason"]


@pytest.mark.parametrize(("value", "shown"), [
    (5, "5"), ("5", "5"), ("5.1.10", "5.1.10"), (5110, "5.1.10"),
    ("6.0.21", "6.0.21"), ("7.1.4", "7.1.4"), ("7", "7"),
])
def test_theano_dnn_supported_without_warning(value: Any, shown: str) -> None:
    result = dc.dlstack_theano_dnn(value)
    assert result["enabled"] is True
    assert f"cuDNN {shown} " in result["reason"]
    assert "v5-v7" in result["reason"]
    assert "warns" not in result["reason"]


@pytest.mark.parametrize("value", ["7.6.5", 7605, "7605", "7.2"])
def test_theano_dnn_supported_with_theano_warning(value: Any) -> None:
    result = dc.dlstack_theano_dnn(value)
    assert result["enabled"] is True
    assert "warns" in result["reason"] and "7.2" in result["reason"]


def test_theano_dnn_765_reason_names_version() -> None:
    assert "cuDNN 7.6.5 " in dc.dlstack_theano_dnn("7.6.5")["reason"]
    assert "cuDNN 7.6.5 " in dc.dlstack_theano_dnn(7605)["reason"]


@pytest.mark.parametrize("value", [8, "8", "8.9.7", 8907, "9.3", "9.3.0", 90300, "90300", 91000])
def test_theano_dnn_too_new(value: Any) -> None:
    result = dc.dlstack_theano_dnn(value)
    assert result["enabled"] is False
    assert "enabled=False" in result["reason"]
    assert "v5-v7" in result["reason"]


def test_theano_dnn_result_shape() -> None:
    for value in (None, "4", "7.6.5", "9.3"):
        result = dc.dlstack_theano_dnn(value)
        assert set(result) == {"enabled", "reason"}
        assert isinstance(result["enabled"], bool)
        assert result["reason"]


@pytest.mark.parametrize("value", ["abc", "1..2", "7.6.", 500, 12345, True, 7.6, [7]])
def test_theano_dnn_garbage_raises(value: Any) -> None:
    with pytest.raises(AnsibleFilterError):
        dc.dlstack_theano_dnn(value)


@pytest.mark.parametrize(("value", "parsed"), [
    (7605, (7, 6, 5)), ("7605", (7, 6, 5)), (8907, (8, 9, 7)), (5110, (5, 1, 10)),
    (90300, (9, 3, 0)), (91001, (9, 10, 1)), (8, (8,)), ("8.9", (8, 9)), ("9.3.0", (9, 3, 0)),
])
def test_parse_cudnn(value: Any, parsed: tuple[int, ...]) -> None:
    assert dc._parse_cudnn(value) == parsed


# --- Plugin wiring ----------------------------------------------------------------

EXPECTED_FILTERS = {
    "dlstack_cuda_min_driver", "dlstack_cuda_known_versions", "dlstack_cuda_minor_compat_floor",
    "dlstack_driver_branch", "dlstack_driver_supports_cuda", "dlstack_cuda_driver_errors",
    "dlstack_tf_build", "dlstack_tf_cuda_warnings", "dlstack_theano_dnn",
}


def test_filter_module_exposes_filters() -> None:
    filters = dc.FilterModule().filters()
    assert set(filters) == EXPECTED_FILTERS
    for name, func in filters.items():
        assert func is getattr(dc, name)
        assert func.__doc__ and func.__doc__.strip()


def _ansible_bin() -> str | None:
    candidate = Path(sys.executable).with_name("ansible")
    if candidate.exists():
        return str(candidate)
    return shutil.which("ansible")


@pytest.mark.skipif(_ansible_bin() is None, reason="ansible CLI not installed")
def test_filter_works_from_ansible() -> None:
    env = dict(os.environ)
    env.update({
        "ANSIBLE_FILTER_PLUGINS": str(PLUGIN.parent),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_NOCOLOR": "1",
    })
    result = subprocess.run(
        [str(_ansible_bin()), "localhost", "-m", "debug", "-a", "msg={{ '12.5' | dlstack_cuda_min_driver }}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"msg": "555.42.02"' in result.stdout
