"""Record each task result (host, task, changed or not) as JSON lines, for check-mode tests."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: dlstack_changes
type: aggregate
short_description: Write every task result's host, task and status as JSON lines to a file
description:
  - One JSON object per task result and host - C(host), C(task) (the role-qualified task name),
    C(path) (file:line of the task), C(handler) (whether it is a handler), C(status) (ok,
    changed, failed, ignored, skipped, unreachable) - appended to the file named by the
    environment variable
    C(DLSTACK_CHANGES_LOG). Nothing is written when it is unset.
  - scripts/check-mode-compare reads two such files (a C(--check) run and the real run on
    the same nodes) and lists what the real run changed that check mode did not predict.
requirements:
  - enabled in C(callbacks_enabled) (ansible.cfg does it)
options:
  log:
    description: File to append to.
    env:
      - name: DLSTACK_CHANGES_LOG
    type: path
"""

import json
from typing import Any

from ansible.playbook.handler import Handler
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    """Append a JSON line per task result to DLSTACK_CHANGES_LOG."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dlstack_changes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._log: str | None = None

    def set_options(self, task_keys: Any = None, var_options: Any = None, direct: Any = None) -> None:
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._log = self.get_option("log") or None

    def _record(self, result: Any, status: str) -> None:
        if not self._log:
            return
        task = result._task
        line = {
            "host": result._host.get_name(),
            "task": task.get_name(),
            "path": task.get_path() or "",
            "handler": isinstance(task, Handler),
            "status": status,
        }
        with open(self._log, "a", encoding="utf-8") as log:
            log.write(json.dumps(line, sort_keys=True) + "\n")

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, "unreachable")
