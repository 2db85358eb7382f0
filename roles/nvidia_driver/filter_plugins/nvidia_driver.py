"""Filters of the nvidia_driver role: the install plan and its validation, the package lists.

``nvidia_driver_plan`` turns the role's variables, what the platform offers and the GPUs and
NVSwitches the detection module found into the effective branch, version patterns, kernel
module flavor and whether Fabric Manager is needed, plus one message per problem in the input
(each naming the variable, the bad value and the allowed values), so that preflight can report
every problem at once before anything changes. ``nvidia_driver_packages`` gives the package
names of the plan. The APT state (installed, held, available versions) is read by the role's
``nvidia_driver_apt_state`` module; ``nvidia_driver_dkms_built`` reads ``dkms status``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

METHODS = ("nvidia", "distro")
FLAVORS = ("auto", "open", "proprietary")
KERNEL_STEPS = ("auto", "run", "skip")
BRANCH_RE = re.compile(r"^[1-9][0-9]{2}$")
VERSION_RE = re.compile(r"^(?P<branch>[1-9][0-9]{2})\.[0-9]+(?:\.[0-9]+)?$")
URL_RE = re.compile(r"^(https?|file)://[^\s]+$")
CHECKSUM_RE = re.compile(r"^(sha256:[0-9a-fA-F]{64}|sha512:[0-9a-fA-F]{128})$")
# Debian 12 '6.1.0-26-amd64' -> 'amd64', '6.1.0-26-cloud-amd64' -> 'cloud-amd64'; Debian 13
# '6.12.48+deb13-amd64' -> 'amd64', backports '6.12.12+bpo-amd64'; Ubuntu '6.8.0-45-generic' -> 'generic'
KERNEL_FLAVOR_RE = re.compile(
    r"^[0-9]+\.[0-9]+(?:\.[0-9]+)?(?:-[0-9]+(?:\.[0-9]+)*|\+[a-z0-9.~]+)-(?P<flavor>[a-z][a-z0-9-]*)$")


def _str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        raise AnsibleFilterError(f"version-like value {value!r} is a float: quote it in YAML")
    return str(value).strip()


def _device_id(gpu: Mapping[str, Any]) -> int | None:
    try:
        return int(str(gpu.get("device_id")), 16)
    except (TypeError, ValueError):
        return None


def _gpu_label(gpu: Mapping[str, Any]) -> str:
    return f"{gpu.get('pci_address')} (device {gpu.get('device_id')})"


def nvidia_driver_plan(cfg: Mapping[str, Any], offers: Mapping[str, Any], gpus: Iterable[Mapping[str, Any]] = (),
                       platform: str = "this platform", nvswitches: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Validate the role's input and compute the effective install plan.

    Args:
        cfg: the role's variables without their ``nvidia_driver_`` prefix: ``method``,
            ``branch``, ``version``, ``kernel_module_flavor``, ``kernel_module_steps``,
            ``repo_base_url``, ``repo_keyring_checksum``, ``module_signing_key``,
            ``module_signing_cert``.
        offers: what each method offers on this platform: ``{"nvidia": {...}, "distro": {...}}``,
            each with ``branches`` (empty: any), ``default_branch``, ``flavors``, an optional
            ``flavor_note`` explaining a missing flavor, and for ``nvidia`` an optional
            ``first_branch`` (the platform's repository carries no older one) with ``repo``
            (its name) and ``first_branch_note`` (the source); plus ``first_turing_device_id``,
            ``first_open_only_device_id``, ``open_only_device_ids`` (GH200),
            ``last_pre_turing_branch`` (the last branch that drives pre-Turing GPUs) and
            ``fabric`` (``{method: bool}``: whether the method can install Fabric Manager).
        gpus: ``ansible_facts.nvidia_gpu.gpus`` (used for the flavor and the branch).
        platform: a name for messages, such as ``Debian 12``.
        nvswitches: ``ansible_facts.nvidia_gpu.nvswitches``: Fabric Manager is needed when any.

    Returns:
        ``errors`` (list of messages, empty when the input is good) and, when there are no
        errors, ``branch``, ``version``, ``flavor``, ``branch_glob`` (``580.*``), ``version_glob``
        (``580.95.05-*`` or the branch glob), ``branch_regex``, ``version_regex`` and ``fabric``
        (Fabric Manager and NSCQ are to be installed: the node has NVSwitches).
    """
    errors: list[str] = []
    method = _str(cfg.get("method"))
    branch = _str(cfg.get("branch"))
    version = _str(cfg.get("version"))
    flavor = _str(cfg.get("kernel_module_flavor")) or "auto"
    steps = _str(cfg.get("kernel_module_steps")) or "auto"
    gpus = list(gpus or [])

    if method not in METHODS:
        errors.append(f"nvidia_driver_method = '{method}' is invalid; allowed: {', '.join(METHODS)}")
    fabric_manager = cfg.get("fabric_manager", "auto")
    if not (isinstance(fabric_manager, bool) or _str(fabric_manager).lower() in ("auto", "true", "false", "yes", "no")):
        errors.append(f"nvidia_driver_fabric_manager = '{fabric_manager}' is invalid; allowed: auto, true, false")
    if flavor not in FLAVORS:
        errors.append(f"nvidia_driver_kernel_module_flavor = '{flavor}' is invalid; allowed: {', '.join(FLAVORS)}")
    if steps not in KERNEL_STEPS:
        errors.append(f"nvidia_driver_kernel_module_steps = '{steps}' is invalid; allowed: {', '.join(KERNEL_STEPS)}")
    if branch and not BRANCH_RE.match(branch):
        errors.append(f"nvidia_driver_branch = '{branch}' does not look like a driver branch; "
                      "allowed: '' (the method's default) or the three-digit major version of a branch, "
                      "such as 535, 550, 570 or 580")
        branch_ok = False
    else:
        branch_ok = True
    version_match = VERSION_RE.match(version) if version else None
    if version and not version_match:
        errors.append(f"nvidia_driver_version = '{version}' is not a driver version; "
                      "allowed: '' (the newest of the branch) or a full version such as 580.95.05")

    offer = (offers.get(method) or {}) if method in METHODS else {}
    if branch_ok and method in METHODS:
        effective = branch or (version_match.group("branch") if version_match else "") or _str(offer.get("default_branch"))
        if version_match and effective != version_match.group("branch"):
            errors.append(f"nvidia_driver_version = '{version}' is of branch {version_match.group('branch')}, "
                          f"which contradicts nvidia_driver_branch = '{branch}'; allowed: a {branch}.x version, "
                          f"or nvidia_driver_branch: '{version_match.group('branch')}'")
        offered = [str(b) for b in offer.get("branches") or []]
        if offered and effective not in offered:
            errors.append(f"nvidia_driver_branch = '{effective}' is not offered by {platform} with "
                          f"nvidia_driver_method = {method}; allowed: {', '.join(offered)} "
                          "(or nvidia_driver_method: nvidia for NVIDIA's repository)")
        first = _str(offer.get("first_branch"))
        if first and BRANCH_RE.match(effective) and int(effective) < int(first):
            note = _str(offer.get("first_branch_note"))
            errors.append(f"nvidia_driver_branch = '{effective}' is not in NVIDIA's {offer.get('repo') or platform} "
                          f"repository, which carries branch {first} and later only"
                          + (f" ({note})" if note else "")
                          + f"; allowed: {first} or a later branch, or nvidia_driver_method: distro")
        branch = effective

    chosen = flavor
    if method in METHODS and flavor in FLAVORS:
        available = list(offer.get("flavors") or ["open", "proprietary"])
        first_turing = int(offers.get("first_turing_device_id", 0x1E00))
        first_open_only = int(offers.get("first_open_only_device_id", 0x2900))
        open_only_ids = {int(i) for i in offers.get("open_only_device_ids") or []}
        ids = [(g, _device_id(g)) for g in gpus]
        pre_turing = [g for g, i in ids if i is not None and i < first_turing]
        open_only = [g for g, i in ids if i is not None and (i >= first_open_only or i in open_only_ids)]
        last_pre_turing = _str(offers.get("last_pre_turing_branch"))
        if pre_turing and last_pre_turing and BRANCH_RE.match(branch) and int(branch) > int(last_pre_turing):
            errors.append(f"nvidia_driver_branch = '{branch}' does not drive the GPUs older than Turing on this host "
                          f"({', '.join(_gpu_label(g) for g in pre_turing)}): branch {int(last_pre_turing) + 10} and later "
                          f"dropped Maxwell, Pascal and Volta; the last branch that supports them is {last_pre_turing}; "
                          f"allowed: {last_pre_turing} or older"
                          + (f" ({platform}'s NVIDIA repository has none: use nvidia_driver_method: distro)"
                             if method == "nvidia" and _str((offers.get("nvidia") or {}).get("first_branch"))
                             and int(_str(offers["nvidia"]["first_branch"])) > int(last_pre_turing) else ""))
        if flavor == "auto":
            if open_only:
                chosen = "open"
            elif pre_turing:
                chosen = "proprietary"
            elif method == "distro":
                # the distributions' own default is the proprietary module
                chosen = "proprietary" if "proprietary" in available else "open"
            else:
                # NVIDIA's recommendation since branch 560
                chosen = "open" if "open" in available else "proprietary"
        if chosen not in available:
            note = _str(offer.get("flavor_note"))
            errors.append(f"nvidia_driver_kernel_module_flavor = '{flavor}' is not available with "
                          f"nvidia_driver_method = {method} on {platform}"
                          + (f" ({note})" if note else "")
                          + f"; allowed: auto, {', '.join(available)}")
        elif chosen == "open" and pre_turing:
            errors.append(f"nvidia_driver_kernel_module_flavor = '{flavor}' selects the open kernel modules, which do "
                          "not drive the GPUs older than Turing on this host: "
                          f"{', '.join(_gpu_label(g) for g in pre_turing)}; allowed: proprietary")
        elif chosen == "proprietary" and open_only:
            errors.append(f"nvidia_driver_kernel_module_flavor = '{flavor}' selects the proprietary kernel modules, "
                          "which do not drive the Grace Hopper (GH200), Blackwell or newer GPUs on this host: "
                          f"{', '.join(_gpu_label(g) for g in open_only)}; allowed: open, auto")

    switches = list(nvswitches or [])
    if switches and method in METHODS and not (offers.get("fabric") or {}).get(method, True):
        errors.append(f"this host has {len(switches)} NVSwitch(es) ({', '.join(_gpu_label(s) for s in switches)}), "
                      f"which need Fabric Manager, and nvidia_driver_method = {method} on {platform} has none; "
                      "allowed: nvidia_driver_method: nvidia")

    if method == "nvidia":
        url = _str(cfg.get("repo_base_url"))
        if not URL_RE.match(url):
            errors.append(f"nvidia_driver_repo_base_url = '{url}' is invalid; allowed: an http://, https:// "
                          "or file:// URL of NVIDIA's repos/ directory or of a mirror of it")
        checksum = _str(cfg.get("repo_keyring_checksum"))
        if checksum and not CHECKSUM_RE.match(checksum):
            errors.append(f"nvidia_driver_repo_keyring_checksum = '{checksum}' is invalid; allowed: '' or "
                          "sha256:<64 hex digits> or sha512:<128 hex digits>")
    key = _str(cfg.get("module_signing_key"))
    cert = _str(cfg.get("module_signing_cert"))
    if bool(key) != bool(cert):
        errors.append("nvidia_driver_module_signing_key and nvidia_driver_module_signing_cert must be given "
                      f"together (got key '{key}', cert '{cert}'); allowed: both paths, or both ''")
    for name, value in (("module_signing_key", key), ("module_signing_cert", cert)):
        if value and not value.startswith("/"):
            errors.append(f"nvidia_driver_{name} = '{value}' is invalid; allowed: an absolute path on the node")

    if errors:
        return {"errors": errors}
    version_glob = f"{version}-*" if version else f"{branch}.*"
    return {
        "errors": [],
        "branch": branch,
        "version": version,
        "flavor": chosen,
        "branch_glob": f"{branch}.*",
        "version_glob": version_glob,
        "branch_regex": "^" + re.escape(branch) + r"\.",
        "version_regex": "^" + re.escape(version) + "-" if version else "^" + re.escape(branch) + r"\.",
        "fabric": bool(switches),
    }


