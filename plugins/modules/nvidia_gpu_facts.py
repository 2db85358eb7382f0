#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Detect NVIDIA GPUs on the PCI bus and report the state of the NVIDIA driver."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Detect NVIDIA GPUs on the PCI bus and report NVIDIA driver state
description:
  - Walks C({sysfs_root}/bus/pci/devices) and lists NVIDIA display-class devices
    (PCI class C(0x03xxxx), that is C(0x0300) VGA and C(0x0302) 3D controller) as GPUs.
  - NVIDIA devices of PCI class C(0x0680xx) (NVSwitch) are listed separately in
    RV(ansible_facts.nvidia_gpu.nvswitches) and are not counted as GPUs.
    Functions of other classes, such as the HDMI/DP audio function of a GPU
    (class C(0x0403xx)), are ignored.
  - Display adapters of other vendors (ASPEED or Matrox BMC VGA, AMD or Intel GPUs)
    are only counted in RV(ansible_facts.nvidia_gpu.other_display_adapters).
  - When C({sysfs_root}/bus/pci/devices) does not exist and C(lspci) is on the
    C(PATH), the output of C(lspci -nn -D) is parsed instead. C(lspci) always
    reads the real PCI bus, whatever O(sysfs_root) says.
  - The driver version is read from C({proc_root}/driver/nvidia/version); when
    that file is missing or unreadable and O(use_nvidia_smi=true), it is asked
    from C(nvidia-smi) if that binary exists.
  - The module only reads files and runs read-only commands; it never changes
    anything, so it always reports C(changed=false).
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  sysfs_root:
    description:
      - Mount point of sysfs. Point it at a recorded tree to test the module.
      - Must be an existing directory.
    type: path
    default: /sys
  proc_root:
    description:
      - Mount point of procfs. Point it at a recorded tree to test the module.
      - Must be an existing directory.
    type: path
    default: /proc
  use_nvidia_smi:
    description:
      - Ask C(nvidia-smi) for the driver version when
        C({proc_root}/driver/nvidia/version) cannot be read.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
notes:
  - A C(numa_node) of C(-1) in sysfs means the platform reports no NUMA affinity;
    it is returned as C(null).
  - Files that cannot be read give C(null) values instead of a failure.
"""

EXAMPLES = r"""
- name: Detect NVIDIA GPUs
  nvidia_gpu_facts:

- name: Report the GPUs only where there are some
  ansible.builtin.debug:
    msg: >-
      {{ ansible_facts.nvidia_gpu.count }} GPU(s),
      driver {{ ansible_facts.nvidia_gpu.driver_version | default('none', true) }}
  when: ansible_facts.nvidia_gpu.present

- name: Read a recorded host instead of the live one, without nvidia-smi
  nvidia_gpu_facts:
    sysfs_root: /srv/recordings/hgx01/sys
    proc_root: /srv/recordings/hgx01/proc
    use_nvidia_smi: false
