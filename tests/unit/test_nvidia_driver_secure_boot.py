"""Unit tests for roles/nvidia_driver/library/nvidia_secure_boot_facts.py on synthetic efivars trees.

The UEFI variables are built the way efivarfs shows them (4 attribute bytes, then the data) and
the MOK lists as EFI_SIGNATURE_LIST structures, so that the parsing is exercised byte for byte.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from plugin_loader import load_by_path

REPO = Path(__file__).resolve().parents[2]
MODULE_PATH = REPO / "roles" / "nvidia_driver" / "library" / "nvidia_secure_boot_facts.py"
GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SHIM = "605dab50-e046-4300-abb6-3dd810dd8b23"
X509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072").bytes_le
SHA256 = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328").bytes_le
ATTRS = (0x7).to_bytes(4, "little")  # NV | BS | RT

# Stand-ins for DER certificates: the module compares bytes, it does not parse X.509.
CERT_A = bytes.fromhex("3082010a0282010100") + b"dlstack test certificate A" * 4
CERT_B = bytes.fromhex("3082010a0282010100") + b"dlstack test certificate B" * 4


mod = load_by_path("nvidia_secure_boot_facts", MODULE_PATH)


def esl(sig_type: bytes, entries: list[bytes], header: bytes = b"") -> bytes:
    """One EFI_SIGNATURE_LIST with entries of equal size (owner GUID + data)."""
    owner = uuid.UUID(SHIM).bytes_le
    size = 16 + len(entries[0])
    body = b"".join(owner + e for e in entries)
    total = 28 + len(header) + len(body)
    return (sig_type + total.to_bytes(4, "little") + len(header).to_bytes(4, "little")
            + size.to_bytes(4, "little") + header + body)


def pem(der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return ("-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n").encode()


def make_tree(tmp: Path, secure_boot: int | None = 1, setup_mode: int = 0, shim_off: bool = False,
              mok_list: bytes | None = None, mok_new: bytes | None = None, mirror: bool = True,
              sig_enforce: str | None = None) -> tuple[Path, Path]:
    sysfs = tmp / "sys"
    efivars = sysfs / "firmware" / "efi" / "efivars"
    efivars.mkdir(parents=True)
    if secure_boot is not None:
        (efivars / f"SecureBoot-{GLOBAL}").write_bytes(ATTRS + bytes([secure_boot]))
        (efivars / f"SetupMode-{GLOBAL}").write_bytes(ATTRS + bytes([setup_mode]))
    if shim_off:
        (efivars / f"MokSBStateRT-{SHIM}").write_bytes(ATTRS + b"\x01")
    if mok_list is not None:
        if mirror:
            mok_dir = sysfs / "firmware" / "efi" / "mok-variables"
            mok_dir.mkdir(parents=True)
            (mok_dir / "MokListRT").write_bytes(mok_list)
        else:
            (efivars / f"MokListRT-{SHIM}").write_bytes(ATTRS + mok_list)
    if mok_new is not None:
        (efivars / f"MokNew-{SHIM}").write_bytes(ATTRS + mok_new)
    if sig_enforce is not None:
        params = sysfs / "module" / "module" / "parameters"
        params.mkdir(parents=True)
        (params / "sig_enforce").write_text(sig_enforce + "\n")
    return sysfs, efivars


def gather(sysfs: Path, efivars: Path, cert: Path | None = None, key: Path | None = None) -> dict:
    return mod.gather(None, str(efivars), str(sysfs), str(cert) if cert else "", str(key) if key else "", False)


# --- parsers ----------------------------------------------------------------------------------


def test_efivar_flag() -> None:
    assert mod.efivar_flag(ATTRS + b"\x01") is True
    assert mod.efivar_flag(ATTRS + b"\x00") is False
    assert mod.efivar_flag(ATTRS) is None
    assert mod.efivar_flag(None) is None


@pytest.mark.parametrize("text, state", [
    ("SecureBoot enabled\n", True),
    ("SecureBoot disabled\nPlatform is in Setup Mode\n", False),
    ("SecureBoot enabled\nSecureBoot validation is disabled in shim\n", True),
    ("EFI variables are not supported on this system\n", None),
    ("This system doesn't support Secure Boot\n", None),
])
def test_parse_sb_state(text: str, state: bool | None) -> None:
    assert mod.parse_sb_state(text) is state


@pytest.mark.parametrize("text, result", [
    ("/var/lib/dkms/mok.pub is already enrolled\n", {"enrolled": True, "pending": False}),
    ("/var/lib/dkms/mok.pub is not enrolled\n", {"enrolled": False, "pending": False}),
    ("/var/lib/dkms/mok.pub is already in the enrollment request\n", {"enrolled": False, "pending": True}),
    ("Failed to read /x\n", {"enrolled": None, "pending": None}),
])
def test_parse_test_key(text: str, result: dict) -> None:
    assert mod.parse_test_key(text) == result


def test_signature_lists_keep_only_x509_entries() -> None:
    data = esl(SHA256, [b"\x11" * 32, b"\x22" * 32]) + esl(X509, [CERT_A]) + esl(X509, [CERT_B], header=b"\x00" * 8)
    assert mod.parse_signature_lists(data) == [CERT_A, CERT_B]
    assert mod.parse_signature_lists(b"") == []
    assert mod.parse_signature_lists(data[:40]) == []   # truncated: stops, no exception


def test_cert_der_reads_pem_and_der() -> None:
    assert mod.cert_der(pem(CERT_A)) == CERT_A
    assert mod.cert_der(CERT_A) == CERT_A
    assert mod.cert_der(b"not a certificate") is None
    assert mod.cert_der(None) is None


# --- whole states -----------------------------------------------------------------------------


def test_no_efi(tmp_path: Path) -> None:
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    facts = gather(sysfs, sysfs / "firmware" / "efi" / "efivars")
    assert facts["efi"] is False and facts["enabled"] is None and facts["enforced"] is False


def test_secure_boot_off(tmp_path: Path) -> None:
    facts = gather(*make_tree(tmp_path, secure_boot=0))
    assert facts["efi"] and facts["enabled"] is False and not facts["enforced"]
    assert facts["source"] == "efivars"


def test_secure_boot_on_without_a_key(tmp_path: Path) -> None:
    sysfs, efivars = make_tree(tmp_path, mok_list=esl(X509, [CERT_B]))
    facts = gather(sysfs, efivars, tmp_path / "missing.pub", tmp_path / "missing.key")
    assert facts["enabled"] and facts["enforced"]
    assert facts["signing_cert_exists"] is False and facts["signing_key_exists"] is False
    assert facts["signing_cert_enrolled"] is None


@pytest.mark.parametrize("mirror", [True, False])
def test_enrolled_certificate(tmp_path: Path, mirror: bool) -> None:
    sysfs, efivars = make_tree(tmp_path, mok_list=esl(X509, [CERT_B]) + esl(X509, [CERT_A]), mirror=mirror)
    cert = tmp_path / "mok.pub"
    cert.write_bytes(pem(CERT_A))
    key = tmp_path / "mok.key"
    key.write_text("key")
    facts = gather(sysfs, efivars, cert, key)
    assert facts["signing_cert_exists"] and facts["signing_key_exists"]
    assert facts["signing_cert_enrolled"] is True and facts["signing_cert_pending"] is False


def test_certificate_waiting_for_enrollment(tmp_path: Path) -> None:
    sysfs, efivars = make_tree(tmp_path, mok_list=esl(X509, [CERT_B]), mok_new=esl(X509, [CERT_A]))
    cert = tmp_path / "mok.der"
    cert.write_bytes(CERT_A)
    facts = gather(sysfs, efivars, cert)
    assert facts["signing_cert_enrolled"] is False and facts["signing_cert_pending"] is True


def test_shim_validation_off_is_not_enforced(tmp_path: Path) -> None:
    facts = gather(*make_tree(tmp_path, shim_off=True))
    assert facts["enabled"] and facts["shim_validation_disabled"] and not facts["enforced"]


def test_sig_enforce_alone_enforces(tmp_path: Path) -> None:
    facts = gather(*make_tree(tmp_path, secure_boot=0, sig_enforce="Y"))
    assert facts["enabled"] is False and facts["sig_enforce"] is True and facts["enforced"] is True


def test_split_mok_list_in_efivars(tmp_path: Path) -> None:
    sysfs, efivars = make_tree(tmp_path)
    whole = esl(X509, [CERT_B]) + esl(X509, [CERT_A])
    (efivars / f"MokListRT-{SHIM}").write_bytes(ATTRS + whole[:50])
    (efivars / f"MokListRT1-{SHIM}").write_bytes(ATTRS + whole[50:])
    cert = tmp_path / "mok.der"
    cert.write_bytes(CERT_A)
    assert gather(sysfs, efivars, cert)["signing_cert_enrolled"] is True


def test_module_runs_as_ansible_module(tmp_path: Path) -> None:
    sysfs, efivars = make_tree(tmp_path, secure_boot=0)
    args = {"ANSIBLE_MODULE_ARGS": {"efivars_root": str(efivars), "sysfs_root": str(sysfs), "use_mokutil": False}}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps(args))
    proc = subprocess.run([sys.executable, str(MODULE_PATH), str(args_file)], capture_output=True, text=True,
                          check=False)
    result = json.loads(proc.stdout)
    assert result["changed"] is False
    assert result["ansible_facts"]["nvidia_secure_boot"]["enabled"] is False