def nvidia_driver_packages(plan: Mapping[str, Any], names: Mapping[str, Any], fabric: Mapping[str, Any],
                           headless: bool, kernel_steps: bool, persistenced: bool) -> dict[str, list[str]]:
    """The package names of a plan: ``main`` (at the driver's exact version), ``fabric`` and ``aux``.

    Args:
        plan: ``nvidia_driver_plan``'s result (``branch``, ``flavor``, ``fabric``).
        names: the method's names (``vars/<os_family>.yml``): ``userspace``, ``desktop`` (a list,
            or one per flavor), ``kernel`` (per flavor) and ``persistenced``; ``{branch}`` and
            ``{suffix}`` in a name are replaced: ``suffix`` (``-{branch}``, Ubuntu's archive
            ``-{branch}-server``) applies up to branch ``suffix_until`` (NVIDIA's Ubuntu
            repository drops it from 590 on), or always when ``suffix_until`` is empty.
        fabric: the method's Fabric Manager names: ``until_580`` and ``from_590`` lists.
        headless: no desktop driver.
        kernel_steps: the kernel module package is installed (not in containers).
        persistenced: nvidia-persistenced is installed.
    """
    branch = _str(plan.get("branch"))
    flavor = _str(plan.get("flavor"))
    suffix, until = _str(names.get("suffix")), _str(names.get("suffix_until"))
    applies = bool(suffix) and (not until or (BRANCH_RE.match(branch) is not None and int(branch) <= int(until)))
    tokens = {"branch": branch, "suffix": suffix.format(branch=branch) if applies else ""}

    def fill(items: Iterable[str]) -> list[str]:
        return [str(i).format(**tokens) for i in items]

    main = fill(names.get("userspace") or [])
    if not headless:
        desktop = names.get("desktop") or []
        main += fill(desktop.get(flavor, []) if isinstance(desktop, Mapping) else desktop)
    if kernel_steps:
        main += fill((names.get("kernel") or {}).get(flavor, []))
    fabric_names: list[str] = []
    if plan.get("fabric"):
        fabric_names = fill(fabric.get("until_580") if BRANCH_RE.match(branch) and int(branch) <= 580
                            else fabric.get("from_590") or [])
    return {"main": main, "fabric": fabric_names, "aux": fill(names.get("persistenced") or []) if persistenced else []}


