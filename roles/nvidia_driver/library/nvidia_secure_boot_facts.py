#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Report UEFI Secure Boot state and whether a module signing certificate is enrolled as a MOK."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_secure_boot_facts
short_description: Report Secure Boot state and the enrollment of a kernel module signing certificate
description:
  - Reads the UEFI variables under O(efivars_root) (C(SecureBoot), C(SetupMode) and shim's
    C(MokSBStateRT)) to tell whether Secure Boot is on, and the kernel's
    C(module.sig_enforce) parameter under O(sysfs_root).
  - When Secure Boot is on, the kernel refuses unsigned modules; a module built by DKMS
    (the NVIDIA driver) only loads when it is signed by a key the firmware trusts, which on
    Debian and Ubuntu is a Machine Owner Key (MOK) enrolled through shim.
  - With O(signing_cert), reports whether that certificate (PEM or DER) is in shim's
    enrolled MOK list (C(MokListRT), read from C({sysfs_root}/firmware/efi/mok-variables) or
    from efivars) and whether it waits for enrollment at the next boot (C(MokNew)). When
    neither list can be read and C(mokutil) is on the C(PATH), C(mokutil --test-key) is asked.
  - Read-only; always reports C(changed=false).
version_added: "1.0.0"
author:
  - dlstack maintainers
options:
  efivars_root:
    description: Directory of the UEFI variables. Point it at a recorded tree to test the module.
    type: path
    default: /sys/firmware/efi/efivars
  sysfs_root:
    description: Mount point of sysfs (for C(firmware/efi), C(firmware/efi/mok-variables) and C(module/module/parameters)).
    type: path
    default: /sys
  signing_cert:
    description: Certificate (PEM or DER) that DKMS signs modules with; empty to skip the enrollment check.
    type: str
    default: ""
  signing_key:
    description: Private key that goes with O(signing_cert); only its presence is reported.
    type: str
    default: ""
  use_mokutil:
    description: Ask C(mokutil --test-key) when the MOK lists cannot be read.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
"""

EXAMPLES = r"""
- name: Read the Secure Boot state and the enrollment of DKMS's key
  nvidia_secure_boot_facts:
    signing_cert: /var/lib/dkms/mok.pub
    signing_key: /var/lib/dkms/mok.key
"""

RETURN = r"""
ansible_facts:
  description: Facts added under C(nvidia_secure_boot).
  returned: always
  type: dict
  contains:
    nvidia_secure_boot:
      description: Secure Boot and module signing state.
      returned: always
      type: dict
      contains:
        efi:
          description: Whether the system booted through UEFI.
          type: bool
        enabled:
          description: Whether Secure Boot is on (C(SecureBoot) variable is 1); C(null) when unknown.
          type: bool
        setup_mode:
          description: Whether the firmware is in setup mode; C(null) when unknown.
          type: bool
        shim_validation_disabled:
          description: Whether shim's validation was turned off (C(mokutil --disable-validation)).
          type: bool
        sig_enforce:
          description: Value of the kernel's C(module.sig_enforce) parameter, or C(null).
          type: bool
        enforced:
          description: Whether the running kernel refuses unsigned modules (Secure Boot on and shim validating, or sig_enforce).
          type: bool
        source:
          description: Where C(enabled) came from.
          type: str
          choices: [efivars, mokutil]
        signing_cert:
          description: The certificate path checked, or C(null).
          type: str
        signing_cert_exists:
          description: Whether O(signing_cert) is a readable certificate.
          type: bool
        signing_key_exists:
          description: Whether O(signing_key) exists.
          type: bool
        signing_cert_enrolled:
          description: Whether the certificate is an enrolled MOK; C(null) when that cannot be read.
          type: bool
        signing_cert_pending:
          description: Whether the certificate waits for enrollment at the next boot; C(null) when unknown.
          type: bool
"""

import base64
import binascii
import os
import re
import uuid
from typing import Any

from ansible.module_utils.basic import AnsibleModule

EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SHIM_LOCK_GUID = "605dab50-e046-4300-abb6-3dd810dd8b23"
EFI_CERT_X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072").bytes_le
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (OSError, ValueError):
        return None


def efivar_value(raw: bytes | None) -> bytes | None:
    """Data of an efivarfs file: the first 4 bytes are the variable's attributes."""
    if raw is None or len(raw) < 5:
        return None
    return raw[4:]


def efivar_flag(raw: bytes | None) -> bool | None:
    """A one-byte boolean UEFI variable (SecureBoot, SetupMode, MokSBStateRT) as read from efivarfs."""
    data = efivar_value(raw)
    if data is None:
        return None
    return data[0] == 1


def parse_sb_state(stdout: str) -> bool | None:
    """``mokutil --sb-state``: 'SecureBoot enabled' / 'SecureBoot disabled' / not EFI (None)."""
    for line in (stdout or "").splitlines():
        line = line.strip().lower()
        if line.startswith("secureboot enabled"):
            return True
        if line.startswith("secureboot disabled"):
            return False
    return None


def parse_test_key(stdout: str) -> dict[str, bool | None]:
    """``mokutil --test-key CERT``: enrolled, pending enrollment, or neither."""
    text = (stdout or "").lower()
    if "is already enrolled" in text:
        return {"enrolled": True, "pending": False}
    if "already in the enrollment request" in text:
        return {"enrolled": False, "pending": True}
    if "is not enrolled" in text:
        return {"enrolled": False, "pending": False}
    return {"enrolled": None, "pending": None}


