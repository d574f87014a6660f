"""Command: report (the evidence pack for one leaver)."""

from __future__ import annotations

from pathlib import Path

import typer

from offboard_audit.cli.app import EXIT_OK, app, err, fail, now_utc, state
from offboard_audit.cli.common import check_format, emit
from offboard_audit.report.audit_trail import AuditTrail
from offboard_audit.report.evidence import collect_evidence
from offboard_audit.report.evidence_render import evidence_html, evidence_json
from offboard_audit.report.json import dumps
from offboard_audit.report.table import plain
from offboard_audit.storage.files import write_private_text


@app.command()
def report(
    ctx: typer.Context,
    person: str = typer.Option(..., "--person", help="Employee id of the departed person."),
    fmt: str = typer.Option("json", "--format", help="json or html."),
    output_file: Path | None = typer.Option(
        None, "--output", help="Write to FILE (created owner-only, 0600) instead of stdout."
    ),
) -> int:
    """Evidence pack for one leaver: accounts, credentials, last use, revocations, time to revoke."""
    check_format(fmt, ("json", "html"))
    st = state(ctx)
    config = st.config_if_any()
    store = st.store(config)
    # With the audit key and the anchors when configured; the pack states the mode.
    evidence = collect_evidence(store, person, now_utc(), AuditTrail.from_config(config))
    if not evidence.people and not evidence.credentials and not evidence.actions:
        raise fail(f"nothing is known about employee id {person!r}")
    text = dumps(evidence_json(evidence)) if fmt == "json" else evidence_html(evidence)
    if output_file is not None:
        # Owner-only: the pack lists a person's accounts and credentials.
        write_private_text(output_file, text if text.endswith("\n") else text + "\n")
        err.print(plain(f"wrote {output_file}"))
    else:
        emit(text)
    return EXIT_OK
