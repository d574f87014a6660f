"""Commands: audit and findings."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from offboard_audit.cli.app import (
    EXIT_OK,
    app,
    err,
    fail,
    now_utc,
    parse_severity,
    show_progress,
    source_context,
    state,
)
from offboard_audit.cli.common import (
    check_output_format,
    exit_code,
    progress,
    render,
)
from offboard_audit.core.records import FindingStatus
from offboard_audit.core.runs import open_not_read
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.report.formats import format_for
from offboard_audit.report.table import markup_safe, plain


@app.command()
def audit(
    ctx: typer.Context,
    source: list[str] = typer.Option(
        [],
        "--source",
        help="Only these account sources (repeatable). HR is always read: naming only an HR source reads HR alone.",
    ),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    output_file: Path | None = typer.Option(
        None, "--output", help="Write the report to FILE (created owner-only, 0600)."
    ),
    accept_hr: bool = typer.Option(
        False,
        "--accept-hr",
        help="Accept this HR read as the new baseline even if it trips the circuit breaker; "
        "the breaker is released for this run (a failed HR source is never accepted).",
    ),
    fail_on: str = typer.Option(
        "high",
        "--fail-on",
        help="Exit 1 on open findings at/above: critical, high, medium, low, none "
        "(findings of the sources read, not of those left out by --source).",
    ),
) -> int:
    """Collect from every source, match, evaluate, store and print findings."""
    check_output_format(fmt)
    threshold = parse_severity(fail_on)
    st = state(ctx)
    config = st.config()
    store = st.store(config)
    with progress(show_progress(fmt, output_file)) as report:
        pipeline = Pipeline(config, store, source_context(config), report)
        result = pipeline.run(now_utc(), source, accept_hr=accept_hr)
    if accept_hr:
        if pipeline.accepted_breaker is not None:
            err.print(
                "[bold yellow]--accept-hr:[/] this HR read is the new baseline and the circuit breaker "
                f"is released for this run; it had tripped: {markup_safe(pipeline.accepted_breaker)}"
            )
        elif result.circuit_breaker is not None:
            err.print(
                "[bold yellow]--accept-hr:[/] not accepted, a failed HR read cannot be: "
                f"{markup_safe(result.circuit_breaker)}"
            )
        else:
            err.print("--accept-hr: this HR read is the new baseline (the circuit breaker did not trip)")
    not_read = open_not_read(store.list_findings([FindingStatus.OPEN.value]), result)
    if not_read and fmt == "csv":
        # A CSV file holds finding rows only: say it here that it is not all that is open.
        err.print(
            plain(f"{len(not_read)} open findings from sources not read in this run are not in the CSV")
            + plain(" (`offboard-audit findings` lists them)")
        )
    actions = store.actions_by_finding([f.finding_id for f in result.findings])
    render(result, fmt, output_file, actions, not_read)
    # The exit code speaks for the sources this run read (README "Exit codes"): a job auditing
    # one source does not fail on another's stored findings, which it did not check again.
    return exit_code(result, threshold)


@app.command()
def findings(
    ctx: typer.Context,
    status: str = typer.Option("open", "--status", help="open, exempted, revoked, resolved or all."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    person: str | None = typer.Option(None, "--person", help="Only findings of this employee id."),
) -> int:
    """Stored findings from earlier runs."""
    check_output_format(fmt)
    valid = [s.value for s in FindingStatus]
    if status != "all" and status not in valid:
        raise fail(f"--status must be one of {', '.join(valid)} or all; got {status!r}")
    st = state(ctx)
    store = st.store()
    rows = store.list_findings(None if status == "all" else [status], person=person)
    actions = store.actions_by_finding([f.finding_id for f in rows])
    format_for(fmt, actions).write_findings(sys.stdout, rows, title=f"{status} findings")
    sys.stdout.flush()
    return EXIT_OK