def parse_signature_lists(data: bytes) -> list[bytes]:
    """X.509 certificates (DER) in a sequence of EFI_SIGNATURE_LIST structures (MokListRT, MokNew)."""
    certs = []
    offset = 0
    while offset + 28 <= len(data):
        sig_type = data[offset:offset + 16]
        list_size = int.from_bytes(data[offset + 16:offset + 20], "little")
        header_size = int.from_bytes(data[offset + 20:offset + 24], "little")
        sig_size = int.from_bytes(data[offset + 24:offset + 28], "little")
        if list_size < 28 or offset + list_size > len(data) or sig_size <= 16:
            break
        body = offset + 28 + header_size
        end = offset + list_size
        if sig_type == EFI_CERT_X509_GUID:
            pos = body
            while pos + sig_size <= end:
                certs.append(data[pos + 16:pos + sig_size])  # skip the owner GUID
                pos += sig_size
        offset = end
    return certs


def cert_der(raw: bytes | None) -> bytes | None:
    """DER bytes of a PEM or DER certificate file; None when it is neither."""
    if not raw:
        return None
    match = _PEM_RE.search(raw)
    if match:
        try:
            return base64.b64decode(b"".join(match.group(1).split()), validate=True)
        except (binascii.Error, ValueError):
            return None
    return raw if raw[:1] == b"\x30" else None


def read_mok_list(sysfs_root: str, efivars_root: str, name: str) -> bytes | None:
    """A MOK list: the kernel's mirror (no attribute prefix) first, then efivars, with shim's split parts."""
    mirror = os.path.join(sysfs_root, "firmware", "efi", "mok-variables", name)
    data = _read_bytes(mirror)
    if data is not None:
        return data
    parts = []
    for index in ["", *(str(i) for i in range(1, 16))]:
        raw = _read_bytes(os.path.join(efivars_root, f"{name}{index}-{SHIM_LOCK_GUID}"))
        value = efivar_value(raw)
        if value is None:
            break
        parts.append(value)
    return b"".join(parts) if parts else None


def gather(module: AnsibleModule | None, efivars_root: str, sysfs_root: str, signing_cert: str,
           signing_key: str, use_mokutil: bool) -> dict[str, Any]:
    efi = os.path.isdir(os.path.join(sysfs_root, "firmware", "efi"))
    enabled = efivar_flag(_read_bytes(os.path.join(efivars_root, "SecureBoot-" + EFI_GLOBAL_GUID)))
    source = "efivars" if enabled is not None else None
    mokutil = module.get_bin_path("mokutil") if (module is not None and use_mokutil) else None
    if enabled is None and efi and mokutil:
        _rc, out, _err = module.run_command([mokutil, "--sb-state"])
        enabled = parse_sb_state(out)
        source = "mokutil" if enabled is not None else None
    setup_mode = efivar_flag(_read_bytes(os.path.join(efivars_root, "SetupMode-" + EFI_GLOBAL_GUID)))
    shim_off = efivar_flag(_read_bytes(os.path.join(efivars_root, "MokSBStateRT-" + SHIM_LOCK_GUID))) is True
    sig_text = _read_bytes(os.path.join(sysfs_root, "module", "module", "parameters", "sig_enforce"))
    sig_enforce = None if sig_text is None else sig_text.strip().upper() == b"Y"
    enforced = bool(sig_enforce) or (enabled is True and not shim_off)

    cert_path = signing_cert or None
    der = cert_der(_read_bytes(signing_cert)) if signing_cert else None
    enrolled: bool | None = None
    pending: bool | None = None
    if der is not None:
        enrolled_list = read_mok_list(sysfs_root, efivars_root, "MokListRT")
        if enrolled_list is not None:
            enrolled = der in parse_signature_lists(enrolled_list)
            new = read_mok_list(sysfs_root, efivars_root, "MokNew")
            pending = der in parse_signature_lists(new) if new is not None else False
        elif efi and mokutil:
            _rc, out, _err = module.run_command([mokutil, "--test-key", signing_cert])
            result = parse_test_key(out)
            enrolled, pending = result["enrolled"], result["pending"]
    return {
        "efi": efi,
        "enabled": enabled,
        "setup_mode": setup_mode,
        "shim_validation_disabled": shim_off,
        "sig_enforce": sig_enforce,
        "enforced": enforced,
        "source": source,
        "signing_cert": cert_path,
        "signing_cert_exists": der is not None,
        "signing_key_exists": bool(signing_key) and os.path.isfile(signing_key),
        "signing_cert_enrolled": enrolled,
        "signing_cert_pending": pending,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            efivars_root=dict(type="path", default="/sys/firmware/efi/efivars"),
            sysfs_root=dict(type="path", default="/sys"),
            signing_cert=dict(type="str", default=""),
            signing_key=dict(type="str", default=""),
            use_mokutil=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    facts = gather(module, p["efivars_root"], p["sysfs_root"], p["signing_cert"], p["signing_key"], p["use_mokutil"])
    module.exit_json(changed=False, ansible_facts={"nvidia_secure_boot": facts})


if __name__ == "__main__":
    main()
