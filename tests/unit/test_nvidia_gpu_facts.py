"""Unit tests for plugins/modules/nvidia_gpu_facts.py on recorded fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plugin_loader
import pytest
from plugin_loader import load_by_path

REPO = Path(__file__).resolve().parents[2]
MODULE_PATH = REPO / "plugins" / "modules" / "nvidia_gpu_facts.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "nvidia_gpu"

HGX_GPU_ADDRESSES = [
    "0000:1b:00.0",
    "0000:43:00.0",
    "0000:52:00.0",
    "0000:61:00.0",
    "0000:9d:00.0",
    "0000:c3:00.0",
    "0000:d1:00.0",
    "0000:df:00.0",
]
HGX_NVSWITCH_ADDRESSES = ["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"]
SMI_ERROR = (FIXTURES / "nvidia_smi" / "no_driver_rc9.txt").read_text()


mod = load_by_path("nvidia_gpu_facts", MODULE_PATH)


def sysfs(host: str) -> str:
    return str(FIXTURES / "sysfs" / host)


def proc(host: str) -> str:
    return str(FIXTURES / "proc" / host)


def fixture_text(*parts: str) -> str:
    return FIXTURES.joinpath(*parts).read_text()


# --- sysfs scanning, one test per recorded host -------------------------------------------


def test_no_gpu_host_has_only_the_bmc_vga() -> None:
    result = mod.scan_pci(sysfs("no_gpu"))
    assert result == {"gpus": [], "nvswitches": [], "other_display_adapters": 1}


def test_t4_host_reports_the_full_device_record() -> None:
    result = mod.scan_pci(sysfs("t4"))
    assert result["gpus"] == [
        {
            "pci_address": "0000:3b:00.0",
            "vendor_id": "0x10de",
            "device_id": "0x1eb8",
            "class": "0x030200",
            "subsystem_vendor_id": "0x10de",
            "subsystem_device_id": "0x12a2",
            "numa_node": 0,
            "driver": "nvidia",
            "name": None,
        }
    ]
    assert result["nvswitches"] == []
    assert result["other_display_adapters"] == 1  # Matrox G200 BMC VGA


def test_hgx_host_counts_eight_gpus_sorted_by_address() -> None:
    result = mod.scan_pci(sysfs("hgx_h100"))
    gpus = result["gpus"]
    assert [gpu["pci_address"] for gpu in gpus] == HGX_GPU_ADDRESSES
    assert {gpu["device_id"] for gpu in gpus} == {"0x2330"}
    assert {gpu["class"] for gpu in gpus} == {"0x030200"}
    assert {gpu["driver"] for gpu in gpus} == {"nvidia"}
    assert {(gpu["subsystem_vendor_id"], gpu["subsystem_device_id"]) for gpu in gpus} == {("0x10de", "0x16c1")}
    assert [gpu["numa_node"] for gpu in gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_hgx_host_lists_nvswitches_separately() -> None:
    result = mod.scan_pci(sysfs("hgx_h100"))
    switches = result["nvswitches"]
    assert [sw["pci_address"] for sw in switches] == HGX_NVSWITCH_ADDRESSES
    assert {sw["device_id"] for sw in switches} == {"0x22a3"}
    assert {sw["class"] for sw in switches} == {"0x068000"}
    assert {sw["driver"] for sw in switches} == {"nvidia-nvswitch"}
    gpu_addresses = {gpu["pci_address"] for gpu in result["gpus"]}
    assert gpu_addresses.isdisjoint(HGX_NVSWITCH_ADDRESSES)
    assert result["other_display_adapters"] == 1  # the ASPEED BMC; the ConnectX-7 is ignored


def test_workstation_gpu_on_nouveau_and_audio_function_ignored() -> None:
    result = mod.scan_pci(sysfs("workstation_a6000"))
    assert [gpu["pci_address"] for gpu in result["gpus"]] == ["0000:65:00.0"]
    gpu = result["gpus"][0]
    assert gpu["device_id"] == "0x2230"
    assert gpu["class"] == "0x030000"
    assert gpu["driver"] == "nouveau"
    assert gpu["numa_node"] is None  # sysfs says -1
    assert result["nvswitches"] == []
    assert result["other_display_adapters"] == 0


def test_amd_only_host_has_no_nvidia_gpu() -> None:
    result = mod.scan_pci(sysfs("amd_only"))
    assert result == {"gpus": [], "nvswitches": [], "other_display_adapters": 1}


def test_scan_pci_without_pci_tree_returns_none(tmp_path: Path) -> None:
    assert mod.scan_pci(str(tmp_path)) is None


def test_unreadable_or_garbled_sysfs_files_degrade_to_none(tmp_path: Path) -> None:
    devices = tmp_path / "bus" / "pci" / "devices"
    broken = devices / "0000:17:00.0"
    broken.mkdir(parents=True)
    (broken / "vendor").write_text("0x10de\n")
    (broken / "device").write_text("not-hex\n")
    (broken / "class").write_text("0x030200\n")
    (broken / "numa_node").mkdir()  # reading a directory fails like an unreadable file
    (broken / "subsystem_vendor").write_text("")
    bogus = devices / "not-a-pci-address"
    bogus.mkdir()
    (bogus / "vendor").write_text("0x10de\n")
    (bogus / "class").write_text("0x030200\n")

    result = mod.scan_pci(str(tmp_path))

    assert result["gpus"] == [
        {
            "pci_address": "0000:17:00.0",
            "vendor_id": "0x10de",
            "device_id": None,
            "class": "0x030200",
            "subsystem_vendor_id": None,
            "subsystem_device_id": None,
            "numa_node": None,
            "driver": None,
            "name": None,
        }
    ]


def test_classify_sorts_numerically_whatever_the_input_order() -> None:
    def device(address: str) -> dict[str, Any]:
        return {"pci_address": address, "vendor_id": "0x10de", "class": "0x030200"}

    addresses = ["10000:01:00.0", "0000:df:00.0", "2000:00:00.0", "0000:1b:00.0", "0000:1b:00.1"]
    result = mod.classify_devices([device(a) for a in addresses])
    assert [gpu["pci_address"] for gpu in result["gpus"]] == [
        "0000:1b:00.0",
        "0000:1b:00.1",
        "0000:df:00.0",
        "2000:00:00.0",
        "10000:01:00.0",
    ]


def test_classify_ignores_other_nvidia_functions() -> None:
    devices = [
        {"pci_address": "0000:01:00.0", "vendor_id": "0x10de", "class": "0x030000"},  # GPU
        {"pci_address": "0000:01:00.1", "vendor_id": "0x10de", "class": "0x040300"},  # HDMI audio
        {"pci_address": "0000:01:00.2", "vendor_id": "0x10de", "class": "0x0c0330"},  # USB-C xHCI
        {"pci_address": "0000:02:00.0", "vendor_id": "0x10de", "class": "0x060400"},  # PCI bridge
        {"pci_address": "0000:03:00.0", "vendor_id": "0x10de", "class": "0x068000"},  # NVSwitch
        {"pci_address": "0000:04:00.0", "vendor_id": "0x1a03", "class": "0x068000"},  # not NVIDIA
        {"pci_address": "0000:05:00.0", "vendor_id": None, "class": None},  # unreadable
    ]
    result = mod.classify_devices(devices)
    assert [g["pci_address"] for g in result["gpus"]] == ["0000:01:00.0"]
    assert [s["pci_address"] for s in result["nvswitches"]] == ["0000:03:00.0"]
    assert result["other_display_adapters"] == 0


# --- /proc/driver/nvidia/version -----------------------------------------------------------


def test_parse_proc_version_open_kernel_module() -> None:
    assert mod.parse_proc_version(fixture_text("proc", "hgx_h100", "driver", "nvidia", "version")) == {
        "version": "580.65.06",
        "kernel_module_flavor": "open",
        "arch": "x86_64",
    }


def test_parse_proc_version_proprietary_kernel_module() -> None:
    assert mod.parse_proc_version(fixture_text("proc", "t4", "driver", "nvidia", "version")) == {
        "version": "535.247.01",
        "kernel_module_flavor": "proprietary",
        "arch": "x86_64",
    }


def test_parse_proc_version_open_aarch64() -> None:
    text = "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  570.148.08  Release Build  (dvs-builder@U16-I2)\n"
    assert mod.parse_proc_version(text) == {
        "version": "570.148.08",
        "kernel_module_flavor": "open",
        "arch": "aarch64",
    }


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "garbage\n\x00\xff",
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14+deb12u1)\n",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  not.a.version\n",
    ],
)
def test_parse_proc_version_garbage_is_none(text: str | None) -> None:
    assert mod.parse_proc_version(text) is None


# --- /proc/modules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("hgx_h100", ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"]),  # nvidia_peermem not watched
        ("t4", ["nvidia", "nvidia_uvm"]),
        ("workstation_a6000", ["nouveau"]),
        ("no_gpu", []),
    ],
)
def test_parse_modules(host: str, expected: list[str]) -> None:
    assert mod.parse_modules(fixture_text("proc", host, "modules")) == expected


def test_parse_modules_matches_whole_names_only() -> None:
    assert mod.parse_modules("nvidiafb 1 0 - Live 0x0\nnouveau_x 1 0 - Live 0x0\n\n") == []
    assert mod.parse_modules("") == []


# --- nvidia-smi -----------------------------------------------------------------------------


def test_parse_smi_driver_multi_gpu_same_version() -> None:
    stdout = fixture_text("nvidia_smi", "driver_version_8gpu.txt")
    assert stdout.count("580.65.06") == 8
    assert mod.parse_smi_driver(stdout) == "580.65.06"


def test_parse_smi_driver_single_gpu() -> None:
    assert mod.parse_smi_driver(fixture_text("nvidia_smi", "driver_version_1gpu.txt")) == "535.247.01"


def test_parse_smi_driver_skips_warnings_before_the_version() -> None:
    stdout = "WARNING: infoROM is corrupted at gpu 0000:3B:00.0\n535.247.01\n"
    assert mod.parse_smi_driver(stdout) == "535.247.01"


@pytest.mark.parametrize("stdout", [SMI_ERROR, "No devices were found\n", "", None])
def test_parse_smi_driver_error_text_is_none(stdout: str | None) -> None:
    assert mod.parse_smi_driver(stdout) is None


@pytest.mark.parametrize(
    ("version", "branch"), [("580.65.06", "580"), ("535.247.01", "535"), (None, None), ("x", None)]
)
def test_driver_branch(version: str | None, branch: str | None) -> None:
    assert mod.driver_branch(version) == branch


# --- lspci -nn -D ---------------------------------------------------------------------------


def test_parse_lspci_hgx_host() -> None:
    devices = mod.parse_lspci_nn(fixture_text("lspci", "hgx_h100.txt"))
    assert len(devices) == 16
    gpu = next(d for d in devices if d["pci_address"] == "0000:1b:00.0")
    assert gpu == {
        "pci_address": "0000:1b:00.0",
        "vendor_id": "0x10de",
        "device_id": "0x2330",
        "class": "0x030200",
        "subsystem_vendor_id": None,
        "subsystem_device_id": None,
        "numa_node": None,
        "driver": None,
        "name": "NVIDIA Corporation GH100 [H100 SXM5 80GB]",
    }
    result = mod.classify_devices(devices)
    assert [g["pci_address"] for g in result["gpus"]] == HGX_GPU_ADDRESSES
    assert [s["pci_address"] for s in result["nvswitches"]] == HGX_NVSWITCH_ADDRESSES
    assert result["nvswitches"][0]["class"] == "0x068000"
    assert result["other_display_adapters"] == 1


def test_parse_lspci_no_gpu_host() -> None:
    result = mod.classify_devices(mod.parse_lspci_nn(fixture_text("lspci", "no_gpu.txt")))
    assert result == {"gpus": [], "nvswitches": [], "other_display_adapters": 1}


def test_parse_lspci_skips_continuation_lines_and_reads_prog_if() -> None:
    devices = mod.parse_lspci_nn(fixture_text("lspci", "workstation_a6000.txt"))
    assert [(d["pci_address"], d["class"], d["device_id"]) for d in devices] == [
        ("0000:00:00.0", "0x060000", "0x3ec2"),
        ("0000:65:00.0", "0x030000", "0x2230"),
        ("0000:65:00.1", "0x040300", "0x1aef"),
    ]
    assert devices[1]["name"] == "NVIDIA Corporation GA102GL [RTX A6000]"
    result = mod.classify_devices(devices)
    assert [g["pci_address"] for g in result["gpus"]] == ["0000:65:00.0"]


def test_parse_lspci_without_domain_and_garbage() -> None:
    text = (
        "17:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)\n"
        "pcilib: Cannot open /proc/bus/pci\n"
        "zz:00.0 VGA compatible controller [0300]: Bogus [1234:5678]\n"
        "\n"
    )
    devices = mod.parse_lspci_nn(text)
    assert [(d["pci_address"], d["vendor_id"]) for d in devices] == [("0000:17:00.0", "0x10de")]
    assert mod.parse_lspci_nn("") == []


def test_parse_lspci_prog_if_completes_the_class() -> None:
    text = "0000:00:14.0 USB controller [0c03]: Intel Corporation Device [8086:a0ed] (rev 20) (prog-if 30 [XHCI])\n"
    assert mod.parse_lspci_nn(text)[0]["class"] == "0x0c0330"


# --- gather_facts with a stand-in AnsibleModule (lspci fallback, nvidia-smi) ----------------


class FakeModule:
    """The two AnsibleModule methods gather_facts uses, answering from fixtures."""

    def __init__(self, binaries: dict[str, tuple[int, str, str]]) -> None:
        self.binaries = binaries
        self.calls: list[list[str]] = []

    def get_bin_path(self, name: str) -> str | None:
        return "/usr/bin/" + name if name in self.binaries else None

    def run_command(self, args: list[str]) -> tuple[int, str, str]:
        self.calls.append(args)
        return self.binaries[Path(args[0]).name]


def test_gather_uses_nvidia_smi_when_proc_has_no_version() -> None:
    fake = FakeModule({"nvidia-smi": (0, fixture_text("nvidia_smi", "driver_version_8gpu.txt"), "")})
    facts = mod.gather_facts(fake, sysfs("hgx_h100"), proc("no_gpu"), True)
    assert fake.calls == [["/usr/bin/nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]]
    assert facts["driver_version"] == "580.65.06"
    assert facts["driver_version_source"] == "nvidia-smi"
    assert facts["branch"] == "580"
    assert facts["kernel_module_flavor"] is None


def test_gather_nvidia_smi_rc9_gives_null_version() -> None:
    fake = FakeModule({"nvidia-smi": (9, SMI_ERROR, "")})
    facts = mod.gather_facts(fake, sysfs("t4"), proc("no_gpu"), True)
    assert fake.calls  # nvidia-smi was asked
    assert facts["driver_version"] is None
    assert facts["driver_version_source"] is None
    assert facts["branch"] is None
    assert facts["present"] is True


def test_gather_skips_nvidia_smi_when_disabled_or_proc_has_version() -> None:
    fake = FakeModule({"nvidia-smi": (0, "999.99.99\n", "")})
    disabled = mod.gather_facts(fake, sysfs("t4"), proc("no_gpu"), False)
    from_proc = mod.gather_facts(fake, sysfs("t4"), proc("t4"), True)
    assert fake.calls == []
    assert disabled["driver_version"] is None
    assert from_proc["driver_version"] == "535.247.01"
    assert from_proc["driver_version_source"] == "proc"
    assert from_proc["kernel_module_flavor"] == "proprietary"


def test_gather_falls_back_to_lspci_without_sysfs_pci_tree(tmp_path: Path) -> None:
    fake = FakeModule({"lspci": (0, fixture_text("lspci", "hgx_h100.txt"), "")})
    facts = mod.gather_facts(fake, str(tmp_path), proc("hgx_h100"), False)
    assert fake.calls == [["/usr/bin/lspci", "-nn", "-D"]]
    assert facts["pci_source"] == "lspci"
    assert facts["count"] == 8
    assert len(facts["nvswitches"]) == 4


def test_gather_without_sysfs_tree_or_lspci(tmp_path: Path) -> None:
    facts = mod.gather_facts(FakeModule({}), str(tmp_path), str(tmp_path), True)
    assert facts == {
        "present": False,
        "count": 0,
        "gpus": [],
        "nvswitches": [],
        "other_display_adapters": 0,
        "pci_source": None,
        "driver_version": None,
        "driver_version_source": None,
        "kernel_module_flavor": None,
        "branch": None,
        "loaded_modules": None,  # no {proc_root}/modules
    }


def test_documentation_blocks_parse_and_match_the_argument_spec() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(mod.DOCUMENTATION)
    assert doc["module"] == "nvidia_gpu_facts"
    assert set(doc["options"]) == {"sysfs_root", "proc_root", "use_nvidia_smi"}
    assert isinstance(yaml.safe_load(mod.EXAMPLES), list)
    returned = yaml.safe_load(mod.RETURN)["ansible_facts"]["contains"]["nvidia_gpu"]["contains"]
    facts = mod.gather_facts(FakeModule({}), sysfs("t4"), proc("t4"), False)
    assert set(returned) == set(facts)


# --- the module end to end ------------------------------------------------------------------


def run_module(tmp_path: Path, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return plugin_loader.run_module(MODULE_PATH, tmp_path, args)


def test_module_main_end_to_end(tmp_path: Path) -> None:
    rc, result = run_module(
        tmp_path,
        {"sysfs_root": sysfs("hgx_h100"), "proc_root": proc("hgx_h100"), "use_nvidia_smi": False},
    )
    assert rc == 0, result
    assert result["changed"] is False
    assert "failed" not in result
    facts = result["ansible_facts"]["nvidia_gpu"]
    assert facts["present"] is True
    assert facts["count"] == 8
    assert [gpu["pci_address"] for gpu in facts["gpus"]] == HGX_GPU_ADDRESSES
    assert len(facts["nvswitches"]) == 4
    assert facts["other_display_adapters"] == 1
    assert facts["pci_source"] == "sysfs"
    assert facts["driver_version"] == "580.65.06"
    assert facts["driver_version_source"] == "proc"
    assert facts["kernel_module_flavor"] == "open"
    assert facts["branch"] == "580"
    assert facts["loaded_modules"] == ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"]


def test_module_main_rejects_missing_root(tmp_path: Path) -> None:
    rc, result = run_module(tmp_path, {"sysfs_root": str(tmp_path / "nope"), "use_nvidia_smi": False})
    assert rc == 1
    assert result["failed"] is True
    assert "sysfs_root must be an existing directory" in result["msg"]
