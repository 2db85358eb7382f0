"""Filters of the dl_verify role: expectations for dl-verify, and rows of the cluster report."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError


def _user_expectations(user: Mapping[str, Any], envs: list[Mapping[str, Any]]) -> dict[str, Any]:
    keras = dict(user.get("keras") or {})
    theano = dict(user.get("theano") or {})
    expect: dict[str, Any] = {k: keras[k] for k in ("backend", "floatx", "image_data_format") if k in keras}
    if "device" in theano:
        expect["device"] = theano["device"]
    wanted = keras.get("backend")
    env_expect = {str(env["name"]): {"backend": wanted if wanted in env["backends"] else env["backends"][0]}
                  for env in envs}
    if env_expect:
        expect["envs"] = env_expect
    return expect


def expectations(users: Iterable[Mapping[str, Any]] | None, envs: Iterable[Mapping[str, Any]],
                 node: Mapping[str, Any] | None = None, theano_seeded: bool = False) -> dict[str, Any]:
    """What dl-verify must find on one node (its ``--expect-json``).

    Args:
        users: each user's effective settings (``name``, ``keras``, ``theano``); empty for a
            node-level run.
        envs: the envs on the node, each ``name`` and ``backends`` (the first is the one
            the dl_user_config hook falls back to when the user's backend is not served).
        node: node-level expectations (gpu_count, driver_branch, cuda_default, cudnn_major).
        theano_seeded: each user's Theano training must find its modules in a seed of the
            env's current build (dl_user_config seeds the compile directories).

    Returns:
        The node's expectations, ``theano_seeded`` when asked, and ``users``: per user the
        keras.json settings, the Theano device and per env the backend Keras must load.
    """
    env_list = []
    for env in envs:
        backends = list(env.get("backends") or [])
        if not env.get("name") or not backends:
            raise AnsibleFilterError(f"dl_verify: every env needs a name and backends, got {dict(env)!r}")
        env_list.append({"name": env["name"], "backends": backends})
    expect: dict[str, Any] = dict(node or {})
    if theano_seeded:
        expect["theano_seeded"] = True
    per_user = {str(u["name"]): _user_expectations(u, env_list) for u in users or [] if u.get("name")}
    if per_user:
        expect["users"] = per_user
    return expect


LEVELS = {"full": [], "quick": ["--quick"], "config": ["--config-only"]}


def command(path: str, users: Iterable[Mapping[str, Any]], options: Mapping[str, Any]) -> list[str]:
    """dl-verify's command line for one node.

    Args:
        path: the installed script.
        users: the users to check (``name`` each); none checks the node alone.
        options: ``envs_config``, ``timeout``, ``script_sha256``, ``expect`` (dict), ``level``
            (full, quick, config), ``node_checks`` (bool), ``jobs`` (0: dl-verify's default),
            ``reuse`` (seconds, 0: off) and ``state_dir``.
    """
    level = str(options.get("level", "full"))
    if level not in LEVELS:
        raise AnsibleFilterError(f"dl_verify: level {level!r} is not one of {', '.join(LEVELS)}")
    argv = [path, "--json", "--envs-config", str(options["envs_config"]), "--timeout", str(options["timeout"]),
            "--script-sha256", str(options["script_sha256"]), "--expect-json", json.dumps(options.get("expect") or {})]
    names = [f"--user={u['name']}" for u in users or []]
    argv += names or ["--node-only"]
    argv += LEVELS[level]
    if not options.get("node_checks", True):
        argv.append("--no-node-checks")
    if int(options.get("jobs") or 0) > 0:
        argv += ["--jobs", str(int(options["jobs"]))]
    if int(options.get("reuse") or 0) > 0:
        argv += ["--reuse", str(int(options["reuse"])), "--state-dir", str(options["state_dir"])]
    return argv


def result(run: Mapping[str, Any], users: Iterable[str] | None = None) -> dict[str, Any]:
    """One node's dl-verify run (a ``command`` result) as ``{rc, error, node, users}``.

    ``node`` is the node's part of the ``--json`` report (None when it has none), ``users``
    one ``{user, report}`` per user checked. When the output is not a report, ``error``
    holds the end of stderr and every user asked for is listed without a report.
    """
    report: Any = None
    try:
        report = json.loads(run.get("stdout") or "")
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("users"), list):
        stderr = (run.get("stderr") or run.get("msg") or "").strip().splitlines()
        return {"rc": run.get("rc"), "error": " ".join(stderr[-3:]), "node": None,
                "users": [{"user": name, "report": None} for name in users or []]}
    return {"rc": run.get("rc"), "error": "", "node": report.get("node"), "host": report.get("host"),
            "users": [{"user": u.get("user", ""), "report": u} for u in report["users"]]}


def _cells(checks: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    cells = {}
    for check in checks:
        data = check.get("data") or {}
        probe = data.get("probe") or {}
        summary = check.get("reason", "")
        if probe.get("keras"):
            summary = f"keras {probe['keras']} / {probe.get('backend')}"
            cache = probe.get("theano_cache")
            if cache:
                summary += f", Theano cache: {cache.get('loaded')} loaded, {cache.get('compiled_versioned')} compiled"
        cells[check["id"]] = {"status": check.get("status", "fail"), "reason": check.get("reason", ""),
                              "summary": summary, "required": bool(check.get("required"))}
    return cells


def report_rows(hosts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten every node's results into report rows, one per host and user.

    Args:
        hosts: host name -> the ``dl_verify_result`` of its run (or {} when it has none).

    Returns:
        One row per host and user, sorted: ``host``, ``user``, ``ok`` (the node's checks and
        the user's), ``checks`` (check id -> {status, reason, summary, required}: the node's
        checks, the same on every row of a host, then the user's), ``verified`` (when the
        user's checks ran), ``reused`` (the stored result, see dl-verify --reuse: the user's,
        and the node's when there is one) and ``error`` (why there is no report). A node
        that left the run before its verification (``dl_verify_unverified``) gets one row,
        not passed, with ``unverified`` ("unreachable" or "failed").
    """
    rows = []
    for host in sorted(hosts):
        outcome = hosts[host] or {}
        node = outcome.get("node") or {}
        node_cells = _cells(node.get("checks", []))
        entries = outcome.get("users") or []
        if outcome.get("unverified"):  # left the run before its verification: listed, not passed
            rows.append({"host": host, "user": "", "ok": False, "checks": {}, "verified": "", "reused": False,
                         "error": outcome.get("error") or "not verified", "unverified": outcome["unverified"]})
        if node and not entries:  # a node without users: one row of its own
            rows.append({"host": host, "user": "", "ok": bool(node.get("ok")) and outcome.get("rc") == 0,
                         "checks": node_cells, "verified": node.get("time") or "", "reused": bool(node.get("reused")),
                         "error": outcome.get("error") or ""})
        for entry in entries:
            report = entry.get("report") or {}
            ok = bool(report.get("ok")) and (not node or bool(node.get("ok"))) and outcome.get("rc") == 0
            rows.append({
                "host": host,
                "user": entry.get("user") or "",
                "ok": ok,
                "checks": {**node_cells, **_cells(report.get("checks", []))},
                "verified": report.get("time") or "",
                "reused": bool(report.get("reused")) and (not node or bool(node.get("reused"))),
                "error": outcome.get("error") or ("" if report else f"no report (exit {outcome.get('rc')})"),
            })
    return rows


def unverified(probes: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Outcomes for the nodes that left the run before their verification, from a delegated
    ping of each (a registered loop's ``results``): unreachable now, or failed earlier.

    Returns:
        host -> ``{"rc": None, "unverified": "unreachable" | "failed", "error": one line}``.
    """
    out = {}
    for probe in probes:
        host = str(probe.get("item"))
        if probe.get("unreachable"):
            detail = " ".join(str(probe.get("msg") or "").split())  # one line: ssh's message spans several
            why, error = "unreachable", f"not verified: {host} is unreachable" + (f" ({detail})" if detail else "")
        else:
            why, error = "failed", f"not verified: {host} failed earlier in this run (its error is in the run's output)"
        out[host] = {"rc": None, "unverified": why, "error": error}
    return out


def report_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The check ids of all rows: the node's first, then the node's env checks, the user's
    files, the user's env checks, each group in a stable order."""
    order = ["driver", "gpus", "fabric", "cuda", "cudnn", "envs_config"]
    seen = {cid for row in rows for cid in row["checks"]}
    node_envs = sorted(c for c in seen if c.startswith("env:"))
    user_envs = sorted(c for c in seen if c.startswith("user-env:"))
    known = [c for c in order if c in seen] + node_envs + [c for c in ("keras_config", "theano_config") if c in seen]
    return known + user_envs + sorted(seen - set(known) - set(user_envs))


def failures(outcome: Mapping[str, Any]) -> list[str]:
    """One line per failed required check (or missing report) of one node's run: the node's
    checks once, then each user's."""
    lines = []
    if not outcome:
        return lines
    if outcome.get("error") or not (outcome.get("users") or outcome.get("node")):
        return [f"dl-verify gave no report (exit {outcome.get('rc')}): {outcome.get('error', '')}".rstrip(": ")]
    for check in (outcome.get("node") or {}).get("checks", []):
        if check.get("status") == "fail" and check.get("required"):
            lines.append(f"node: {check['id']}: {check.get('reason', '')}")
    for entry in outcome.get("users") or []:
        report = entry.get("report") or {}
        user = entry.get("user") or "?"
        if not report:
            lines.append(f"{user}: dl-verify gave no report for this user")
            continue
        for check in report.get("checks", []):
            if check.get("status") == "fail" and check.get("required"):
                lines.append(f"{user}: {check['id']}: {check.get('reason', '')}")
    if outcome.get("rc") not in (0, None) and not lines:
        lines.append(f"dl-verify exited {outcome.get('rc')}")
    return lines


class FilterModule:
    """dl_verify filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "dl_verify_expectations": expectations,
            "dl_verify_command": command,
            "dl_verify_result": result,
            "dl_verify_report_rows": report_rows,
            "dl_verify_unverified": unverified,
            "dl_verify_report_columns": report_columns,
            "dl_verify_failures": failures,
        }
