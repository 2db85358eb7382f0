"""Unit tests for plugins/module_utils/dlstack_cudnn.py, the project's one cuDNN header parser,
and that each of its readers (the cudnn and dl_user_config filters, dl-verify) uses it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from plugin_loader import SHARED_MODULE_UTILS, load_by_path

# imported by name from its folder, as the filters and dl-verify import it
if str(SHARED_MODULE_UTILS) not in sys.path:
    sys.path.append(str(SHARED_MODULE_UTILS))
import dlstack_cudnn

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "cudnn"


def header(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(("name", "version"), [
    ("cudnn_version-9.3.0.h", (9, 3, 0)),   # cuDNN 9: cudnn_version.h, CUDNN_VERSION x 10000
    ("cudnn_version-8.9.7.h", (8, 9, 7)),   # cuDNN 8: cudnn_version.h, CUDNN_VERSION x 1000
    ("cudnn-7.6.5.h", (7, 6, 5)),           # cuDNN 7: the defines in cudnn.h
])
def test_parse_the_headers_of_each_layout(name: str, version: tuple[int, int, int]) -> None:
    assert dlstack_cudnn.parse_cudnn_header(header(name)) == version
    assert dlstack_cudnn.cudnn_header_version(header(name)) == ".".join(map(str, version))


def test_cudnn_8_umbrella_header_holds_no_version() -> None:
    """cuDNN 8's and 9's cudnn.h only include cudnn_version.h: a clear error, not a guess."""
    with pytest.raises(dlstack_cudnn.CudnnHeaderError, match=r"no #define CUDNN_MAJOR or CUDNN_MINOR: not a cuDNN "
                       r"version header \(cudnn_version.h from cuDNN 8 on, cudnn.h before\)"):
        dlstack_cudnn.parse_cudnn_header(header("cudnn-8-umbrella.h"))
    assert dlstack_cudnn.cudnn_header_version(header("cudnn-8-umbrella.h")) == ""


@pytest.mark.parametrize(("text", "missing"), [
    ("#define CUDNN_MAJOR 9\n#define CUDNN_PATCHLEVEL 0\n", "CUDNN_MINOR"),
    ("#define CUDNN_MINOR 3\n", "CUDNN_MAJOR"),
    ("", "CUDNN_MAJOR or CUDNN_MINOR"),
    ("#define CUDNN_MAJORITY 9\n#define CUDNN_MINOR 3\n", "CUDNN_MAJOR"),  # another name
    ("// #define CUDNN_MAJOR 9\n#define CUDNN_MINOR 3\n", "CUDNN_MAJOR"),  # commented out
    ("#define CUDNN_MAJOR x\n#define CUDNN_MINOR 3\n", "CUDNN_MAJOR"),  # not a number
])
def test_missing_defines_are_named(text: str, missing: str) -> None:
    with pytest.raises(dlstack_cudnn.CudnnHeaderError, match=f"^no #define {missing}:"):
        dlstack_cudnn.parse_cudnn_header(text)
    assert dlstack_cudnn.cudnn_header_version(text) == ""


@pytest.mark.parametrize(("text", "version"), [
    ("#  define CUDNN_MAJOR 7\n#define CUDNN_MINOR 6\n", "7.6.0"),  # no patch level: X.Y.0
    ("#define CUDNN_MAJOR      7\n# define CUDNN_MINOR 6\n#define CUDNN_PATCHLEVEL 5\n#define CUDNN_VERSION (x)", "7.6.5"),
    ("\t#\tdefine\tCUDNN_MAJOR\t9\r\n#define CUDNN_MINOR 10\r\n#define CUDNN_PATCHLEVEL 2\r\n", "9.10.2"),  # tabs, CRLF
    ("#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 3\n#define CUDNN_MAJOR 8\n", "9.3.0"),  # the first define counts
])
def test_spellings(text: str, version: str) -> None:
    assert dlstack_cudnn.cudnn_header_version(text) == version


@pytest.mark.parametrize("value", [None, b"#define CUDNN_MAJOR 9\n", 9])
def test_not_text_is_no_version(value: object) -> None:
    assert dlstack_cudnn.cudnn_header_version(value) == ""


def test_every_reader_uses_the_one_parser() -> None:
    cudnn = load_by_path("cudnn_filters", REPO / "roles" / "cudnn" / "filter_plugins" / "cudnn.py")
    duc = load_by_path("dl_user_config_filters", REPO / "roles" / "dl_user_config" / "filter_plugins" / "dl_user_config.py")
    assert cudnn.FilterModule().filters()["cudnn_version_from_header"] is dlstack_cudnn.cudnn_header_version
    assert duc.FilterModule().filters()["dl_user_config_cudnn_from_header"] is dlstack_cudnn.cudnn_header_version
    dv = sys.modules.get("dl_verify") or load_by_path("dl_verify", REPO / "roles" / "dl_verify" / "files" / "dl-verify")
    assert dv.cudnn_header_version is dlstack_cudnn.cudnn_header_version