"""

RETURN = r"""
ansible_facts:
  description: Facts added under C(nvidia_gpu).
  returned: always
  type: dict
  contains:
    nvidia_gpu:
      description: NVIDIA GPU and driver state of the host.
      returned: always
      type: dict
      contains:
        present:
          description: Whether at least one NVIDIA GPU was found.
          type: bool
          sample: true
        count:
          description: Number of NVIDIA GPUs (NVSwitches and audio functions not included).
          type: int
          sample: 8
        gpus:
          description:
            - NVIDIA display-class devices, sorted by PCI address.
            - Every item has the keys C(pci_address), C(vendor_id), C(device_id), C(class),
              C(subsystem_vendor_id), C(subsystem_device_id), C(numa_node), C(driver) and C(name).
              Keys whose value is unknown are C(null); C(name) is only set when the data came from C(lspci),
              C(subsystem_*), C(numa_node) and C(driver) only when it came from sysfs.
          type: list
          elements: dict
          sample:
            - pci_address: "0000:17:00.0"
              vendor_id: "0x10de"
              device_id: "0x2330"
              class: "0x030200"
              subsystem_vendor_id: "0x10de"
              subsystem_device_id: "0x16c1"
              numa_node: 0
              driver: nvidia
              name: null
        nvswitches:
          description:
            - NVIDIA devices of PCI class C(0x0680xx) (NVSwitch), sorted by PCI address.
            - Same item shape as RV(ansible_facts.nvidia_gpu.gpus).
          type: list
          elements: dict
          sample: []
        other_display_adapters:
          description: Number of display-class devices of other vendors (for example an ASPEED BMC VGA).
          type: int
          sample: 1
        pci_source:
          description: Where the device list came from; C(null) when neither sysfs nor C(lspci) was usable.
          type: str
          choices: [sysfs, lspci]
          sample: sysfs
        driver_version:
          description: Version of the loaded NVIDIA kernel driver, or C(null).
          type: str
          sample: "580.65.06"
        driver_version_source:
          description: Where RV(ansible_facts.nvidia_gpu.driver_version) came from, or C(null).
          type: str
          choices: [proc, nvidia-smi]
          sample: proc
        kernel_module_flavor:
          description:
            - C(open) for the NVIDIA open GPU kernel modules, C(proprietary) for the closed ones.
            - Only known when the version came from C({proc_root}/driver/nvidia/version), else C(null).
          type: str
          choices: [open, proprietary]
          sample: open
        branch:
          description: Major number of RV(ansible_facts.nvidia_gpu.driver_version), as a string, or C(null).
          type: str
          sample: "580"
        loaded_modules:
          description:
            - Which of C(nvidia), C(nvidia_uvm), C(nvidia_drm), C(nvidia_modeset) and C(nouveau) are loaded,
              in that order.
            - C(null) when C({proc_root}/modules) cannot be read.
          type: list
          elements: str
          sample: [nvidia, nvidia_uvm, nvidia_drm, nvidia_modeset]
"""

import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

NVIDIA_VENDOR_ID = "0x10de"
# Modules reported in loaded_modules, in this order.
WATCHED_MODULES = ("nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset", "nouveau")

# [domain:]bus:device.function; the domain is usually 4 hex digits but can be longer (Intel VMD).
_PCI_ADDRESS_RE = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{4,8}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<dev>[0-9a-fA-F]{2})\.(?P<fn>[0-7])$"
)
_HEX_RE = re.compile(r"^(?:0x)?([0-9a-fA-F]+)$")
# 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.247.01  Thu Apr 10 ...' (proprietary) and
# 'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build ...' (open).
_PROC_VERSION_RE = re.compile(
    r"^NVRM version:\s+NVIDIA UNIX\s+"
    r"(?:(?P<open>Open Kernel Module for)\s+(?P<open_arch>\S+)|(?P<arch>\S+)\s+Kernel Module)"
    r"\s+(?P<version>\d+\.\d+(?:\.\d+)*)(?:\s|$)",
    re.MULTILINE,
)
_DRIVER_VERSION_RE = re.compile(r"^\d+\.\d+(?:\.\d+)*$")
# '0000:17:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev a1)'
_LSPCI_LINE_RE = re.compile(
    r"^(?P<address>\S+)\s+(?P<class_name>.*?)\s*\[(?P<class>[0-9a-fA-F]{4})\]:\s*"
    r"(?P<name>.*?)\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]"
    r"(?P<rest>.*)$"
)
_LSPCI_PROGIF_RE = re.compile(r"\(prog-if\s+(?P<progif>[0-9a-fA-F]{2})\b")


def _read_text(path: str) -> str | None:
    """Return the content of a small text file, or None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (OSError, ValueError):
        return None


def normalize_hex(value: str | None, width: int) -> str | None:
    """Turn '10DE', '0x10de' or '0x10de\\n' into '0x10de' (zero-padded to width digits); None if not hex."""
    if value is None:
        return None
    match = _HEX_RE.match(value.strip())
    if not match or len(match.group(1)) > width:
        return None
    return "0x" + match.group(1).lower().zfill(width)


def normalize_pci_address(value: str) -> str | None:
    """Return 'dddd:bb:dd.f' in lower case (domain 0000 added when missing), or None if invalid."""
    match = _PCI_ADDRESS_RE.match(value.strip())
    if not match:
        return None
    domain = (match.group("domain") or "0000").lower()
    return f"{domain}:{match.group('bus').lower()}:{match.group('dev').lower()}.{match.group('fn')}"


def pci_sort_key(address: str) -> tuple[int, int, int, int]:
    """Numeric sort key of a normalized PCI address."""
    match = _PCI_ADDRESS_RE.match(address)
    if not match:
        return (1 << 32, 0, 0, 0)
    return (
        int(match.group("domain") or "0", 16),
        int(match.group("bus"), 16),
        int(match.group("dev"), 16),
        int(match.group("fn")),
    )


