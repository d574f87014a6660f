"""Command: log verify (the audit log's hash chain)."""

from __future__ import annotations

import typer

from offboard_audit.cli.app import (
    EXIT_OK,
    app,
    err,
    state,
)
from offboard_audit.cli.common import (
    EXIT_REFUSED,
    emit,
)
from offboard_audit.core.audit_chain import verify_chain
from offboard_audit.report.table import markup_safe
from offboard_audit.storage.actions import iter_events

log_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(log_app, name="log")


@log_app.command("verify")
def log_verify(
    ctx: typer.Context,
    head: str | None = typer.Option(
        None, "--head", help="A head hash printed by an earlier verify: prove nothing was cut off since."
    ),
) -> int:
    """Check the audit log's hash chain; exit 1 naming each edited, reordered or deleted event."""
    store = state(ctx).store()
    result = verify_chain(iter_events(store), expected_head=head)
    if result.ok:
        emit(f"ok: {result.events} events, chain intact; head {result.head_seq} {result.head_hash}")
        return EXIT_OK
    for p in result.problems:
        err.print(f"[bold red]broken:[/] {markup_safe(p)}", highlight=False, soft_wrap=True)
    emit(f"BROKEN: {len(result.problems)} problem(s) in {result.events} events")
    return EXIT_REFUSED
