"""Render runs and findings as a table (rich), JSON (the shape promised in design.md) or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from offboard_audit.core.records import Finding, FindingStatus, RunResult, Severity, SourceRun, SourceStatus
from offboard_audit.core.stored import ActionRecord

FORMATS = ("table", "json", "csv")
_SEVERITY_ORDER = {s: -s.rank for s in Severity}
_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}

# The actions per finding id, oldest first, as the revocation engine stored them (none before
# any revoke).
ActionInfo = Mapping[str, Sequence[ActionRecord]]


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def sort_findings(findings: Sequence[Finding]) -> list[Finding]:
    return sorted(
        findings,
        key=lambda f: (_SEVERITY_ORDER[f.severity], f.source, f.account.username, f.finding_id),
    )


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


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    counts = {"critical": 0, "high": 0, "medium": 0, "low": 0}
    for f in findings:
        if f.status is FindingStatus.OPEN:
            counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
    return counts


def run_json(result: RunResult, actions: ActionInfo | None = None) -> dict[str, Any]:
    findings = sort_findings(result.findings)
    return {
        "run": {
            "id": result.run_id,
            "started_at": iso(result.started_at),
            "finished_at": iso(result.finished_at),
            "sources": [source_json(s) for s in result.sources],
            "circuit_breaker": result.circuit_breaker,
        },
        "findings": [finding_json(f, actions) for f in findings],
        "summary": summary(findings),
    }


CSV_COLUMNS = (
    "id",
    "rule",
    "severity",
    "status",
    "source",
    "system",
    "scope",
    "account_id",
    "account_name",
    "credential_id",
    "credential_kind",
    "credential_active",
    "credential_last_used_at",
    "employee_id",
    "email",
    "person_name",
    "terminated_at",
    "first_seen",
    "due_at",
    "stale",
    "latest_action",
    "reason",
)


def findings_csv(findings: Sequence[Finding], actions: ActionInfo | None = None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for f in sort_findings(findings):
        c = f.credential
        p = f.person
        latest = _latest_action(f, actions)
        writer.writerow(
            [
                f.finding_id,
                f.rule.value,
                f.severity.value,
                f.status.value,
                f.source,
                f.system,
                f.account.scope,
                f.account.account_id,
                f.account.username,
                c.credential_id if c else "",
                c.kind.value if c else "",
                "" if c is None else str(c.active).lower(),
                iso(c.last_used_at) if c else "",
                p.employee_id if p else "",
                (p.email or "") if p else "",
                p.name if p else "",
                iso(p.terminated_at) if p else "",
                iso(f.first_seen),
                iso(f.due_at) or "",
                str(f.stale).lower(),
                latest,
                f.reason,
            ]
        )
    return buf.getvalue()


def _latest_action(f: Finding, actions: ActionInfo | None) -> str:
    if not actions:
        return ""
    acts = actions.get(f.finding_id)
    if not acts:
        return ""
    last = acts[-1]
    return f"{last.action} {last.status.value} {last.updated_at.isoformat()}"


def _short(text: str, width: int = 44) -> str:
    """Long ids (GCP key names, LDAP DNs) keep their distinctive tail in the table view."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def findings_table(findings: Sequence[Finding], actions: ActionInfo | None = None, title: str = "") -> Table:
    table = Table(title=title or None, show_lines=False, header_style="bold")
    table.add_column("severity", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("person", overflow="fold")
    table.add_column("source", overflow="fold")
    table.add_column("account", overflow="fold")
    table.add_column("credential", overflow="fold", max_width=48)
    table.add_column("last used", no_wrap=True)
    table.add_column("status", no_wrap=True)
    if actions:
        table.add_column("latest action")
    for f in sort_findings(findings):
        c = f.credential
        person = f.person.email or f.person.employee_id if f.person else "-"
        if f.candidates:
            person = " | ".join(x.email or x.employee_id for x in f.candidates)
        cred = f"{c.kind.value} {_short(c.credential_id)}" if c else "-"
        last = c.last_used_at.strftime("%Y-%m-%d") if c and c.last_used_at else "-"
        status = f.status.value + (" (stale)" if f.stale else "")
        row = [
            f"[{_STYLE[f.severity]}]{f.severity.value}[/]",
            f.rule.value,
            person,
            f.source,
            f.account.username or f.account.account_id,
            cred,
            last,
            status,
        ]
        if actions:
            row.append(_latest_action(f, actions) or "-")
        table.add_row(*row)
    return table


def sources_table(sources: Sequence[SourceRun]) -> Table:
    table = Table(title="sources", header_style="bold")
    for col in ("source", "system", "status", "counts", "error"):
        table.add_column(col)
    for s in sources:
        style = {SourceStatus.OK: "green", SourceStatus.DEGRADED: "yellow", SourceStatus.FAILED: "bold red"}[
            s.status
        ]
        status = f"[{style}]{s.status.value}[/]" + (" (stale data)" if s.stale else "")
        counts = ", ".join(f"{k}={v}" for k, v in s.counts)
        table.add_row(s.name, s.system, status, counts, s.error or "")
    return table


def print_run_table(console: Console, result: RunResult, actions: ActionInfo | None = None) -> None:
    console.print(sources_table(result.sources))
    for s in result.sources:
        for w in s.warnings[:20]:
            console.print(f"[yellow]warning[/] {s.name}: {w}")
        if len(s.warnings) > 20:
            console.print(f"[yellow]warning[/] {s.name}: … and {len(s.warnings) - 20} more")
    if result.circuit_breaker:
        console.print(f"[bold yellow]circuit breaker:[/] {result.circuit_breaker} — nothing will be revoked")
    if result.findings:
        console.print(findings_table(result.findings, actions, title=f"findings (run {result.run_id})"))
    else:
        console.print("[green]no findings[/]")
    counts = summary(result.findings)
    console.print("summary: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


def console(file: Any = None) -> Console:
    """A console for reports: the terminal's width on a TTY, 160 columns when piped."""
    c = Console(file=file)
    if not c.is_terminal:
        c = Console(file=file, width=160, no_color=file is not None)
    return c


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False)