def nvidia_driver_kernel_flavor(kernel: str) -> str:
    """The flavor of a Debian/Ubuntu kernel release: '6.1.0-26-cloud-amd64' -> 'cloud-amd64'.

    Returns '' for a kernel that is not built the distribution's way (no headers metapackage).
    """
    match = KERNEL_FLAVOR_RE.match(_str(kernel))
    return match.group("flavor") if match else ""


def nvidia_driver_dkms_built(stdout: str, kernel: str) -> list[str]:
    """Lines of ``dkms status`` that show an NVIDIA module installed for ``kernel``.

    dkms 3 prints 'nvidia-current/535.309.01, 6.1.0-26-amd64, x86_64: installed'; older
    versions 'nvidia, 535.309.01, 6.1.0-26-amd64, x86_64: installed'.
    """
    built = []
    for line in (stdout or "").splitlines():
        head, _, state = line.rpartition(":")
        fields = [f.strip() for f in head.replace("/", ",").split(",")]
        if fields and fields[0].startswith("nvidia") and kernel in fields and state.strip().startswith("installed"):
            built.append(line.strip())
    return built


def nvidia_driver_after_reboot(state: Iterable[Any]) -> list[str]:
    """What is wrong with a GPU node after the role rebooted it; empty when the driver works.

    ``state`` is ``[nvidia_gpu fact, installed driver package version, Fabric Manager's service
    state (``{'state': ...}`` as service_facts reports it, or ``{'stdout': ...}`` of systemctl
    is-active; {} when the node has no NVSwitch)]``. The driver must be
    loaded and report a version (a null version means no driver answers, which is a failure,
    not a pass) equal to the installed package's, and Fabric Manager must be active where it was
    checked. A node without a GPU has nothing to check.
    """
    gpu, installed, fabric = [*state, {}, "", {}][:3]
    gpu = gpu or {}
    if not gpu.get("present"):
        return []
    problems = []
    loaded = gpu.get("loaded_modules") or []
    if "nvidia" not in loaded:
        problems.append(f"the nvidia module is not loaded (loaded: {', '.join(loaded) or 'none'})")
    want = _str(installed).split(":", 1)[-1].rsplit("-", 1)[0] if _str(installed) else ""
    running = _str(gpu.get("driver_version"))
    if not running:
        problems.append("no driver version can be read (neither /proc/driver/nvidia/version nor nvidia-smi answers)")
    elif not want:
        problems.append(f"the driver {running} is loaded but no driver package is installed")
    elif running != want:
        problems.append(f"the loaded driver is {running}, the installed one {want}")
    if isinstance(fabric, Mapping) and fabric and not fabric.get("skipped"):
        fabric_state = _str(fabric.get("state") or fabric.get("stdout"))
        if fabric_state not in ("active", "running"):
            problems.append(f"Fabric Manager is {fabric_state or 'not running'}")
    return problems


