"""The JSON format: one object per run (the shape promised in design.md), byte for byte stable;
and :func:`loads_limited`, the parser for JSON that comes from outside (webhook bodies, plan
files)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TextIO

from offboard_audit.core.records import Finding
from offboard_audit.core.rotation import owner_json
from offboard_audit.core.runs import RunResult, SourceRun
from offboard_audit.core.stored import ActionRecord
from offboard_audit.report.base import ActionInfo, Format, iso, sort_findings, summary


class JsonFormat(Format):
    name = "json"

    def write_run(self, out: TextIO, result: RunResult, *, not_read: Sequence[Finding] = ()) -> None:
        out.write(dumps(run_json(result, self.actions, not_read)) + "\n")

    def write_findings(self, out: TextIO, findings: Sequence[Finding], *, title: str = "findings") -> None:
        body = {
            "findings": [finding_json(f, self.actions) for f in sort_findings(findings)],
            "summary": summary(findings),
        }
        out.write(dumps(body) + "\n")


def action_json(a: ActionRecord) -> dict[str, Any]:
    """An action as a finding lists it in the JSON output."""
    return {
        "id": a.action_id,
        "action": a.action,
        "stage": a.stage.value,
        "status": a.status.value,
        "actor": a.actor,
        "error": a.error,
        "created_at": a.created_at.isoformat(),
        "updated_at": a.updated_at.isoformat(),
    }


def finding_json(f: Finding, actions: ActionInfo | None = None) -> dict[str, Any]:
    p = f.person
    c = f.credential
    out: dict[str, Any] = {
        "id": f.finding_id,
        "rule": f.rule.value,
        "severity": f.severity.value,
        "status": f.status.value,
        "person": (
            {
                "employee_id": p.employee_id,
                "email": p.email,
                "name": p.name,
                "status": p.status.value,
                "terminated_at": iso(p.terminated_at),
            }
            if p
            else None
        ),
        "source": f.source,
        "system": f.system,
        "scope": f.account.scope or None,
        "account": {"id": f.account.account_id, "name": f.account.username, "kind": f.account.kind.value},
        "credential": (
            {
                "id": c.credential_id,
                "kind": c.kind.value,
                "active": c.active,
                "created_at": iso(c.created_at),
                "last_used_at": iso(c.last_used_at),
                "detail": c.detail or None,
                "observed_at": iso(c.observed_at),
            }
            if c
            else None
        ),
        "first_seen": iso(f.first_seen),
        "due_at": iso(f.due_at),
        "reason": f.reason,
        "stale": f.stale,
        "exemption_id": f.exemption_id,
    }
    if f.exposure or f.owner is not None:
        # Exposure findings (design.md "Exposure"): each access, and who should rotate it.
        out["exposure"] = [
            {"at": iso(a.at), "how": a.how.value, "event_id": a.event_id, "action": a.action or None}
            for a in f.exposure
        ]
        out["owner"] = owner_json(f.owner)
    if f.candidates:
        out["candidates"] = [
            {"employee_id": x.employee_id, "email": x.email, "name": x.name} for x in f.candidates
        ]
    if actions is not None:
        out["actions"] = [action_json(a) for a in actions.get(f.finding_id, ())]
    return out


def source_json(s: SourceRun) -> dict[str, Any]:
    return {
        "name": s.name,
        "system": s.system,
        "status": s.status.value,
        "error": s.error,
        "counts": dict(s.counts),
        "stale": s.stale,
        "failed_scopes": [{"scope": f.scope, "error": f.error} for f in s.failed_scopes],
        "warnings": list(s.warnings),
    }


def run_json(
    result: RunResult, actions: ActionInfo | None = None, not_read: Sequence[Finding] = ()
) -> dict[str, Any]:
    findings = sort_findings(result.findings)
    out: dict[str, Any] = {
        "run": {
            "id": result.run_id,
            "started_at": iso(result.started_at),
            "finished_at": iso(result.finished_at),
            "sources": [source_json(s) for s in result.sources],
            "circuit_breaker": result.circuit_breaker,
            # Added last: the keys before it keep their order. As stored for the run.
            "status": result.status.value,
        },
        "findings": [finding_json(f, actions) for f in findings],
        "summary": summary(findings),
    }
    if not_read:
        # Open findings of sources this run did not read (``audit --source``): counted, not
        # listed. Only then: the object of an audit of every source keeps its keys.
        out["not_read"] = {
            "open_findings": len(not_read),
            "sources": sorted({f.source for f in not_read}),
            "summary": summary(not_read),
        }
    return out


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)


# --- reading JSON from outside ---------------------------------------------------------------

# Deep enough for every document the tool reads (a plan file nests 4 levels, a webhook body 1),
# far below the depth at which json.loads hits Python's recursion limit (~1000).
MAX_JSON_DEPTH = 32

# A JSON string (with its escapes) or one bracket; brackets inside strings are skipped with them.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class JsonTooDeep(json.JSONDecodeError):
    """A JSON document nested deeper than allowed. A ``JSONDecodeError``, so every caller that
    already answers malformed JSON (the webhook's 422, a refused plan file) answers this too."""


class JsonNumberTooLong(json.JSONDecodeError):
    """A JSON document with an integer of more than 4300 digits, which Python refuses to convert
    (with a plain ``ValueError``). A ``JSONDecodeError`` for the same reason as ``JsonTooDeep``."""


def loads_limited(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` before parsing them.

    ``json.loads`` of ``[[[[...]]]]`` a few thousand levels deep raises ``RecursionError``, which
    is not a ``ValueError`` and would escape as a 500 (or a crash). The nesting is measured first
    by a linear scan that skips strings, so the parser never sees such a document. Every other
    document it cannot read is a ``JSONDecodeError`` too.
    """
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8")  # UnicodeDecodeError, like json.loads of invalid UTF-8
    depth = 0
    for m in _TOKENS.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            if depth > max_depth:
                raise JsonTooDeep(f"nested deeper than {max_depth} levels", text, m.start())
        elif token in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        # An integer of more than 4300 digits (Python's int conversion limit) raises a plain
        # ValueError, which callers that answer malformed JSON (a refused plan file) missed.
        raise JsonNumberTooLong(str(exc), text, 0) from None
