"""Action plugin dlstack_apt: ansible.builtin.apt, whose check mode also completes on a node
that has no APT package lists yet (see plugins/modules/dlstack_apt.py for the documentation)."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase

# the states of ansible.builtin.apt that install something (state is 'present' when unset)
INSTALLING = ("present", "latest", "build-dep", "fixed")


def preview_request(args: dict[str, Any]) -> dict[str, Any] | None:
    """What to ask dlstack_apt_preview for, or None when the task installs nothing (only
    refreshes the lists, removes, upgrades, cleans), which apt's check mode handles itself."""
    if args.get("state", "present") not in INSTALLING:
        return None
    names = args.get("name", args.get("pkg", args.get("package"))) or []
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    debs = [args["deb"]] if args.get("deb") else []
    if not names and not debs:
        return None
    return {"names": [str(n) for n in names], "debs": [str(d) for d in debs]}


class ActionModule(ActionBase):
    """In check mode, first ask dlstack_apt_preview whether the node has package lists; on a
    node without any it reports what the real run would install, and ansible.builtin.apt is
    not called (it would fail with 'No package matching ...'). Otherwise: ansible.builtin.apt
    with the task's arguments, unchanged."""

    TRANSFERS_FILES = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        request = preview_request(args) if self._task.check_mode else None
        if request is not None:
            role = self._task._role.get_name(include_role_fqcn=False) if self._task._role else "dlstack"
            who = f"{role} on {task_vars.get('inventory_hostname', 'this node')}"
            preview = self._execute_module(module_name="dlstack_apt_preview",
                                           module_args={**request, "who": who, "only_without_lists": True},
                                           task_vars=task_vars)
            if preview.get("failed") or preview.get("blind"):
                result.update(preview)
                return result
        result.update(self._execute_module(module_name="ansible.builtin.apt", module_args=args, task_vars=task_vars))
        return result