def nvidia_driver_reboot_reasons(gpu: Mapping[str, Any], installed_version: Any, flavor: str,
                                 blacklist_nouveau: bool, modprobe: Mapping[str, Any]) -> list[str]:
    """Why the node must reboot before the installed driver can run; empty when it need not.

    Args:
        gpu: ``ansible_facts.nvidia_gpu`` as read before the install (``loaded_modules``,
            ``driver_version``, ``kernel_module_flavor`` of the loaded module).
        installed_version: the installed driver package's version (``1:580.95.05-1``): its
            epoch and Debian revision are dropped before comparing with the loaded module's.
        flavor: the kernel module flavor the role installed (``open`` or ``proprietary``).
        blacklist_nouveau: whether the role blacklists nouveau (``nvidia_driver_blacklist_nouveau``).
        modprobe: the registered result of ``modprobe nvidia`` (skipped where it did not run).

    Returns one sentence per reason: nouveau loaded (while blacklisted), a loaded NVIDIA module
    of another version or of the other flavor, or a failed ``modprobe nvidia``.
    """
    loaded = gpu.get("loaded_modules") or []
    # the package version without epoch and revision: 1:580.95.05-1 -> 580.95.05
    new = re.sub(r"-[^-]*$", "", re.sub(r"^[0-9]+:", "", str(installed_version)))
    running, running_flavor = gpu.get("driver_version"), gpu.get("kernel_module_flavor")
    reasons = []
    if "nouveau" in loaded and blacklist_nouveau:
        reasons.append("nouveau is loaded; the blacklist takes effect at the next boot")
    if "nvidia" in loaded and running and new and running != new:
        reasons.append(f"the loaded NVIDIA module is {running}, the installed driver is {new}"
                       " (CUDA reports a driver/library version mismatch until the reboot)")
    if "nvidia" in loaded and running_flavor and running_flavor != flavor:
        reasons.append(f"the loaded NVIDIA module is the {running_flavor} one, the installed one is {flavor}")
    if not modprobe.get("skipped") and modprobe.get("failed"):
        message = str(modprobe["msg"]).strip() if "msg" in modprobe else ""
        reasons.append(f"modprobe nvidia failed: {message}")
    return reasons


