"""Filters of the dl_verify role: expectations for dl-verify, and rows of the cluster report."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from ansible.errors import AnsibleFilterError


def expectations(user: Mapping[str, Any] | None, envs: Iterable[Mapping[str, Any]], node: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What dl-verify must find for one user on one node (its ``--expect-json``).

    Args:
        user: the user's effective settings (``name``, ``keras``, ``theano``), or None/{} for
            a node-level run.
        envs: the envs on the node, each ``name`` and ``backends`` (the first is the one
            the dl_user_config hook falls back to when the user's backend is not served).
        node: node-level expectations (gpu_count, driver_branch, cuda_default, cudnn_major).

    Returns:
        The expectations object: the node's, the user's keras.json settings and Theano
        device, and per env the backend Keras must load for this user.
    """
    expect: dict[str, Any] = dict(node or {})
    env_expect: dict[str, dict[str, Any]] = {}
    keras = dict((user or {}).get("keras") or {})
    theano = dict((user or {}).get("theano") or {})
    for key in ("backend", "floatx", "image_data_format"):
        if key in keras:
            expect[key] = keras[key]
    if "device" in theano:
        expect["device"] = theano["device"]
    for env in envs:
        backends = list(env.get("backends") or [])
        if not env.get("name") or not backends:
            raise AnsibleFilterError(f"dl_verify: every env needs a name and backends, got {dict(env)!r}")
        if not user:
            continue
        wanted = keras.get("backend")
        env_expect[env["name"]] = {"backend": wanted if wanted in backends else backends[0]}
    if env_expect:
        expect["envs"] = env_expect
    return expect


def result(run: Mapping[str, Any]) -> dict[str, Any]:
    """One dl-verify run (a looped ``command`` result) as ``{user, rc, report, error}``.

    ``report`` is the parsed ``--json`` output, or None when the output is not a JSON
    object (then ``error`` holds the end of stderr).
    """
    item = run.get("item") or {}
    report: Any = None
    try:
        report = json.loads(run.get("stdout") or "")
    except ValueError:
        report = None
    if not isinstance(report, dict):
        report = None
    stderr = (run.get("stderr") or run.get("msg") or "").strip().splitlines()
    return {
        "user": item.get("name") or (report or {}).get("user") or "",
        "rc": run.get("rc"),
        "report": report,
        "error": "" if report is not None else " ".join(stderr[-3:]),
    }


def report_rows(hosts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten every node's results into report rows.

    Args:
        hosts: host name -> list of results, each ``{"user": ..., "rc": int,
            "report": dl-verify's JSON (or None), "error": str}``.

    Returns:
        One row per host and user, sorted: ``host``, ``user``, ``ok``, ``checks`` (check id
        -> {status, reason, summary}), ``verified`` (when the checks ran), ``reused`` (the
        report is a stored one, see dl-verify --reuse) and ``error`` (why there is no report).
    """
    rows = []
    for host in sorted(hosts):
        for result in hosts[host] or []:
            report = result.get("report") or {}
            checks = {}
            for check in report.get("checks", []):
                data = check.get("data") or {}
                probe = data.get("probe") or {}
                summary = check.get("reason", "")
                if probe.get("keras"):
                    summary = f"keras {probe['keras']} / {probe.get('backend')}"
                checks[check["id"]] = {"status": check.get("status", "fail"), "reason": check.get("reason", ""),
                                       "summary": summary, "required": bool(check.get("required"))}
            rows.append({
                "host": host,
                "user": result.get("user") or report.get("user") or "",
                "ok": bool(report.get("ok")) and result.get("rc") == 0,
                "checks": checks,
                "verified": report.get("time") or "",
                "reused": bool(report.get("reused")),
                "error": result.get("error") or ("" if report else f"no report (exit {result.get('rc')})"),
            })
    return rows


def report_columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The check ids of all rows, node checks first, then envs, in a stable order."""
    order = ["driver", "gpus", "fabric", "cuda", "cudnn", "keras_config", "theano_config"]
    seen = {cid for row in rows for cid in row["checks"]}
    return [c for c in order if c in seen] + sorted(seen - set(order))


def failures(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per failed required check (or missing report) in one node's results."""
    lines = []
    for result in results:
        report = result.get("report")
        user = result.get("user") or "(node)"
        if not report:
            lines.append(f"{user}: dl-verify gave no report (exit {result.get('rc')}): {result.get('error', '')}".rstrip(": "))
            continue
        for check in report.get("checks", []):
            if check.get("status") == "fail" and check.get("required"):
                lines.append(f"{user}: {check['id']}: {check.get('reason', '')}")
        if result.get("rc") not in (0, None) and not any(line.startswith(f"{user}:") for line in lines):
            lines.append(f"{user}: dl-verify exited {result.get('rc')}")
    return lines


class FilterModule:
    """dl_verify filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "dl_verify_expectations": expectations,
            "dl_verify_result": result,
            "dl_verify_report_rows": report_rows,
            "dl_verify_report_columns": report_columns,
            "dl_verify_failures": failures,
        }