def _device_record(address: str, vendor_id: str | None, device_id: str | None,
                   pci_class: str | None, **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "pci_address": address,
        "vendor_id": vendor_id,
        "device_id": device_id,
        "class": pci_class,
        "subsystem_vendor_id": None,
        "subsystem_device_id": None,
        "numa_node": None,
        "driver": None,
        "name": None,
    }
    record.update(extra)
    return record


def _read_numa_node(path: str) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        node = int(text.strip())
    except ValueError:
        return None
    return node if node >= 0 else None


def _read_driver(path: str) -> str | None:
    """Basename of the 'driver' symlink target (the target need not exist), or None."""
    try:
        target = os.readlink(path)
    except (OSError, ValueError):
        return None
    name = os.path.basename(target.rstrip("/"))
    return name or None


def read_sysfs_pci_devices(sysfs_root: str) -> list[dict[str, Any]] | None:
    """List every PCI function under {sysfs_root}/bus/pci/devices; None when that directory is absent."""
    devices_dir = os.path.join(sysfs_root, "bus", "pci", "devices")
    if not os.path.isdir(devices_dir):
        return None
    try:
        entries = os.listdir(devices_dir)
    except OSError:
        return None
    devices = []
    for entry in entries:
        address = normalize_pci_address(entry)
        path = os.path.join(devices_dir, entry)
        if address is None or not os.path.isdir(path):
            continue
        devices.append(_device_record(
            address,
            normalize_hex(_read_text(os.path.join(path, "vendor")), 4),
            normalize_hex(_read_text(os.path.join(path, "device")), 4),
            normalize_hex(_read_text(os.path.join(path, "class")), 6),
            subsystem_vendor_id=normalize_hex(_read_text(os.path.join(path, "subsystem_vendor")), 4),
            subsystem_device_id=normalize_hex(_read_text(os.path.join(path, "subsystem_device")), 4),
            numa_node=_read_numa_node(os.path.join(path, "numa_node")),
            driver=_read_driver(os.path.join(path, "driver")),
        ))
    return devices


def classify_devices(devices: list[dict[str, Any]]) -> dict[str, Any]:
    """Split PCI functions into NVIDIA GPUs, NVSwitches and a count of other display adapters."""
    gpus = []
    nvswitches = []
    other_display = 0
    for device in devices:
        pci_class = device.get("class") or ""
        is_nvidia = device.get("vendor_id") == NVIDIA_VENDOR_ID
        if pci_class.startswith("0x03"):
            if is_nvidia:
                gpus.append(device)
            else:
                other_display += 1
        elif is_nvidia and pci_class.startswith("0x0680"):
            nvswitches.append(device)
        # Everything else (GPU audio functions 0x0403xx, USB-C controllers, bridges...) is ignored.
    gpus.sort(key=lambda item: pci_sort_key(item["pci_address"]))
    nvswitches.sort(key=lambda item: pci_sort_key(item["pci_address"]))
    return {"gpus": gpus, "nvswitches": nvswitches, "other_display_adapters": other_display}


def scan_pci(sysfs_root: str) -> dict[str, Any] | None:
    """Classify the PCI devices found in sysfs; None when {sysfs_root}/bus/pci/devices is absent."""
    devices = read_sysfs_pci_devices(sysfs_root)
    if devices is None:
        return None
    return classify_devices(devices)


def parse_lspci_nn(text: str) -> list[dict[str, Any]]:
    """Parse 'lspci -nn [-D]' output into device records (the same shape as the sysfs ones, plus name).

    Indented continuation lines (from -v) and lines that do not look like devices are skipped.
    Without a '(prog-if xx ...)' annotation the programming interface is taken as 00.
    """
    devices = []
    for line in (text or "").splitlines():
        if not line or line[0].isspace():
            continue
        match = _LSPCI_LINE_RE.match(line.strip())
        if not match:
            continue
        address = normalize_pci_address(match.group("address"))
        if address is None:
            continue
        progif_match = _LSPCI_PROGIF_RE.search(match.group("rest"))
        progif = progif_match.group("progif") if progif_match else "00"
        devices.append(_device_record(
            address,
            "0x" + match.group("vendor").lower(),
            "0x" + match.group("device").lower(),
            "0x" + (match.group("class") + progif).lower(),
            name=match.group("name").strip() or None,
        ))
    devices.sort(key=lambda item: pci_sort_key(item["pci_address"]))
    return devices