def nvidia_driver_loaded_now(gpu: Mapping[str, Any], kernel_steps: bool, reboot_reasons: Iterable[str],
                             modprobe_changed: bool) -> bool:
    """Whether the driver is loaded now, so that the daemons that talk to it may start.

    True where the kernel module steps run, no reboot is pending (``reboot_reasons`` empty),
    and the nvidia module was loaded already (``loaded_modules`` of ``gpu``, the nvidia_gpu
    fact) or ``modprobe nvidia`` just loaded it (``modprobe_changed``).
    """
    return bool(kernel_steps) and not list(reboot_reasons) and (
        "nvidia" in (gpu.get("loaded_modules") or []) or bool(modprobe_changed))


def nvidia_driver_secure_boot_message(secure_boot: Mapping[str, Any], host: str, key: str) -> str:
    """The failure message when Secure Boot would refuse the module DKMS builds, saying what to do.

    Args:
        secure_boot: ``ansible_facts.nvidia_secure_boot`` (the ``nvidia_secure_boot_facts``
            module): ``signing_cert`` (its path), ``signing_cert_exists``,
            ``signing_cert_pending``, ``signing_cert_enrolled`` (None: unknown, no mokutil).
        host: the inventory hostname (named in the message and in the certificate's subject).
        key: the signing key's path.

    The first line names the problem (no certificate, one waiting for enrollment, enrollment
    unknown, not enrolled, or the private key missing); then the three ways out, with the
    commands that make and enroll a key (``openssl req`` only where no certificate exists).
    """
    cert = secure_boot.get("signing_cert")
    if not secure_boot.get("signing_cert_exists"):
        problem = f"there is no module signing certificate at {cert}."
    elif secure_boot.get("signing_cert_pending"):
        problem = (f"the signing certificate {cert} still waits for enrollment: reboot and confirm it"
                   " in the MOK Manager (step 1 below, from the reboot on).")
    elif secure_boot.get("signing_cert_enrolled") is None:
        problem = f"whether {cert} is an enrolled key cannot be read (install mokutil so that the role can tell)."
    elif not secure_boot.get("signing_cert_enrolled"):
        problem = f"the signing certificate {cert} is not enrolled as a Machine Owner Key."
    else:
        problem = f"the private key {key} of the enrolled certificate is missing."
    make_key = "" if secure_boot.get("signing_cert_exists") else (
        "openssl req -new -x509 -newkey rsa:2048 -nodes -days 36500\n"
        f'         -subj "/CN={host} DKMS module signing/"\n'
        f"         -keyout {key} -outform DER -out {cert}\n"
        "       ")
    return (f"nvidia_driver: Secure Boot is on on {host} and {problem}\n"
            "The kernel would refuse the NVIDIA module that DKMS builds, so nothing was installed. Either:\n"
            "  1. enroll a signing key (once per node), as root:\n"
            f"       {make_key}mokutil --import {cert}     # choose a one-time password\n"
            '     then reboot, choose "Enroll MOK" in the blue MOK Manager screen, enter the password,\n'
            f"     and re-run. DKMS signs with {key} (nvidia_driver_module_signing_key/_cert\n"
            "     select another pair, such as a site-wide key already enrolled);\n"
            "  2. or turn Secure Boot off in the firmware setup;\n"
            "  3. or, if the module is signed another way, set nvidia_driver_secure_boot_check: false.")


class FilterModule:
    """nvidia_driver filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "nvidia_driver_plan": nvidia_driver_plan,
            "nvidia_driver_packages": nvidia_driver_packages,
            "nvidia_driver_after_reboot": nvidia_driver_after_reboot,
            "nvidia_driver_kernel_flavor": nvidia_driver_kernel_flavor,
            "nvidia_driver_dkms_built": nvidia_driver_dkms_built,
            "nvidia_driver_reboot_reasons": nvidia_driver_reboot_reasons,
            "nvidia_driver_loaded_now": nvidia_driver_loaded_now,
            "nvidia_driver_secure_boot_message": nvidia_driver_secure_boot_message,
        }
