"""Command: report (the evidence pack for one leaver)."""

from __future__ import annotations

from pathlib import Path

import typer

from offboard_audit.cli.app import (
    EXIT_OK,
    app,
    err,
    fail,
    now_utc,
    state,
)
from offboard_audit.cli.common import (
    check_format,
    emit,
)
from offboard_audit.report.evidence import collect_evidence, evidence_html, evidence_json
from offboard_audit.report.json import dumps
from offboard_audit.report.table import plain


@app.command()
def report(
    ctx: typer.Context,
    person: str = typer.Option(..., "--person", help="Employee id of the departed person."),
    fmt: str = typer.Option("json", "--format", help="json or html."),
    output_file: Path | None = typer.Option(None, "--output", help="Write to FILE instead of stdout."),
) -> int:
    """Evidence pack for one leaver: accounts, credentials, last use, revocations, time to revoke."""
    check_format(fmt, ("json", "html"))
    st = state(ctx)
    store = st.store()
    evidence = collect_evidence(store, person, now_utc())
    if not evidence.people and not evidence.credentials and not evidence.actions:
        raise fail(f"nothing is known about employee id {person!r}")
    text = dumps(evidence_json(evidence)) if fmt == "json" else evidence_html(evidence)
    if output_file is not None:
        output_file.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        err.print(plain(f"wrote {output_file}"))
    else:
        emit(text)
    return EXIT_OK
