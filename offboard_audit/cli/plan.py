"""Command: plan (what would be revoked; changes nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from offboard_audit.cli.app import EXIT_OK, app, err, now_utc
from offboard_audit.cli.common import (
    check_findings,
    check_format,
    check_person,
    emit,
    engine_for,
    held_table,
    print_plan_table,
)
from offboard_audit.core.plan_file import plan_json
from offboard_audit.core.plan_records import Plan
from offboard_audit.report.json import dumps
from offboard_audit.report.table import console_for, markup_safe
from offboard_audit.storage.files import write_private_text


def print_plan(plan: Plan) -> None:
    console = console_for()
    if plan.actions:
        print_plan_table(console, plan)
        for a in plan.actions:
            if not a.reversible:
                console.print(
                    f"[bold red]irreversible:[/] {markup_safe(a.action)} on {markup_safe(a.username)} "
                    f"{markup_safe(a.credential_id)}: {markup_safe(a.description)}"
                )
    else:
        console.print("no actions to plan")
    if plan.held:
        console.print(held_table(plan, console.width))
    if plan.done:
        console.print(f"{len(plan.done)} action(s) already applied earlier are not planned again")


@app.command()
def plan(
    ctx: typer.Context,
    output_file: Path | None = typer.Option(
        None,
        "--output",
        help="Write the plan (JSON, with checksum; signed with the audit key when set) to FILE (0600).",
    ),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    finding: list[str] = typer.Option(
        [], "--finding", help="Only these findings: the full id or the table's short id (repeatable)."
    ),
    person: str | None = typer.Option(None, "--person", help="Only this employee id."),
) -> int:
    """The revocation plan for open findings past their grace period (changes nothing)."""
    check_format(fmt, ("table", "json"))
    config, store, engine = engine_for(ctx)
    now = now_utc()
    finding = check_findings(store, finding)
    person = check_person(store, person)
    the_plan = engine.plan(now, finding_ids=finding, person=person)
    # Signed with the audit key when one is set ([audit] key_env): revoke --plan checks it.
    body = plan_json(the_plan, config.audit.key)
    breaker = engine.stored_breaker()
    if output_file is not None:
        # Owner-only: a plan lists who left and which of their credentials still work.
        write_private_text(output_file, json.dumps(body, indent=2) + "\n")
        err.print(
            f"wrote {markup_safe(output_file)} "
            f"(apply with: offboard-audit revoke --plan {markup_safe(output_file)} --apply)"
        )
    if fmt == "json":
        emit(dumps({**body, "circuit_breaker": breaker}))
    else:
        print_plan(the_plan)
    if breaker:
        err.print(
            f"[bold yellow]note:[/] revoke would refuse right now: {markup_safe(breaker)}",
            highlight=False,
            soft_wrap=True,
        )
    return EXIT_OK
