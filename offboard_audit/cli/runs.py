"""Command: runs (the newest runs with their status, open findings and failed sources)."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from offboard_audit.cli.app import EXIT_OK, app, state
from offboard_audit.cli.common import check_format, emit
from offboard_audit.report.base import iso
from offboard_audit.report.json import dumps
from offboard_audit.report.table import console_for, plain
from offboard_audit.storage.runs import RunOverview


def _summary(run: RunOverview) -> dict[str, int] | None:
    # A run that did not finish reading its sources (failed, abandoned, running) found nothing
    # to count: its stored summary is empty or zero, which must not read as "no findings".
    if not run.info.status.completed:
        return None
    # In the order (and with the keys) of audit's summary, whatever order it was stored in.
    stored = dict(run.summary)
    return {k: stored.pop(k, 0) for k in ("critical", "high", "medium", "low")} | stored


def run_overview_json(run: RunOverview) -> dict[str, Any]:
    info = run.info
    return {
        "id": info.run_id,
        "kind": info.kind,
        "status": info.status.value,
        "started_at": iso(info.started_at),
        "finished_at": iso(info.finished_at),
        "circuit_breaker": info.circuit_breaker,
        "summary": _summary(run),
        "failed_sources": list(run.failed_sources),
    }


def runs_table(runs: list[RunOverview]) -> Table:
    table = Table(title="runs (newest first)", header_style="bold")
    for col in ("run", "kind", "started", "status", "open findings", "failed sources", "circuit breaker"):
        table.add_column(col, overflow="fold")
    for run in runs:
        info = run.info
        counts = _summary(run)
        table.add_row(
            plain(info.run_id),
            plain(info.kind),
            plain(f"{info.started_at:%Y-%m-%d %H:%M:%S}"),
            plain(info.status.value, "" if info.status.completed else "bold red"),
            plain("-" if counts is None else ", ".join(f"{k}={v}" for k, v in counts.items())),
            plain(", ".join(run.failed_sources) or "-"),
            plain(info.circuit_breaker or "-"),
        )
    return table


@app.command()
def runs(
    ctx: typer.Context,
    limit: int = typer.Option(10, "--limit", min=1, help="How many of the newest runs."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> int:
    """The newest runs: their kind, status, open findings and failed sources."""
    check_format(fmt, ("table", "json"))
    rows = state(ctx).store().recent_runs(limit)
    if fmt == "json":
        emit(dumps({"runs": [run_overview_json(r) for r in rows]}))
        return EXIT_OK
    console = console_for(sys.stdout)
    console.print(runs_table(rows) if rows else plain("no runs"))
    sys.stdout.flush()
    return EXIT_OK
