"""The table format (rich): sources, warnings, the circuit breaker, findings and the summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from rich.console import Console
from rich.table import Table

from offboard_audit.core.records import Finding, RunResult, Severity, SourceRun, SourceStatus
from offboard_audit.report.base import ActionInfo, Format, latest_action, sort_findings, summary

_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


class TableFormat(Format):
    name = "table"

    def write_run(self, out: TextIO, result: RunResult, actions: ActionInfo | None = None) -> None:
        print_run_table(console_for(out), result, actions)

    def write_findings(
        self,
        out: TextIO,
        findings: Sequence[Finding],
        actions: ActionInfo | None = None,
        *,
        title: str = "findings",
    ) -> None:
        console = console_for(out)
        if findings:
            console.print(findings_table(findings, actions, title=title))
        else:
            console.print(f"no {title}")


def console_for(file: TextIO | None = None) -> Console:
    """A console for reports: the terminal's width on a TTY, 160 columns when piped."""
    c = Console(file=file)
    if not c.is_terminal:
        c = Console(file=file, width=160, no_color=file is not None)
    return c


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
            row.append(latest_action(f, actions) or "-")
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