def parse_proc_version(text: str | None) -> dict[str, str] | None:
    """Parse /proc/driver/nvidia/version; None when no NVRM version line is found."""
    if not text:
        return None
    match = _PROC_VERSION_RE.search(text)
    if not match:
        return None
    is_open = match.group("open") is not None
    return {
        "version": match.group("version"),
        "kernel_module_flavor": "open" if is_open else "proprietary",
        "arch": match.group("open_arch") if is_open else match.group("arch"),
    }


def parse_modules(text: str | None) -> list[str]:
    """Return which WATCHED_MODULES appear in /proc/modules text, in WATCHED_MODULES order."""
    loaded = set()
    for line in (text or "").splitlines():
        fields = line.split()
        if fields:
            loaded.add(fields[0])
    return [name for name in WATCHED_MODULES if name in loaded]


def parse_smi_driver(stdout: str | None) -> str | None:
    """Driver version from 'nvidia-smi --query-gpu=driver_version --format=csv,noheader' (one line per GPU).

    The first line that is a version wins: nvidia-smi may print warnings (such as a corrupted
    infoROM) to stdout before it. Returns None when no line is a version, for instance for the
    "couldn't communicate with the NVIDIA driver" message or "No devices were found".
    """
    for line in (stdout or "").splitlines():
        candidate = line.strip()
        if _DRIVER_VERSION_RE.match(candidate):
            return candidate
    return None


def driver_branch(version: str | None) -> str | None:
    """'580.65.06' -> '580'."""
    if not version or not _DRIVER_VERSION_RE.match(version):
        return None
    return version.split(".", 1)[0]


def gather_facts(module: AnsibleModule, sysfs_root: str, proc_root: str, use_nvidia_smi: bool) -> dict[str, Any]:
    """Collect the nvidia_gpu facts; read-only."""
    pci = scan_pci(sysfs_root)
    pci_source: str | None = "sysfs" if pci is not None else None
    if pci is None:
        lspci = module.get_bin_path("lspci")
        if lspci:
            rc, out, _err = module.run_command([lspci, "-nn", "-D"])
            if rc == 0:
                pci = classify_devices(parse_lspci_nn(out))
                pci_source = "lspci"
    if pci is None:
        pci = {"gpus": [], "nvswitches": [], "other_display_adapters": 0}

    version_info = parse_proc_version(_read_text(os.path.join(proc_root, "driver", "nvidia", "version")))
    driver_version: str | None = None
    version_source: str | None = None
    flavor: str | None = None
    if version_info is not None:
        driver_version = version_info["version"]
        flavor = version_info["kernel_module_flavor"]
        version_source = "proc"
    elif use_nvidia_smi:
        smi = module.get_bin_path("nvidia-smi")
        if smi:
            # rc 9 means "couldn't communicate with the NVIDIA driver": no version then.
            rc, out, _err = module.run_command([smi, "--query-gpu=driver_version", "--format=csv,noheader"])
            if rc == 0:
                driver_version = parse_smi_driver(out)
                if driver_version is not None:
                    version_source = "nvidia-smi"

    modules_text = _read_text(os.path.join(proc_root, "modules"))
    loaded_modules = parse_modules(modules_text) if modules_text is not None else None

    return {
        "present": len(pci["gpus"]) > 0,
        "count": len(pci["gpus"]),
        "gpus": pci["gpus"],
        "nvswitches": pci["nvswitches"],
        "other_display_adapters": pci["other_display_adapters"],
        "pci_source": pci_source,
        "driver_version": driver_version,
        "driver_version_source": version_source,
        "kernel_module_flavor": flavor,
        "branch": driver_branch(driver_version),
        "loaded_modules": loaded_modules,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            sysfs_root=dict(type="path", default="/sys"),
            proc_root=dict(type="path", default="/proc"),
            use_nvidia_smi=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    for option in ("sysfs_root", "proc_root"):
        value = module.params[option]
        if not value or not os.path.isdir(value):
            module.fail_json(msg=f"{option} must be an existing directory, got {value!r}")

    facts = gather_facts(
        module,
        module.params["sysfs_root"],
        module.params["proc_root"],
        module.params["use_nvidia_smi"],
    )
    module.exit_json(changed=False, ansible_facts={"nvidia_gpu": facts})


if __name__ == "__main__":
    main()
